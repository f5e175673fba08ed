//! Per-record tables of a generation build kept in temporary files beside
//! the output, and an external sort, so that the memory a build holds
//! stays within its budget whatever the number of records.
//!
//! Every file here is removed when the value that owns it is dropped: a
//! build that fails leaves none behind.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a generation build may hold in tables that grow with the records,
/// unless told otherwise: a 26M-address import peaks well under 2 GB.
pub const DEFAULT_BUILD_MEMORY: usize = 256 << 20;
/// Buffers of the temporary files: a handful at once.
const IO_BUFFER: usize = 1 << 16;
/// Runs merged at once. More runs than this (a small budget, a large
/// base) are merged into one before the next, so that a merge never
/// holds more than this many files and buffers open.
const FAN_IN: usize = 64;
/// Items a sort's buffer grows by at least, past what was expected.
const MIN_GROWTH: usize = 1 << 16;

/// A path `base.suffix`.
pub(crate) fn beside(base: &Path, suffix: &str) -> PathBuf {
    let mut p = base.as_os_str().to_owned();
    p.push(".");
    p.push(suffix);
    p.into()
}

/// A file removed when dropped.
pub(crate) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Creates (truncating) the file at `path`, which is removed on drop.
    pub fn create(path: PathBuf) -> Result<(TempFile, File)> {
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok((TempFile { path }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<BufReader<File>> {
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(BufReader::with_capacity(IO_BUFFER, file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Nothing to do about a file that cannot be removed; it is named
        // after the output, which says what left it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A value of fixed width in a temporary file.
pub(crate) trait Item: Ord + Copy {
    const SIZE: usize;
    fn put(&self, out: &mut impl Write) -> std::io::Result<()>;
    fn get(input: &mut impl Read) -> std::io::Result<Self>;
}

impl Item for u32 {
    const SIZE: usize = 4;
    fn put(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn get(input: &mut impl Read) -> std::io::Result<Self> {
        let mut b = [0u8; 4];
        input.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl Item for u64 {
    const SIZE: usize = 8;
    fn put(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn get(input: &mut impl Read) -> std::io::Result<Self> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Compared word by word, first word first.
impl<const N: usize> Item for [u32; N] {
    const SIZE: usize = 4 * N;
    fn put(&self, out: &mut impl Write) -> std::io::Result<()> {
        self.iter().try_for_each(|w| w.put(out))
    }
    fn get(input: &mut impl Read) -> std::io::Result<Self> {
        let mut a = [0u32; N];
        for w in &mut a {
            *w = u32::get(input)?;
        }
        Ok(a)
    }
}

/// Items written to a temporary file as they come, read back in order.
pub(crate) struct Column<T: Item> {
    file: TempFile,
    out: BufWriter<File>,
    len: u64,
    _item: std::marker::PhantomData<T>,
}

impl<T: Item> Column<T> {
    pub fn create(path: PathBuf) -> Result<Column<T>> {
        let (file, f) = TempFile::create(path)?;
        Ok(Column { file, out: BufWriter::with_capacity(IO_BUFFER, f), len: 0, _item: std::marker::PhantomData })
    }

    pub fn push(&mut self, item: T) -> Result<()> {
        item.put(&mut self.out).map_err(|e| Error::io(self.file.path(), e))?;
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The items so far, in the order they came.
    pub fn read(&mut self) -> Result<impl Iterator<Item = Result<T>> + '_> {
        self.out.flush().map_err(|e| Error::io(self.file.path(), e))?;
        let mut input = self.file.open()?;
        let path = self.file.path();
        Ok((0..self.len).map(move |_| T::get(&mut input).map_err(|e| Error::io(path, e))))
    }
}

/// A sorted run in a temporary file.
struct Run {
    file: TempFile,
    len: u64,
}

/// Sorts more items than the budget holds: sorted runs of at most the
/// budget go to temporary files, merged when read.
pub(crate) struct Sorter<T: Item> {
    base: PathBuf,
    buf: Vec<T>,
    cap: usize,
    /// Items the buffer first makes room for.
    first: usize,
    runs: Vec<Run>,
    /// Run files made so far, for their names.
    made: usize,
    len: u64,
}

impl<T: Item> Sorter<T> {
    /// A sorter holding at most about `memory` bytes of items, of which
    /// about `expected` will come; its runs are `base.0`, `base.1`...
    pub fn new(base: PathBuf, memory: usize, expected: u64) -> Sorter<T> {
        // A floor keeps a silly budget from making a run per item.
        let cap = (memory / T::SIZE).max(16);
        let first = usize::try_from(expected).unwrap_or(usize::MAX).clamp(1, cap);
        Sorter { base, buf: Vec::new(), cap, first, runs: Vec::new(), made: 0, len: 0 }
    }

    pub fn push(&mut self, item: T) -> Result<()> {
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        if self.buf.len() == self.buf.capacity() {
            // Room for the items expected or the budget, whichever is
            // less, at once (doubling would hold old and new buffers
            // together); grown by doubling up to the budget if more come.
            // Never the budget alone: one far above what the build holds
            // (or above what the machine has) costs nothing.
            let grow = if self.buf.capacity() == 0 {
                self.first
            } else {
                self.buf.capacity().max(MIN_GROWTH).min(self.cap.saturating_sub(self.buf.capacity())).max(1)
            };
            self.buf
                .try_reserve_exact(grow)
                .map_err(|e| Error::Store(format!("the build's sort could not hold {grow} more items: {e}")))?;
        }
        self.buf.push(item);
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    fn new_run(&mut self) -> Result<(TempFile, BufWriter<File>)> {
        let (file, f) = TempFile::create(beside(&self.base, &self.made.to_string()))?;
        self.made += 1;
        Ok((file, BufWriter::with_capacity(IO_BUFFER, f)))
    }

    /// Sorts what is held into a run file.
    fn spill(&mut self) -> Result<()> {
        if self.runs.len() + 1 >= FAN_IN {
            self.merge_runs()?;
        }
        self.buf.sort_unstable();
        let (file, mut out) = self.new_run()?;
        let io = |e| Error::io(file.path(), e);
        for item in &self.buf {
            item.put(&mut out).map_err(io)?;
        }
        out.flush().map_err(io)?;
        self.runs.push(Run { file, len: self.buf.len() as u64 });
        self.buf.clear();
        Ok(())
    }

    /// Merges every run into one.
    fn merge_runs(&mut self) -> Result<()> {
        let runs = std::mem::take(&mut self.runs);
        let len = runs.iter().map(|r| r.len).sum();
        let (file, mut out) = self.new_run()?;
        for item in Merge::<T>::new(&runs)? {
            item?.put(&mut out).map_err(|e| Error::io(file.path(), e))?;
        }
        out.flush().map_err(|e| Error::io(file.path(), e))?;
        drop(runs);
        self.runs.push(Run { file, len });
        Ok(())
    }

    /// Everything pushed, sorted; in memory if it all fits.
    pub fn finish(mut self) -> Result<Sorted<T>> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(Sorted { buf: self.buf, runs: Vec::new() });
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        Ok(Sorted { buf: Vec::new(), runs: self.runs })
    }
}

/// Sorted items, which can be read more than once.
pub(crate) struct Sorted<T: Item> {
    buf: Vec<T>,
    runs: Vec<Run>,
}

impl<T: Item> Sorted<T> {
    pub fn read(&self) -> Result<Box<dyn Iterator<Item = Result<T>> + '_>> {
        if self.runs.is_empty() {
            return Ok(Box::new(self.buf.iter().copied().map(Ok)));
        }
        Ok(Box::new(Merge::new(&self.runs)?))
    }
}

/// A k-way merge of sorted runs.
struct Merge<'a, T: Item> {
    inputs: Vec<(BufReader<File>, u64, &'a Path)>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
}

impl<'a, T: Item> Merge<'a, T> {
    fn new(runs: &'a [Run]) -> Result<Merge<'a, T>> {
        let mut m = Merge { inputs: Vec::with_capacity(runs.len()), heap: BinaryHeap::with_capacity(runs.len()) };
        for (i, r) in runs.iter().enumerate() {
            m.inputs.push((r.file.open()?, r.len, r.file.path()));
            m.refill(i)?;
        }
        Ok(m)
    }

    /// Puts the next item of input `i`, if any, on the heap.
    fn refill(&mut self, i: usize) -> Result<()> {
        let (input, left, path) = &mut self.inputs[i];
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        let item = T::get(input).map_err(|e| Error::io(*path, e))?;
        self.heap.push(Reverse((item, i)));
        Ok(())
    }
}

impl<T: Item> Iterator for Merge<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let Reverse((item, i)) = self.heap.pop()?;
        Some(self.refill(i).map(|()| item))
    }
}

/// Feeds the items of `items` to `f` up to the first error, which is then
/// returned: lets a writer that takes plain items read a fallible source.
pub(crate) fn until_error<T, R>(
    items: impl Iterator<Item = Result<T>>,
    f: impl FnOnce(&mut dyn Iterator<Item = T>) -> Result<R>,
) -> Result<R> {
    let mut err = None;
    let mut ok = items.map_while(|r| r.map_err(|e| err = Some(e)).ok());
    let out = f(&mut ok);
    drop(ok);
    match err {
        Some(e) => Err(e),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many runs, a merge of merges, and reading twice give the sort of
    /// the items; no file is left behind.
    #[test]
    fn sorts_beyond_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::<[u32; 2]>::new(dir.path().join("t"), 16 * 8, 20_000);
        let mut all = Vec::new();
        let mut x = 7u32;
        for i in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            all.push([x % 1000, i]);
            s.push([x % 1000, i]).unwrap();
        }
        all.sort_unstable();
        let sorted = s.finish().unwrap();
        assert!(sorted.runs.len() > 1, "several runs");
        for _ in 0..2 {
            let got: Vec<_> = sorted.read().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, all);
        }
        drop(sorted);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "run files left behind");
    }

    /// A budget far beyond the machine's memory is only an upper bound:
    /// the sort holds what it is given.
    #[test]
    fn a_huge_budget_holds_only_the_items() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::<u64>::new(dir.path().join("h"), usize::MAX, 1_000);
        for i in (0..200_000u64).rev() {
            s.push(i).unwrap();
        }
        let sorted = s.finish().unwrap();
        assert!(sorted.buf.capacity() < 1 << 20, "held {} items' room", sorted.buf.capacity());
        assert!(sorted.read().unwrap().map(Result::unwrap).eq(0..200_000u64));
    }

    #[test]
    fn a_column_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Column::<u64>::create(dir.path().join("c")).unwrap();
        for i in 0..100_000u64 {
            c.push(i * 3).unwrap();
        }
        assert!(c.read().unwrap().map(Result::unwrap).eq((0..100_000u64).map(|i| i * 3)));
        drop(c);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
