//! The durable store: every document in redb, coded as in the documents
//! file ([`crate::codec`]) and compressed with lz4 in blocks (one record
//! compresses badly, a block of many compresses to about half). Blocks
//! written before this coding (rkyv archives) are still read; a block is
//! written in the new coding whenever it is written again.
//!
//! A record's key is `block << 16 | position`, so keys only grow and the
//! documents file of a generation can be written in key order by scanning
//! the blocks table.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::codec;
use crate::error::{Error, Result};
use crate::record::Record;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Collections: name -> schema (JSON).
const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections");
/// Records of every collection: `name NUL id` -> the record (JSON). A name
/// holds no NUL, so one collection's keys are one range, in id order.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// The write log of live writes (see [`crate::live`]): generation -> the
/// ids that commit put or deleted, each as a u32 length and its bytes. It
/// holds the commits since the generation whose files are the base
/// ([`BASE`]): what a reopen lays over the base again. A full commit
/// clears it. Not part of snapshots.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// The meta key of the generation whose files are served as the base; the
/// commits after it are in [`LOG`]. Missing: the committed generation
/// (stores made before live writes).
pub(crate) const BASE: &str = "base";

pub(crate) fn encode_ids(ids: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.iter().map(|i| i.len() + 4).sum());
    for id in ids {
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    out
}

pub(crate) fn decode_ids(mut bytes: &[u8], out: &mut Vec<String>) -> Result<()> {
    let bad = || Error::Store("the write log holds an entry that does not decode".into());
    while !bytes.is_empty() {
        let n = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or_else(bad)?;
        let id = bytes.get(4..4 + n).ok_or_else(bad)?;
        out.push(std::str::from_utf8(id).map_err(|_| bad())?.to_owned());
        bytes = &bytes[4 + n..];
    }
    Ok(())
}

fn record_key(collection: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + 1 + id.len());
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The keys of one collection's records: from `name NUL` to `name SOH`.
fn record_range(collection: &str) -> (Vec<u8>, Vec<u8>) {
    let (mut a, mut b) = (collection.as_bytes().to_vec(), collection.as_bytes().to_vec());
    a.push(0);
    b.push(1);
    (a, b)
}

/// The meta key of the history id: a random number made with the
/// database and made anew by every restore. Generation numbers only order
/// the commits of one history; a replica compares (history, generation)
/// with its primary's, so that a primary restored to an older snapshot, or
/// one that went on to other commits under the same numbers, is never taken
/// for the one it followed.
pub(crate) const HISTORY: &str = "history";

/// The meta key set by installing another database's snapshot with its
/// history (a replica): its first commit of its own (a replica promoted to
/// primary) then starts a new history, or the other replicas, at the same
/// numbers, would take its commits for the old primary's.
pub(crate) const FOLLOWS: &str = "follows";

/// A history id no other database has: the hash of the time, the process
/// and the standard library's per-process random keys. Never 0, which
/// stands for "unknown" (a snapshot made before histories existed).
pub(crate) fn fresh_history() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

/// redb's page cache. Its default, 1 GiB, filled up during a large import
/// (half of it dirty pages, the rest blocks read once by the generation
/// build) and was a quarter of the import's peak memory at 26M records.
/// Blocks are read whole, once per build, and the ids written in order:
/// a small cache costs the 26M import nothing measurable.
const CACHE_BYTES: usize = 64 << 20;

const BLOCK_BYTES: usize = 64 * 1024;
const BLOCK_RECORDS: usize = 4096;

pub(crate) fn block_of(key: u64) -> u64 {
    key >> 16
}

/// What a block of the second format starts with. A block of the first
/// format (an rkyv archive of its records, lz4-compressed with its length
/// in front) cannot: it would claim 4 GiB, which no block of under 16 MB
/// can, and [`decode_block`] never accepted such a claim.
const CODED: [u8; 4] = [0xFF; 4];

/// A block as it is stored: [`CODED`], then lz4 of the records coded as in
/// the documents file ([`codec::pack`]): about 30 bytes a housenumber
/// where the first format took 70 (rkyv pads and repeats every field name).
fn encode_block(entries: &[(u64, Record)]) -> Result<Vec<u8>> {
    let raw = codec::pack(entries)
        .ok_or_else(|| Error::Store("coding a block: keys out of order, or tables over 4 GiB".into()))?;
    let mut out = CODED.to_vec();
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&raw));
    Ok(out)
}

/// The records of a stored block, of either format.
fn decode_block(bytes: &[u8]) -> Result<Vec<(u64, Record)>> {
    let (coded, bytes) = match bytes.strip_prefix(&CODED) {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    // lz4 allocates the size it is told; a block from a snapshot made
    // elsewhere could claim 4 GiB. No lz4 block expands more than 255 times.
    let claimed = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if claimed.is_none_or(|n| n > bytes.len().saturating_mul(255) + 64) {
        return Err(Error::Store(format!("corrupt block: {} bytes cannot hold {claimed:?}", bytes.len())));
    }
    let raw = lz4_flex::decompress_size_prepended(bytes).map_err(|e| Error::Store(format!("corrupt block: {e}")))?;
    // Decompression gives an unaligned Vec; rkyv needs aligned bytes.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(raw.len());
    aligned.extend_from_slice(&raw);
    if coded {
        return codec::unpack(&aligned).ok_or_else(|| Error::Store("corrupt block: its records do not decode".into()));
    }
    rkyv::from_bytes::<Vec<(u64, Record)>, rkyv::rancor::Error>(&aligned)
        .map_err(|e| Error::Store(format!("corrupt block: {e}")))
}

pub struct Store {
    // Shared with `StoreReader`s: snapshots read through their own MVCC
    // transactions and must not wait for the writer's mutex.
    db: Arc<Database>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(Error::Locked(path.into())),
            Err(e) => return Err(e.into()),
        };
        let txn = db.begin_write()?;
        {
            txn.open_table(BLOCKS)?;
            txn.open_table(IDS)?;
            txn.open_table(COLLECTIONS)?;
            txn.open_table(RECORDS)?;
            txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            // Databases made before histories existed get theirs now.
            if meta.get(HISTORY)?.is_none() {
                meta.insert(HISTORY, fresh_history())?;
            }
        }
        txn.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Starts a new history: the content is no longer the continuation of
    /// what any replica or backup holds under the same generation numbers.
    pub fn new_history(&self) -> Result<u64> {
        let id = fresh_history();
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(HISTORY, id)?;
            meta.remove(FOLLOWS)?;
        }
        txn.commit()?;
        Ok(id)
    }

    /// The generation whose files are the base (see [`BASE`]).
    pub fn base(&self) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let b = meta_base(&txn)?;
        txn.abort()?;
        Ok(b)
    }

    /// Makes the committed generation the base, with an empty write log:
    /// its files were just built from the whole store (a rebuild, a
    /// restore's staging).
    pub fn rebase(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let g = meta_get(&txn, "generation")?;
            txn.open_table(META)?.insert(BASE, g)?;
            txn.open_table(LOG)?.retain(|_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Makes generation `base` (at or before the committed one) the base,
    /// its files built from the store as it was then: the write log keeps
    /// the live commits after it only. Nothing else changes.
    pub fn set_base(&self, base: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let g = meta_get(&txn, "generation")?;
            if base > g {
                return Err(Error::Store(format!("base {base} is past the committed generation {g}")));
            }
            txn.open_table(META)?.insert(BASE, base)?;
            txn.open_table(LOG)?.retain(|g, _| g > base)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Keeps the history, as a replica: the next commit starts a new one.
    pub fn mark_following(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(FOLLOWS, 1)?;
        txn.commit()?;
        Ok(())
    }

    /// A read handle that outlives no commit: it sees the committed state
    /// as of each `begin`, and never blocks or waits for a writer.
    pub(crate) fn reader(&self) -> StoreReader {
        StoreReader { db: self.db.clone() }
    }

    /// Fills a new store at `path` (which must not exist) from raw tables;
    /// nothing is visible until `RawImport::commit`.
    pub(crate) fn create_for_import(path: &Path) -> Result<RawImport> {
        if path.exists() {
            return Err(Error::Store(format!("{} already exists", path.display())));
        }
        let store = Store::open(path)?;
        let txn = store.db.begin_write()?;
        Ok(RawImport { txn, store })
    }

    pub fn generation(&self) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let g = meta_get(&txn, "generation")?;
        txn.abort()?;
        Ok(g)
    }

    pub fn begin(&self) -> Result<StoreTxn> {
        let txn = self.db.begin_write()?;
        let next_block = meta_get(&txn, "next_block")?;
        let w = Writes {
            next_block,
            first_new_block: next_block,
            read: None,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_block: None,
            next_pos: 0,
        };
        Ok(StoreTxn { txn, w, touched: Vec::new() })
    }
}

fn meta_get(txn: &WriteTransaction, name: &str) -> Result<u64> {
    let t = txn.open_table(META)?;
    let v = t.get(name)?.map_or(0, |v| v.value());
    Ok(v)
}

fn meta_base(txn: &WriteTransaction) -> Result<u64> {
    let t = txn.open_table(META)?;
    let v = match t.get(BASE)? {
        Some(b) => b.value(),
        None => t.get("generation")?.map_or(0, |v| v.value()),
    };
    Ok(v)
}

/// One write transaction: records go in, nothing is visible until `commit`.
pub struct StoreTxn {
    txn: WriteTransaction,
    w: Writes,
    /// The ids put or deleted, in order (with repeats): what a live commit
    /// logs and lays over the base.
    touched: Vec<String>,
}

/// What a transaction keeps beside redb's: its open block. Apart from the
/// transaction, so that a table opened from it stays open while a run of
/// records goes in (opening and closing the ids table for every record
/// cost a quarter of an import's main thread).
struct Writes {
    next_block: u64,
    /// The first block this transaction writes: every key from
    /// `first_new_block << 16` on was written by it.
    first_new_block: u64,
    pending: Vec<(u64, Record)>,
    pending_bytes: usize,
    pending_block: Option<u64>,
    /// The last block read from the table, decoded: a record read before it
    /// is replaced (an id checked, then put) is decoded once.
    read: Option<(u64, Vec<(u64, Record)>)>,
    /// Next position in the open block: never reused, even after a delete.
    next_pos: u64,
}

type Ids<'t> = redb::Table<'t, &'static str, u64>;

impl StoreTxn {
    /// Adds or replaces a record. Returns the new key and, when an older
    /// record had this id, that record and its key.
    pub fn put(&mut self, record: Record) -> Result<(u64, Option<(u64, Record)>)> {
        let mut ids = self.txn.open_table(IDS)?;
        self.touched.push(record.id.clone());
        self.w.put(&self.txn, &mut ids, record)
    }

    /// [`StoreTxn::put`] of each record in turn, with the ids table opened
    /// once; `f` is given each one's new key and the record it replaced.
    pub fn put_each(
        &mut self,
        records: impl IntoIterator<Item = Record>,
        mut f: impl FnMut(u64, Option<(u64, Record)>) -> Result<()>,
    ) -> Result<()> {
        let mut ids = self.txn.open_table(IDS)?;
        for record in records {
            self.touched.push(record.id.clone());
            let (key, old) = self.w.put(&self.txn, &mut ids, record)?;
            f(key, old)?;
        }
        Ok(())
    }

    /// Removes the record with this id; returns it and its key if there was one.
    pub fn delete(&mut self, id: &str) -> Result<Option<(u64, Record)>> {
        let key = {
            let mut ids = self.txn.open_table(IDS)?;
            let k = ids.remove(id)?.map(|v| v.value());
            k
        };
        match key {
            Some(key) => {
                self.touched.push(id.to_owned());
                self.w.take(&self.txn, key).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The ids put or deleted by this transaction, in order, with repeats.
    pub fn touched(&self) -> &[String] {
        &self.touched
    }

    /// The ids every live commit after `base` put or deleted, in order.
    pub fn logged_since(&self, base: u64) -> Result<Vec<String>> {
        let t = self.txn.open_table(LOG)?;
        let mut out = Vec::new();
        for item in t.range(base + 1..)? {
            let (_, bytes) = item?;
            decode_ids(bytes.value(), &mut out)?;
        }
        Ok(out)
    }

    /// The key of the record with this id, if there is one.
    pub fn key_of(&self, id: &str) -> Result<Option<u64>> {
        let k = self.txn.open_table(IDS)?.get(id)?.map(|v| v.value());
        Ok(k)
    }

    /// The keys of the records with these ids, with the ids table opened
    /// once.
    pub fn keys_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<Vec<Option<u64>>> {
        let table = self.txn.open_table(IDS)?;
        let mut keys = Vec::new();
        for id in ids {
            keys.push(table.get(id)?.map(|v| v.value()));
        }
        Ok(keys)
    }

    /// The record with this id, if there is one, read without changing anything.
    pub fn get(&mut self, id: &str) -> Result<Option<Record>> {
        match self.key_of(id)? {
            Some(key) => self.w.get(&self.txn, key),
            None => Ok(None),
        }
    }

    /// The record with this key, if there is one (see [`StoreTxn::keys_of`]).
    pub fn get_key(&mut self, key: u64) -> Result<Option<Record>> {
        self.w.get(&self.txn, key)
    }

    /// The key the next `put` will get, or a key below it: records put from
    /// now on all have keys at or above it.
    pub fn next_key(&self) -> u64 {
        match self.w.pending_block {
            Some(b) => (b << 16) | self.w.next_pos,
            None => self.w.next_block << 16,
        }
    }

    /// Whether `key` was written by this transaction.
    pub fn is_new(&self, key: u64) -> bool {
        block_of(key) >= self.w.first_new_block
    }

    /// Every record this transaction wrote and did not delete, in key order.
    pub fn for_each_new(&mut self, mut f: impl FnMut(u64, Record) -> Result<()>) -> Result<()> {
        self.flush()?;
        let blocks = self.txn.open_table(BLOCKS)?;
        for item in blocks.range(self.w.first_new_block..)? {
            let (_, bytes) = item?;
            for (key, record) in decode_block(bytes.value())? {
                f(key, record)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.w.flush(&self.txn)
    }

    /// Every record in key order, including this transaction's writes.
    pub fn for_each(&mut self, mut f: impl FnMut(u64, Record) -> Result<()>) -> Result<()> {
        self.flush()?;
        let blocks = self.txn.open_table(BLOCKS)?;
        for item in blocks.iter()? {
            let (_, bytes) = item?;
            for (key, record) in decode_block(bytes.value())? {
                f(key, record)?;
            }
        }
        Ok(())
    }

    /// Like [`StoreTxn::for_each`], for a store that was not written by
    /// this code (a snapshot's): also checks that its tables agree, so that
    /// later writes cannot lose or confuse records. Every record's key is in
    /// its block, keys increase, the ids table maps each record's id to its
    /// key and holds nothing else, and new blocks would not overwrite old ones.
    pub fn for_each_checked(&mut self, mut f: impl FnMut(u64, Record) -> Result<()>) -> Result<()> {
        self.flush()?;
        let bad = |why: String| Err(Error::Store(format!("the tables disagree: {why}")));
        let blocks = self.txn.open_table(BLOCKS)?;
        let ids = self.txn.open_table(IDS)?;
        let (mut records, mut last_block) = (0u64, None);
        for item in blocks.iter()? {
            let (block, bytes) = item?;
            let block = block.value();
            let mut prev = None;
            for (key, record) in decode_block(bytes.value())? {
                if block_of(key) != block || prev.is_some_and(|p| p >= key) {
                    return bad(format!("key {key} in block {block}"));
                }
                if ids.get(record.id.as_str())?.map(|v| v.value()) != Some(key) {
                    return bad(format!("the ids table does not map {:?} to key {key}", record.id));
                }
                prev = Some(key);
                records += 1;
                f(key, record)?;
            }
            last_block = Some(block);
        }
        let listed = ids.len()?;
        if listed != records {
            return bad(format!("{listed} ids for {records} records"));
        }
        if let Some(b) = last_block.filter(|b| *b >= self.w.next_block) {
            return bad(format!("block {b} exists, next_block is {}", self.w.next_block));
        }
        Ok(())
    }

    pub fn count(&self) -> Result<u64> {
        Ok(self.txn.open_table(IDS)?.len()?)
    }

    /// The schema of a collection, as stored.
    pub fn schema_of(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(COLLECTIONS)?;
        let v = t.get(name)?.map(|v| v.value().to_vec());
        Ok(v)
    }

    pub fn put_schema(&mut self, name: &str, schema: &[u8]) -> Result<()> {
        self.txn.open_table(COLLECTIONS)?.insert(name, schema)?;
        Ok(())
    }

    /// Removes a collection and its records; how many records it had.
    pub fn drop_collection(&mut self, name: &str) -> Result<u64> {
        self.txn.open_table(COLLECTIONS)?.remove(name)?;
        let (a, b) = record_range(name);
        let mut t = self.txn.open_table(RECORDS)?;
        let before = t.len()?;
        t.retain_in(a.as_slice()..b.as_slice(), |_, _| false)?;
        Ok(before - t.len()?)
    }

    /// Adds or replaces a record of a collection; whether it replaced one.
    pub fn put_record(&mut self, collection: &str, id: &str, record: &[u8]) -> Result<bool> {
        let k = record_key(collection, id);
        let old = self.txn.open_table(RECORDS)?.insert(k.as_slice(), record)?.is_some();
        Ok(old)
    }

    /// Removes a record of a collection; whether there was one.
    pub fn delete_record(&mut self, collection: &str, id: &str) -> Result<bool> {
        let k = record_key(collection, id);
        let old = self.txn.open_table(RECORDS)?.remove(k.as_slice())?.is_some();
        Ok(old)
    }

    /// Makes everything durable as generation `generation`, whose files
    /// were built from the whole store: it becomes the base, and the write
    /// log is emptied. The first commit of a database that took another's
    /// history (a replica's, see [`FOLLOWS`]) starts a history of its own.
    pub fn commit(self, generation: u64) -> Result<()> {
        self.txn.open_table(LOG)?.retain(|_, _| false)?;
        self.txn.open_table(META)?.insert(BASE, generation)?;
        self.commit_keeping_base(generation)
    }

    /// Makes everything durable as generation `generation`, a live commit:
    /// the base stays, and the ids this transaction touched are logged
    /// under `generation`, so that a reopen lays them over the base again.
    pub fn commit_live(mut self, generation: u64) -> Result<()> {
        self.keep_base()?;
        let entry = encode_ids(&self.touched);
        self.txn.open_table(LOG)?.insert(generation, entry.as_slice())?;
        self.commit_keeping_base(generation)
    }

    /// Makes everything durable as generation `generation`, for a commit
    /// that changed no address record (a collection's): base and log stay.
    pub fn commit_store(mut self, generation: u64) -> Result<()> {
        self.keep_base()?;
        self.commit_keeping_base(generation)
    }

    /// Writes the base down when the store names none yet (it was the
    /// generation), before the generation moves past it.
    fn keep_base(&mut self) -> Result<()> {
        let base = meta_base(&self.txn)?;
        self.txn.open_table(META)?.insert(BASE, base)?;
        Ok(())
    }

    fn commit_keeping_base(mut self, generation: u64) -> Result<()> {
        self.flush()?;
        {
            let mut meta = self.txn.open_table(META)?;
            meta.insert("generation", generation)?;
            meta.insert("next_block", self.w.next_block)?;
            if meta.remove(FOLLOWS)?.is_some() {
                meta.insert(HISTORY, fresh_history())?;
            }
        }
        self.txn.commit()?;
        Ok(())
    }
}

impl Writes {
    fn put(
        &mut self,
        txn: &WriteTransaction,
        ids: &mut Ids<'_>,
        record: Record,
    ) -> Result<(u64, Option<(u64, Record)>)> {
        let block = if let Some(b) = self.pending_block {
            b
        } else {
            let b = self.next_block;
            self.next_block += 1;
            self.pending_block = Some(b);
            b
        };
        let key = (block << 16) | self.next_pos;
        // One lookup in the ids table replaces the old key and finds it.
        let old_key = ids.insert(record.id.as_str(), key)?.map(|v| v.value());
        let old = match old_key {
            Some(k) => Some(self.take(txn, k)?),
            None => None,
        };
        self.next_pos += 1;
        self.pending_bytes += approx_size(&record);
        self.pending.push((key, record));
        if self.next_pos as usize >= BLOCK_RECORDS || self.pending_bytes >= BLOCK_BYTES {
            self.flush(txn)?;
        }
        Ok((key, old))
    }

    /// Removes the record of `key`, which the ids table no longer names,
    /// from its block; returns it with its key.
    fn take(&mut self, txn: &WriteTransaction, key: u64) -> Result<(u64, Record)> {
        let block = block_of(key);
        if self.pending_block == Some(block) {
            // Keep keys increasing within the open block: positions are never reused.
            return match self.pending.iter().position(|(k, _)| *k == key) {
                Some(i) => Ok(self.pending.remove(i)),
                None => Err(Error::Store(format!("the ids table names key {key}, which the open block lacks"))),
            };
        }
        let mut kept = self.block(txn, block)?;
        let Some(at) = kept.iter().position(|(k, _)| *k == key) else {
            return Err(Error::Store(format!("the ids table names key {key}, which its block lacks")));
        };
        let old = kept.remove(at);
        let mut blocks = txn.open_table(BLOCKS)?;
        if kept.is_empty() {
            blocks.remove(block)?;
        } else {
            let enc = encode_block(&kept)?;
            blocks.insert(block, enc.as_slice())?;
        }
        self.read = Some((block, kept));
        Ok(old)
    }

    /// The record of `key`, read without changing anything.
    fn get(&mut self, txn: &WriteTransaction, key: u64) -> Result<Option<Record>> {
        if self.pending_block == Some(block_of(key)) {
            return Ok(self.pending.iter().find(|(k, _)| *k == key).map(|(_, r)| r.clone()));
        }
        let entries = self.block(txn, block_of(key))?;
        let found = entries.iter().find(|(k, _)| *k == key).map(|(_, r)| r.clone());
        self.read = Some((block_of(key), entries));
        Ok(found)
    }

    /// The records of a stored block (not the open one), from the last one
    /// read when it is that one.
    fn block(&mut self, txn: &WriteTransaction, block: u64) -> Result<Vec<(u64, Record)>> {
        if let Some((b, entries)) = self.read.take() {
            if b == block {
                return Ok(entries);
            }
        }
        let blocks = txn.open_table(BLOCKS)?;
        let decoded = match blocks.get(block)? {
            Some(bytes) => decode_block(bytes.value()),
            None => Err(Error::Store(format!("block {block} is named by the ids table and gone"))),
        };
        decoded
    }

    fn flush(&mut self, txn: &WriteTransaction) -> Result<()> {
        if let Some(block) = self.pending_block.take() {
            if !self.pending.is_empty() {
                let enc = encode_block(&self.pending)?;
                txn.open_table(BLOCKS)?.insert(block, enc.as_slice())?;
            }
            self.pending.clear();
            self.pending_bytes = 0;
            self.next_pos = 0;
        }
        Ok(())
    }
}

/// Receives the pairs of a table, as raw bytes.
pub(crate) type PairSink<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;
/// Yields the pairs of a table, as raw bytes, until `None`.
pub(crate) type PairSource<'a> = dyn FnMut() -> Result<Option<(Vec<u8>, Vec<u8>)>> + 'a;

/// The tables of the store, for raw export and import. A pair is exported
/// as bytes: a `u64` as 8 little-endian bytes, a `&str` as its UTF-8, a
/// `&[u8]` as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawTable {
    Blocks,
    Ids,
    Meta,
    Collections,
    Records,
}

impl RawTable {
    pub const ALL: [RawTable; 5] =
        [RawTable::Blocks, RawTable::Ids, RawTable::Meta, RawTable::Collections, RawTable::Records];

    pub fn name(self) -> &'static str {
        match self {
            RawTable::Blocks => "blocks",
            RawTable::Ids => "ids",
            RawTable::Meta => "meta",
            RawTable::Collections => "collections",
            RawTable::Records => "records",
        }
    }
}

fn u64_bytes(bytes: &[u8], what: &str) -> Result<u64> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| Error::Store(format!("{what}: {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_le_bytes(b))
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| Error::Store(format!("{what}: not UTF-8")))
}

#[derive(Clone)]
pub(crate) struct StoreReader {
    db: Arc<Database>,
}

impl StoreReader {
    pub fn begin(&self) -> Result<StoreView> {
        Ok(StoreView { txn: self.db.begin_read()? })
    }
}

/// One committed state of the store, fixed for as long as the view lives
/// (redb MVCC): commits made meanwhile are not seen and are not held up.
pub(crate) struct StoreView {
    txn: ReadTransaction,
}

impl StoreView {
    /// The records of `keys` (sorted, without repeats), in key order; an
    /// error if one is missing. Each block is decoded once.
    pub fn records_of_keys(&self, keys: &[u64]) -> Result<Vec<(u64, Record)>> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let blocks = self.txn.open_table(BLOCKS)?;
        let mut out = Vec::with_capacity(keys.len());
        let mut read: Option<(u64, Vec<(u64, Record)>)> = None;
        for &k in keys {
            let block = block_of(k);
            if read.as_ref().is_none_or(|(b, _)| *b != block) {
                let entries = match blocks.get(block)? {
                    Some(bytes) => decode_block(bytes.value())?,
                    None => Vec::new(),
                };
                read = Some((block, entries));
            }
            let found = read.as_ref().and_then(|(_, e)| e.iter().find(|(key, _)| *key == k));
            match found {
                Some((_, r)) => out.push((k, r.clone())),
                None => return Err(Error::Store(format!("a layer names key {k}, which the store lacks"))),
            }
        }
        Ok(out)
    }

    /// Every record, in key order.
    pub fn for_each(&self, f: &mut dyn FnMut(u64, Record) -> Result<()>) -> Result<()> {
        for item in self.txn.open_table(BLOCKS)?.iter()? {
            let (_, bytes) = item?;
            for (key, record) in decode_block(bytes.value())? {
                f(key, record)?;
            }
        }
        Ok(())
    }

    pub fn generation(&self) -> Result<u64> {
        let t = self.txn.open_table(META)?;
        let v = t.get("generation")?.map_or(0, |v| v.value());
        Ok(v)
    }

    /// See [`HISTORY`]; 0 for a store made before histories existed.
    pub fn history(&self) -> Result<u64> {
        let t = self.txn.open_table(META)?;
        let v = t.get(HISTORY)?.map_or(0, |v| v.value());
        Ok(v)
    }

    /// Every collection and its schema (JSON), by name. A store restored
    /// from a snapshot made before collections existed has none.
    pub fn schemas(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let t = match self.txn.open_table(COLLECTIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The records of a collection in id order, as (id, JSON).
    pub fn for_each_record(&self, collection: &str, f: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
        let t = match self.txn.open_table(RECORDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let (a, b) = record_range(collection);
        let skip = a.len();
        for item in t.range(a.as_slice()..b.as_slice())? {
            let (k, v) = item?;
            f(utf8(&k.value()[skip..], "a record id")?, v.value())?;
        }
        Ok(())
    }

    /// Records in this state.
    pub fn count(&self) -> Result<u64> {
        Ok(self.txn.open_table(IDS)?.len()?)
    }

    /// Every pair of `table` in key order, as raw bytes.
    pub fn export(&self, table: RawTable, f: &mut PairSink<'_>) -> Result<()> {
        match table {
            RawTable::Blocks => {
                for item in self.txn.open_table(BLOCKS)?.iter()? {
                    let (k, v) = item?;
                    f(&k.value().to_le_bytes(), v.value())?;
                }
            }
            RawTable::Ids => {
                for item in self.txn.open_table(IDS)?.iter()? {
                    let (k, v) = item?;
                    f(k.value().as_bytes(), &v.value().to_le_bytes())?;
                }
            }
            RawTable::Meta => {
                for item in self.txn.open_table(META)?.iter()? {
                    let (k, v) = item?;
                    f(k.value().as_bytes(), &v.value().to_le_bytes())?;
                }
            }
            RawTable::Collections => {
                for (k, v) in self.schemas()? {
                    f(k.as_bytes(), &v)?;
                }
            }
            RawTable::Records => {
                let t = match self.txn.open_table(RECORDS) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                for item in t.iter()? {
                    let (k, v) = item?;
                    f(k.value(), v.value())?;
                }
            }
        }
        Ok(())
    }
}

/// A new store being filled from raw pairs.
pub(crate) struct RawImport {
    // Declared first so that it is dropped (aborted) before its database.
    txn: WriteTransaction,
    store: Store,
}

impl RawImport {
    /// Inserts the pairs `next` yields until it yields `None`; returns how
    /// many. A pair that does not decode as the table's types is refused.
    pub fn import(&mut self, table: RawTable, next: &mut PairSource<'_>) -> Result<u64> {
        let what = table.name();
        let mut n = 0;
        match table {
            RawTable::Blocks => {
                let mut t = self.txn.open_table(BLOCKS)?;
                while let Some((k, v)) = next()? {
                    t.insert(u64_bytes(&k, what)?, v.as_slice())?;
                    n += 1;
                }
            }
            RawTable::Collections => {
                let mut t = self.txn.open_table(COLLECTIONS)?;
                while let Some((k, v)) = next()? {
                    t.insert(utf8(&k, what)?, v.as_slice())?;
                    n += 1;
                }
            }
            RawTable::Records => {
                let mut t = self.txn.open_table(RECORDS)?;
                while let Some((k, v)) = next()? {
                    let (name, id) = k.split_at(
                        k.iter()
                            .position(|b| *b == 0)
                            .ok_or_else(|| Error::Store(format!("{what}: a key with no collection")))?,
                    );
                    utf8(name, what)?;
                    utf8(&id[1..], what)?;
                    t.insert(k.as_slice(), v.as_slice())?;
                    n += 1;
                }
            }
            RawTable::Ids | RawTable::Meta => {
                let mut t = self.txn.open_table(if table == RawTable::Ids { IDS } else { META })?;
                while let Some((k, v)) = next()? {
                    t.insert(utf8(&k, what)?, u64_bytes(&v, what)?)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Makes the imported pairs durable and returns the open store.
    pub fn commit(self) -> Result<Store> {
        self.txn.commit()?;
        Ok(self.store)
    }
}

fn approx_size(r: &Record) -> usize {
    64 + r.id.len() + r.fields.iter().map(|f| f.name.len() + 24).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Field, Point, Value};

    fn rec(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            kind: "street".into(),
            parent: None,
            point: None,
            fields: vec![Field { name: "name".into(), value: Value::Str(name.into()) }],
        }
    }

    fn all(store: &Store) -> Vec<(String, String)> {
        let mut t = store.begin().unwrap();
        let mut v = Vec::new();
        t.for_each(|_, r| {
            v.push((r.id.clone(), r.get("name").and_then(|n| n.first_str()).unwrap_or("").to_owned()));
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn put_replace_delete_commit_and_abort() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let mut t = store.begin().unwrap();
        t.put(rec("a", "A")).unwrap();
        t.put(rec("b", "B")).unwrap();
        t.commit(1).unwrap();
        let mut t = store.begin().unwrap();
        let (_, old) = t.put(rec("a", "A2")).unwrap();
        assert!(old.is_some());
        assert!(t.delete("b").unwrap().is_some());
        assert!(t.delete("zzz").unwrap().is_none());
        drop(t); // not committed: nothing changes
        assert_eq!(all(&store), vec![("a".into(), "A".into()), ("b".into(), "B".into())]);
        let mut t = store.begin().unwrap();
        t.put(rec("a", "A2")).unwrap();
        t.delete("b").unwrap();
        t.commit(2).unwrap();
        assert_eq!(all(&store), vec![("a".into(), "A2".into())]);
        assert_eq!(store.generation().unwrap(), 2);
    }

    #[test]
    fn an_id_repeated_in_one_transaction_keeps_keys_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let mut t = store.begin().unwrap();
        let (k1, _) = t.put(rec("a", "A")).unwrap();
        let (k2, _) = t.put(rec("b", "B")).unwrap();
        let (k3, old) = t.put(rec("a", "A2")).unwrap();
        assert_eq!(old.map(|(k, r)| (k, r.id)), Some((k1, "a".to_owned())));
        assert!(k1 < k2 && k2 < k3);
        t.commit(1).unwrap();
        assert_eq!(all(&store), vec![("b".into(), "B".into()), ("a".into(), "A2".into())]);
    }

    #[test]
    fn put_each_replaces_in_the_open_block_and_in_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let mut t = store.begin().unwrap();
        let (stored, _) = t.put(rec("a", "A")).unwrap();
        t.commit(1).unwrap();
        let mut t = store.begin().unwrap();
        assert_eq!(t.keys_of(["a", "b", "c"]).unwrap(), vec![Some(stored), None, None]);
        let (b1, _) = t.put(rec("b", "B")).unwrap();
        let mut got = Vec::new();
        // "a" is in a stored block, "b" in the open one, "c" is new and then
        // replaced within the same call.
        let records = [rec("a", "A2"), rec("b", "B2"), rec("c", "C"), rec("c", "C2")];
        t.put_each(records, |key, old| {
            got.push((key, old.map(|(k, r)| (k, r.get("name").and_then(|n| n.first_str()).unwrap_or("").to_owned()))));
            Ok(())
        })
        .unwrap();
        let keys: Vec<u64> = got.iter().map(|(k, _)| *k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]) && keys[0] > b1, "{keys:?}");
        let olds: Vec<_> = got.into_iter().map(|(_, o)| o).collect();
        assert_eq!(olds, vec![Some((stored, "A".into())), Some((b1, "B".into())), None, Some((keys[2], "C".into()))]);
        assert_eq!(t.keys_of(["a", "b", "c"]).unwrap(), vec![Some(keys[0]), Some(keys[1]), Some(keys[3])]);
        assert_eq!(t.get_key(keys[1]).unwrap().map(|r| r.id), Some("b".to_owned()));
        assert!(t.get_key(b1).unwrap().is_none());
        t.commit(2).unwrap();
        assert_eq!(all(&store), vec![("a".into(), "A2".into()), ("b".into(), "B2".into()), ("c".into(), "C2".into())]);
    }

    /// Records with every kind of value, ids that share prefixes up to
    /// the middle of a character, and numbers that have no short decimal
    /// form.
    fn awkward_records() -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        let nums = [0.0, -0.0, 45.761_934, -1.5e-300, 1e300, f64::NAN, f64::INFINITY, 0.1 + 0.2, 123_456_789.123];
        for (i, n) in nums.iter().enumerate() {
            let id = if i % 2 == 0 { format!("69123_é{i}") } else { format!("69123_è{i}") };
            out.push((
                (7 << 16) | (i as u64 * 3),
                Record {
                    id: id.clone(),
                    kind: if i % 3 == 0 { "street".into() } else { "housenumber".into() },
                    parent: (i % 3 != 0).then(|| id[..id.len() - 1].to_owned() + "p"),
                    point: Some(Point { lat: *n, lon: -n }),
                    fields: vec![
                        Field { name: "name".into(), value: Value::Str(format!("Rue {i}")) },
                        Field { name: "city".into(), value: Value::Str("Lyon".into()) },
                        Field { name: "n".into(), value: Value::Num(*n) },
                        Field { name: "i".into(), value: Value::Int(i64::MIN + i as i64) },
                        Field {
                            name: "alt".into(),
                            value: Value::List(vec!["Lyon".into(), String::new(), "Rue 1".into()]),
                        },
                        Field { name: "empty".into(), value: Value::List(Vec::new()) },
                        Field { name: "b".into(), value: Value::Bool(i % 2 == 0) },
                    ],
                },
            ));
        }
        out.push((
            (8 << 16) | 1,
            Record { id: String::new(), kind: String::new(), parent: None, point: None, fields: vec![] },
        ));
        out
    }

    /// Bit-exact: `PartialEq` would call NaN unequal and -0.0 equal to 0.0.
    fn same(a: &[(u64, Record)], b: &[(u64, Record)]) -> bool {
        format!("{a:?}") == format!("{b:?}")
            && a.iter().zip(b).all(|((_, x), (_, y))| {
                let bits = |r: &Record| {
                    let mut v: Vec<u64> = r.point.map(|p| vec![p.lat.to_bits(), p.lon.to_bits()]).unwrap_or_default();
                    v.extend(r.fields.iter().filter_map(|f| match f.value {
                        Value::Num(n) => Some(n.to_bits()),
                        _ => None,
                    }));
                    v
                };
                bits(x) == bits(y)
            })
    }

    #[test]
    fn blocks_read_back_exactly() {
        let records = awkward_records();
        let block = encode_block(&records).unwrap();
        assert!(block.starts_with(&CODED));
        assert!(same(&decode_block(&block).unwrap(), &records));
    }

    /// Blocks written before the records were coded (rkyv archives) still
    /// read, through the store as well as alone.
    #[test]
    fn blocks_of_the_first_format_still_read() {
        let records = awkward_records();
        let raw = rkyv::to_bytes::<rkyv::rancor::Error>(&records).unwrap();
        let old = lz4_flex::compress_prepend_size(&raw);
        assert!(same(&decode_block(&old).unwrap(), &records));

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let mut t = store.begin().unwrap();
        t.put(rec("a", "A")).unwrap();
        t.commit(1).unwrap();
        // The block as the previous version wrote it.
        let mut old_records = Vec::new();
        store
            .begin()
            .unwrap()
            .for_each(|k, r| {
                old_records.push((k, r));
                Ok(())
            })
            .unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let raw = rkyv::to_bytes::<rkyv::rancor::Error>(&old_records).unwrap();
            let mut blocks = txn.open_table(BLOCKS).unwrap();
            blocks.insert(block_of(old_records[0].0), lz4_flex::compress_prepend_size(&raw).as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert_eq!(all(&store), vec![("a".into(), "A".into())]);
        let mut t = store.begin().unwrap();
        t.put(rec("b", "B")).unwrap();
        t.put(rec("a", "A2")).unwrap();
        t.commit(2).unwrap();
        assert_eq!(all(&store), vec![("b".into(), "B".into()), ("a".into(), "A2".into())]);
    }

    /// Damage is an error, never a panic or a wrong record.
    #[test]
    fn damaged_blocks_are_refused() {
        let raw = codec::pack(&awkward_records()).unwrap();
        let tail: [u8; 4] = raw[raw.len() - 4..].try_into().unwrap();
        let tables = u32::from_le_bytes(tail) as usize;
        for at in 0..raw.len() {
            let mut bad = raw.clone();
            bad[at] ^= 0x5a;
            let mut block = CODED.to_vec();
            block.extend_from_slice(&lz4_flex::compress_prepend_size(&bad));
            // Past the tables (whose archive has padding), a flipped byte
            // either fails or reads as other records, never as the same.
            if let Ok(decoded) = decode_block(&block) {
                assert!(at < tables || !same(&decoded, &awkward_records()), "byte {at}");
            }
        }
        for cut in [0, 3, 4, 5, 20] {
            let block = encode_block(&awkward_records()).unwrap();
            assert!(decode_block(&block[..block.len().min(cut)]).is_err());
        }
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _s = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(Error::Locked(_))));
    }
}
