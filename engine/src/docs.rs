//! The documents of one generation as a memory-mapped file, read in place.
//!
//! redb is the durable store; this file is the read path. Each record is its
//! own rkyv archive (so the file is written as a stream), followed by an
//! index archive: where each record is, its store key, an id lookup table
//! and the parent/children links. Everything is validated once at open.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::rend::u32_le;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{ArchivedRecord, Record};
use crate::store::block_of;

const MAGIC: &[u8; 8] = b"CAIRNDOC";
const ALIGN: usize = 16;
const NONE: u32 = u32::MAX;

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
}

/// See `Docs::block_starts`; `keys` increase.
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
}

impl DocsBuilder {
    pub fn create(path: &Path) -> Result<DocsBuilder> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(DocsBuilder {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            index: DocsIndexData::default(),
            parent_hashes: Vec::new(),
        })
    }

    fn write_aligned(&mut self, bytes: &[u8]) -> Result<u64> {
        let pad = (ALIGN - (self.pos as usize % ALIGN)) % ALIGN;
        let zeros = [0u8; ALIGN];
        self.out.write_all(&zeros[..pad]).map_err(|e| Error::io(&self.path, e))?;
        self.pos += pad as u64;
        let start = self.pos;
        self.out.write_all(bytes).map_err(|e| Error::io(&self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(start)
    }

    /// Appends a record; returns its slot.
    pub fn add(&mut self, key: u64, record: &Record) -> Result<u32> {
        if self.index.keys.last().is_some_and(|k| *k >= key) {
            return Err(Error::Store(format!("documents out of key order at key {key}")));
        }
        let slot = self.index.keys.len() as u32;
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(record)
            .map_err(|e| Error::Store(format!("archiving {}: {e}", record.id)))?;
        let start = self.write_aligned(&bytes)?;
        self.index.starts.push(start);
        self.index.lens.push(bytes.len() as u32);
        self.index.keys.push(key);
        self.index.ids.push(IdEntry { hash: id_hash(&record.id), slot });
        self.parent_hashes.push(record.parent.as_deref().map(id_hash));
        Ok(slot)
    }

    /// Resolves parents, writes the index and syncs the file.
    pub fn finish(mut self) -> Result<()> {
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
        self.index.parents = parents;
        self.index.child_starts = counts;
        self.index.children = children;
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.index)
            .map_err(|e| Error::Store(format!("documents index: {e}")))?;
        let start = self.write_aligned(&bytes)?;
        let mut trailer = [0u8; 24];
        trailer[..8].copy_from_slice(&start.to_le_bytes());
        trailer[8..16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        trailer[16..].copy_from_slice(MAGIC);
        self.out.write_all(&trailer).map_err(|e| Error::io(&self.path, e))?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

/// A memory-mapped documents file.
pub struct Docs {
    map: Mmap,
    index_at: usize,
    index_len: usize,
    /// Slots of each store block, `[t[b], t[b + 1])`: a search by key
    /// looks within one block instead of across a table of a million keys
    /// (twenty cache misses, most of the cost of scoring a candidate). None
    /// when block numbers are too sparse for a table.
    block_starts: Option<Vec<u32>>,
}

impl Docs {
    pub fn open(path: &Path) -> Result<Docs> {
        let corrupt = |reason: &str| Error::Corrupt { path: path.into(), reason: reason.into() };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: generation files are immutable once written.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if map.len() < 24 || &map[map.len() - 8..] != MAGIC {
            return Err(corrupt("not a cairn documents file"));
        }
        let t = map.len() - 24;
        let index_at = u64::from_le_bytes(map[t..t + 8].try_into().map_err(|_| corrupt("trailer"))?) as usize;
        let index_len = u64::from_le_bytes(map[t + 8..t + 16].try_into().map_err(|_| corrupt("trailer"))?) as usize;
        if !index_at.is_multiple_of(ALIGN) || index_at.checked_add(index_len).is_none_or(|e| e > t) {
            return Err(corrupt("index out of bounds"));
        }
        let idx = rkyv::access::<ArchivedDocsIndexData, rkyv::rancor::Error>(&map[index_at..index_at + index_len])
            .map_err(|e| corrupt(&e.to_string()))?;
        let n = idx.keys.len();
        if idx.starts.len() != n
            || idx.lens.len() != n
            || idx.ids.len() != n
            || idx.parents.len() != n
            || idx.child_starts.len() != n + 1
            || idx.child_starts[n].to_native() as usize != idx.children.len()
        {
            return Err(corrupt("inconsistent index tables"));
        }
        for i in 0..n {
            let (s, l) = (idx.starts[i].to_native() as usize, idx.lens[i].to_native() as usize);
            if !s.is_multiple_of(ALIGN) || s.checked_add(l).is_none_or(|e| e > index_at) {
                return Err(corrupt("record out of bounds"));
            }
            rkyv::access::<ArchivedRecord, rkyv::rancor::Error>(&map[s..s + l]).map_err(|e| corrupt(&e.to_string()))?;
            let p = idx.parents[i].to_native();
            if (p != NONE && p as usize >= n) || idx.child_starts[i].to_native() > idx.child_starts[i + 1].to_native() {
                return Err(corrupt("bad parent links"));
            }
        }
        if idx.keys.windows(2).any(|w| w[0].to_native() >= w[1].to_native()) {
            return Err(corrupt("keys out of order"));
        }
        if idx.children.iter().any(|c| c.to_native() as usize >= n)
            || idx.ids.iter().any(|e| e.slot.to_native() as usize >= n)
        {
            return Err(corrupt("bad slot reference"));
        }
        let block_starts = block_starts(idx.keys.iter().map(|k| k.to_native()));
        Ok(Docs { map, index_at, index_len, block_starts })
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

    /// The record in `slot`; panics if `slot >= len()`, which callers rule
    /// out since slots only come from this file's own tables.
    pub fn record(&self, slot: u32) -> &ArchivedRecord {
        let idx = self.index();
        let s = idx.starts[slot as usize].to_native() as usize;
        let l = idx.lens[slot as usize].to_native() as usize;
        // SAFETY: every record was validated in `open`.
        unsafe { rkyv::access_unchecked::<ArchivedRecord>(&self.map[s..s + l]) }
    }

    pub fn slot_of_key(&self, key: u64) -> Option<u32> {
        let keys = &self.index().keys;
        let (from, to) = match &self.block_starts {
            Some(t) => {
                let b = usize::try_from(block_of(key)).ok().filter(|b| b + 1 < t.len())?;
                let (from, to) = (t[b] as usize, t[b + 1] as usize);
                // Positions only grow within a block, some deleted: a
                // record's slot is at most its position past the block's first.
                (from, to.min(from + (key & 0xffff) as usize + 1))
            }
            None => (0, keys.len()),
        };
        let found = keys[from..to].binary_search_by(|k| k.to_native().cmp(&key)).ok()?;
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
        let mut b = DocsBuilder::create(&path).unwrap();
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
        assert_eq!(d.record(2).get("name").and_then(|v| v.first_str()), Some("name of s2"));
    }

    #[test]
    fn truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path).unwrap();
        b.add(1, &rec("a", None)).unwrap();
        b.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 30]).unwrap();
        assert!(matches!(Docs::open(&path), Err(Error::Corrupt { .. })));
    }

    /// Keys found through the per-block table are the keys of the file, in
    /// blocks with deleted positions, empty blocks between, and past the end.
    #[test]
    fn keys_map_to_slots_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path).unwrap();
        let keys: Vec<u64> = [(0u64, 0u64), (0, 3), (0, 4), (2, 1), (2, 7), (5, 0)]
            .iter()
            .map(|(block, pos)| (block << 16) | pos)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.add(*k, &rec(&format!("r{i}"), None)).unwrap();
        }
        b.finish().unwrap();
        let d = Docs::open(&path).unwrap();
        assert!(d.block_starts.is_some());
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
