//! The documents of one generation as a memory-mapped file, read in place.
//!
//! redb is the durable store; this file is the read path. Each record is its
//! own rkyv archive (so the file is written as a stream), followed by an
//! index archive: where each record is, its store key, an id lookup table,
//! the parent/children links and a CRC-32 of every 4 KiB block of the
//! records. Opening reads the index only (checked against its own CRC in
//! the trailer); a block of records is checked against its CRC the first
//! time a record in it is read, so that opening does not read the whole
//! file and a damaged block is never read as a record. A damaged block
//! marks the file damaged ([`Docs::check`]); the read that found it gets an
//! empty record, and the query an error.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use memmap2::Mmap;
use rkyv::rend::u32_le;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{ArchivedRecord, Record};
use crate::store::block_of;

const MAGIC: &[u8; 8] = b"CAIRNDO2";
const ALIGN: usize = 16;
const NONE: u32 = u32::MAX;
/// Records are checked in blocks of `1 << BLOCK_SHIFT` bytes: a page, so
/// that the first read of a record reads about the page it is in (64 KiB
/// blocks made the open of 1M addresses read the whole file to check the
/// blocks of its 8,519 municipalities), at 4 bytes of CRC per 4 KiB.
const BLOCK_SHIFT: u32 = 12;
const BLOCK: usize = 1 << BLOCK_SHIFT;
/// index offset, index length, index CRC (u64 for alignment), magic.
const TRAILER: usize = 32;

/// FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`.
pub(crate) fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct IdEntry {
    hash: u64,
    slot: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct DocsIndexData {
    starts: Vec<u64>,
    lens: Vec<u32>,
    /// Store key of each slot, increasing.
    keys: Vec<u64>,
    /// Sorted by hash.
    ids: Vec<IdEntry>,
    parents: Vec<u32>,
    child_starts: Vec<u32>,
    children: Vec<u32>,
    /// The profile's tag of each child, in the order of `children`.
    child_tags: Vec<u32>,
    /// Slots of each store block, `[t[b], t[b + 1])`: a search by key
    /// looks within one block instead of across a table of a million keys
    /// (twenty cache misses, most of the cost of scoring a candidate).
    /// Empty when block numbers are too sparse for a table.
    block_starts: Vec<u32>,
    /// Bytes of records, from the start of the file.
    records_end: u64,
    /// CRC-32 of each block of records.
    sums: Vec<u32>,
}

/// See `DocsIndexData::block_starts`; `keys` increase.
fn block_starts(keys: impl ExactSizeIterator<Item = u64> + Clone) -> Option<Vec<u32>> {
    let n = keys.len();
    let last = keys.clone().map(block_of).max().unwrap_or(0);
    let blocks = usize::try_from(last).ok().filter(|b| *b <= n.max(1 << 16) * 4)? + 1;
    let mut t = vec![0u32; blocks + 1];
    // Count per block, then prefix sums.
    for k in keys {
        t[block_of(k) as usize + 1] += 1;
    }
    for b in 1..t.len() {
        t[b] += t[b - 1];
    }
    Some(t)
}

/// Writes a documents file; records must come in increasing key order.
pub struct DocsBuilder {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    index: DocsIndexData,
    parent_hashes: Vec<Option<u64>>,
    /// The tag of each record, by slot (see [`DocsBuilder::create`]).
    tags: Vec<u32>,
    tag: fn(&Record) -> u32,
    /// The CRC of the block being written.
    crc: crc32fast::Hasher,
}

impl DocsBuilder {
    /// A builder writing to `path`; `tag` gives each record a 32-bit tag
    /// that its parent's list of children keeps beside it
    /// ([`Docs::child_tags`]): a profile's way to pick a child without
    /// reading every child's record.
    pub fn create(path: &Path, tag: fn(&Record) -> u32) -> Result<DocsBuilder> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(DocsBuilder {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            index: DocsIndexData::default(),
            parent_hashes: Vec::new(),
            tags: Vec::new(),
            tag,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Writes `bytes` at the end of the records, summing each block.
    fn write_records(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| Error::io(&self.path, e))?;
        while !bytes.is_empty() {
            let room = BLOCK - (self.pos as usize % BLOCK);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.crc.update(now);
            self.pos += now.len() as u64;
            if self.pos.is_multiple_of(BLOCK as u64) {
                self.close_block();
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Keeps the CRC of the block being written and starts the next one.
    fn close_block(&mut self) {
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
        self.index.sums.push(crc.finalize());
    }

    fn pad(&mut self) -> Result<()> {
        let pad = (ALIGN - (self.pos as usize % ALIGN)) % ALIGN;
        self.write_records(&[0u8; ALIGN][..pad])
    }

    /// Appends a record; returns its slot.
    pub fn add(&mut self, key: u64, record: &Record) -> Result<u32> {
        if self.index.keys.last().is_some_and(|k| *k >= key) {
            return Err(Error::Store(format!("documents out of key order at key {key}")));
        }
        let slot = self.index.keys.len() as u32;
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(record)
            .map_err(|e| Error::Store(format!("archiving {}: {e}", record.id)))?;
        self.pad()?;
        let start = self.pos;
        self.write_records(&bytes)?;
        self.index.starts.push(start);
        self.index.lens.push(bytes.len() as u32);
        self.index.keys.push(key);
        self.index.ids.push(IdEntry { hash: id_hash(&record.id), slot });
        self.parent_hashes.push(record.parent.as_deref().map(id_hash));
        self.tags.push((self.tag)(record));
        Ok(slot)
    }

    /// Resolves parents, writes the index and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.pad()?;
        if !self.pos.is_multiple_of(BLOCK as u64) {
            self.close_block();
        }
        self.index.records_end = self.pos;
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.index.ids.sort_unstable();
        // Parent ids are checked against the records just written, so that a
        // hash collision can never link a record to a stranger.
        let parents = {
            let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let map = if self.pos == 0 {
                None
            } else {
                // SAFETY: the file is ours and no longer written to until we drop the map.
                Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&self.path, e))?)
            };
            let record = |slot: usize| -> Result<&ArchivedRecord> {
                let map = map.as_ref().ok_or_else(|| Error::Store("empty documents file".into()))?;
                let (s, l) = (self.index.starts[slot] as usize, self.index.lens[slot] as usize);
                rkyv::access::<ArchivedRecord, rkyv::rancor::Error>(&map[s..s + l])
                    .map_err(|e| Error::Corrupt { path: self.path.clone(), reason: e.to_string() })
            };
            let mut parents = vec![NONE; self.parent_hashes.len()];
            for (slot, ph) in self.parent_hashes.iter().enumerate() {
                let Some(h) = ph else { continue };
                let from = self.index.ids.partition_point(|e| e.hash < *h);
                let child = record(slot)?;
                let want = child.parent.as_ref().map(rkyv::string::ArchivedString::as_str).unwrap_or_default();
                for e in self.index.ids[from..].iter().take_while(|e| e.hash == *h) {
                    if record(e.slot as usize)?.id.as_str() == want {
                        parents[slot] = e.slot;
                        break;
                    }
                }
            }
            parents
        };
        let n = parents.len();
        let mut counts = vec![0u32; n + 1];
        for p in &parents {
            if *p != NONE {
                counts[*p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let mut children = vec![0u32; counts[n] as usize];
        let mut fill = counts.clone();
        for (slot, p) in parents.iter().enumerate() {
            if *p != NONE {
                children[fill[*p as usize] as usize] = slot as u32;
                fill[*p as usize] += 1;
            }
        }
        self.index.child_tags = children.iter().map(|c| self.tags[*c as usize]).collect();
        self.index.parents = parents;
        self.index.child_starts = counts;
        self.index.children = children;
        self.index.block_starts = block_starts(self.index.keys.iter().copied()).unwrap_or_default();
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.index)
            .map_err(|e| Error::Store(format!("documents index: {e}")))?;
        // The records end on an aligned offset (`pad` above): so does the index.
        let start = self.pos;
        self.out.write_all(&bytes).map_err(|e| Error::io(&self.path, e))?;
        let mut trailer = [0u8; TRAILER];
        trailer[..8].copy_from_slice(&start.to_le_bytes());
        trailer[8..16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        trailer[16..24].copy_from_slice(&u64::from(crc32fast::hash(&bytes)).to_le_bytes());
        trailer[24..].copy_from_slice(MAGIC);
        self.out.write_all(&trailer).map_err(|e| Error::io(&self.path, e))?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

/// A memory-mapped documents file.
pub struct Docs {
    path: PathBuf,
    map: Mmap,
    index_at: usize,
    index_len: usize,
    /// One bit per block of records: checked against its CRC.
    checked: Box<[AtomicU64]>,
    /// A block did not match its CRC.
    damaged: AtomicBool,
}

/// An empty record, read in place of one in a damaged block.
fn empty_record() -> &'static ArchivedRecord {
    static EMPTY: OnceLock<rkyv::util::AlignedVec> = OnceLock::new();
    let bytes = EMPTY.get_or_init(|| {
        let empty = Record { id: String::new(), kind: String::new(), parent: None, point: None, fields: Vec::new() };
        rkyv::to_bytes::<rkyv::rancor::Error>(&empty).expect("an empty record archives")
    });
    // SAFETY: the bytes were archived from a `Record` just above, and are
    // never changed once made.
    unsafe { rkyv::access_unchecked::<ArchivedRecord>(bytes) }
}

impl Docs {
    /// Opens a documents file: reads its trailer and its index, checked
    /// against the index's CRC and validated; records are checked when
    /// first read.
    pub fn open(path: &Path) -> Result<Docs> {
        let corrupt = |reason: &str| Error::Corrupt { path: path.into(), reason: reason.into() };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: generation files are immutable once written.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if map.len() < TRAILER || &map[map.len() - 8..] != MAGIC {
            return Err(corrupt("not a cairn documents file of this version"));
        }
        let t = map.len() - TRAILER;
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or_default());
        let (index_at, index_len, index_crc) = (word(t) as usize, word(t + 8) as usize, word(t + 16));
        if !index_at.is_multiple_of(ALIGN) || index_at.checked_add(index_len).is_none_or(|e| e > t) {
            return Err(corrupt("index out of bounds"));
        }
        let index = &map[index_at..index_at + index_len];
        if u64::from(crc32fast::hash(index)) != index_crc {
            return Err(corrupt("the index does not match its checksum"));
        }
        let idx =
            rkyv::access::<ArchivedDocsIndexData, rkyv::rancor::Error>(index).map_err(|e| corrupt(&e.to_string()))?;
        let n = idx.keys.len();
        let records_end = idx.records_end.to_native();
        let blocks = records_end.div_ceil(BLOCK as u64);
        // The tables' contents were summed with the index: their sizes are
        // what every later read relies on.
        if idx.starts.len() != n
            || idx.lens.len() != n
            || idx.ids.len() != n
            || idx.parents.len() != n
            || idx.child_starts.len() != n + 1
            || idx.child_starts[n].to_native() as usize != idx.children.len()
            || idx.child_tags.len() != idx.children.len()
            || records_end > index_at as u64
            || idx.sums.len() as u64 != blocks
        {
            return Err(corrupt("inconsistent index tables"));
        }
        let checked = (0..blocks.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(Docs { path: path.to_owned(), map, index_at, index_len, checked, damaged: AtomicBool::new(false) })
    }

    fn index(&self) -> &ArchivedDocsIndexData {
        // SAFETY: validated in `open`; the mapping is immutable.
        unsafe {
            rkyv::access_unchecked::<ArchivedDocsIndexData>(&self.map[self.index_at..self.index_at + self.index_len])
        }
    }

    pub fn len(&self) -> usize {
        self.index().keys.len()
    }

    /// Whether the records in `[from, to)`, not empty, lie in blocks that
    /// match their CRC, checking the blocks not checked before.
    fn intact(&self, from: usize, to: usize) -> bool {
        let idx = self.index();
        let end = idx.records_end.to_native() as usize;
        if from >= to || to > end {
            return false;
        }
        for b in from >> BLOCK_SHIFT..=(to - 1) >> BLOCK_SHIFT {
            let (word, bit) = (&self.checked[b / 64], 1u64 << (b % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let block = &self.map[b << BLOCK_SHIFT..((b + 1) << BLOCK_SHIFT).min(end)];
            if crc32fast::hash(block) != idx.sums[b].to_native() {
                return false;
            }
            word.fetch_or(bit, Ordering::AcqRel);
        }
        true
    }

    /// An error if a read found a block of records damaged: the answer
    /// that read took part in cannot be trusted.
    pub fn check(&self) -> Result<()> {
        if self.damaged.load(Ordering::Acquire) {
            return Err(Error::Corrupt {
                path: self.path.clone(),
                reason: "a block of records does not match its checksum".into(),
            });
        }
        Ok(())
    }

    /// The record in `slot`; panics if `slot >= len()`, which callers rule
    /// out since slots only come from this file's own tables. The record
    /// of a damaged block reads as an empty one (see [`Docs::check`]).
    pub fn record(&self, slot: u32) -> &ArchivedRecord {
        let idx = self.index();
        let s = idx.starts[slot as usize].to_native() as usize;
        let l = idx.lens[slot as usize].to_native() as usize;
        if !s.is_multiple_of(ALIGN) || !self.intact(s, s + l) {
            self.damaged.store(true, Ordering::Release);
            return empty_record();
        }
        // SAFETY: the bytes are those the builder archived from a `Record`
        // (their block matches the CRC written with them), in bounds and
        // aligned (checked just above).
        unsafe { rkyv::access_unchecked::<ArchivedRecord>(&self.map[s..s + l]) }
    }

    pub fn slot_of_key(&self, key: u64) -> Option<u32> {
        let idx = self.index();
        let keys = &idx.keys;
        let t = &idx.block_starts;
        let (from, to) = if t.is_empty() {
            (0, keys.len())
        } else {
            let b = usize::try_from(block_of(key)).ok().filter(|b| b + 1 < t.len())?;
            let (from, to) = (t[b].to_native() as usize, t[b + 1].to_native() as usize);
            // Positions only grow within a block, some deleted: a
            // record's slot is at most its position past the block's first.
            (from, to.min(from + (key & 0xffff) as usize + 1))
        };
        let found = keys.get(from..to)?.binary_search_by(|k| k.to_native().cmp(&key)).ok()?;
        Some((from + found) as u32)
    }

    pub fn slot_of_id(&self, id: &str) -> Option<u32> {
        let ids = &self.index().ids;
        let h = id_hash(id);
        let from = ids.partition_point(|e| e.hash.to_native() < h);
        ids[from..]
            .iter()
            .take_while(|e| e.hash.to_native() == h)
            .map(|e| e.slot.to_native())
            .find(|s| self.record(*s).id.as_str() == id)
    }

    /// The store key of the record in `slot`.
    pub fn key(&self, slot: u32) -> u64 {
        self.index().keys[slot as usize].to_native()
    }

    pub fn parent(&self, slot: u32) -> Option<u32> {
        let p = self.index().parents[slot as usize].to_native();
        (p != NONE).then_some(p)
    }

    /// Where the children of `slot` lie in [`Docs::all_children`].
    pub fn children_at(&self, slot: u32) -> std::ops::Range<usize> {
        let idx = self.index();
        let (s, e) = (idx.child_starts[slot as usize].to_native(), idx.child_starts[slot as usize + 1].to_native());
        s as usize..e as usize
    }

    /// The children of every record, by parent slot.
    pub fn all_children(&self) -> &[u32_le] {
        &self.index().children
    }

    /// The tag of each child of [`Docs::all_children`], in the same order
    /// (see [`DocsBuilder::create`]).
    pub fn child_tags(&self) -> &[u32_le] {
        &self.index().child_tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Field, Point, Value};

    fn rec(id: &str, parent: Option<&str>) -> Record {
        Record {
            id: id.into(),
            kind: if parent.is_some() { "housenumber" } else { "street" }.into(),
            parent: parent.map(Into::into),
            point: Some(Point { lat: 45.0, lon: 5.0 }),
            fields: vec![Field { name: "name".into(), value: Value::Str(format!("name of {id}")) }],
        }
    }

    #[test]
    fn roundtrip_with_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, |r| r.id.len() as u32).unwrap();
        b.add(10, &rec("s1", None)).unwrap();
        b.add(11, &rec("s1_1", Some("s1"))).unwrap();
        b.add(12, &rec("s2", None)).unwrap();
        b.add(20, &rec("s1_2", Some("s1"))).unwrap();
        b.add(21, &rec("orphan", Some("missing"))).unwrap();
        assert!(b.add(5, &rec("late", None)).is_err());
        b.finish().unwrap();
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d.slot_of_id("s2"), Some(2));
        assert_eq!(d.slot_of_id("nope"), None);
        assert_eq!(d.slot_of_key(20), Some(3));
        assert_eq!(d.parent(1), Some(0));
        assert_eq!(d.parent(4), None);
        let kids: Vec<u32> = d.all_children()[d.children_at(0)].iter().map(|c| c.to_native()).collect();
        assert_eq!(kids, vec![1, 3]);
        // Each child's tag sits beside it: "s1_1" and "s1_2" are 4 long.
        let tags: Vec<u32> = d.child_tags()[d.children_at(0)].iter().map(|t| t.to_native()).collect();
        assert_eq!(tags, vec![4, 4]);
        assert!(d.check().is_ok());
        assert_eq!(d.record(2).get("name").and_then(|v| v.first_str()), Some("name of s2"));
    }

    #[test]
    fn truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, |_| 0).unwrap();
        b.add(1, &rec("a", None)).unwrap();
        b.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 30]).unwrap();
        assert!(matches!(Docs::open(&path), Err(Error::Corrupt { .. })));
    }

    /// A documents file of `n` records `r0`, `r1`... with keys 0, 1...
    fn file_of(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, |_| 0).unwrap();
        for i in 0..n {
            b.add(i, &rec(&format!("r{i}"), None)).unwrap();
        }
        b.finish().unwrap();
        (dir, path)
    }

    /// A flipped byte among the records does not stop the file opening,
    /// nor reads of other blocks; a read of the damaged block gets no
    /// record of it, and the file says it is damaged from then on.
    #[test]
    fn a_damaged_block_of_records_is_never_read_as_a_record() {
        // Enough records for many blocks.
        let (_dir, path) = file_of(3000);
        let d = Docs::open(&path).unwrap();
        let last = d.len() as u32 - 1;
        let at = d.index().starts[last as usize].to_native() as usize + 8;
        assert!(at >= BLOCK, "the last record lies past the first block");
        drop(d);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.record(0).id.as_str(), "r0");
        assert!(d.check().is_ok());
        assert_eq!(d.record(last).id.as_str(), "", "a damaged record reads empty");
        assert!(matches!(d.check(), Err(Error::Corrupt { .. })));
        // Still damaged on a second read, and other blocks still read.
        assert_eq!(d.record(last).id.as_str(), "");
        assert_eq!(d.record(1).id.as_str(), "r1");
    }

    /// A flipped byte in the index is found at open.
    #[test]
    fn a_damaged_index_is_refused_at_open() {
        let (_dir, path) = file_of(10);
        let index_at = Docs::open(&path).unwrap().index_at;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[index_at + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Docs::open(&path), Err(Error::Corrupt { .. })));
    }

    /// Keys found through the per-block table are the keys of the file, in
    /// blocks with deleted positions, empty blocks between, and past the end.
    #[test]
    fn keys_map_to_slots_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, |_| 0).unwrap();
        let keys: Vec<u64> = [(0u64, 0u64), (0, 3), (0, 4), (2, 1), (2, 7), (5, 0)]
            .iter()
            .map(|(block, pos)| (block << 16) | pos)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.add(*k, &rec(&format!("r{i}"), None)).unwrap();
        }
        b.finish().unwrap();
        let d = Docs::open(&path).unwrap();
        assert!(!d.index().block_starts.is_empty());
        for (slot, k) in keys.iter().enumerate() {
            assert_eq!(d.slot_of_key(*k), Some(slot as u32), "key {k}");
        }
        for missing in
            [1u64, 2, 5, 1 << 16, (2 << 16) | 2, (2 << 16) | 8, (3 << 16) | 1, (5 << 16) | 1, 6 << 16, u64::MAX]
        {
            assert_eq!(d.slot_of_key(missing), None, "key {missing}");
        }
    }
}
