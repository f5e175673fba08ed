//! Shared by the fuzz targets: one small database, imported once per
//! process from `tests/fixtures/small.ndjson`, and an allocator that lets
//! libFuzzer see every allocation (so that `-malloc_limit_mb` works without
//! a sanitizer, see [`Hooked`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use cairn::{Database, ImportOptions, SearchQuery};

/// The fixture, compiled in so the targets run from any directory.
pub const SMALL_NDJSON: &[u8] = include_bytes!("../../tests/fixtures/small.ndjson");

// ------------------------------------------------------------ allocations

type MallocHook = unsafe extern "C" fn(*const c_void, usize);
type FreeHook = unsafe extern "C" fn(*const c_void);

static MALLOC_HOOK: AtomicUsize = AtomicUsize::new(0);
static FREE_HOOK: AtomicUsize = AtomicUsize::new(0);

/// libFuzzer asks the sanitizer runtime for malloc/free hooks through this
/// (weak) symbol; with no sanitizer linked (`cargo fuzz build -s none`, all
/// that a stable toolchain can do) nobody defines it and `-malloc_limit_mb`
/// is silently ignored. Defining it here hands libFuzzer's hooks to
/// [`Hooked`], so a single allocation over the limit stops the run with an
/// `oom-` artifact and a stack trace, exactly as under ASan.
///
/// # Safety
/// Called by libFuzzer with two function pointers (or null).
#[no_mangle]
pub unsafe extern "C" fn __sanitizer_install_malloc_and_free_hooks(
    malloc_hook: Option<MallocHook>,
    free_hook: Option<FreeHook>,
) -> i32 {
    MALLOC_HOOK.store(malloc_hook.map_or(0, |f| f as usize), Ordering::SeqCst);
    FREE_HOOK.store(free_hook.map_or(0, |f| f as usize), Ordering::SeqCst);
    1
}

/// libFuzzer prints the stack through this on an out-of-memory, a timeout
/// or a crash it reports itself; without a sanitizer it would print
/// nothing. (On a timeout this runs in a signal handler, where allocating
/// is not safe: the input is already saved by then, and the worst case is a
/// run that stops without its trace.)
#[no_mangle]
pub extern "C" fn __sanitizer_print_stack_trace() {
    static BUSY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if BUSY.swap(true, Ordering::SeqCst) {
        return;
    }
    eprintln!("{}", std::backtrace::Backtrace::force_capture());
    BUSY.store(false, Ordering::SeqCst);
}

/// The system allocator, reporting to libFuzzer's hooks once installed.
pub struct Hooked;

impl Hooked {
    /// Also on a failed allocation (null), so that libFuzzer reports an
    /// oversized one as an out-of-memory with its size instead of the
    /// process aborting in `handle_alloc_error`.
    #[inline]
    fn on_malloc(p: *mut u8, size: usize) {
        let h = MALLOC_HOOK.load(Ordering::Relaxed);
        if h != 0 {
            // SAFETY: only ever a MallocHook stored above.
            unsafe { std::mem::transmute::<usize, MallocHook>(h)(p as *const c_void, size) }
        }
    }
    #[inline]
    fn on_free(p: *mut u8) {
        let h = FREE_HOOK.load(Ordering::Relaxed);
        if h != 0 {
            // SAFETY: only ever a FreeHook stored above.
            unsafe { std::mem::transmute::<usize, FreeHook>(h)(p as *const c_void) }
        }
    }
}

unsafe impl GlobalAlloc for Hooked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        Hooked::on_malloc(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        Hooked::on_malloc(p, layout.size());
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            Hooked::on_free(ptr);
        }
        Hooked::on_malloc(p, new_size);
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Hooked::on_free(ptr);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Hooked = Hooked;

// --------------------------------------------------------------- databases

/// A temporary directory that lives as long as the process (under
/// `$TMPDIR`: `run.sh` points it at /dev/shm when it can, so that commits
/// do not wait for a disk).
pub fn process_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("tempdir");
    // Kept for the process: the databases in it must outlive everything.
    dir.keep()
}

/// Opens a new read-write database in `dir` holding the fixture.
pub fn fixture_db(dir: &std::path::Path) -> Database {
    let file = dir.join("small.ndjson");
    std::fs::write(&file, SMALL_NDJSON).expect("write fixture");
    let db = Database::open(dir.join("db")).expect("open database");
    db.import(&[file], &ImportOptions::default(), &mut |_| {}).expect("import fixture");
    db
}

/// The small database, imported on first use into a temporary directory
/// that lives as long as the process. Read only by the targets.
pub fn small_db() -> &'static Arc<Database> {
    static DB: OnceLock<Arc<Database>> = OnceLock::new();
    DB.get_or_init(|| Arc::new(fixture_db(&process_dir("cairn-fuzz-"))))
}

/// Queries whose answers stand for "what the database answers": text,
/// autocomplete, near a point, and reverse.
pub fn probe(db: &Database) -> String {
    try_probe(db).unwrap_or_else(|e| panic!("probe: {e}"))
}

/// [`probe`], or the first error of a query.
pub fn try_probe(db: &Database) -> cairn::Result<String> {
    let mut out = String::new();
    for (q, auto) in [("paris", false), ("rue de la paix", false), ("12 rue de la pa", true), ("13001", false)] {
        let mut sq = SearchQuery::new(q);
        sq.autocomplete = auto;
        sq.limit = 5;
        for f in db.search(&sq)? {
            out.push_str(&format!("{q}: {:?} {:.6}\n", f.prop_str("id"), f.score));
        }
    }
    let rq = cairn::ReverseQuery { at: cairn::Point { lat: 48.8686, lon: 2.3310 }, limit: 2, filters: Vec::new() };
    for f in db.reverse(&rq)? {
        out.push_str(&format!("reverse: {:?}\n", f.prop_str("id")));
    }
    out.push_str(&format!("get: {:?}\n", db.get("75102_0001_00012").map(|f| f.map(|f| f.score))));
    out.push_str(&format!("generation {} documents {}\n", db.generation(), db.len()));
    Ok(out)
}

/// A little-endian reader over the head of an input, giving 0 past its end.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads `data` with `import::read` in one format, checking every record
/// it yields (an id, a type, a valid point): (result, records, skipped).
pub fn read_records(
    data: &[u8],
    format: cairn::import::Format,
    on_error: cairn::import::OnError,
) -> (cairn::Result<()>, usize, cairn::import::Skipped) {
    let mut skipped = cairn::import::Skipped::default();
    let mut n = 0;
    let mut check = |rec: &cairn::Record| {
        assert!(!rec.id.is_empty() && !rec.kind.is_empty(), "{rec:?}");
        assert!(rec.point.is_some_and(|p| p.is_valid()), "{rec:?}");
        n += 1;
    };
    let r = cairn::import::read(data, format, on_error, &mut skipped, &mut |entry| {
        match &entry {
            cairn::Entry::Record(r) => check(r),
            cairn::Entry::Family { parent, children } => {
                check(parent);
                for c in children {
                    assert_eq!(c.record.parent.as_deref(), Some(parent.id.as_str()), "{entry:?}");
                    check(&c.record);
                }
            }
        }
        Ok(())
    });
    (r.map(|_| ()), n, skipped)
}
