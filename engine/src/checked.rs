//! The layout that the documents and geo files share: a body written as a
//! stream, with a CRC-32 of every 4 KiB block of it, then an rkyv index
//! archive, then a trailer (the index's offset, length and CRC, and a magic
//! string naming the file's kind and version).
//!
//! Opening reads the trailer and the index only, checked against its CRC.
//! A block of the body is checked the first time something in it is read
//! ([`Blocks::intact`]): opening is then O(1) in the size of the body, and
//! a damaged block is never read as data. A block found damaged marks the
//! file damaged, so that the query that read it, and every later one,
//! fails rather than answers from it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;
use rkyv::rend::u32_le;

use crate::error::{Error, Result};

/// Blocks of `1 << BLOCK_SHIFT` bytes: a page, so that the first read of
/// something reads about the page it is in (64 KiB blocks made the open of
/// 1M addresses read the whole documents file to check the blocks of its
/// 8,519 municipalities), at 4 bytes of CRC per 4 KiB.
const BLOCK_SHIFT: u32 = 12;
const BLOCK: usize = 1 << BLOCK_SHIFT;
/// index offset, index length, index CRC (u64 for alignment), magic.
const TRAILER: usize = 32;
/// What an rkyv archive wants its start aligned to.
const ALIGN: u64 = 16;

/// Writes a body, summing each block; then its index and trailer.
pub(crate) struct BodyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    crc: crc32fast::Hasher,
    sums: Vec<u32>,
    /// Whether `finish` syncs the file (not for a live layer's, which is
    /// made again from the store after a crash).
    durable: bool,
}

impl BodyWriter {
    pub fn unsynced(mut self) -> BodyWriter {
        self.durable = false;
        self
    }

    pub fn create(path: &Path) -> Result<BodyWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(BodyWriter {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            crc: crc32fast::Hasher::new(),
            sums: Vec::new(),
            durable: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of body written so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
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

    /// Writes `items` of `W` bytes each, staged in runs of 64 KiB (a CRC
    /// update per item would cost more than the item); returns how many.
    pub fn write_items<const W: usize>(&mut self, items: impl Iterator<Item = [u8; W]>) -> Result<u64> {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut n = 0;
        for item in items {
            buf.extend_from_slice(&item);
            n += 1;
            if buf.len() >= 1 << 16 {
                self.write(&buf)?;
                buf.clear();
            }
        }
        self.write(&buf)?;
        Ok(n)
    }

    /// Keeps the CRC of the block being written and starts the next one.
    fn close_block(&mut self) {
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
        self.sums.push(crc.finalize());
    }

    /// Pads the body to the start of a block: what comes next shares no
    /// block, so no damage, with what came before.
    pub fn pad_to_block(&mut self) -> Result<()> {
        let pad = (BLOCK - (self.pos as usize % BLOCK)) % BLOCK;
        self.write(&vec![0u8; pad])
    }

    /// Makes what was written readable from the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Ends the body: its length and the CRC of each block, for the index.
    /// The body is flushed, so that it can be read back before the index
    /// is written.
    pub fn end_body(&mut self) -> Result<(u64, Vec<u32>)> {
        if !self.pos.is_multiple_of(BLOCK as u64) {
            self.close_block();
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok((self.pos, std::mem::take(&mut self.sums)))
    }

    /// Writes the index archive and the trailer, and syncs the file.
    pub fn finish(mut self, index: &[u8], magic: [u8; 8]) -> Result<()> {
        let pad = ((ALIGN - self.pos % ALIGN) % ALIGN) as usize;
        let write = |out: &mut BufWriter<File>, b: &[u8]| out.write_all(b).map_err(|e| Error::io(&self.path, e));
        write(&mut self.out, &[0u8; ALIGN as usize][..pad])?;
        let start = self.pos + pad as u64;
        write(&mut self.out, index)?;
        let mut trailer = [0u8; TRAILER];
        trailer[..8].copy_from_slice(&start.to_le_bytes());
        trailer[8..16].copy_from_slice(&(index.len() as u64).to_le_bytes());
        trailer[16..24].copy_from_slice(&u64::from(crc32fast::hash(index)).to_le_bytes());
        trailer[24..].copy_from_slice(&magic);
        write(&mut self.out, &trailer)?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        if !self.durable {
            return Ok(());
        }
        file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

/// A file of this layout, mapped: where its index is.
pub(crate) struct Mapped {
    pub map: Mmap,
    pub index_at: usize,
    pub index_len: usize,
    /// The index's CRC: a fingerprint of the file, which another file
    /// derived from this one can name.
    pub index_crc: u64,
}

impl Mapped {
    /// Maps `path` and checks its trailer and its index's CRC.
    pub fn open(path: &Path, magic: [u8; 8]) -> Result<Mapped> {
        let corrupt = |reason: &str| Error::Corrupt { path: path.into(), reason: reason.into() };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: generation files are immutable once written.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if map.len() < TRAILER || map[map.len() - 8..] != magic {
            return Err(corrupt("not a cairn file of this kind and version"));
        }
        let t = map.len() - TRAILER;
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or_default());
        let (index_at, index_len, index_crc) = (word(t) as usize, word(t + 8) as usize, word(t + 16));
        if !(index_at as u64).is_multiple_of(ALIGN) || index_at.checked_add(index_len).is_none_or(|e| e > t) {
            return Err(corrupt("index out of bounds"));
        }
        if u64::from(crc32fast::hash(&map[index_at..index_at + index_len])) != index_crc {
            return Err(corrupt("the index does not match its checksum"));
        }
        Ok(Mapped { map, index_at, index_len, index_crc })
    }

    pub fn index(&self) -> &[u8] {
        &self.map[self.index_at..self.index_at + self.index_len]
    }
}

/// Which blocks of a body were checked, and whether one was damaged.
pub(crate) struct Blocks {
    path: PathBuf,
    /// The CRC of each block, copied out of the index (4 bytes per 4 KiB).
    sums: Box<[u32]>,
    /// One bit per block: checked against its CRC.
    checked: Box<[AtomicU64]>,
    damaged: AtomicBool,
}

impl Blocks {
    /// For a body of `len` bytes; an error unless `sums` has one CRC per
    /// block of it and the body ends before its index.
    pub fn new(path: &Path, len: u64, sums: &[u32_le], index_at: usize) -> Result<Blocks> {
        let blocks = len.div_ceil(BLOCK as u64);
        if blocks != sums.len() as u64 || len > index_at as u64 {
            return Err(Error::Corrupt { path: path.into(), reason: "the block sums do not cover the body".into() });
        }
        let checked = (0..blocks.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let sums = sums.iter().map(|s| s.to_native()).collect();
        Ok(Blocks { path: path.to_owned(), sums, checked, damaged: AtomicBool::new(false) })
    }

    /// Whether the bytes `[from, to)` of the body, not empty, lie in blocks
    /// that match their CRC, checking the blocks not checked before.
    /// `body` is the whole body. A mismatch marks the file damaged.
    #[inline]
    pub fn intact(&self, body: &[u8], from: usize, to: usize) -> bool {
        // Most reads lie in one block checked before.
        let b = from >> BLOCK_SHIFT;
        if from < to
            && to <= body.len()
            && b == (to - 1) >> BLOCK_SHIFT
            && self.checked.get(b / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1u64 << (b % 64)) != 0)
        {
            return true;
        }
        self.check_blocks(body, from, to)
    }

    #[inline(never)]
    fn check_blocks(&self, body: &[u8], from: usize, to: usize) -> bool {
        if from >= to || to > body.len() {
            return self.damage();
        }
        for b in from >> BLOCK_SHIFT..=(to - 1) >> BLOCK_SHIFT {
            let (word, bit) = (&self.checked[b / 64], 1u64 << (b % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let block = &body[b << BLOCK_SHIFT..((b + 1) << BLOCK_SHIFT).min(body.len())];
            if self.sums.get(b).is_none_or(|s| crc32fast::hash(block) != *s) {
                return self.damage();
            }
            word.fetch_or(bit, Ordering::AcqRel);
        }
        true
    }

    /// Marks the file damaged; false, for [`Blocks::intact`].
    pub fn damage(&self) -> bool {
        self.damaged.store(true, Ordering::Release);
        false
    }

    pub fn flag(&self) -> &AtomicBool {
        &self.damaged
    }

    /// An error if a read found a block damaged: the answer that read took
    /// part in cannot be trusted.
    pub fn check(&self) -> Result<()> {
        if self.damaged.load(Ordering::Acquire) {
            return Err(Error::Corrupt {
                path: self.path.clone(),
                reason: "a block of the file does not match its checksum, or holds what no writer wrote".into(),
            });
        }
        Ok(())
    }
}
