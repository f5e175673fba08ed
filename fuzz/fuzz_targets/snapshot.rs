//! The snapshot reader: `snapshot::read_manifest` and
//! `Database::restore_snapshot` of arbitrary bytes into a read-write
//! database of this process.
//!
//! The first byte picks how the rest is used:
//! - bit 0 clear: the bytes as they are (what a damaged file gives);
//! - bit 0 set: the bytes with every checksum made right by this harness
//!   (the header's, each entry's in the manifest, the trailer's), so that the
//!   fuzzer gets past them to the chunk framing, the entry paths, the store
//!   tables and the records (what a hostile file gives);
//! - bit 1 set: the input is read a few bytes at a time (bits 2..7 + 1).
//!
//! A refused restore must leave the database answering exactly as before,
//! with no staging left in its directory, and reopening it must give the
//! same answers. A restore that is accepted must answer queries and survive
//! a reopen; the original snapshot is then restored so that every input
//! starts from the same state.
//!
//! Format version 2 ships records only: the restore builds the index
//! files itself, so the fuzzer reaches the chunk framing, the entry names,
//! the store's tables and their consistency checks, and the records.
//! Any panic is a crash.
//!
//! `CAIRN_FUZZ_DUMP_INPUT=FILE` writes the bytes given to the reader (after
//! the checksums are fixed) to FILE, to make a regression test of an input.
#![no_main]

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cairn::snapshot::read_manifest;
use cairn::{Database, Manifest};
use cairn_fuzz::{fixture_db, probe, process_dir, try_probe};
use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8; 8] = b"CAIRNSNP";
const END: &[u8; 8] = b"CAIRNEND";

struct State {
    db: Option<Database>,
    dir: PathBuf,
    /// `probe` of the fixture database.
    baseline: String,
    /// A real snapshot of the fixture database.
    original: Vec<u8>,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = process_dir("cairn-fuzz-snapshot-");
        let db = fixture_db(&dir);
        let mut original = Vec::new();
        db.create_snapshot(&mut original).expect("snapshot of the fixture");
        // `CAIRN_FUZZ_WRITE_SNAPSHOT=FILE` writes the seed of the corpus.
        if let Ok(path) = std::env::var("CAIRN_FUZZ_WRITE_SNAPSHOT") {
            db.create_snapshot_file(&path).expect("write the snapshot file");
        }
        let baseline = probe(&db);
        Mutex::new(State { db: Some(db), dir: dir.join("db"), baseline, original })
    })
}

/// A reader that gives at most `step` bytes at a time.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Makes every checksum of `data` right where its structure can be read:
/// entry checksums (and nothing else) in the manifest, the header's, and
/// the trailer's when the input ends with one.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if data.len() < 16 || &data[..8] != MAGIC {
        return out;
    }
    let len = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let Some(body_at) = 16usize.checked_add(len).and_then(|n| n.checked_add(4)).filter(|n| *n <= data.len()) else {
        return out;
    };
    let mut json = data[16..16 + len].to_vec();
    if let Ok(mut m) = serde_json::from_slice::<Manifest>(&json) {
        entry_checksums(&mut m, &data[body_at..]);
        json = serde_json::to_vec(&m).unwrap();
    }
    out.clear();
    out.extend_from_slice(&data[..12]);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&crc(&out).to_le_bytes());
    let header = out.len();
    out.extend_from_slice(&data[body_at..]);
    let n = out.len();
    if n >= header + 12 && &out[n - 12..n - 4] == END {
        let c = crc(&out[..n - 4]);
        out[n - 4..].copy_from_slice(&c.to_le_bytes());
    }
    out
}

/// Reads the chunks of each entry as the reader would and sets the
/// entry's checksum to that of what they decode to; stops at the first
/// chunk that does not decode.
fn entry_checksums(m: &mut Manifest, mut body: &[u8]) {
    for e in &mut m.files {
        let mut h = crc32fast::Hasher::new();
        let mut remaining = e.len;
        while remaining > 0 {
            if body.len() < 9 {
                return;
            }
            let raw = u32::from_le_bytes(body[1..5].try_into().unwrap()) as usize;
            let stored = u32::from_le_bytes(body[5..9].try_into().unwrap()) as usize;
            if raw == 0 || raw > 1 << 20 || raw as u64 > remaining || body.len() - 9 < stored {
                return;
            }
            let bytes = &body[9..9 + stored];
            match body[0] {
                0 if stored == raw => h.update(bytes),
                1 => match lz4_flex::block::decompress(bytes, raw) {
                    Ok(d) if d.len() == raw => h.update(&d),
                    _ => return,
                },
                _ => return,
            }
            body = &body[9 + stored..];
            remaining -= raw as u64;
        }
        e.crc32 = h.finalize();
    }
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the database directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore") || n.contains("incoming") || n.ends_with(".tmp") || n.ends_with(".old"))
        .collect()
}

fn reopen(s: &mut State) -> &Database {
    drop(s.db.take());
    s.db = Some(Database::open(&s.dir).unwrap_or_else(|e| panic!("reopening after a restore: {e}")));
    s.db.as_ref().unwrap()
}

/// Back to the fixture for the next input.
fn restore_original(s: &mut State) {
    let original = std::mem::take(&mut s.original);
    let db = s.db.as_ref().unwrap();
    db.restore_snapshot(&mut &original[..]).expect("restoring the original snapshot");
    assert_eq!(probe(db), s.baseline);
    s.original = original;
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let input = if mode & 1 != 0 { fix_checksums(rest) } else { rest.to_vec() };
    if let Some(path) = std::env::var_os("CAIRN_FUZZ_DUMP_INPUT") {
        std::fs::write(path, &input).expect("CAIRN_FUZZ_DUMP_INPUT");
    }
    let step = if mode & 2 != 0 { usize::from(mode >> 2) + 1 } else { usize::MAX };
    let reader = || Trickle { data: &input, step };

    let manifest = read_manifest(&mut reader());
    let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
    let db = s.db.as_ref().unwrap();
    let restored = db.restore_snapshot(&mut reader());
    match restored {
        Err(e) => {
            let after = probe(db);
            assert_eq!(after, s.baseline, "a refused restore ({e}) changed the answers");
            let left = leftovers(&s.dir);
            assert!(left.is_empty(), "a refused restore ({e}) left {left:?}");
            if manifest.is_ok() {
                // Got past the header: what is on disk must still open.
                let after = probe(reopen(&mut s));
                assert_eq!(after, s.baseline, "after a refused restore ({e}) and a reopen");
            }
        }
        Ok(m) => {
            let read = manifest.expect("restore accepted a snapshot whose manifest read_manifest refused");
            assert_eq!(read, m, "read_manifest and restore_snapshot read different manifests");
            assert_eq!(db.generation(), m.generation);
            assert_eq!(db.len(), m.documents);
            let restored = try_probe(db).unwrap_or_else(|e| panic!("an accepted snapshot fails searches: {e}"));
            let after = probe(reopen(&mut s));
            assert_eq!(after, restored, "the restored database answers differently after a reopen");
            restore_original(&mut s);
        }
    }
});
