use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The source is in the message, not chained, so it prints once.
    #[error("I/O error on {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the database at {0} is in use by another process")]
    Locked(PathBuf),
    #[error("storage error: {0}")]
    Store(String),
    #[error("full-text index error: {0}")]
    Text(tantivy::TantivyError),
    #[error("corrupt file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Generation files made by another version of cairn; a read-write
    /// open rebuilds them.
    #[error(
        "{path} was made by another version of cairn: open the database read-write once (cairn serve or cairn import) to rebuild it"
    )]
    Outdated { path: PathBuf },
    /// A read-only open found `CURRENT` and `live/VIEW` naming different
    /// bases for longer than it waits: a writer between two states, or
    /// stopped between them.
    #[error(
        "{path}: CURRENT and live/VIEW name different bases (a writer is between two states, or stopped between them): try again, or open the database read-write once"
    )]
    Unsettled { path: PathBuf },
    #[error("line {line}: {reason}")]
    BadInput { line: u64, reason: String },
    /// An id the importer made up is the id of an unrelated record: put,
    /// it would silently replace that record.
    #[error("the id {id:?} of {what} is already the id of a {existing}: one of the two must change")]
    IdCollision { id: String, what: String, existing: String },
    #[error("unknown input format for {0}: use ban-ndjson or ban-csv")]
    UnknownFormat(String),
    #[error("the database is open read-only")]
    ReadOnly,
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("the query ran out of its time budget")]
    Timeout,
    /// A snapshot that cannot be made, read or installed; a refused restore
    /// leaves the database as it was.
    #[error("snapshot: {reason}")]
    Snapshot { reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Text(e)
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }

    pub(crate) fn snapshot(reason: impl Into<String>) -> Self {
        Error::Snapshot { reason: reason.into() }
    }
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self { Error::Store(e.to_string()) }
        }
    )*};
}
store_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
