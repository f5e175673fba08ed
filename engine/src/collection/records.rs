//! The stored records of one collection version, by row, for answers: a
//! query's hits are copied out as they were stored instead of being looked
//! up one by one in the store's B-tree (50 lookups were most of a query's
//! time).
//!
//! The bytes live in an unnamed temporary file in the database directory,
//! memory-mapped: the kernel can page them out clean instead of keeping
//! them as process memory, and the file vanishes with the process whatever
//! way it ends. Where no such file can be made or written (a read-only
//! directory, a full disk), they stay on the heap.
//!
//! Layout: per row, its id's length (`u32`, little-endian), its id and its
//! record, back to back; then `rows + 1` offsets (`u64`, little-endian)
//! where row `r` is `offsets[r]..offsets[r + 1]`. The id sits beside its
//! record so that a hit costs one read far away, not two.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use memmap2::Mmap;

/// The records of a version, row by row.
pub(crate) struct Records {
    bytes: Backing,
    rows: usize,
    /// Where the offsets start.
    table: usize,
}

enum Backing {
    Mapped(Mmap),
    Heap(Vec<u8>),
}

impl Records {
    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Backing::Mapped(m) => m,
            Backing::Heap(v) => v,
        }
    }

    fn offset(&self, i: usize) -> usize {
        let at = self.table + 8 * i;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes()[at..at + 8]);
        // Offsets were written from `usize` positions of this process.
        u64::from_le_bytes(b) as usize
    }

    /// Reads one byte of each cache line of row `row`, and returns them
    /// mixed: called for every hit before any is copied, so that their
    /// reads from memory overlap instead of waiting one after another.
    pub fn touch(&self, row: u32) -> u8 {
        let r = row as usize;
        debug_assert!(r < self.rows, "row {r} of {}", self.rows);
        let (a, b) = (self.offset(r), self.offset(r + 1));
        let bytes = self.bytes();
        (a..b).step_by(64).fold(bytes[b - 1], |x, i| x ^ bytes[i])
    }

    /// Row `row`'s id and record, as stored.
    pub fn get(&self, row: u32) -> (&[u8], &[u8]) {
        let r = row as usize;
        let (a, b) = (self.offset(r), self.offset(r + 1));
        let entry = &self.bytes()[a..b];
        let (len, rest) = entry.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        rest.split_at(len)
    }
}

/// Writes a version's records in row order.
pub(crate) struct RecordsWriter {
    file: Option<File>,
    /// Bytes not yet written to the file (all of them on the heap).
    pending: Vec<u8>,
    written: u64,
    offsets: Vec<u64>,
}

/// Bytes gathered before each write to the file.
const CHUNK: usize = 1 << 20;

impl RecordsWriter {
    /// A writer whose records go to a temporary file in `dir` when one can
    /// be made there, else to the heap.
    pub fn new(dir: Option<&Path>) -> RecordsWriter {
        let file = dir.and_then(|d| tempfile::tempfile_in(d).ok());
        RecordsWriter { file, pending: Vec::new(), written: 0, offsets: vec![0] }
    }

    pub fn push(&mut self, id: &str, record: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(id.len()).map_err(std::io::Error::other)?;
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending.extend_from_slice(id.as_bytes());
        self.pending.extend_from_slice(record);
        let size = 4 + id.len() as u64 + record.len() as u64;
        self.offsets.push(self.offsets.last().copied().unwrap_or(0) + size);
        if self.file.is_some() && self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Moves the pending bytes to the file; when the file fails (a full
    /// disk), brings everything back to the heap and goes on there.
    fn flush(&mut self) -> std::io::Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        if file.write_all(&self.pending).is_err() {
            return self.move_to_heap();
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Reads back what reached the file, ahead of the pending bytes.
    fn move_to_heap(&mut self) -> std::io::Result<()> {
        let Some(mut file) = self.file.take() else { return Ok(()) };
        let mut head = Vec::with_capacity(self.written as usize + self.pending.len());
        file.seek(SeekFrom::Start(0))?;
        let n = file.take(self.written).read_to_end(&mut head)?;
        if n as u64 != self.written {
            return Err(std::io::Error::other("the temporary file of collection records lost bytes"));
        }
        head.append(&mut self.pending);
        self.pending = head;
        self.written = 0;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<Records> {
        let rows = self.offsets.len() - 1;
        let table = usize::try_from(*self.offsets.last().unwrap_or(&0)).map_err(std::io::Error::other)?;
        for o in std::mem::take(&mut self.offsets) {
            self.pending.extend_from_slice(&o.to_le_bytes());
            if self.file.is_some() && self.pending.len() >= CHUNK {
                self.flush()?;
            }
        }
        self.flush()?;
        let size = table + 8 * (rows + 1);
        if let Some(f) = &self.file {
            // SAFETY: the file has no name, so no other process can open it,
            // and this process never writes it again: the mapped bytes do
            // not change while they are read.
            if let Ok(m) = unsafe { Mmap::map(f) } {
                if m.len() == size {
                    return Ok(Records { bytes: Backing::Mapped(m), rows, table });
                }
            }
            self.move_to_heap()?;
        }
        debug_assert_eq!(self.pending.len(), size);
        Ok(Records { bytes: Backing::Heap(self.pending), rows, table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<(String, Vec<u8>)> {
        // Past several chunks, with empty and multi-byte records.
        (0..40_000u32)
            .map(|i| {
                (
                    format!("id-{i:06}-é"),
                    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i as usize % 97)).into_bytes(),
                )
            })
            .chain([(String::new(), Vec::new())])
            .collect()
    }

    fn check(records: &Records, rows: &[(String, Vec<u8>)]) {
        for (r, (id, json)) in rows.iter().enumerate() {
            let (got_id, got) = records.get(r as u32);
            assert_eq!((got_id, got), (id.as_bytes(), json.as_slice()), "row {r}");
            records.touch(r as u32);
        }
    }

    #[test]
    fn rows_read_back_as_written_mapped_or_on_the_heap() {
        let rows = rows();
        let dir = tempfile::tempdir().unwrap();
        for at in [Some(dir.path()), None] {
            let mut w = RecordsWriter::new(at);
            assert_eq!(w.file.is_some(), at.is_some());
            for (id, json) in &rows {
                w.push(id, json).unwrap();
            }
            let records = w.finish().unwrap();
            assert_eq!(matches!(records.bytes, Backing::Mapped(_)), at.is_some());
            check(&records, &rows);
        }
        // The file holds no name: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failing_file_hands_its_bytes_back_to_the_heap() {
        let rows = rows();
        let dir = tempfile::tempdir().unwrap();
        let mut w = RecordsWriter::new(Some(dir.path()));
        for (i, (id, json)) in rows.iter().enumerate() {
            w.push(id, json).unwrap();
            // As a write error does midway, after some chunks reached the file.
            if i == rows.len() / 2 {
                assert!(w.written > 0);
                w.move_to_heap().unwrap();
                assert!(w.file.is_none());
            }
        }
        let records = w.finish().unwrap();
        assert!(matches!(records.bytes, Backing::Heap(_)));
        check(&records, &rows);
    }

    #[test]
    fn no_rows() {
        let records = RecordsWriter::new(None).finish().unwrap();
        assert_eq!(records.rows, 0);
    }
}
