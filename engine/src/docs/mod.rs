//! The documents of one generation as a memory-mapped file, read in place.
//!
//! redb is the durable store; this file is the read path. The body of a
//! [`crate::checked`] file holds the records, one after the other,
//! schema-coded ([`crate::codec`]), then the tables of fixed-width numbers that
//! say where each record is, its store key, an id lookup table and the
//! parent/children links. The index holds where those tables are, the
//! names and strings the records are coded against, and the block CRCs.
//! Opening reads the index alone; every read of a record or of a table
//! entry checks the block it lies in, once, so that a server opens in
//! milliseconds and reads only the pages its queries need. A record or
//! entry in a damaged block reads as nothing, and the query that read it
//! gets an error ([`Docs::check`]).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::{self, next_id, Cursor, Encoder, Head, RawPoint, Tables, RESTART};
pub use crate::codec::{Fields, ValueRef};

use crate::checked::{Blocks, BodyWriter, Mapped};
use crate::error::{Error, Result};
use crate::record::{Point, Record};
use crate::spill::{beside, Column, Sorter, DEFAULT_BUILD_MEMORY};
use crate::store::block_of;

const MAGIC: &[u8; 8] = b"CAIRNDO5";
const NONE: u32 = u32::MAX;
/// Record offsets are a base per `1 << GROUP_SHIFT` records plus a 32-bit
/// offset from it: 4 bytes a record instead of 8.
const GROUP_SHIFT: u32 = 6;
/// FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`.
pub(crate) fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The 32 bits of an id's hash the id table keeps: a match is always
/// confirmed against the id itself.
fn short_hash(id: &str) -> u32 {
    let h = id_hash(id);
    (h ^ (h >> 32)) as u32
}

/// A table of fixed-width little-endian numbers in the body.
#[derive(Archive, Serialize, Deserialize, Debug, Default, Clone, Copy)]
struct Table {
    /// Byte offset in the body, a multiple of the width.
    at: u64,
    len: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct DocsIndexData {
    /// Where each group of `1 << GROUP_SHIFT` records starts (u64).
    bases: Table,
    /// Where each record starts, from its group's base (u32).
    starts: Table,
    /// Store key of each slot, increasing (u64); empty when `key_lows`
    /// holds them.
    keys: Table,
    /// The low 16 bits of each slot's store key (u16), when `block_starts`
    /// holds the blocks: a key is its block and its position in the block,
    /// so the block's slots give the high bits. 2 bytes a record instead
    /// of 8: 168 MB of the full BAN's 28M.
    key_lows: Table,
    /// `short_hash(id) << 32 | slot`, sorted (u64).
    ids: Table,
    /// Each slot's parent, `NONE` for none (u32).
    parents: Table,
    /// The children of slot `s` are `children[child_starts[s]..child_starts[s + 1]]` (u32).
    child_starts: Table,
    children: Table,
    /// The profile's tag of each child, in the order of `children` (u32).
    child_tags: Table,
    /// Slots of each store block, `[t[b], t[b + 1])`: a search by key
    /// looks within one block instead of across a table of a million keys
    /// (twenty cache misses, most of the cost of scoring a candidate).
    /// Empty when block numbers are too sparse for a table (u32).
    block_starts: Table,
    /// Field names and kinds, by number.
    names: Vec<String>,
    /// Strings that repeat, by number.
    strings: Vec<String>,
    /// Records.
    len: u64,
    /// Bytes of records, from the start of the file.
    records_end: u64,
    /// Bytes of records and tables.
    body_len: u64,
    /// CRC-32 of each block of the body.
    sums: Vec<u32>,
}

/// The per-record tables while records come: in temporary files beside
/// the output, so that a build holds none of them in memory.
struct Columns {
    bases: Column<u64>,
    starts: Column<u32>,
    keys: Column<u64>,
    ids: Column<u64>,
    /// The tag of each record, by slot (see [`DocsBuilder::create`]).
    tags: Column<u32>,
}

impl Columns {
    fn create(path: &Path) -> Result<Columns> {
        Ok(Columns {
            bases: Column::create(beside(path, "bases"))?,
            starts: Column::create(beside(path, "starts"))?,
            keys: Column::create(beside(path, "keys"))?,
            ids: Column::create(beside(path, "ids"))?,
            tags: Column::create(beside(path, "tags"))?,
        })
    }
}

/// Writes a table of the body, item by item.
struct TableWriter<'a> {
    body: &'a mut BodyWriter,
    at: u64,
    len: u64,
    buf: Vec<u8>,
}

impl TableWriter<'_> {
    /// A table of items `w` bytes wide, aligned to their width.
    fn start(body: &mut BodyWriter, w: usize) -> Result<TableWriter<'_>> {
        let pad = (w - (body.pos() as usize % w)) % w;
        body.write(&[0u8; 8][..pad])?;
        Ok(TableWriter { at: body.pos(), body, len: 0, buf: Vec::with_capacity(1 << 16) })
    }

    fn push(&mut self, item: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(item);
        self.len += 1;
        // Written in runs of 64 KiB: a CRC update per item would cost more
        // than the item.
        if self.buf.len() >= 1 << 16 {
            self.body.write(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn end(self) -> Result<Table> {
        self.body.write(&self.buf)?;
        Ok(Table { at: self.at, len: self.len })
    }
}

/// Writes `values`, each `W` bytes, as a table of the body.
fn table<const W: usize>(body: &mut BodyWriter, values: impl Iterator<Item = Result<[u8; W]>>) -> Result<Table> {
    let mut t = TableWriter::start(body, W)?;
    for v in values {
        t.push(&v?)?;
    }
    t.end()
}

/// Writes the table `t[0..=last]` where `t[g]` is how many of `groups`
/// (increasing) are below `g`: the CSR starts of children by parent, or
/// of slots by store block.
fn prefix_counts(body: &mut BodyWriter, groups: impl Iterator<Item = Result<usize>>, last: usize) -> Result<Table> {
    let mut t = TableWriter::start(body, 4)?;
    let (mut count, mut next) = (0u32, 0usize);
    for g in groups {
        let g = g?;
        // Every group counted so far is below `next`, and every one not
        // yet counted is at least `g`.
        while next <= g.min(last) {
            t.push(&count.to_le_bytes())?;
            next += 1;
        }
        count += 1;
    }
    while next <= last {
        t.push(&count.to_le_bytes())?;
        next += 1;
    }
    t.end()
}

/// Writes a documents file; records must come in increasing key order.
pub struct DocsBuilder {
    body: BodyWriter,
    c: Columns,
    last_key: Option<u64>,
    /// Where the current group of records starts.
    base: u64,
    records_end: u64,
    encoder: Encoder,
    buf: Vec<u8>,
    tag: fn(&Record) -> u32,
    /// Bytes a sort of a table may hold (see [`crate::spill`]).
    memory: usize,
}

impl DocsBuilder {
    /// A builder writing to `path`; `tag` gives each record a 32-bit tag
    /// that its parent's list of children keeps beside it
    /// ([`Docs::child_tags`]): a profile's way to pick a child without
    /// reading every child's record. Its temporary files are `path.*`.
    pub fn create(path: &Path, tag: fn(&Record) -> u32) -> Result<DocsBuilder> {
        Ok(DocsBuilder {
            body: BodyWriter::create(path)?,
            c: Columns::create(path)?,
            last_key: None,
            base: 0,
            records_end: 0,
            encoder: Encoder::default(),
            buf: Vec::new(),
            tag,
            memory: DEFAULT_BUILD_MEMORY,
        })
    }

    /// Bounds the memory the sorts of `finish` hold; beyond it they go
    /// through temporary files. The file written is the same.
    pub fn set_memory(&mut self, bytes: usize) {
        self.memory = bytes;
    }

    /// The file is not synced when finished (a live layer's).
    pub fn unsynced(mut self) -> DocsBuilder {
        self.body = self.body.unsynced();
        self
    }

    /// Appends a record; returns its slot.
    pub fn add(&mut self, key: u64, record: &Record) -> Result<u32> {
        if self.last_key.is_some_and(|k| k >= key) {
            return Err(Error::Store(format!("documents out of key order at key {key}")));
        }
        let slot = u32::try_from(self.c.keys.len())
            .ok()
            .filter(|s| *s != NONE)
            .ok_or_else(|| Error::Store("more documents than a documents file holds".into()))?;
        let pos = self.body.pos();
        if slot.is_multiple_of(1 << GROUP_SHIFT) {
            self.c.bases.push(pos)?;
            self.base = pos;
        }
        let start = u32::try_from(pos - self.base)
            .map_err(|_| Error::Store(format!("document {}: records too large for a documents file", record.id)))?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.encoder.encode(slot, record, &mut buf);
        let written = self.body.write(&buf);
        self.buf = buf;
        written?;
        self.c.starts.push(start)?;
        self.c.keys.push(key)?;
        self.c.ids.push((u64::from(short_hash(&record.id)) << 32) | u64::from(slot))?;
        self.c.tags.push((self.tag)(record))?;
        self.last_key = Some(key);
        Ok(slot)
    }

    /// Writes the tables, resolving parents, then the index, and syncs the
    /// file. Each table is streamed into the body from a temporary file
    /// or a sort bounded by the builder's memory.
    pub fn finish(mut self) -> Result<()> {
        self.records_end = self.body.pos();
        let n = self.c.keys.len();
        let path = self.body.path().to_owned();
        let (names, strings) = (std::mem::take(&mut self.encoder.names), std::mem::take(&mut self.encoder.strings));
        // A damaged block of records then never takes a table with it.
        self.body.pad_to_block()?;
        let bases = table(&mut self.body, self.c.bases.read()?.map(|v| v.map(u64::to_le_bytes)))?;
        let starts = table(&mut self.body, self.c.starts.read()?.map(|v| v.map(u32::to_le_bytes)))?;
        let blocks = self.blocks_table_len(n);
        let (keys, key_lows) = if blocks.is_some() {
            let lows = self.c.keys.read()?.map(|v| v.map(|k| ((k & 0xffff) as u16).to_le_bytes()));
            (TableWriter::start(&mut self.body, 8)?.end()?, table(&mut self.body, lows)?)
        } else {
            let keys = self.c.keys.read()?.map(|v| v.map(u64::to_le_bytes));
            (table(&mut self.body, keys)?, TableWriter::start(&mut self.body, 2)?.end()?)
        };
        let ids = {
            let mut sorter = Sorter::new(beside(&path, "ids.run"), self.memory, self.c.ids.len());
            for id in self.c.ids.read()? {
                sorter.push(id?)?;
            }
            let sorted = sorter.finish()?;
            let t = table(&mut self.body, sorted.read()?.map(|v| v.map(u64::to_le_bytes)))?;
            t
        };
        // (parent, child, child's tag), to be sorted into the children's lists.
        let mut links = Sorter::<[u32; 3]>::new(beside(&path, "links.run"), self.memory, n);
        let parents = self.resolve_parents(Linked { bases, starts, ids }, &mut links)?;
        let links = links.finish()?;
        let child_starts = prefix_counts(&mut self.body, links.read()?.map(|l| l.map(|l| l[0] as usize)), n as usize)?;
        let child_tags = table(&mut self.body, links.read()?.map(|l| l.map(|l| l[2].to_le_bytes())))?;
        let children = table(&mut self.body, links.read()?.map(|l| l.map(|l| l[1].to_le_bytes())))?;
        drop(links);
        let block_starts = self.block_starts(blocks)?;
        let mut index = DocsIndexData {
            bases,
            starts,
            keys,
            key_lows,
            ids,
            parents,
            child_starts,
            child_tags,
            children,
            block_starts,
            names,
            strings,
            len: n,
            records_end: self.records_end,
            ..DocsIndexData::default()
        };
        (index.body_len, index.sums) = self.body.end_body()?;
        let bytes =
            rkyv::to_bytes::<rkyv::rancor::Error>(&index).map_err(|e| Error::Store(format!("documents index: {e}")))?;
        self.body.finish(&bytes, *MAGIC)
    }

    /// How many entries `DocsIndexData::block_starts` has, or none when the
    /// blocks of the keys are too sparse for a table.
    fn blocks_table_len(&self, n: u64) -> Option<usize> {
        let last = block_of(self.last_key.unwrap_or(0));
        let room = usize::try_from(n).unwrap_or(usize::MAX).max(1 << 16).saturating_mul(4);
        usize::try_from(last).ok().filter(|b| *b <= room).map(|b| b + 2)
    }

    /// See `DocsIndexData::block_starts`: `len` entries (empty for none).
    fn block_starts(&mut self, len: Option<usize>) -> Result<Table> {
        let Some(len) = len else {
            return TableWriter::start(&mut self.body, 4)?.end();
        };
        let blocks = self.c.keys.read()?.map(|k| k.map(|k| block_of(k) as usize));
        prefix_counts(&mut self.body, blocks, len - 1)
    }

    /// Writes the parents' table: the slot of each record's parent, read
    /// back from the records and tables just written. A parent is the
    /// record whose id is the one the child names, compared whole, so that
    /// a hash collision can never link a record to a stranger. Each link
    /// goes to `links` with the child's tag.
    fn resolve_parents(&mut self, at: Linked, links: &mut Sorter<[u32; 3]>) -> Result<Table> {
        self.body.flush()?;
        let n = u32::try_from(self.c.keys.len()).unwrap_or(NONE);
        let path = self.body.path().to_owned();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the file is ours, and what the map covers (records and
        // the tables before the parents) is not written again: the body
        // grows past the map's end while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        // Records are read once, front to back: pages left behind are
        // dropped from the map (not from the page cache), or a 2 GB file
        // would count whole in the build's memory.
        let _ = map.advise(memmap2::Advice::Sequential);
        let built = Built { map: &map, at, len: n as usize, records_end: self.records_end };
        let broken = || Error::Corrupt { path: path.clone(), reason: "a record just written reads back wrong".into() };
        let mut out = TableWriter::start(&mut self.body, 4)?;
        let mut tags = self.c.tags.read()?;
        let mut pages = Pages { released: 0, lookups: 0 };
        let mut look = Lookup::default();
        for slot in 0..n {
            let tag = tags.next().ok_or_else(broken)??;
            if slot % 4096 == 0 {
                pages.release_records(&built, built.start(slot).ok_or_else(broken)?);
            }
            // A lookup touches about twenty pages of a large id table.
            if pages.lookups >= 512 || slot.is_multiple_of(1 << 16) {
                pages.release_tables(&built);
            }
            let parent = look.parent(&built, slot, &mut pages).ok_or_else(broken)?;
            out.push(&parent.to_le_bytes())?;
            if parent != NONE {
                links.push([parent, slot, tag])?;
            }
        }
        out.end()
    }
}

/// Where the tables that resolving parents reads lie in the body.
#[derive(Clone, Copy)]
struct Linked {
    bases: Table,
    starts: Table,
    ids: Table,
}

/// A file being built, read back through its own tables.
struct Built<'a> {
    map: &'a Mmap,
    at: Linked,
    len: usize,
    records_end: u64,
}

impl Built<'_> {
    fn u32_at(&self, t: Table, i: usize) -> Option<u32> {
        let at = usize::try_from(t.at).ok()? + i * 4;
        Some(u32::from_le_bytes(self.map.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(&self, t: Table, i: usize) -> Option<u64> {
        let at = usize::try_from(t.at).ok()? + i * 8;
        Some(u64::from_le_bytes(self.map.get(at..at + 8)?.try_into().ok()?))
    }

    /// Where the record in `slot` starts.
    fn start(&self, slot: u32) -> Option<usize> {
        let s = slot as usize;
        let base = self.u64_at(self.at.bases, s >> GROUP_SHIFT)?;
        usize::try_from(base + u64::from(self.u32_at(self.at.starts, s)?)).ok()
    }

    fn bytes(&self, slot: u32) -> Option<&[u8]> {
        let end = if (slot as usize) + 1 < self.len {
            self.start(slot + 1)?
        } else {
            usize::try_from(self.records_end).ok()?
        };
        self.map.get(self.start(slot)?..end)
    }

    /// The id of the record in `slot`, read from the last record that
    /// wrote its id whole.
    fn id(&self, slot: u32) -> Option<String> {
        let mut id = String::new();
        for s in slot - slot % RESTART..=slot {
            let (shared, rest) = codec::read_id(self.bytes(s)?)?;
            next_id(&mut id, shared, rest)?;
        }
        Some(id)
    }

    /// The slot of the record whose id is `id`, `NONE` if there is none;
    /// `None` if the file reads back wrong.
    fn slot_of_id(&self, id: &str) -> Option<u32> {
        let h = u64::from(short_hash(id));
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let m = lo + (hi - lo) / 2;
            if self.u64_at(self.at.ids, m)? >> 32 < h {
                lo = m + 1;
            } else {
                hi = m;
            }
        }
        for i in lo..self.len {
            let e = self.u64_at(self.at.ids, i)?;
            if e >> 32 != h {
                break;
            }
            if self.id(e as u32)? == id {
                return Some(e as u32);
            }
        }
        Some(NONE)
    }
}

/// The id of the record being read and the last parent found: children
/// of one parent mostly follow each other.
#[derive(Default)]
struct Lookup {
    id: String,
    last: Option<(String, u32)>,
}

impl Lookup {
    /// The parent of `slot`, `NONE` for none; `None` if the file reads
    /// back wrong.
    fn parent(&mut self, built: &Built, slot: u32, pages: &mut Pages) -> Option<u32> {
        let head = built.bytes(slot).and_then(Head::read)?;
        next_id(&mut self.id, head.id_shared, head.id_rest)?;
        let Some(parent) = head.parent_id(&self.id).flatten() else { return Some(NONE) };
        if let Some((p, s)) = &self.last {
            if *p == parent {
                return Some(*s);
            }
        }
        pages.lookups += 1;
        let found = built.slot_of_id(&parent)?;
        if found != NONE {
            self.last = Some((parent, found));
        }
        Some(found)
    }
}

/// What of the map resolving parents has let go of: its pages count in
/// the process's memory until they are dropped from it.
struct Pages {
    /// Records before this offset are dropped.
    released: usize,
    /// Lookups in the tables since their pages were last dropped.
    lookups: usize,
}

impl Pages {
    /// Drops the records more than a window behind `at`.
    fn release_records(&mut self, built: &Built, at: usize) {
        // Parents are looked up behind the cursor, mostly close to it.
        const WINDOW: usize = 32 << 20;
        let end = at.saturating_sub(WINDOW) & !(PAGE - 1);
        if end >= self.released + WINDOW && drop_pages(built.map, self.released, end) {
            self.released = end;
        }
    }

    /// Drops the pages of the tables.
    fn release_tables(&mut self, built: &Built) {
        let from = usize::try_from(built.at.bases.at).unwrap_or(usize::MAX) & !(PAGE - 1);
        drop_pages(built.map, from, built.map.len());
        self.lookups = 0;
    }
}

const PAGE: usize = 4096;

/// Drops the pages of `map[from..to]` out of this process (the page cache
/// keeps them); whether it did.
fn drop_pages(map: &Mmap, from: usize, to: usize) -> bool {
    if from >= to || to > map.len() {
        return false;
    }
    // SAFETY: the map is read-only and of a file nobody writes in its range
    // while it is open: a dropped page reads back the same bytes on the
    // next access, so the slices `Built` hands out stay valid.
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) }.is_ok()
}

/// A memory-mapped documents file.
pub struct Docs {
    file: Mapped,
    blocks: Blocks,
    /// Where the tables are, read out of the index once.
    at: Places,
    /// Field names and kinds, by number, copied out of the index: a field
    /// is looked for by its number.
    names: Box<[Box<str>]>,
}

/// A table of the body: byte offset and entries.
#[derive(Clone, Copy, Default)]
struct Place {
    at: usize,
    len: usize,
}

impl Place {
    fn of(t: &ArchivedTable) -> Place {
        Place { at: t.at.to_native() as usize, len: t.len.to_native() as usize }
    }
}

#[derive(Clone, Copy, Default)]
struct Places {
    bases: Place,
    starts: Place,
    keys: Place,
    key_lows: Place,
    ids: Place,
    parents: Place,
    child_starts: Place,
    children: Place,
    child_tags: Place,
    block_starts: Place,
    len: usize,
    records_end: usize,
    body_len: usize,
}

/// A little-endian u32 of 4 bytes.
fn u32_of(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The first `i` in `from..to` where `past(i)` is false, where `past`
/// holds of a prefix; none if an entry cannot be read.
fn partition(from: usize, to: usize, past: impl Fn(usize) -> Option<bool>) -> Option<usize> {
    let (mut lo, mut hi) = (from, to);
    while lo < hi {
        let m = lo + (hi - lo) / 2;
        if past(m)? {
            lo = m + 1;
        } else {
            hi = m;
        }
    }
    Some(lo)
}

/// The fields of a record that reads as empty: a count of none.
static NO_FIELDS: [u8; 1] = [0];

impl Docs {
    /// Opens a documents file: reads its trailer and its index, checked
    /// against the index's CRC and validated; records are checked when
    /// first read.
    pub fn open(path: &Path) -> Result<Docs> {
        let corrupt = |reason: &str| Error::Corrupt { path: path.into(), reason: reason.into() };
        let file = Mapped::open(path, *MAGIC)?;
        let idx = rkyv::access::<ArchivedDocsIndexData, rkyv::rancor::Error>(file.index())
            .map_err(|e| corrupt(&e.to_string()))?;
        let n = idx.len.to_native();
        let body_len = idx.body_len.to_native();
        let fits = |t: &ArchivedTable, width: u64, len: u64| {
            let (at, l) = (t.at.to_native(), t.len.to_native());
            l == len && at.is_multiple_of(width) && at.checked_add(l * width).is_some_and(|e| e <= body_len)
        };
        // The tables' sizes are what every later read relies on; their
        // contents are checked block by block as they are read.
        let blocks_table = idx.block_starts.len.to_native();
        if !fits(&idx.bases, 8, n.div_ceil(1 << GROUP_SHIFT))
            || !fits(&idx.starts, 4, n)
            || !(fits(&idx.keys, 8, n) && fits(&idx.key_lows, 2, 0)
                || fits(&idx.keys, 8, 0) && fits(&idx.key_lows, 2, n) && blocks_table > 0)
            || !fits(&idx.ids, 8, n)
            || !fits(&idx.parents, 4, n)
            || !fits(&idx.child_starts, 4, n + 1)
            || !fits(&idx.children, 4, idx.children.len.to_native())
            || !fits(&idx.child_tags, 4, idx.children.len.to_native())
            || !fits(&idx.block_starts, 4, blocks_table)
            || idx.records_end.to_native() > idx.starts.at.to_native()
            || n >= u64::from(NONE)
            || usize::try_from(body_len).is_err()
        {
            return Err(corrupt("inconsistent index tables"));
        }
        let at = Places {
            bases: Place::of(&idx.bases),
            starts: Place::of(&idx.starts),
            keys: Place::of(&idx.keys),
            key_lows: Place::of(&idx.key_lows),
            ids: Place::of(&idx.ids),
            parents: Place::of(&idx.parents),
            child_starts: Place::of(&idx.child_starts),
            children: Place::of(&idx.children),
            child_tags: Place::of(&idx.child_tags),
            block_starts: Place::of(&idx.block_starts),
            len: n as usize,
            records_end: idx.records_end.to_native() as usize,
            body_len: body_len as usize,
        };
        let names = idx.names.iter().map(|n| n.as_str().into()).collect();
        let blocks = Blocks::new(path, body_len, &idx.sums, file.index_at)?;
        let docs = Docs { file, blocks, at, names };
        if docs.u32_at(at.child_starts, n as usize) != Some(at.children.len as u32) {
            return Err(corrupt("inconsistent child table"));
        }
        Ok(docs)
    }

    fn index(&self) -> &ArchivedDocsIndexData {
        // SAFETY: validated in `open`; the mapping is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedDocsIndexData>(self.file.index()) }
    }

    fn tables(&self) -> Tables<'_> {
        let idx = self.index();
        Tables { names: &idx.names, strings: &idx.strings }
    }

    pub fn len(&self) -> usize {
        self.at.len
    }

    /// A fingerprint of this file (its index's CRC), for files derived from
    /// it to say which documents they were derived from.
    pub fn fingerprint(&self) -> u64 {
        self.file.index_crc
    }

    fn body(&self) -> &[u8] {
        &self.file.map[..self.at.body_len]
    }

    /// The bytes of entries `from..to` (not empty) of a table of `w`-byte
    /// numbers, checked at once; none if they cannot be read (the file is
    /// then marked damaged).
    #[inline]
    fn entries(&self, t: Place, w: usize, from: usize, to: usize) -> Option<&[u8]> {
        if from >= to || to > t.len {
            return self.damage();
        }
        let (a, b) = (t.at + from * w, t.at + to * w);
        let body = self.body();
        self.blocks.intact(body, a, b).then(|| &body[a..b])
    }

    fn u32_at(&self, t: Place, i: usize) -> Option<u32> {
        self.entries(t, 4, i, i + 1)?.try_into().ok().map(u32::from_le_bytes)
    }

    /// Entries `i` and `i + 1` of a table of u32, read as one.
    fn u32_pair(&self, t: Place, i: usize) -> Option<(u32, u32)> {
        let b = self.entries(t, 4, i, i + 2)?;
        Some((u32_of(&b[..4]), u32_of(&b[4..])))
    }

    fn u64_at(&self, t: Place, i: usize) -> Option<u64> {
        self.entries(t, 8, i, i + 1)?.try_into().ok().map(u64::from_le_bytes)
    }

    fn u16_at(&self, t: Place, i: usize) -> Option<u16> {
        self.entries(t, 2, i, i + 1)?.try_into().ok().map(u16::from_le_bytes)
    }

    /// An error if a read found a block of records damaged: the answer
    /// that read took part in cannot be trusted.
    pub fn check(&self) -> Result<()> {
        self.blocks.check()
    }

    /// Notes damage found by a read (see [`Docs::check`]).
    fn damage<T>(&self) -> Option<T> {
        self.blocks.damage();
        None
    }

    /// The record in `slot`. The record of a damaged block, or of a slot
    /// past the end, reads as an empty one (see [`Docs::check`]).
    pub fn record(&self, slot: u32) -> RecordRef<'_> {
        let tables = self.tables();
        let head = self.bytes(slot).and_then(Head::read);
        let read = head.and_then(|h| Some((tables.name(h.kind)?, h)));
        if let Some((kind, h)) = read {
            return RecordRef { docs: self, slot, kind, point: h.point, fields: h.fields };
        }
        self.damage::<()>();
        RecordRef { docs: self, slot, kind: "", point: None, fields: Cursor::new(&NO_FIELDS) }
    }

    /// The records that name a parent the file does not hold (a
    /// housenumber put before its street), by the parent's id: a walk of
    /// every slot's parent, and of the head of each record without one.
    pub fn orphans(&self) -> std::collections::HashMap<String, Vec<u32>> {
        let mut out: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
        for slot in 0..self.len() as u32 {
            if self.parent(slot).is_some() {
                continue;
            }
            let Some(head) = self.bytes(slot).and_then(Head::read) else { continue };
            if head.parent.is_none() {
                continue;
            }
            if let Some(Some(parent)) = head.parent_id(&self.id_of(slot)) {
                out.entry(parent).or_default().push(slot);
            }
        }
        out
    }

    /// The id of the record in `slot`, empty if it cannot be read (the file
    /// is then damaged).
    fn id_of(&self, slot: u32) -> String {
        self.read_id(slot).or_else(|| self.damage()).unwrap_or_default()
    }

    /// The id of the record in `slot`, reading the records from the last
    /// whole id on as one stretch of the file, and each no further than
    /// its id.
    fn read_id(&self, slot: u32) -> Option<String> {
        let t = self.at;
        let (r, s) = ((slot - slot % RESTART) as usize, slot as usize);
        // A restart group lies in one group of offsets.
        debug_assert!((1usize << GROUP_SHIFT).is_multiple_of(RESTART as usize));
        let base = usize::try_from(self.u64_at(t.bases, s >> GROUP_SHIFT)?).ok()?;
        let last = self.bytes(slot)?;
        let starts = self.u32s(t.starts, r, s + 1);
        let from = base + u32::from_le_bytes(starts.get(..4)?.try_into().ok()?) as usize;
        let end = last.as_ptr() as usize - self.body().as_ptr() as usize + last.len();
        if from > end || !self.blocks.intact(self.body(), from, end) {
            return None;
        }
        let mut id = String::new();
        for c in starts.chunks_exact(4) {
            let at = base + u32::from_le_bytes(c.try_into().ok()?) as usize;
            let (shared, rest) = codec::read_id(self.body().get(at..end)?)?;
            next_id(&mut id, shared, rest)?;
        }
        Some(id)
    }

    pub fn slot_of_key(&self, key: u64) -> Option<u32> {
        let t = self.at.block_starts;
        if t.len == 0 {
            let at = partition(0, self.len(), |i| Some(self.u64_at(self.at.keys, i)? < key))?;
            return (at < self.len() && self.u64_at(self.at.keys, at)? == key).then_some(at as u32);
        }
        let b = usize::try_from(block_of(key)).ok().filter(|b| b + 1 < t.len)?;
        let (from, to) = self.u32_pair(t, b)?;
        let (from, low) = (from as usize, (key & 0xffff) as u16);
        // Positions only grow within a block, some deleted: a record's
        // slot is at most its position past the block's first.
        let to = (to as usize).min(from + usize::from(low) + 1).min(self.len());
        let at = partition(from, to, |i| Some(self.u16_at(self.at.key_lows, i)? < low))?;
        (at < to && self.u16_at(self.at.key_lows, at)? == low).then_some(at as u32)
    }

    pub fn slot_of_id(&self, id: &str) -> Option<u32> {
        let ids = self.at.ids;
        let h = u64::from(short_hash(id));
        let from = partition(0, self.len(), |i| Some(self.u64_at(ids, i)? >> 32 < h))?;
        (from..self.len())
            .map_while(|i| self.u64_at(ids, i).filter(|e| e >> 32 == h))
            .map(|e| e as u32)
            .find(|s| self.id_of(*s) == id)
    }

    /// The store key of the record in `slot` (0 if it cannot be read: the
    /// file is then damaged).
    pub fn key(&self, slot: u32) -> u64 {
        self.read_key(slot).unwrap_or_default()
    }

    fn read_key(&self, slot: u32) -> Option<u64> {
        let t = self.at.block_starts;
        if t.len == 0 {
            return self.u64_at(self.at.keys, slot as usize);
        }
        let low = self.u16_at(self.at.key_lows, slot as usize)?;
        // The block is the last whose first slot is at most `slot`.
        let past = partition(0, t.len, |b| Some(self.u32_at(t, b)? <= slot))?;
        let block = past.checked_sub(1).or_else(|| self.damage())?;
        Some(((block as u64) << 16) | u64::from(low))
    }

    pub fn parent(&self, slot: u32) -> Option<u32> {
        self.u32_at(self.at.parents, slot as usize).filter(|p| *p != NONE)
    }

    /// The children of `slot`, each with its tag (see
    /// [`DocsBuilder::create`]).
    pub fn children(&self, slot: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (from, to) = self.children_at(slot);
        let children = self.u32s(self.at.children, from, to).chunks_exact(4).map(u32_of);
        children.zip(self.u32s(self.at.child_tags, from, to).chunks_exact(4).map(u32_of))
    }

    /// The children of `slot` with the tag `tag`, in slot order: the tags
    /// are read, and the children's table only where one matches (a street
    /// of the full BAN has up to thousands of children, a number one).
    pub fn children_tagged(&self, slot: u32, tag: u32) -> impl Iterator<Item = u32> + '_ {
        let (from, to) = self.children_at(slot);
        let tags = self.u32s(self.at.child_tags, from, to).chunks_exact(4);
        let children = self.at.children;
        tags.enumerate()
            .filter(move |(_, t)| *t == tag.to_le_bytes())
            .filter_map(move |(i, _)| self.u32_at(children, from + i))
    }

    /// Whether a child of `slot` has the tag `tag`: the tags alone are read.
    pub fn has_child_tagged(&self, slot: u32, tag: u32) -> bool {
        let (from, to) = self.children_at(slot);
        self.u32s(self.at.child_tags, from, to).chunks_exact(4).any(|c| c == tag.to_le_bytes())
    }

    /// The bytes of entries `from..to` of a table of u32 (see
    /// [`Docs::entries`]), empty when there are none or they cannot be read.
    fn u32s(&self, t: Place, from: usize, to: usize) -> &[u8] {
        if from == to {
            return &[];
        }
        self.entries(t, 4, from, to).unwrap_or_default()
    }

    /// Where the children of `slot` lie in the children's table.
    fn children_at(&self, slot: u32) -> (usize, usize) {
        self.u32_pair(self.at.child_starts, slot as usize)
            .map(|(a, b)| (a as usize, b as usize))
            .filter(|(a, b)| a <= b)
            .unwrap_or_default()
    }
}

impl Docs {
    /// The bytes of a record, if its blocks match their CRC.
    fn bytes(&self, slot: u32) -> Option<&[u8]> {
        let t = self.at;
        let s = slot as usize;
        let base = |s: usize| self.u64_at(t.bases, s >> GROUP_SHIFT).and_then(|b| usize::try_from(b).ok());
        let (from, to) = if s + 1 < t.len {
            let (a, b) = self.u32_pair(t.starts, s)?;
            let start = base(s)?;
            let next = if (s + 1).is_multiple_of(1 << GROUP_SHIFT) { base(s + 1)? } else { start };
            (start + a as usize, next + b as usize)
        } else {
            (base(s)? + self.u32_at(t.starts, s)? as usize, t.records_end)
        };
        if to > t.records_end {
            return self.damage();
        }
        let body = self.body();
        self.blocks.intact(body, from, to).then(|| &body[from..to])
    }
}

/// A record read in place from a documents file.
pub struct RecordRef<'a> {
    docs: &'a Docs,
    slot: u32,
    kind: &'a str,
    point: Option<RawPoint>,
    fields: Cursor<'a>,
}

impl<'a> RecordRef<'a> {
    /// What the record is ("street", "housenumber" ...).
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    pub fn point(&self) -> Option<Point> {
        self.point.map(RawPoint::get)
    }

    /// The record's id; read from up to 8 records (ids share prefixes),
    /// so kept for answers, not for scoring candidates.
    pub fn id(&self) -> String {
        self.docs.id_of(self.slot)
    }

    pub fn fields(&self) -> Fields<'a> {
        Fields::new(self.docs.tables(), self.fields, self.docs.blocks.flag())
    }

    pub fn get(&self, name: &str) -> Option<ValueRef<'a>> {
        // Most names differ in length or first letter: no call to memcmp.
        let same = |n: &str| n.len() == name.len() && n.as_bytes().first() == name.as_bytes().first() && n == name;
        let id = self.docs.names.iter().position(|n| same(n))?;
        self.fields().find(id as u64)
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
        // Each child's tag sits beside it: "s1_1" and "s1_2" are 4 long.
        assert_eq!(d.children(0).collect::<Vec<_>>(), vec![(1, 4), (3, 4)]);
        assert_eq!(d.children(1).count(), 0);
        assert_eq!(d.children_tagged(0, 4).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(d.children_tagged(0, 5).count(), 0);
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
    fn file_of(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        file_with_keys(&(0..n).collect::<Vec<_>>())
    }

    /// A documents file of records `r0`, `r1`... with keys `keys`.
    fn file_with_keys(keys: &[u64]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs");
        let mut b = DocsBuilder::create(&path, |_| 0).unwrap();
        for (i, k) in keys.iter().enumerate() {
            b.add(*k, &rec(&format!("r{i}"), None)).unwrap();
        }
        b.finish().unwrap();
        (dir, path)
    }

    /// Each of `keys` is found in its slot and read back from it, none of
    /// `missing` is found, and nothing read was damaged.
    fn assert_keys(d: &Docs, keys: &[u64], missing: &[u64]) {
        for (slot, k) in keys.iter().enumerate() {
            assert_eq!(d.slot_of_key(*k), Some(slot as u32), "key {k}");
            assert_eq!(d.key(slot as u32), *k, "slot {slot}");
        }
        for k in missing {
            assert_eq!(d.slot_of_key(*k), None, "key {k}");
        }
        assert!(d.check().is_ok());
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
        let at = d.bytes(last).unwrap().as_ptr() as usize - d.file.map.as_ptr() as usize + 2;
        assert!(at >= 4096, "the last record lies past the first block");
        drop(d);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.record(0).id(), "r0");
        assert!(d.check().is_ok());
        assert_eq!(d.record(last).id(), "", "a damaged record reads empty");
        assert!(matches!(d.check(), Err(Error::Corrupt { .. })));
        // Still damaged on a second read, and other blocks still read.
        assert_eq!(d.record(last).id(), "");
        assert_eq!(d.record(1).id(), "r1");
    }

    /// A flipped byte in a table (here the ids') does not stop the file
    /// opening; the lookup that reads it finds nothing and marks the file
    /// damaged, and records still read.
    #[test]
    fn a_damaged_table_block_fails_the_lookups_that_read_it() {
        let (_dir, path) = file_of(3000);
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.slot_of_id("r2999"), Some(2999));
        let (at, len) = (d.index().ids.at.to_native() as usize, d.len() * 8);
        drop(d);
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[at..at + len] {
            *b ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.record(5).id(), "r5");
        assert!(d.check().is_ok());
        assert_eq!(d.slot_of_id("r5"), None);
        assert!(matches!(d.check(), Err(Error::Corrupt { .. })));
    }

    /// A flipped byte in the index is found at open.
    #[test]
    fn a_damaged_index_is_refused_at_open() {
        let (_dir, path) = file_of(10);
        let index_at = Docs::open(&path).unwrap().file.index_at;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[index_at + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(Docs::open(&path), Err(Error::Corrupt { .. })));
    }

    /// The parent `rec_id(i)` names in `linked_records`, if any.
    fn parent_of(i: usize, n: usize) -> Option<usize> {
        match i % 7 {
            0 => None,
            // A parent further on, or one that is not there.
            3 if i.is_multiple_of(13) => Some(i / 7 * 7 + 70).filter(|p| *p < n),
            5 if i.is_multiple_of(11) => Some(n + 1),
            _ => Some(i / 7 * 7),
        }
    }

    /// A documents file of `n` linked records built holding `memory`
    /// bytes in its sorts.
    fn linked_file(dir: &std::path::Path, n: usize, memory: usize) -> std::path::PathBuf {
        let path = dir.join(format!("docs-{memory}"));
        let mut b = DocsBuilder::create(&path, |r| r.id.len() as u32).unwrap();
        b.set_memory(memory);
        for i in 0..n {
            let parent = parent_of(i, n).map(|p| format!("r{p}"));
            // Keys across store blocks, some sparse.
            b.add(((i as u64 / 1000) << 16) | ((i as u64 % 1000) * 3), &rec(&format!("r{i}"), parent.as_deref()))
                .unwrap();
        }
        b.finish().unwrap();
        path
    }

    /// Built with sorts much smaller than the tables (many runs, merges of
    /// merges), the file is byte for byte the one built in memory, its
    /// links answer right, and no temporary file is left.
    #[test]
    fn a_small_budget_builds_the_same_file() {
        let n = 5000;
        let dir = tempfile::tempdir().unwrap();
        let small = linked_file(dir.path(), n, 64);
        let large = linked_file(dir.path(), n, 1 << 30);
        assert!(std::fs::read(&small).unwrap() == std::fs::read(&large).unwrap(), "the files differ");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
        let d = Docs::open(&small).unwrap();
        assert_eq!(d.len(), n);
        let mut children = vec![Vec::new(); n];
        for i in 0..n {
            let slot = i as u32;
            assert_eq!(d.slot_of_id(&format!("r{i}")), Some(slot));
            let parent = parent_of(i, n).filter(|p| *p < n);
            assert_eq!(d.parent(slot), parent.map(|p| p as u32), "parent of r{i}");
            if let Some(p) = parent {
                children[p].push((slot, format!("r{i}").len() as u32));
            }
        }
        for (p, want) in children.iter().enumerate() {
            assert_eq!(d.children(p as u32).collect::<Vec<_>>(), *want, "children of r{p}");
        }
        assert_eq!(d.slot_of_id("r5000"), None);
        assert!(d.index().block_starts.len.to_native() > 0);
        assert!(d.check().is_ok());
    }

    /// Keys found through the per-block table are the keys of the file, in
    /// blocks with deleted positions, empty blocks between, and past the end.
    #[test]
    fn keys_map_to_slots_across_blocks() {
        let keys: Vec<u64> = [(0u64, 0u64), (0, 3), (0, 4), (2, 1), (2, 7), (5, 0)]
            .iter()
            .map(|(block, pos)| (block << 16) | pos)
            .collect();
        let (_dir, path) = file_with_keys(&keys);
        let d = Docs::open(&path).unwrap();
        assert!(d.index().block_starts.len.to_native() > 0);
        assert_eq!(d.index().keys.len.to_native(), 0, "the low bits alone are kept");
        let missing =
            [1u64, 2, 5, 1 << 16, (2 << 16) | 2, (2 << 16) | 8, (3 << 16) | 1, (5 << 16) | 1, 6 << 16, u64::MAX];
        assert_keys(&d, &keys, &missing);
    }

    /// Keys whose blocks are too far apart for a per-block table are kept
    /// whole, and found the same.
    #[test]
    fn sparse_keys_are_kept_whole() {
        let keys = [3u64, (1 << 36) | 7, u64::MAX - 1];
        let (_dir, path) = file_with_keys(&keys);
        let d = Docs::open(&path).unwrap();
        assert_eq!(d.index().block_starts.len.to_native(), 0);
        assert_keys(&d, &keys, &[0, 4, 7, 1 << 36, u64::MAX]);
    }
}
