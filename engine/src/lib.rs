//! cairn: an embedded storage-and-query engine whose first job is address
//! search (geocoding), compatible with Addok.
//!
//! ```no_run
//! use cairn::{Database, ImportOptions, SearchQuery};
//! let db = Database::open("/tmp/cairn-db")?;
//! db.import(&["adresses-addok-75.ndjson.gz".into()], &ImportOptions::default(), &mut |_| {})?;
//! for f in db.search(&SearchQuery::new("12 rue de la paix paris"))? {
//!     println!("{} {:.2}", f.prop_str("label").unwrap_or(""), f.score);
//! }
//! # Ok::<(), cairn::Error>(())
//! ```
//!
//! Layers: [`store`] (redb, the durable documents), [`docs`] and [`geo`]
//! (memory-mapped rkyv files of each generation), [`text`] (tantivy and the
//! address-aware analysis), [`rank`] (scores in [0, 1]), [`snapshot`]
//! (one-file copies of a generation, for backups and replicas),
//! [`collection`] (typed records, filters, sorts, cursors); [`profiles`]
//! (what the core makes of one kind of record: [`profiles::address`], the
//! geocoder, with its importers and search plan).

mod cache;
mod checked;
mod codec;
pub mod collection;
mod db;
mod docs;
mod error;
mod generation;
mod geo;
mod group;
pub mod live;
pub mod profiles;
pub mod rank;
mod record;
pub mod snapshot;
mod spill;
mod store;
pub mod text;

// The geocoder's modules, where programs written before profiles find them.
pub use profiles::address::{batch, import};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use batch::{BatchFormat, BatchOptions, BatchSummary, Encoding};
pub use cache::{CacheConfig, CacheStats, ResponseCache};
pub use db::{CommitReport, Database, DEFAULT_LIVE_LIMIT};
pub use error::{Error, Result};
pub use geo::{haversine_m, lambert93};
pub use import::{Child, Entry, Format, OnError, Skipped};
pub use profiles::address::Batch;
pub use profiles::address::{Feature, Prop, ReverseQuery, SearchQuery};
pub use record::{Field, Point, Record, Value};
pub use snapshot::{FileEntry, Manifest};
pub use spill::DEFAULT_BUILD_MEMORY;

/// How to import files.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Format of every file; detected per file when `None`.
    pub format: Option<Format>,
    pub on_error: OnError,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub commit: CommitReport,
    pub skipped: Skipped,
}

impl Database {
    /// Imports files in one commit: all of them become visible together, or,
    /// on any error, none of them and the previous generation stays.
    /// `progress` is called with the number of bytes read from disk.
    pub fn import(
        &self,
        files: &[PathBuf],
        options: &ImportOptions,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<ImportReport> {
        let mut skipped = Skipped::default();
        let ((), commit) = self.write(|batch| {
            for path in files {
                let read = Arc::new(AtomicU64::new(0));
                let counter = read.clone();
                let mut input = import::open_input(path, move |n| {
                    counter.fetch_add(n, Ordering::Relaxed);
                })?;
                let format = if let Some(f) = options.format {
                    f
                } else {
                    let head =
                        std::io::BufRead::fill_buf(&mut input).map_err(|e| Error::Io { path: path.clone(), err: e })?;
                    import::detect_format(path, head)?
                };
                let input = Progress { inner: input, read, reported: 0, progress: &mut *progress };
                batch.import(input, format, options.on_error, &mut skipped)?;
            }
            Ok(())
        })?;
        Ok(ImportReport { commit, skipped })
    }
}

/// Reports the bytes read from disk as the reader consumes its input.
pub(crate) struct Progress<'a, R> {
    pub(crate) inner: R,
    pub(crate) read: Arc<AtomicU64>,
    pub(crate) reported: u64,
    pub(crate) progress: &'a mut (dyn FnMut(u64) + Send),
}

impl<R> Progress<'_, R> {
    fn report(&mut self) {
        let now = self.read.load(Ordering::Relaxed);
        if now != self.reported {
            (self.progress)(now - self.reported);
            self.reported = now;
        }
    }
}

impl<R: std::io::BufRead> std::io::Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.report();
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Progress<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.report();
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}
