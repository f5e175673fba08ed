//! Snapshot files: one committed generation of a database in one stream,
//! for backups, restores and read replicas.
//!
//! ```text
//! header   "CAIRNSNP"  u32 format version  u32 manifest length  manifest (JSON)
//!          u32 CRC-32 of the header bytes before it
//! body     each manifest entry in manifest order, as chunks of at most 1 MiB:
//!          u8 method (0 stored, 1 lz4 block)  u32 raw length  u32 stored length  stored bytes
//! trailer  "CAIRNEND"  u32 CRC-32 of every byte of the stream before it
//! ```
//!
//! Integers are little-endian. An entry is `store/<table>`, one redb table
//! (`blocks`, `ids`, `meta`) as pairs of `u32 length, key, u32 length,
//! value`. The generation's files (full-text index, documents, geo index)
//! are not shipped: the restore builds them from the records, so that no
//! file made elsewhere is ever handed to the index library, which trusts
//! its own files (format version 1 shipped them, and a crafted one could
//! make tantivy panic or ask for 40 GB). The manifest gives each entry's
//! length and CRC-32 uncompressed. The format version comes second so that a
//! reader refuses a format it does not know before it reads anything else,
//! and the manifest comes first so that `read_manifest` reads only the head.
//! Per-entry checksums name the damaged entry as soon as it is read; the
//! trailer's checksum also covers the chunk framing, so a flipped byte
//! anywhere is caught, and a stream that stops early has no trailer.

use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profiles::{Active, Profile};
use crate::store::{RawTable, Store, StoreView};

/// The format this build writes. Version 3 is version 2 with store blocks
/// that may be coded ([`crate::store`]): a build that reads only version 2
/// refuses it by its number instead of calling its blocks damaged.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this build reads: version 2's blocks are all of the
/// first format, which the store still reads.
pub const OLDEST_READ: u32 = 2;

const MAGIC: &[u8; 8] = b"CAIRNSNP";
const END: &[u8; 8] = b"CAIRNEND";
const CHUNK: usize = 1 << 20;
const METHOD_STORED: u8 = 0;
const METHOD_LZ4: u8 = 1;
// Bounds on lengths read from the stream, so that a damaged or hostile
// file cannot make the reader allocate without limit before a checksum
// fails.
const MAX_MANIFEST: usize = 16 << 20;
const MAX_KEY: usize = 1 << 20;
const MAX_VALUE: usize = 256 << 20;
const STORE_PREFIX: &str = "store/";
const REQUIRED: [&str; 3] = ["store/blocks", "store/ids", "store/meta"];

/// What a database made of its records: a snapshot is only installed by a
/// build that indexes them the same way (the tantivy schema depends on the
/// filters).
pub fn profile_id() -> String {
    format!("address-1:{}", Active::FILTERS.join(","))
}

/// A history id as manifests and the HTTP API write it.
pub fn history_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// The head of a snapshot: what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub generation: u64,
    /// Records in the generation.
    pub documents: u64,
    /// See [`profile_id`].
    pub profile: String,
    /// The history the generation belongs to, as 16 hex digits (see
    /// [`crate::Database::history`]); absent in snapshots made before
    /// histories existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Every entry, in the order of the body.
    pub files: Vec<FileEntry>,
}

/// One entry of a snapshot: a table of the store (`store/...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// Length uncompressed.
    pub len: u64,
    /// CRC-32 (IEEE) of the uncompressed bytes.
    pub crc32: u32,
}

impl Manifest {
    /// Bytes of all entries, uncompressed.
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    fn check(&self) -> Result<()> {
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(Error::snapshot(format!(
                "the manifest says format version {}, which this build does not read",
                self.format_version
            )));
        }
        if self.generation == 0 {
            return Err(Error::snapshot("the manifest names generation 0"));
        }
        let mut seen = HashSet::new();
        for f in &self.files {
            target(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(Error::snapshot(format!("{} appears twice in the manifest", f.path)));
            }
        }
        if let Some(missing) = REQUIRED.iter().find(|p| !seen.contains(*p)) {
            return Err(Error::snapshot(format!("the manifest has no {missing}")));
        }
        Ok(())
    }
}

/// The table an entry fills.
fn target(path: &str) -> Result<RawTable> {
    let refuse = |why: &str| Error::snapshot(format!("refusing the path {path:?}: {why}"));
    let name = path.strip_prefix(STORE_PREFIX).ok_or_else(|| refuse("not a table of the store (store/...)"))?;
    RawTable::ALL.into_iter().find(|t| t.name() == name).ok_or_else(|| refuse("no such table"))
}

// ---------------------------------------------------------------- writing

/// Length and CRC-32 of what is written to it.
#[derive(Default)]
struct Digest {
    len: u64,
    hasher: crc32fast::Hasher,
}

impl Write for Digest {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The output stream, hashed whole for the trailer.
struct CrcWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
}

impl CrcWriter<'_> {
    fn put(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.inner.write_all(data).map_err(write_err)
    }

    fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

fn write_err(e: io::Error) -> Error {
    Error::snapshot(format!("writing the snapshot: {e}"))
}

/// Cuts one entry's bytes into chunks, compressed when that pays.
struct ChunkWriter<'a, 'b> {
    out: &'a mut CrcWriter<'b>,
    buf: Vec<u8>,
    comp: Vec<u8>,
    digest: Digest,
}

impl<'a, 'b> ChunkWriter<'a, 'b> {
    fn new(out: &'a mut CrcWriter<'b>) -> Self {
        ChunkWriter { out, buf: Vec::with_capacity(CHUNK), comp: Vec::new(), digest: Digest::default() }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.comp.resize(lz4_flex::block::get_maximum_output_size(self.buf.len()), 0);
        let c = lz4_flex::block::compress_into(&self.buf, &mut self.comp).map_err(io::Error::other)?;
        // Stored as is unless lz4 saves an eighth: tantivy postings and the
        // store's blocks are compressed already, and decompressing for
        // nothing would only slow restores down.
        let (method, body) = if c < self.buf.len() - self.buf.len() / 8 {
            (METHOD_LZ4, &self.comp[..c])
        } else {
            (METHOD_STORED, &self.buf[..])
        };
        let mut head = [0u8; 9];
        head[0] = method;
        head[1..5].copy_from_slice(&(self.buf.len() as u32).to_le_bytes());
        head[5..9].copy_from_slice(&(body.len() as u32).to_le_bytes());
        self.out.hasher.update(&head);
        self.out.hasher.update(body);
        self.out.inner.write_all(&head)?;
        self.out.inner.write_all(body)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<Digest> {
        self.emit().map_err(write_err)?;
        Ok(self.digest)
    }
}

impl Write for ChunkWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.digest.write_all(data)?;
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                self.emit()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn export_table(store: &StoreView, table: RawTable, out: &mut dyn Write) -> Result<()> {
    store.export(table, &mut |k, v| {
        out.write_all(&(k.len() as u32).to_le_bytes()).map_err(write_err)?;
        out.write_all(k).map_err(write_err)?;
        out.write_all(&(v.len() as u32).to_le_bytes()).map_err(write_err)?;
        out.write_all(v).map_err(write_err)
    })
}

/// Writes a snapshot of the committed state a read view of the store sees.
pub(crate) fn write(out: &mut dyn Write, store: &StoreView) -> Result<Manifest> {
    let generation = store.generation()?;
    if generation == 0 {
        return Err(Error::snapshot("nothing has been committed yet"));
    }
    let documents = store.count()?;
    // The manifest goes first and holds the checksums, so everything is
    // read twice: once for them, once for the body. The second pass reads
    // from the page cache and the same MVCC view, and is checked against
    // the first.
    let mut entries = Vec::with_capacity(RawTable::ALL.len());
    for t in RawTable::ALL {
        let mut d = Digest::default();
        export_table(store, t, &mut d)?;
        entries.push(FileEntry { path: format!("{STORE_PREFIX}{}", t.name()), len: d.len, crc32: d.hasher.finalize() });
    }
    let history = Some(store.history()?).filter(|h| *h != 0).map(history_hex);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        generation,
        documents,
        profile: profile_id(),
        history,
        files: entries,
    };

    let json = serde_json::to_vec(&manifest).map_err(|e| Error::snapshot(format!("encoding the manifest: {e}")))?;
    let mut w = CrcWriter { inner: out, hasher: crc32fast::Hasher::new() };
    w.put(MAGIC)?;
    w.put(&FORMAT_VERSION.to_le_bytes())?;
    w.put(&(json.len() as u32).to_le_bytes())?;
    w.put(&json)?;
    let crc = w.crc();
    w.put(&crc.to_le_bytes())?;

    let mut entries = manifest.files.iter();
    for t in RawTable::ALL {
        let mut c = ChunkWriter::new(&mut w);
        export_table(store, t, &mut c)?;
        same_as_first_pass(entries.next(), c.finish()?)?;
    }
    w.put(END)?;
    let crc = w.crc();
    w.put(&crc.to_le_bytes())?;
    w.inner.flush().map_err(write_err)?;
    Ok(manifest)
}

fn same_as_first_pass(entry: Option<&FileEntry>, d: Digest) -> Result<()> {
    match entry {
        Some(e) if e.len == d.len && e.crc32 == d.hasher.clone().finalize() => Ok(()),
        Some(e) => Err(Error::snapshot(format!("{} changed while the snapshot was being written", e.path))),
        None => Err(Error::snapshot("more entries written than listed")),
    }
}

// ---------------------------------------------------------------- reading

/// The input stream, hashed whole for the trailer.
struct CrcReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R> CrcReader<R> {
    fn new(inner: R) -> Self {
        CrcReader { inner, hasher: crc32fast::Hasher::new() }
    }

    fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

/// Maps an error reading the stream to a refusal saying where it happened.
fn read_err(e: io::Error, what: &str) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::snapshot(format!("the file is truncated (it ends in {what})")),
        io::ErrorKind::InvalidData => Error::snapshot(format!("{what}: {e}")),
        _ => Error::snapshot(format!("reading {what}: {e}")),
    }
}

fn read_u32(r: &mut dyn Read, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(|e| read_err(e, what))?;
    Ok(u32::from_le_bytes(b))
}

fn read_header<R: Read>(r: &mut CrcReader<R>) -> Result<Manifest> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| read_err(e, "the header"))?;
    if &magic != MAGIC {
        return Err(Error::snapshot("not a cairn snapshot (wrong magic bytes)"));
    }
    let version = read_u32(r, "the header")?;
    if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
        return Err(Error::snapshot(format!(
            "format version {version} is not supported (this build reads versions {OLDEST_READ} to {FORMAT_VERSION})"
        )));
    }
    let len = read_u32(r, "the header")? as usize;
    if len > MAX_MANIFEST {
        return Err(Error::snapshot(format!("a manifest of {len} bytes is implausible: the header is corrupt")));
    }
    let mut json = vec![0u8; len];
    r.read_exact(&mut json).map_err(|e| read_err(e, "the manifest"))?;
    let crc = r.crc();
    if read_u32(r, "the header")? != crc {
        return Err(Error::snapshot("the header is corrupt (checksum mismatch)"));
    }
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| Error::snapshot(format!("the manifest is unreadable: {e}")))?;
    if manifest.format_version != version {
        return Err(Error::snapshot(format!(
            "the manifest says format version {}, the header {version}",
            manifest.format_version
        )));
    }
    manifest.check()?;
    Ok(manifest)
}

/// Reads the header and manifest of a snapshot and nothing more; the
/// manifest's own checksum is verified, the body is not.
pub fn read_manifest(input: &mut dyn Read) -> Result<Manifest> {
    read_header(&mut CrcReader::new(input))
}

/// The chunks of one entry, read back as its uncompressed bytes.
struct EntryReader<'a, R> {
    input: &'a mut CrcReader<R>,
    entry: &'a FileEntry,
    remaining: u64,
    buf: Vec<u8>,
    pos: usize,
    comp: Vec<u8>,
    hasher: crc32fast::Hasher,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<'a, R: Read> EntryReader<'a, R> {
    fn new(input: &'a mut CrcReader<R>, entry: &'a FileEntry) -> Self {
        EntryReader {
            input,
            entry,
            remaining: entry.len,
            buf: Vec::new(),
            pos: 0,
            comp: Vec::new(),
            hasher: crc32fast::Hasher::new(),
        }
    }

    fn at_end(&self) -> bool {
        self.remaining == 0 && self.pos == self.buf.len()
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut head = [0u8; 9];
        self.input.read_exact(&mut head)?;
        let raw = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let stored = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        if raw == 0 || raw > CHUNK || raw as u64 > self.remaining {
            return Err(invalid(format!("a chunk of {raw} bytes where {} remain", self.remaining)));
        }
        self.buf.resize(raw, 0);
        match head[0] {
            METHOD_STORED if stored == raw => self.input.read_exact(&mut self.buf)?,
            METHOD_LZ4 if stored <= lz4_flex::block::get_maximum_output_size(CHUNK) => {
                self.comp.resize(stored, 0);
                self.input.read_exact(&mut self.comp)?;
                let n = lz4_flex::block::decompress_into(&self.comp, &mut self.buf)
                    .map_err(|e| invalid(format!("a chunk does not decompress: {e}")))?;
                if n != raw {
                    return Err(invalid(format!("a chunk decompresses to {n} bytes, not {raw}")));
                }
            }
            m => return Err(invalid(format!("a chunk with method {m} and {stored} stored bytes"))),
        }
        self.hasher.update(&self.buf);
        self.remaining -= raw as u64;
        self.pos = 0;
        Ok(())
    }

    fn read_bytes(&mut self, max: usize) -> Result<Vec<u8>> {
        let entry: &'a FileEntry = self.entry;
        let what = entry.path.as_str();
        let len = read_u32(self, what)? as usize;
        if len > max {
            return Err(Error::snapshot(format!("{what}: a field of {len} bytes")));
        }
        let mut v = vec![0u8; len];
        self.read_exact(&mut v).map_err(|e| read_err(e, what))?;
        Ok(v)
    }

    fn next_pair(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.at_end() {
            return Ok(None);
        }
        let k = self.read_bytes(MAX_KEY)?;
        let v = self.read_bytes(MAX_VALUE)?;
        Ok(Some((k, v)))
    }

    /// Checks that the entry was read whole and matches its checksum.
    fn finish(self) -> Result<()> {
        if !self.at_end() {
            return Err(Error::snapshot(format!("{}: not read to its end", self.entry.path)));
        }
        if self.hasher.finalize() != self.entry.crc32 {
            return Err(Error::snapshot(format!("{}: checksum mismatch", self.entry.path)));
        }
        Ok(())
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads a whole snapshot into a new redb file at `store_path`, verifying
/// every checksum and the trailer; committed on return. On error the caller
/// removes the file.
pub(crate) fn stage(input: &mut dyn Read, store_path: &Path) -> Result<(Manifest, Store)> {
    let mut r = CrcReader::new(BufReader::with_capacity(256 * 1024, input));
    let manifest = read_header(&mut r)?;
    if manifest.profile != profile_id() {
        return Err(Error::snapshot(format!(
            "made with profile {:?}; this build uses {:?}",
            manifest.profile,
            profile_id()
        )));
    }
    let mut import = Store::create_for_import(store_path)?;
    for entry in &manifest.files {
        let mut er = EntryReader::new(&mut r, entry);
        import.import(target(&entry.path)?, &mut || er.next_pair())?;
        er.finish()?;
    }
    let mut end = [0u8; 8];
    r.read_exact(&mut end).map_err(|e| read_err(e, "the trailer"))?;
    if &end != END {
        return Err(Error::snapshot("the trailer is missing or damaged"));
    }
    let crc = r.crc();
    if read_u32(&mut r, "the trailer")? != crc {
        return Err(Error::snapshot("checksum mismatch over the whole file"));
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra).map_err(|e| read_err(e, "the end"))? != 0 {
        return Err(Error::snapshot("bytes follow the trailer"));
    }
    let store = import.commit()?;
    Ok((manifest, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_tables_of_the_store() {
        for ok in ["store/blocks", "store/ids", "store/meta"] {
            assert!(target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "gen/../x",
            "gen/text/../../x",
            "../x",
            "/abs",
            "gen//abs",
            "gen/",
            "gen/./docs",
            "gen/a\\..\\b",
            "gen/docs",
            "gen/text/meta.json",
            "store/other",
            "store/../gen",
            "docs",
        ] {
            match target(bad) {
                Err(Error::Snapshot { reason }) => assert!(reason.contains("refusing the path"), "{bad}: {reason}"),
                _ => panic!("{bad} accepted"),
            }
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            generation: 3,
            documents: 0,
            profile: profile_id(),
            history: None,
            files: REQUIRED.iter().map(|p| FileEntry { path: (*p).into(), len: 0, crc32: 0 }).collect(),
        }
    }

    #[test]
    fn the_manifest_needs_every_part_once() {
        assert!(manifest().check().is_ok());
        let mut m = manifest();
        m.files.retain(|f| f.path != "store/ids");
        assert!(m.check().is_err());
        let mut m = manifest();
        m.files.push(m.files[0].clone());
        assert!(m.check().is_err());
        let mut m = manifest();
        m.generation = 0;
        assert!(m.check().is_err());
        let mut m = manifest();
        m.format_version = OLDEST_READ;
        assert!(m.check().is_ok());
        m.format_version = OLDEST_READ - 1;
        assert!(m.check().is_err());
        m.format_version = FORMAT_VERSION + 1;
        assert!(m.check().is_err());
    }

    /// A chunk stream of one entry round-trips, compressible or not, across
    /// chunk boundaries, and a changed byte of it is caught.
    #[test]
    fn chunks_round_trip_and_catch_damage() {
        let mut data: Vec<u8> = (0..CHUNK * 2 + 123).map(|i| (i / 7) as u8).collect();
        // Incompressible tail: stored as is.
        let mut x = 0x1234_5678u32;
        data.extend((0..CHUNK / 2).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }));
        let mut out = Vec::new();
        let digest = {
            let mut w = CrcWriter { inner: &mut out, hasher: crc32fast::Hasher::new() };
            let mut c = ChunkWriter::new(&mut w);
            c.write_all(&data).unwrap();
            c.finish().unwrap()
        };
        assert!(out.len() < data.len(), "the compressible part is compressed");
        assert!(out.contains(&METHOD_STORED), "has a stored chunk");
        let entry = FileEntry { path: "store/blocks".into(), len: digest.len, crc32: digest.hasher.finalize() };
        let read = |bytes: &[u8]| -> Result<Vec<u8>> {
            let mut r = CrcReader::new(bytes);
            let mut er = EntryReader::new(&mut r, &entry);
            let mut v = Vec::new();
            er.read_to_end(&mut v).map_err(|e| read_err(e, "test"))?;
            er.finish()?;
            Ok(v)
        };
        assert_eq!(read(&out).unwrap(), data);
        for pos in [0, 1, 5, 9, 100, out.len() / 2, out.len() - 1] {
            let mut bad = out.clone();
            bad[pos] ^= 0x40;
            assert!(read(&bad).is_err(), "flip at {pos} not caught");
        }
        assert!(read(&out[..out.len() - 1]).is_err());
    }
}
