//! One committed, immutable state of the database, open for reading: the
//! core's memory-mapped files (documents, geo grid, text index) and the
//! state `D` a profile derives from them when the generation opens.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::docs::Docs;
use crate::error::{Error, Result};
use crate::geo::GeoIndex;
use crate::text::TextIndex;

pub(crate) const FORMAT_FILE: &str = "FORMAT";
/// Changes whenever the generation files would come out otherwise from the
/// same store: text analysis, filter values, file layouts. Version 1 had no
/// FORMAT file; version 2 had no rank field in the text index; version 3
/// had no checksums in the documents file (every record was checked at open);
/// version 4 (never released) checked its records in 64 KiB blocks.
pub(crate) const GENERATION_FORMAT: &str = "cairn-generation 6\n";

/// One committed, immutable state of the database, open for reading.
pub struct Generation<D> {
    pub(crate) number: u64,
    /// Shared by the generations that only collections made (see
    /// [`crate::Database::write_store`]): their address files are the same.
    pub(crate) parts: Arc<Parts<D>>,
}

/// The files of a generation, and what the profile derived from them.
pub struct Parts<D> {
    /// See [`crate::Database::epoch`].
    pub(crate) epoch: u64,
    pub(crate) docs: Docs,
    pub(crate) geo: GeoIndex,
    pub(crate) text: TextIndex,
    pub(crate) derived: D,
}

impl<D> Parts<D> {
    /// An error if a read found the documents or the geo index damaged:
    /// the answer it took part in cannot be trusted.
    pub(crate) fn check(&self) -> Result<()> {
        self.docs.check()?;
        self.geo.check()
    }
}

impl<D> std::ops::Deref for Generation<D> {
    type Target = Parts<D>;

    fn deref(&self) -> &Parts<D> {
        &self.parts
    }
}

/// Whether the files in `dir` were made as this build makes them.
pub(crate) fn current_format(dir: &Path) -> bool {
    fs::read_to_string(dir.join(FORMAT_FILE)).is_ok_and(|f| f == GENERATION_FORMAT)
}

impl<D> Generation<D> {
    /// Opens the files in `dir`, whose text index filters on `filters`,
    /// and derives the profile's state from them.
    pub(crate) fn open(
        dir: &Path,
        number: u64,
        filters: &[&str],
        derive: impl FnOnce(&Docs, &TextIndex) -> Result<D>,
    ) -> Result<Generation<D>> {
        if !current_format(dir) {
            return Err(Error::Outdated { path: dir.to_owned() });
        }
        let docs = Docs::open(&dir.join("docs"))?;
        let geo = GeoIndex::open(&dir.join("geo"))?;
        // Each file is checked on its own at open; this checks that they
        // belong together, so a query can never index past the documents.
        if geo.max_slot().is_some_and(|s| s as usize >= docs.len()) {
            return Err(Error::Corrupt {
                path: dir.join("geo"),
                reason: "refers to documents that do not exist".into(),
            });
        }
        let text = TextIndex::open(&dir.join("text"), filters, &|key| docs.slot_of_key(key))?;
        let derived = derive(&docs, &text)?;
        // What the profile read to derive its state must have been intact:
        // a generation that would fail every query is refused at open.
        docs.check()?;
        static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let epoch = EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Generation { number, parts: Arc::new(Parts { epoch, docs, geo, text, derived }) })
    }
}
