//! One committed, immutable state of the database, open for reading: the
//! core's memory-mapped files (documents, geo grid, text index) and the
//! state `D` a profile derives from them when the generation opens.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::checked::{BodyWriter, Mapped};
use crate::docs::Docs;
use crate::error::{Error, Result};
use crate::geo::GeoIndex;
use crate::text::TextIndex;

pub(crate) const FORMAT_FILE: &str = "FORMAT";
/// Changes whenever the generation files would come out otherwise from the
/// same store: text analysis, filter values, file layouts. Version 1 had no
/// FORMAT file; version 2 had no rank field in the text index; version 3
/// had no checksums in the documents file (every record was checked at open);
/// version 4 (never released) checked its records in 64 KiB blocks;
/// version 6 kept each record's whole store key in the documents file.
pub(crate) const GENERATION_FORMAT: &str = "cairn-generation 7\n";

/// One committed, immutable state of the database, open for reading.
pub struct Generation<D> {
    pub(crate) number: u64,
    /// Shared by the generations that only collections made (see
    /// [`crate::Database::write_store`]): their address files are the same.
    pub(crate) parts: Arc<Parts<D>>,
}

/// The files of a generation, and what the profile derived from them.
pub struct Parts<D> {
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

/// What a generation derives from its files, saved when it is built so
/// that opening it reads neither the documents' key table (to map each
/// text document to its record) nor the records the profile derives its
/// state from: at 26M addresses those reads were most of an open's time
/// and 700 MB of its memory.
const SAVED_FILE: &str = "saved";
const SAVED_MAGIC: [u8; 8] = *b"CAIRNSV1";

/// The version of what [`save`] writes, the profile's part included: a
/// change to either (to how town words are made, say) bumps it, and files
/// of another version are derived again at open rather than believed.
const SAVED_VERSION: u32 = 2;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Default)]
struct SavedData {
    version: u32,
    /// The documents file the slots are of: its record count and
    /// fingerprint ([`Docs::fingerprint`]).
    docs_len: u64,
    docs_fingerprint: u64,
    segments: Vec<SegmentSlots>,
    /// The profile's state, as it encodes it.
    profile: Vec<u8>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SegmentSlots {
    segment: String,
    slots: Vec<u32>,
}

/// The saved file of a generation, mapped and checked.
struct Saved(Mapped);

impl Saved {
    /// The saved file of the generation in `dir`, if it has one that is
    /// intact, of this version and of these documents, every slot in it
    /// within them. Anything else is only a cache that cannot be used:
    /// the state is derived at open instead, as it would have been.
    fn open(dir: &Path, docs: &Docs) -> Option<Saved> {
        let path = dir.join(SAVED_FILE);
        if !path.exists() {
            return None;
        }
        let usable = Mapped::open(&path, SAVED_MAGIC).ok().filter(|file| {
            rkyv::access::<ArchivedSavedData, rkyv::rancor::Error>(file.index()).is_ok_and(|d| {
                let n = docs.len() as u32;
                d.version.to_native() == SAVED_VERSION
                    && d.docs_len.to_native() == docs.len() as u64
                    && d.docs_fingerprint.to_native() == docs.fingerprint()
                    && d.segments.iter().all(|s| s.slots.iter().all(|v| v.to_native() < n || v.to_native() == u32::MAX))
            })
        });
        if usable.is_none() {
            tracing::warn!(path = %path.display(), "the generation's saved state is damaged or not of its files: derived again");
        }
        usable.map(Saved)
    }

    fn data(&self) -> &ArchivedSavedData {
        // SAFETY: validated in `open`; the mapping is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedSavedData>(self.0.index()) }
    }
}

/// Writes the saved file of the generation in `dir`, whose documents and
/// text index are written: the slots of the text documents, and `profile`'s
/// encoding of the state it derives.
pub(crate) fn save(
    dir: &Path,
    filters: &[&str],
    profile: impl FnOnce(&Docs, &TextIndex) -> Result<Vec<u8>>,
) -> Result<()> {
    let docs = Docs::open(&dir.join("docs"))?;
    let text = TextIndex::open(&dir.join("text"), filters, &|key| docs.slot_of_key(key))?;
    let table = text.slot_table();
    let profile = profile(&docs, &text)?;
    docs.check()?;
    let data = SavedData {
        version: SAVED_VERSION,
        docs_len: docs.len() as u64,
        docs_fingerprint: docs.fingerprint(),
        segments: table.into_iter().map(|(segment, slots)| SegmentSlots { segment, slots }).collect(),
        profile,
    };
    let path = dir.join(SAVED_FILE);
    let bytes =
        rkyv::to_bytes::<rkyv::rancor::Error>(&data).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    let mut body = BodyWriter::create(&path)?;
    body.end_body()?;
    body.finish(&bytes, SAVED_MAGIC)
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
        derive: impl FnOnce(&Docs, &TextIndex, Option<&[u8]>) -> Result<D>,
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
        let saved = Saved::open(dir, &docs);
        let saved = saved.as_ref().map(Saved::data);
        let from_saved = |segment: &str, docs: u32| {
            let s = saved?.segments.iter().find(|s| s.segment.as_str() == segment)?;
            (s.slots.len() == docs as usize).then(|| s.slots.iter().map(|v| v.to_native()).collect())
        };
        let text = TextIndex::open_with(&dir.join("text"), filters, &|key| docs.slot_of_key(key), &from_saved)?;
        let derived = derive(&docs, &text, saved.map(|s| s.profile.as_slice()))?;
        // What the profile read to derive its state must have been intact:
        // a generation that would fail every query is refused at open.
        docs.check()?;
        Ok(Generation { number, parts: Arc::new(Parts { docs, geo, text, derived }) })
    }
}
