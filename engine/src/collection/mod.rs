//! Collections: named sets of JSON records under a typed schema, with
//! filters, ranges, sorts, cursors, facets, collapse and full text. The
//! geocoder's records live apart (see [`crate::profiles::address`]); collections share
//! the database's store, generations, snapshots and replicas.
//!
//! ```no_run
//! use cairn::collection::{FieldSpec, FieldType, Filter, Query, Schema};
//! let db = cairn::Database::open("/tmp/cairn-db")?;
//! let schema = Schema::new("id")
//!     .field("status", FieldSpec::new(FieldType::Keyword))
//!     .field("created_at", FieldSpec::new(FieldType::Date));
//! db.put_collection("checks", &schema)?;
//! db.write_collection("checks", |w| {
//!     w.put_json(serde_json::json!({"id": "c1", "status": "ok", "created_at": "2026-12-06T10:00:00Z"}))
//! })?;
//! let q = Query { filter: Filter::Terms { field: "status".into(), values: vec!["ok".into()] }, ..Query::default() };
//! for hit in db.collection("checks")?.query(&q)?.hits {
//!     println!("{} {}", hit.id, hit.doc);
//! }
//! # Ok::<(), cairn::collection::CollectionError>(())
//! ```
//!
//! Each version of a collection is indexed in memory ([`index`]) from its
//! records, read in id order from a redb read transaction that the version
//! keeps: hits are read from the same state the indexes were built from.

mod filter;
mod index;
mod ingest;
mod query;
mod records;
mod schema;
mod value;

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value as Json};

pub use filter::Filter;
pub use ingest::{ImportFormat, ImportProblem, ImportReport};
pub use query::{Query, SortKey, MAX_LIMIT, SCORE};
pub use schema::{valid_collection_name, Analyzer, FieldSpec, FieldType, Schema};
pub use value::Invalid;

use crate::error::Error;
use crate::store::{StoreTxn, StoreView};
use crate::Database;

/// What can go wrong with a collection. The variants a caller caused
/// ([`CollectionError::is_user_error`]) say what and where.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error("no collection named {0:?}")]
    NotFound(String),
    #[error("{0:?} cannot name a collection: 1 to 64 ASCII letters, digits, '_' or '-'")]
    InvalidName(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("schema change refused: {0}")]
    SchemaChange(String),
    #[error("{at}: field {path:?}: {reason}")]
    BadRecord { at: String, path: String, reason: String },
    #[error("{at}: {reason}")]
    BadInput { at: String, reason: String },
    #[error("query: {path}: {reason}")]
    BadQuery { path: String, reason: String },
    /// The collection changed since the cursor was made (or the server
    /// restarted), and the version it pages through is no longer kept.
    #[error("cursor: the collection changed since it was made and the version it pages through is no longer kept: start again without a cursor")]
    CursorExpired,
    #[error(transparent)]
    Engine(#[from] Error),
}

impl CollectionError {
    /// Whether the caller's input caused it (HTTP 4xx), rather than the
    /// machine or the data on disk (5xx).
    pub fn is_user_error(&self) -> bool {
        match self {
            CollectionError::Engine(e) => matches!(e, Error::ReadOnly | Error::BadInput { .. }),
            _ => true,
        }
    }
}

/// One version of a collection, immutable.
pub(crate) struct State {
    name: String,
    schema: Schema,
    /// The generation that made this version.
    version: u64,
    /// What cursors name this version by: random, so that no other version,
    /// in this process or after a restart or a restore (which can bring a
    /// generation number back with other records), is ever taken for it.
    token: u64,
    /// Unique in this process: what answers are cached under.
    epoch: u64,
    index: index::Index,
    /// The stored records, by row.
    records: records::Records,
}

/// How many superseded versions are kept for cursors started on them.
const KEPT_VERSIONS: usize = 4;

/// The collections of an open database.
pub(crate) struct Registry {
    current: RwLock<BTreeMap<String, Arc<State>>>,
    recent: Mutex<VecDeque<Arc<State>>>,
    /// Where the versions' records are mapped from: the database's
    /// directory.
    scratch: PathBuf,
}

fn next_epoch() -> u64 {
    static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Registry {
    pub(crate) fn new(scratch: &Path) -> Registry {
        Registry { current: RwLock::default(), recent: Mutex::default(), scratch: scratch.to_owned() }
    }

    /// Indexes a collection as `view` holds it; the view is not kept.
    fn build(&self, name: &str, schema: Schema, version: u64, view: &StoreView) -> Result<State, CollectionError> {
        let mut b = index::IndexBuilder::new(&schema);
        let mut records = records::RecordsWriter::new(Some(&self.scratch));
        let io = |e| Error::io(&self.scratch, e);
        view.for_each_record(name, &mut |id, bytes| {
            let record: Map<String, Json> = serde_json::from_slice(bytes).map_err(|e| not_json(name, id, &e))?;
            b.add(id, &record);
            records.push(id, bytes).map_err(io)
        })?;
        let records = records.finish().map_err(io)?;
        let token = crate::store::fresh_history();
        Ok(State { name: name.to_owned(), schema, version, token, epoch: next_epoch(), index: b.finish(), records })
    }

    /// Builds every collection from a store view (at open, after a restore).
    pub(crate) fn load(&self, open: &dyn Fn() -> crate::Result<StoreView>) -> crate::Result<()> {
        let view = open()?;
        let generation = view.generation()?;
        let mut map = BTreeMap::new();
        for (name, bytes) in view.schemas()? {
            let schema: Schema = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Store(format!("collection {name}: stored schema unreadable: {e}")))?;
            let state = self.build(&name, schema, generation, &view).map_err(|e| match e {
                CollectionError::Engine(e) => e,
                other => Error::Store(other.to_string()),
            })?;
            map.insert(name, Arc::new(state));
        }
        let old = std::mem::replace(&mut *self.current.write(), map);
        self.recent.lock().extend(old.into_values());
        self.trim();
        Ok(())
    }

    fn trim(&self) {
        let mut r = self.recent.lock();
        while r.len() > KEPT_VERSIONS {
            r.pop_front();
        }
    }

    fn get(&self, name: &str) -> Option<Arc<State>> {
        self.current.read().get(name).cloned()
    }

    fn replace(&self, name: &str, state: Option<State>) {
        let old = match state {
            Some(s) => self.current.write().insert(name.to_owned(), Arc::new(s)),
            None => self.current.write().remove(name),
        };
        if let Some(o) = old {
            self.recent.lock().push_back(o);
            self.trim();
        }
    }

    fn at_token(&self, name: &str, token: u64) -> Option<Arc<State>> {
        self.recent.lock().iter().rev().find(|s| s.name == name && s.token == token).cloned()
    }
}

/// A collection as of one version: queries on it see nothing written since.
#[derive(Clone)]
pub struct Collection {
    state: Arc<State>,
    /// Older versions, for cursors.
    older: Option<Arc<State>>,
}

/// A hit of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    /// Text relevance, with a text query.
    pub score: Option<f32>,
    /// The record, or the fields asked for.
    pub doc: Json,
}

/// A hit as JSON text (see [`Collection::query_raw`]), borrowed from the
/// collection's version.
#[derive(Debug, Clone, PartialEq)]
pub struct RawHit<'a> {
    pub id: &'a str,
    pub score: Option<f32>,
    /// A JSON object: the record, or the fields asked for. Every stored
    /// record was parsed when its version was indexed, so it is valid JSON.
    pub json: Cow<'a, [u8]>,
}

impl Hit {
    /// The record as a type of the caller's.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.doc)
    }
}

/// What a query found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub hits: Vec<Hit>,
    /// The number of matches, when asked for.
    pub total: Option<u64>,
    /// Per facet field: (value, count), the most frequent first.
    pub facets: Vec<(String, Vec<(String, u64)>)>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<String>,
    /// The version the hits come from.
    pub version: u64,
}

impl Collection {
    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn schema(&self) -> &Schema {
        &self.state.schema
    }

    /// Records in this version.
    pub fn len(&self) -> usize {
        self.state.index.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The generation that made this version; cursors are tied to it.
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// Unique to this version in this process: a cache key.
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// One record by id.
    pub fn get(&self, id: &str) -> Result<Option<Json>, CollectionError> {
        read(&self.state, id)
    }

    /// Runs a query. A cursor made on an older version pages through that
    /// version while it is kept (the last few), then is refused with
    /// [`CollectionError::CursorExpired`].
    pub fn query(&self, q: &Query) -> Result<QueryResult, CollectionError> {
        let (mut result, raw) = self.query_raw(q)?;
        result.hits = raw
            .into_iter()
            .map(|h| {
                let doc = serde_json::from_slice(&h.json).map_err(|e| not_json(self.name(), h.id, &e))?;
                Ok(Hit { id: h.id.to_owned(), score: h.score, doc })
            })
            .collect::<Result<_, CollectionError>>()?;
        Ok(result)
    }

    /// [`Collection::query`] with each hit as its JSON text (the record as
    /// stored, or the fields asked for), for callers that only pass it on:
    /// the record is neither parsed nor copied. The result's `hits` are
    /// empty.
    pub fn query_raw(&self, q: &Query) -> Result<(QueryResult, Vec<RawHit<'_>>), CollectionError> {
        let mut state = &self.state;
        if let Some(c) = &q.cursor {
            let v = query::Cursor::decode(c)?.version;
            if v != state.token {
                match &self.older {
                    Some(o) if o.token == v => state = o,
                    _ => return Err(CollectionError::CursorExpired),
                }
            }
        }
        q.check(&state.schema)?;
        let found = query::run(&state.index, &state.schema, q, state.token)?;
        // The hits are far apart in memory: their reads are started
        // together, so that they wait for memory at once, not one by one.
        let touched = found.rows.iter().fold(0, |x, (row, _)| x ^ state.records.touch(*row));
        std::hint::black_box(touched);
        let mut hits = Vec::with_capacity(found.rows.len());
        for (row, score) in &found.rows {
            let (id, stored) = state.records.get(*row);
            let id = std::str::from_utf8(id)
                .map_err(|_| Error::Store(format!("collection {}: a stored id is not UTF-8", state.name)))?;
            let json = match &q.fields {
                Some(fields) => {
                    let doc: Json = serde_json::from_slice(stored).map_err(|e| not_json(&state.name, id, &e))?;
                    let picked: Map<String, Json> =
                        fields.iter().filter_map(|f| doc.get(f).map(|v| (f.clone(), v.clone()))).collect();
                    Cow::Owned(serde_json::to_vec(&picked).map_err(|e| Error::Store(e.to_string()))?)
                }
                None => Cow::Borrowed(stored),
            };
            hits.push(RawHit { id, score: *score, json });
        }
        let result = QueryResult {
            hits: Vec::new(),
            total: found.total,
            facets: found.facets,
            next_cursor: found.next.map(|last| q.cursor_after(state.token, last)),
            version: state.version,
        };
        Ok((result, hits))
    }

    /// Whether `q` is answered by walking one index in order and stopping
    /// after its page (no text, facets, total or collapse; sorted by id or
    /// by a number or date; a page of at most 1,000): a server can run it
    /// where it stands rather than hand it to a pool of threads. A hint,
    /// not a bound: a filter that matches little can still walk far.
    pub fn is_quick(&self, q: &Query) -> bool {
        q.text.is_none()
            && q.facets.is_empty()
            && !q.total
            && q.collapse.is_none()
            && q.limit <= 1000
            && q.sort.first().is_none_or(|k| {
                self.schema()
                    .spec(&k.field)
                    .is_some_and(|s| matches!(s.kind, FieldType::Integer | FieldType::Float | FieldType::Date))
            })
    }

    /// The ids of every match of `filter`.
    pub fn ids_where(&self, filter: &Filter) -> Vec<String> {
        let f = filter.compile(&self.state.index, &self.state.schema);
        (0..self.state.index.rows() as u32)
            .filter(|&r| f.matches(r))
            .map(|r| self.state.index.ids[r as usize].to_string())
            .collect()
    }
}

/// A stored record that does not parse: the store is damaged, not the query.
fn not_json(collection: &str, id: &str, e: &serde_json::Error) -> Error {
    Error::Store(format!("collection {collection}: record {id:?} is not JSON: {e}"))
}

fn read(state: &State, id: &str) -> Result<Option<Json>, CollectionError> {
    match state.index.row_of(id) {
        Some(row) => {
            Ok(Some(serde_json::from_slice(state.records.get(row).1).map_err(|e| not_json(&state.name, id, &e))?))
        }
        None => Ok(None),
    }
}

/// What a write to a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionCommit {
    /// The generation now visible, and the collection's new version.
    pub generation: u64,
    pub written: u64,
    pub deleted: u64,
    /// Records in the collection after the commit.
    pub total: u64,
}

/// The writes of one commit to one collection.
pub struct CollectionWriter<'a> {
    name: &'a str,
    schema: &'a Schema,
    txn: &'a mut StoreTxn,
    /// The version the commit starts from, for deletes by filter.
    base: Option<&'a State>,
    written: u64,
    deleted: u64,
}

impl CollectionWriter<'_> {
    /// Adds or replaces a record (a JSON object) after checking it.
    pub fn put(&mut self, record: Map<String, Json>) -> Result<(), Invalid> {
        let id = value::check(self.schema, &record)?;
        let bytes = serde_json::to_vec(&record).map_err(|e| Invalid { path: String::new(), reason: e.to_string() })?;
        let replaced = self
            .txn
            .put_record(self.name, &id, &bytes)
            .map_err(|e| Invalid { path: String::new(), reason: e.to_string() })?;
        self.written += 1;
        let _ = replaced;
        Ok(())
    }

    /// [`CollectionWriter::put`] for any JSON value, or a type of the
    /// caller's that serializes to an object.
    pub fn put_json(&mut self, record: impl serde::Serialize) -> Result<(), CollectionError> {
        let at = format!("record {}", self.written + 1);
        let v = serde_json::to_value(record)
            .map_err(|e| CollectionError::BadInput { at: at.clone(), reason: e.to_string() })?;
        let Json::Object(o) = v else {
            return Err(CollectionError::BadInput { at, reason: "a record is a JSON object".into() });
        };
        self.put(o).map_err(|e| CollectionError::BadRecord { at, path: e.path, reason: e.reason })
    }

    /// Removes a record; whether there was one.
    pub fn delete(&mut self, id: &str) -> Result<bool, CollectionError> {
        let found = self.txn.delete_record(self.name, id)?;
        if found {
            self.deleted += 1;
        }
        Ok(found)
    }

    /// Removes every record of the last committed version that matches;
    /// how many.
    pub fn delete_where(&mut self, filter: &Filter) -> Result<u64, CollectionError> {
        let Some(base) = self.base else { return Ok(0) };
        let f = filter.compile(&base.index, &base.schema);
        let mut n = 0;
        for r in 0..base.index.rows() as u32 {
            if f.matches(r) && self.delete(&base.index.ids[r as usize])? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads records from a stream (see [`ImportFormat`]).
    pub fn import(
        &mut self,
        input: &mut dyn std::io::BufRead,
        format: ImportFormat,
        on_error: crate::OnError,
        report: &mut ImportReport,
    ) -> Result<(), CollectionError> {
        ingest::read(input, format, self.schema, on_error, report, &mut |record| self.put(record))
    }
}

impl Database {
    /// Every collection, by name, as of now.
    pub fn collections(&self) -> Vec<Collection> {
        self.collections.current.read().values().map(|s| Collection { state: s.clone(), older: None }).collect()
    }

    /// A collection as of now.
    pub fn collection(&self, name: &str) -> Result<Collection, CollectionError> {
        let state = self.collections.get(name).ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
        Ok(Collection { state, older: None })
    }

    /// A collection as of now, able to follow `cursor` into the version it
    /// was made on if that version is still kept.
    pub fn collection_for(&self, name: &str, cursor: Option<&str>) -> Result<Collection, CollectionError> {
        let mut c = self.collection(name)?;
        if let Some(v) = cursor.and_then(|c| query::Cursor::decode(c).ok()).map(|c| c.version) {
            if v != c.state.token {
                c.older = self.collections.at_token(name, v);
            }
        }
        Ok(c)
    }

    /// Creates a collection, or changes its schema when the change is safe
    /// ([`Schema::change_to`]). Returns whether it was created.
    pub fn put_collection(&self, name: &str, schema: &Schema) -> Result<bool, CollectionError> {
        if !valid_collection_name(name) {
            return Err(CollectionError::InvalidName(name.to_owned()));
        }
        schema.check()?;
        if let Some(current) = self.collections.get(name) {
            if &current.schema == schema {
                return Ok(false);
            }
        }
        let bytes = serde_json::to_vec(schema).map_err(|e| CollectionError::Schema(e.to_string()))?;
        let mut created = false;
        self.write_store::<_, CollectionError>(
            |txn| {
                if let Some(old) = txn.schema_of(name)? {
                    let old: Schema = serde_json::from_slice(&old)
                        .map_err(|e| Error::Store(format!("collection {name}: stored schema unreadable: {e}")))?;
                    if &old == schema {
                        return Ok(false);
                    }
                    old.change_to(schema)?;
                } else {
                    created = true;
                }
                txn.put_schema(name, &bytes)?;
                Ok(true)
            },
            |number, view| {
                let state = self.collections.build(name, schema.clone(), number, &view)?;
                self.collections.replace(name, Some(state));
                Ok(())
            },
        )?;
        Ok(created)
    }

    /// Removes a collection and its records; false if there was none.
    pub fn drop_collection(&self, name: &str) -> Result<bool, CollectionError> {
        if self.collections.get(name).is_none() {
            return Ok(false);
        }
        self.write_store::<_, CollectionError>(
            |txn| {
                Ok(txn.schema_of(name)?.is_some() && {
                    txn.drop_collection(name)?;
                    true
                })
            },
            |_, _| {
                self.collections.replace(name, None);
                Ok(())
            },
        )?;
        Ok(true)
    }

    /// Applies `f` to a collection as one atomic commit: every write
    /// becomes visible at once when this returns, or none does (an error
    /// from `f` writes nothing).
    pub fn write_collection<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut CollectionWriter<'_>) -> Result<T, CollectionError>,
    ) -> Result<(T, CollectionCommit), CollectionError> {
        let base = self.collections.get(name).ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
        let mut stats = (0, 0);
        let (out, generation) = self.write_store::<_, CollectionError>(
            |txn| {
                // The schema is read again under the writer's lock: a
                // concurrent drop or change is seen.
                let stored = txn.schema_of(name)?.ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
                let schema: Schema = serde_json::from_slice(&stored)
                    .map_err(|e| Error::Store(format!("collection {name}: stored schema unreadable: {e}")))?;
                let current = self.collections.get(name);
                let base = current.as_deref().filter(|s| s.schema == schema).or(Some(&*base));
                let mut w = CollectionWriter { name, schema: &schema, txn, base, written: 0, deleted: 0 };
                let out = f(&mut w)?;
                stats = (w.written, w.deleted);
                Ok(out)
            },
            |number, view| {
                let schema = view
                    .schemas()?
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, s)| serde_json::from_slice::<Schema>(&s).ok())
                    .ok_or_else(|| CollectionError::NotFound(name.to_owned()))?;
                let state = self.collections.build(name, schema, number, &view)?;
                self.collections.replace(name, Some(state));
                Ok(())
            },
        )?;
        let total = self.collection(name).map_or(0, |c| c.len() as u64);
        Ok((out, CollectionCommit { generation, written: stats.0, deleted: stats.1, total }))
    }
}

impl Database {
    /// Imports files into a collection in one commit, creating it with
    /// `schema` (or changing its schema, when safe) first. Each file is
    /// plain or gzip; its format is `format` or detected from its first
    /// bytes. `progress` is called with the bytes read from disk.
    pub fn import_collection(
        &self,
        name: &str,
        schema: Option<&Schema>,
        files: &[std::path::PathBuf],
        format: Option<ImportFormat>,
        on_error: crate::OnError,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(ImportReport, CollectionCommit), CollectionError> {
        if let Some(s) = schema {
            self.put_collection(name, s)?;
        }
        let mut report = ImportReport::default();
        let ((), commit) = self.write_collection(name, |w| {
            for path in files {
                let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let counter = read.clone();
                let mut input = crate::profiles::address::import::open_input(path, move |n| {
                    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                })?;
                let format = match format {
                    Some(f) => f,
                    None => ImportFormat::detect(
                        std::io::BufRead::fill_buf(&mut input).map_err(|e| Error::io(path.clone(), e))?,
                    ),
                };
                let mut input = crate::Progress { inner: input, read, reported: 0, progress: &mut *progress };
                let before = report.problems.len();
                w.import(&mut input, format, on_error, &mut report).map_err(|e| match e {
                    CollectionError::BadRecord { at, path: field, reason } => {
                        CollectionError::BadRecord { at: format!("{}: {at}", path.display()), path: field, reason }
                    }
                    CollectionError::BadInput { at, reason } => {
                        CollectionError::BadInput { at: format!("{}: {at}", path.display()), reason }
                    }
                    e => e,
                })?;
                for p in &mut report.problems[before..] {
                    p.at = format!("{}: {}", path.display(), p.at);
                }
            }
            Ok(())
        })?;
        Ok((report, commit))
    }
}
