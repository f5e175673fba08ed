//! A database directory and its generations.
//!
//! ```text
//! DIR/store.redb          durable documents (the source of truth)
//! DIR/CURRENT             number of the generation readers open
//! DIR/gen-<N>/docs        documents, memory-mapped
//! DIR/gen-<N>/geo         geo index, memory-mapped
//! DIR/gen-<N>/text/       tantivy index
//! DIR/gen-<N>/FORMAT      how the files were made (GENERATION_FORMAT)
//! DIR/gen-<N>/COMPLETE    written last: the directory is whole
//! ```
//!
//! Generation files are derived from the store: when this build makes them
//! otherwise than the build that wrote them (FORMAT differs), a read-write
//! open rebuilds them from the store, so that a query is never analysed one
//! way and matched against an index made another way.
//!
//! A commit builds `gen-<N>.tmp/` completely and syncs it, then commits the
//! redb transaction that records generation N (the commit point), then
//! renames the directory and updates `CURRENT`. A crash before the redb
//! commit leaves generation N-1 untouched; a crash after it is finished at
//! the next read-write open, which rebuilds the files from redb if needed.
//!
//! A restore (`restore_snapshot`) stages into `restore.tmp/` and
//! `store.redb.incoming`; renaming the latter over `store.redb` is its
//! commit point, after which the same recovery finishes it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::docs::DocsBuilder;
use crate::error::{Error, Result};
use crate::generation::{current_format, FORMAT_FILE, GENERATION_FORMAT};
use crate::geo::GeoBuilder;
use crate::live::{self, View};
use crate::profiles::address::{self as profile, Batch, Feature, ReverseQuery, SearchQuery, Target};
use crate::profiles::{Active, Profile};
use crate::record::Record;
use crate::snapshot::{self, Manifest};
use crate::spill::DEFAULT_BUILD_MEMORY;
use crate::store::{Store, StoreReader, StoreTxn};
use crate::text::TextWriter;

/// A generation of the active profile.
pub(crate) type Generation = crate::generation::Generation<<Active as Profile>::Derived>;

/// Opens generation `number` in `dir` for the active profile.
fn open_generation(dir: &Path, number: u64) -> Result<Generation> {
    Generation::open(dir, number, Active::FILTERS, Active::derive)
}

const STORE_FILE: &str = "store.redb";
const CURRENT_FILE: &str = "CURRENT";
const COMPLETE_FILE: &str = "COMPLETE";
// Staging of a restore. Not named gen-*: a commit running meanwhile
// removes every gen-* entry but its own.
const RESTORE_DIR: &str = "restore.tmp";
const INCOMING_STORE: &str = "store.redb.incoming";
/// Where live layers are built (see [`crate::live`]): never synced, and
/// removed at every read-write open, which builds them again.
pub(crate) const LIVE_DIR: &str = "live";

fn gen_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("gen-{n:010}"))
}

fn tmp_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("gen-{n:010}.tmp"))
}

fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Removes a file or a directory tree; nothing to do if it is not there.
fn remove_path(path: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(from, e))
}

/// What an import or an update did.
#[derive(Debug, Clone, Default)]
pub struct CommitReport {
    /// The generation now visible.
    pub generation: u64,
    /// Records written (added or replaced) by this commit.
    pub written: u64,
    /// Records removed by this commit.
    pub deleted: u64,
    /// Records in the database after the commit.
    pub total: u64,
}

/// A database directory: many readers, one writer.
pub struct Database {
    /// Set when the database closes: the layers' files then stay, for
    /// read-only openers (see [`crate::live`]). Before `current`: fields
    /// are dropped in order, and the view's layers look at it as they go.
    closing: Closing,
    dir: PathBuf,
    store: Option<Mutex<Store>>,
    current: RwLock<Option<Arc<View>>>,
    /// The store for snapshots, which read it apart from the writer's
    /// mutex so that they never wait for a commit. Held shared while a
    /// snapshot is made and exclusively while a restore swaps the store, so
    /// that a snapshot never pairs one store with the other's files.
    store_view: RwLock<Option<StoreReader>>,
    /// One restore at a time: they stage in fixed places.
    restoring: Mutex<()>,
    pub(crate) collections: crate::collection::Registry,
    /// Bytes a generation build may hold in tables that grow with the
    /// records (see [`crate::spill`]).
    build_memory: usize,
    /// Records the live layers may hold before a live commit folds them
    /// into a new base (see [`Database::set_live_limit`]).
    live_limit: std::sync::atomic::AtomicU64,
    /// Numbers the live layers' directories.
    layers_made: std::sync::atomic::AtomicU64,
    /// Live writes waiting to be committed together.
    pub(crate) queue: crate::group::Queue,
    /// Set once threads merge and fold the layers (see
    /// [`Database::merge_in_background`]).
    background: std::sync::atomic::AtomicBool,
    /// Tells the merging thread that layers are due a merge.
    merges: Arc<Signal>,
    /// Tells the folding thread that the layers passed the live limit.
    folds: Arc<Signal>,
    /// While a fold is built: the last layer it folds. Merges take the
    /// layers after it only.
    folding: Mutex<Option<Arc<Generation>>>,
    /// Held by a background fold from its start until the old base is
    /// removed, and by a restore before the writer's lock: a fold builds
    /// and removes directories without the writer's lock.
    fold_lock: Mutex<()>,
    /// Set by [`Database::stop_background`]; the threads it joins.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Wakes a background thread.
#[derive(Default)]
struct Signal {
    due: Mutex<bool>,
    wake: parking_lot::Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.due.lock() = true;
        self.wake.notify_one();
    }

    /// Waits until notified, or half a second.
    fn wait(&self) {
        let mut due = self.due.lock();
        if !*due {
            self.wake.wait_for(&mut due, std::time::Duration::from_millis(500));
        }
        *due = false;
    }
}

/// Sets its flag when dropped, with the database that holds it.
#[derive(Default)]
struct Closing(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The default of [`Database::set_live_limit`].
pub const DEFAULT_LIVE_LIMIT: u64 = 100_000;

impl Database {
    /// The file whose presence makes `dir` a database: what [`Database::open`]
    /// creates when it is missing, so that a command can say it did.
    pub fn store_path(dir: impl AsRef<Path>) -> PathBuf {
        dir.as_ref().join(STORE_FILE)
    }

    /// Opens (creating if needed) a database for reading and writing. Only
    /// one process may hold it so; finishes any commit a crash interrupted.
    pub fn open(dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_with_build_memory(dir, DEFAULT_BUILD_MEMORY)
    }

    /// [`Database::open`], with the generation builds of this handle (the
    /// one a recovery at open makes included) holding at most about
    /// `build_memory` bytes in the tables that grow with the records;
    /// beyond, they sort through temporary files beside the generation.
    /// The files built are the same whatever the budget.
    pub fn open_with_build_memory(dir: impl AsRef<Path>, build_memory: usize) -> Result<Database> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let store = Store::open(&dir.join(STORE_FILE))?;
        // A restore that died before its commit point; only now, under the
        // store's lock, is it sure that no other process is restoring.
        remove_path(&dir.join(INCOMING_STORE))?;
        remove_path(&dir.join(RESTORE_DIR))?;
        remove_path(&dir.join("CURRENT.tmp"))?;
        remove_path(&dir.join(LIVE_DIR))?;
        let committed = store.generation()?;
        let db = Database { build_memory, ..Database::new(dir, None) };
        db.recover(&store, committed)?;
        let current = if committed > 0 { Some(db.reopen_view(&store, committed)?) } else { None };
        if let Some(v) = &current {
            v.write_manifest(&db.dir)?;
        }
        let current = current.map(Arc::new);
        let reader = store.reader();
        db.collections.load(&|| reader.begin())?;
        Ok(Database {
            store_view: RwLock::new(Some(reader)),
            store: Some(Mutex::new(store)),
            current: RwLock::new(current),
            ..db
        })
    }

    /// The view at open: the base, and the live commits logged since it
    /// laid over it again as one layer, read from the store.
    fn reopen_view(&self, store: &Store, committed: u64) -> Result<View> {
        let base = store.base()?;
        let view = View::of_base(Arc::new(open_generation(&gen_dir(&self.dir, base), base)?), committed);
        if committed == base {
            return Ok(view);
        }
        let mut txn = store.begin()?;
        let touched = txn.logged_since(base)?;
        let changes = live::changes(&view, &mut txn, &touched)?;
        drop(txn);
        view.with_changes(committed, changes, &self.layer_dir())
    }

    /// A directory for the next layer.
    fn layer_dir(&self) -> live::LayerDir {
        let n = self.layers_made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        live::LayerDir { path: self.dir.join(LIVE_DIR).join(format!("layer-{n:010}")), closing: self.closing.0.clone() }
    }

    fn new(dir: PathBuf, current: Option<Arc<View>>) -> Database {
        Database {
            collections: crate::collection::Registry::new(&dir),
            dir,
            store: None,
            current: RwLock::new(current),
            store_view: RwLock::new(None),
            restoring: Mutex::new(()),
            build_memory: DEFAULT_BUILD_MEMORY,
            live_limit: std::sync::atomic::AtomicU64::new(DEFAULT_LIVE_LIMIT),
            layers_made: std::sync::atomic::AtomicU64::new(0),
            closing: Closing::default(),
            queue: crate::group::Queue::default(),
            background: std::sync::atomic::AtomicBool::new(false),
            merges: Arc::default(),
            folds: Arc::default(),
            folding: Mutex::new(None),
            fold_lock: Mutex::new(()),
            stopping: Arc::default(),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// How many records the live layers may hold before the live commit
    /// that passes it folds them into a new base generation (built from the
    /// whole store, as an import's commit is). Larger: fewer rebuilds,
    /// more layers for queries to read.
    pub fn set_live_limit(&self, records: u64) {
        self.live_limit.store(records.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Opens the last published generation for reading only, without the
    /// writer's lock, so that a CLI can query a database a server holds.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Database> {
        let dir = dir.as_ref().to_owned();
        let current = match read_current(&dir)? {
            0 => {
                if !dir.join(STORE_FILE).exists() {
                    return Err(Error::io(
                        &dir,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no cairn database here"),
                    ));
                }
                None
            }
            _ => Some(Arc::new(Self::read_only_current(&dir)?)),
        };
        Ok(Database::new(dir, current))
    }

    /// The base `CURRENT` names with the layers `live/VIEW` names over it.
    /// A writer folding layers into a new base moves the two one after the
    /// other: when they name different bases, both are read again, for up
    /// to a second, then it is an error (the base alone could miss
    /// acknowledged writes).
    fn read_only_view(dir: &Path) -> Result<View> {
        let mut tries = 0;
        loop {
            let n = read_current(dir)?;
            let base = Arc::new(open_generation(&gen_dir(dir, n), n)?);
            match View::read_only(dir, base) {
                Err(Error::Unsettled { .. }) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// The view of [`Database::read_only_view`], read again while an error
    /// comes with `CURRENT` moved meanwhile: a writer replaced the base
    /// (and removed the old one's files) while it was being opened.
    fn read_only_current(dir: &Path) -> Result<View> {
        let mut tries = 0;
        loop {
            let n = read_current(dir)?;
            match Self::read_only_view(dir) {
                Err(e) if tries < 20 && read_current(dir).is_ok_and(|now| now != n) => {
                    tries += 1;
                    tracing::debug!(error = %e, "the base moved while it was opened: opened again");
                }
                r => return r,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Brings the directory in line with the committed state: the base
    /// generation's files whole and of this build's format, `CURRENT`
    /// naming them, nothing else. Files that are lost, or of another
    /// format, are built again from the whole store, which then becomes
    /// the base (the live commits since the old base are in it).
    fn recover(&self, store: &Store, committed: u64) -> Result<()> {
        let dir = &self.dir;
        let mut base = store.base()?;
        let live = gen_dir(dir, base);
        if base > 0 && !live.join(COMPLETE_FILE).exists() {
            let tmp = tmp_dir(dir, base);
            if tmp.join(COMPLETE_FILE).exists() && current_format(&tmp) {
                fs::rename(&tmp, &live).map_err(|e| Error::io(&tmp, e))?;
            } else {
                self.rebuild(store, committed)?;
                base = committed;
            }
        } else if base > 0 && !current_format(&live) {
            // Made by another version: rebuilt beside, then swapped in.
            self.rebuild(store, committed)?;
            base = committed;
        }
        if read_current(dir)? != base {
            write_current(dir, base)?;
        }
        self.remove_other_generations(base)
    }

    /// Rebuilds generation `number` (the committed one) from redb alone and
    /// makes it the base. Its files are complete in `gen-N.tmp/` before the
    /// store says so (the commit point), so that a crash after it finds
    /// them there.
    fn rebuild(&self, store: &Store, number: u64) -> Result<()> {
        let tmp = tmp_dir(&self.dir, number);
        remove_path(&tmp)?;
        build_generation(store, &tmp, false, self.build_memory)?;
        store.rebase()?;
        let dest = gen_dir(&self.dir, number);
        if dest.exists() {
            remove_path(&dest.join(COMPLETE_FILE))?;
            sync_dir(&dest)?;
            remove_path(&dest)?;
        }
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&tmp, e))?;
        sync_dir(&self.dir)
    }

    fn remove_other_generations(&self, keep: u64) -> Result<()> {
        let keep_name = gen_dir(&self.dir, keep).file_name().map(std::borrow::ToOwned::to_owned);
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("gen-") && Some(&name) != keep_name.as_ref() {
                // Readers that still map old files keep them alive until they close.
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    /// What queries read, if anything was committed.
    pub(crate) fn view(&self) -> Option<Arc<View>> {
        self.current.read().clone()
    }

    /// The number of the visible generation (0 for an empty database).
    pub fn generation(&self) -> u64 {
        self.view().map_or(0, |v| v.number)
    }

    /// An id of the visible address records that no other state of them
    /// opened by this process has (0 for none): what answers are cached
    /// under. Every address commit, live or full, and every restore gives
    /// a new one; a commit to a collection keeps it. The number would not
    /// do: a restore can bring back a number, with other records under it.
    pub fn epoch(&self) -> u64 {
        self.view().map_or(0, |v| v.epoch)
    }

    /// Records visible.
    pub fn len(&self) -> u64 {
        self.view().map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the history the database is in (see
    /// [`crate::snapshot::Manifest::history`]): made with the database and
    /// anew by every restore; `None` when opened read-only.
    pub fn history(&self) -> Result<Option<u64>> {
        match self.store_view.read().as_ref() {
            Some(r) => Ok(Some(r.begin()?.history()?)),
            None => Ok(None),
        }
    }

    /// Applies `f` as one atomic commit that builds a new base generation
    /// from the whole store (the live layers folded in): everything it
    /// writes becomes visible at once, or nothing does. For imports; see
    /// [`Database::write_live`] for small writes.
    pub fn write<T>(&self, f: impl FnOnce(&mut Batch) -> Result<T>) -> Result<(T, CommitReport)> {
        let store = self.store.as_ref().ok_or(Error::ReadOnly)?.lock();
        let number = store.generation()? + 1;
        self.write_locked(&store, number, f)
    }

    /// A full commit as generation `number`: the next one, or the current
    /// one for a fold (which changes no record, so that generation numbers
    /// still count writes). Its files are built in `gen-N.tmp`: none of
    /// `gen-N` exists, since a live commit makes no generation directory.
    fn write_locked<T>(
        &self,
        store: &Store,
        number: u64,
        f: impl FnOnce(&mut Batch) -> Result<T>,
    ) -> Result<(T, CommitReport)> {
        let tmp = tmp_dir(&self.dir, number);
        // Until the commit point, a failure leaves nothing behind: a full
        // disk must not stay full of a generation that never was.
        let staged = self.stage_commit(store, &tmp, f);
        let (out, txn, written, deleted) = match staged {
            Ok(s) => s,
            Err(e) => {
                let _ = remove_path(&tmp);
                return Err(e);
            }
        };
        let total = match txn.count() {
            Ok(t) => t,
            Err(e) => {
                let _ = remove_path(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = txn.commit(number) {
            let _ = remove_path(&tmp);
            return Err(e);
        }
        let dest = gen_dir(&self.dir, number);
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&tmp, e))?;
        write_current(&self.dir, number)?;
        let generation = Arc::new(open_generation(&dest, number)?);
        self.publish(View::of_base(generation, number));
        self.remove_other_generations(number)?;
        Ok((out, CommitReport { generation: number, written, deleted, total }))
    }

    /// Applies `f` as one atomic live commit: durable when this returns
    /// (one redb commit), and visible to queries at once, as a layer over
    /// the base holding the families it changed, without rebuilding the
    /// base (see [`crate::live`]). Once the layers hold more records than
    /// [`Database::set_live_limit`] allows, the commit that passes it also
    /// folds them into a new base, as [`Database::write`] does. Writes of
    /// other threads wait for it; [`Database::write_grouped`] shares one
    /// commit with them instead.
    pub fn write_live<T>(&self, f: impl FnOnce(&mut Batch) -> Result<T>) -> Result<(T, CommitReport)> {
        let store = self.store.as_ref().ok_or(Error::ReadOnly)?.lock();
        let done = self.commit_live(&store, f)?;
        self.tidy_layers(&store);
        Ok(done)
    }

    /// [`Database::write_live`], committed together with the live writes
    /// other threads make meanwhile: writes that arrive while a commit is
    /// under way share the next one (one redb commit, one fsync, one
    /// layer), so that many writers commit many times more writes a second
    /// than one commit each would (see [`crate::group`]). Each write is
    /// still atomic and durable when this returns: the group commits all
    /// its writes or none, and one whose `f` fails is left out of it (the
    /// others' `f` then run again, on a fresh batch: `f` may run more than
    /// once, and its last run is the one committed).
    /// The report counts this write's records, and the group's total.
    pub fn write_grouped<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Batch) -> Result<T> + Send + 'static,
    ) -> Result<(T, CommitReport)> {
        let lock = self.store.as_ref().ok_or(Error::ReadOnly)?;
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        let job: crate::group::Job = Box::new(move |b| {
            *slot.lock() = Some(f(b)?);
            Ok(())
        });
        let report = match self.queue.join(job) {
            crate::group::Joined::Done(r) => r,
            crate::group::Joined::Lead(mut group) => {
                let store = lock.lock();
                group.gather();
                let results = self.commit_group(&store, &group);
                let mine = group.finish(results);
                // The group's writers are answered; merging waits for none
                // of them.
                self.tidy_layers(&store);
                mine
            }
        }?;
        let out = out.lock().take().ok_or_else(|| Error::Store("a grouped write gave no output".into()))?;
        Ok((out, report))
    }

    /// Writes one record (replacing any with its id) as a grouped live
    /// write: see [`Database::write_grouped`].
    pub fn put_live(&self, record: Record) -> Result<CommitReport> {
        self.write_grouped(move |b| b.put(record.clone())).map(|((), c)| c)
    }

    /// Deletes one record (a parent with its children) as a grouped live
    /// write; says whether it was there.
    pub fn delete_live(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write_grouped(move |b| b.delete(&id)).map(|(found, _)| found)
    }

    /// Commits the writes of `group` as one live commit, leaving out those
    /// that fail (each has its error); the others share the commit's
    /// result, or its error.
    fn commit_group(&self, store: &Store, group: &crate::group::Group<'_>) -> Vec<Result<CommitReport>> {
        let n = group.len();
        let mut results: Vec<Option<Result<CommitReport>>> = (0..n).map(|_| None).collect();
        loop {
            let pending: Vec<usize> = (0..n).filter(|i| results[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            // The writes of this commit: the pending ones up to the first
            // that touches a family an earlier one of them touched. One
            // batch does not answer as commits one after the other there
            // (a housenumber put before its street, then the street's list:
            // the list removes it in one batch, and joins it over a commit).
            let mut round = pending.len();
            loop {
                let ids = &pending[..round];
                let (failed, cut) = (std::cell::Cell::new(None), std::cell::Cell::new(None));
                let run = |b: &mut Batch| {
                    let mut counts = Vec::with_capacity(ids.len());
                    let mut families = std::collections::HashSet::new();
                    for (k, &i) in ids.iter().enumerate() {
                        let (before, from) = (b.counts(), b.touched_len());
                        if let Err(e) = group.run(i, b).and_then(|()| b.end_write()) {
                            failed.set(Some(i));
                            return Err(e);
                        }
                        let mine = b.families_since(from)?;
                        if k > 0 && mine.iter().any(|f| families.contains(f)) {
                            cut.set(Some(k));
                            return Err(Error::Store("a write of the group touches an earlier one's family".into()));
                        }
                        families.extend(mine);
                        let after = b.counts();
                        counts.push((after.0 - before.0, after.1 - before.1));
                    }
                    Ok(counts)
                };
                match self.commit_live(store, run) {
                    Ok((counts, total)) => {
                        // A write committed alone counts what settling
                        // derived too (streets a CSV body names), as
                        // `write_live` does.
                        let alone = ids.len() == 1;
                        for (&i, (written, deleted)) in ids.iter().zip(counts) {
                            let report = if alone { total.clone() } else { CommitReport { written, deleted, ..total } };
                            results[i] = Some(Ok(report));
                        }
                        break;
                    }
                    Err(e) => {
                        if let Some(k) = cut.get() {
                            // The writes before it, then it in the next.
                            round = k;
                            continue;
                        }
                        if let Some(i) = failed.get() {
                            // The others run again without it.
                            results[i] = Some(Err(e));
                            break;
                        }
                        if let [i] = ids {
                            results[*i] = Some(Err(e));
                            break;
                        }
                        // No write to blame (what settling derives for all
                        // of them, a layer): each is committed alone, so
                        // that only the one at fault fails.
                        for &i in ids {
                            let alone = self.commit_live(store, |b: &mut Batch| group.run(i, b));
                            results[i] = Some(alone.map(|((), report)| report));
                        }
                        break;
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::Store("no result".into())))).collect()
    }

    /// A live commit of `f` under the writer's lock, up to its layer's
    /// publication: merging and folding are [`Database::tidy_layers`].
    fn commit_live<T>(&self, store: &Store, f: impl FnOnce(&mut Batch) -> Result<T>) -> Result<(T, CommitReport)> {
        let Some(view) = self.view() else {
            // The first commit makes the base.
            let number = store.generation()? + 1;
            return self.write_locked(store, number, f);
        };
        let number = store.generation()? + 1;
        let mut batch = Batch::new(store.begin()?, None, Some(view.clone()));
        let out = f(&mut batch)?;
        let (mut txn, _, written, deleted) = batch.settle()?;
        let touched = txn.touched().to_vec();
        let changes = live::changes(&view, &mut txn, &touched)?;
        let total = txn.count()?;
        // Built before the commit point: a layer that cannot be built
        // fails the write, not the reads after it.
        let next = view.with_changes(number, changes, &self.layer_dir())?;
        txn.commit_live(number)?;
        // The write is durable: what follows may fail without undoing it,
        // and leaves a view that answers as it should.
        self.publish(next);
        Ok((out, CommitReport { generation: number, written, deleted, total }))
    }

    /// After a live commit, under the writer's lock: folds the layers into
    /// a new base once they hold more records than the live limit, or else
    /// merges the newest of one size. A failure only warns: the commit is
    /// durable, and the layers answer as they are.
    fn tidy_layers(&self, store: &Store) {
        let Some(view) = self.view() else { return };
        if view.parts.len() == 1 {
            return;
        }
        let background = self.background.load(std::sync::atomic::Ordering::Relaxed);
        if view.layered() > self.live_limit.load(std::sync::atomic::Ordering::Relaxed) {
            if background {
                self.folds.notify();
                return;
            }
            // Folds the layers into a new base: the layers' records are in
            // the store, and an empty batch commits them as a new base.
            let folded = store.generation().and_then(|number| self.write_locked(store, number, |_| Ok(())));
            if let Err(e) = folded {
                tracing::warn!(error = %e, "folding the live layers into a new base failed");
            }
            return;
        }
        if background {
            if view.merge_due() {
                self.merges.notify();
            }
            return;
        }
        let merged = store.begin().and_then(|mut txn| view.merged(&mut txn, &self.layer_dir()));
        match merged {
            Ok(Some(merged)) => {
                self.publish(merged);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "merging live layers failed"),
        }
    }

    /// Merges the live layers, and folds them into a new base once they
    /// pass the live limit, on two threads of their own from now on, so
    /// that no write waits for either. Each thread holds the database
    /// while it works, and ends once the database is dropped.
    pub fn merge_in_background(self: &Arc<Self>) {
        if self.store.is_none() || self.background.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let spawn = |name: &str, signal: Arc<Signal>, work: fn(&Database) -> Result<bool>| {
            let db = Arc::downgrade(self);
            let stopping = self.stopping.clone();
            std::thread::Builder::new().name(name.into()).spawn(move || loop {
                signal.wait();
                if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Some(db) = db.upgrade() else { return };
                while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    // A panic fails this merge or fold, not the thread: the
                    // next one is tried at the next signal.
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&db)))
                        .unwrap_or_else(|_| Err(Error::Store("a merge or fold of the live layers panicked".into())));
                    match done {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "background work on the live layers failed");
                            break;
                        }
                    }
                }
            })
        };
        let merging = spawn("cairn-merge", self.merges.clone(), |db| db.merge_layers(|| {}));
        let folding = spawn("cairn-fold", self.folds.clone(), |db| db.fold_layers_apart(|| {}));
        let mut threads = self.threads.lock();
        match (merging, folding) {
            (Ok(m), Ok(f)) => threads.extend([m, f]),
            (m, f) => {
                tracing::warn!("no thread for merging: writes merge and fold layers themselves");
                threads.extend(m.into_iter().chain(f));
                drop(threads);
                self.stop_background();
                self.background.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Stops the threads [`Database::merge_in_background`] started, once
    /// the merge or fold each is building is done, and waits for them: so
    /// that the database then closes when its last handle is dropped (a
    /// server stopping). Writes merge and fold layers themselves after.
    pub fn stop_background(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.merges.notify();
        self.folds.notify();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        self.background.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Folds the layers into a new base, once they hold more records than
    /// the live limit, built from the store as it was when the fold began
    /// without the writer's lock; the layers committed meanwhile stay over
    /// it. Says whether it did. `meanwhile` runs once the fold has begun.
    pub(crate) fn fold_layers_apart(&self, meanwhile: impl FnOnce()) -> Result<bool> {
        /// Clears the fold's mark however the fold ends (a panic included),
        /// so that merges take every layer again.
        struct Folding<'a>(&'a Mutex<Option<Arc<Generation>>>);
        impl Drop for Folding<'_> {
            fn drop(&mut self) {
                *self.0.lock() = None;
            }
        }
        let lock = self.store.as_ref().ok_or(Error::ReadOnly)?;
        let _one = self.fold_lock.lock();
        let (view, number, state, mark) = {
            let store = lock.lock();
            let Some(view) = self.view() else { return Ok(false) };
            if view.parts.len() == 1 || view.layered() <= self.live_limit.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(false);
            }
            let number = store.generation()?;
            let reader = self.store_view.read();
            let state = reader.as_ref().ok_or(Error::ReadOnly)?.begin()?;
            *self.folding.lock() = view.parts.last().map(|p| p.gen.clone());
            (view, number, state, Folding(&self.folding))
        };
        meanwhile();
        let tmp = tmp_dir(&self.dir, number);
        let built = self.build_fold(&view, &state, &tmp);
        drop(state);
        let store = lock.lock();
        drop(mark);
        let swapped = built.and_then(|()| self.swap_fold(&store, &view, number, &tmp));
        drop(store);
        match swapped {
            // The old base's files, unlinked without the writer's lock:
            // hundreds of megabytes take a while. (Only its own: a full
            // commit may be building beside meanwhile.)
            Ok(true) => remove_path(&gen_dir(&self.dir, view.base().number))?,
            _ => remove_path(&tmp)?,
        }
        swapped
    }

    /// The files of a new base in `tmp`: the base's text index with the
    /// layers folded in, and documents and geo from the store (`state`,
    /// as it was in `view`).
    fn build_fold(&self, view: &View, state: &crate::store::StoreView, tmp: &Path) -> Result<()> {
        remove_path(tmp)?;
        fs::create_dir_all(tmp.join("text")).map_err(|e| Error::io(tmp, e))?;
        link_tree(&gen_dir(&self.dir, view.base().number).join("text"), &tmp.join("text"))?;
        let mut text = TextWriter::open(&tmp.join("text"), Active::FILTERS)?;
        fold_layers(view, state.records_of_keys(&view.live_keys(1))?, &mut text)?;
        text.finish()?;
        build_read_files(tmp, &mut |f| state.for_each(f), self.build_memory)
    }

    /// Swaps in the new base built in `tmp` as generation `number`, under
    /// the writer's lock: its directory, then the store's base (the commit
    /// point), then the view. Says whether it did: not when a full commit
    /// or a restore replaced the view it was built from.
    fn swap_fold(&self, store: &Store, view: &View, number: u64, tmp: &Path) -> Result<bool> {
        let Some(now) = self.view() else { return Ok(false) };
        let k = view.parts.len();
        if now.parts.len() < k || !now.parts.iter().zip(&view.parts).all(|(a, b)| Arc::ptr_eq(&a.gen, &b.gen)) {
            return Ok(false);
        }
        let dest = gen_dir(&self.dir, number);
        rename(tmp, &dest)?;
        // Opened before the commit point, so that read-only openers find
        // `CURRENT` and `live/VIEW` naming the new base together but for a
        // moment (they retry meanwhile; see `Database::open_read_only`).
        let opened = sync_dir(&self.dir).and_then(|()| open_generation(&dest, number)).and_then(|base| {
            store.set_base(number)?;
            Ok(base)
        });
        let base = match opened {
            Ok(b) => Arc::new(b),
            Err(e) => {
                let _ = remove_path(&dest);
                return Err(e);
            }
        };
        let next = now.with_folded(view, base);
        debug_assert!(next.is_some(), "checked above");
        write_current(&self.dir, number)?;
        if let Some(next) = next {
            self.publish(next);
        }
        Ok(true)
    }

    /// One merge of live layers, chosen and swapped in under the writer's
    /// lock, built without it from the store as it was when chosen; says
    /// whether there was one to make.
    /// `meanwhile` runs once the merge is chosen, before it is built.
    pub(crate) fn merge_layers(&self, meanwhile: impl FnOnce()) -> Result<bool> {
        let lock = self.store.as_ref().ok_or(Error::ReadOnly)?;
        let (plan, keys, state) = {
            let _store = lock.lock();
            let Some(view) = self.view() else { return Ok(false) };
            // Not the layers a fold is taking.
            let floor = self.folding.lock().as_ref().and_then(|g| view.position(g)).map_or(1, |p| p + 1);
            let Some((plan, keys)) = view.merge_plan(floor) else { return Ok(false) };
            let reader = self.store_view.read();
            let state = reader.as_ref().ok_or(Error::ReadOnly)?.begin()?;
            (plan, keys, state)
        };
        meanwhile();
        let records = state.records_of_keys(&keys)?;
        drop(state);
        let merged = plan.build(&records, &self.layer_dir())?;
        let _store = lock.lock();
        let Some(view) = self.view() else { return Ok(false) };
        // A fold that began meanwhile takes these layers: the merge is
        // dropped, not the fold.
        let folded = self.folding.lock().as_ref().and_then(|g| view.position(g));
        if view.run_of(&plan).zip(folded).is_some_and(|(run, last)| run.start <= last) {
            return Ok(false);
        }
        match view.with_merged(&plan, merged) {
            Some(next) => {
                self.publish(next);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes leave merging to [`Database::merge_layers`], which no thread
    /// calls: a test calls it when it chooses.
    #[cfg(test)]
    pub(crate) fn leave_merges(&self) {
        self.background.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes `view` the one queries read, and tells read-only openers
    /// (who keep seeing an older view, whole, if that fails).
    fn publish(&self, view: View) -> Arc<View> {
        let view = Arc::new(view);
        *self.current.write() = Some(view.clone());
        if let Err(e) = view.write_manifest(&self.dir) {
            tracing::warn!(error = %e, "the live VIEW file for read-only openers could not be written");
        }
        view
    }

    /// A commit of the store alone (collections): the address files and
    /// layers stay as they are, and so do their cached answers. `f` writes;
    /// `after` runs under the writer's lock with a view of the committed
    /// state, to swap in what it builds before another commit lands.
    pub(crate) fn write_store<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut StoreTxn) -> std::result::Result<T, E>,
        after: impl FnOnce(u64, crate::store::StoreView) -> std::result::Result<(), E>,
    ) -> std::result::Result<(T, u64), E> {
        let lock = self.store.as_ref().ok_or(Error::ReadOnly)?;
        if self.view().is_none() {
            // The database's first commit makes its (empty) address files.
            self.write(|_| Ok(()))?;
        }
        let store = lock.lock();
        let previous = store.generation()?;
        let number = previous + 1;
        let mut txn = store.begin()?;
        let out = f(&mut txn)?;
        let Some(v) = self.view() else { return Err(Error::Store("no generation to commit over".into()).into()) };
        if v.parts.len() == 1 && v.base().number == previous {
            // No live layers: the base's files are linked under the new
            // number, which becomes the base, so that `CURRENT` and
            // read-only openers follow the generation.
            let tmp = tmp_dir(&self.dir, number);
            let staged = remove_path(&tmp).and_then(|()| link_tree(&gen_dir(&self.dir, previous), &tmp));
            if let Err(e) = staged.and_then(|()| txn.commit(number)) {
                let _ = remove_path(&tmp);
                return Err(e.into());
            }
            let dest = gen_dir(&self.dir, number);
            rename(&tmp, &dest)?;
            write_current(&self.dir, number)?;
            let base = Arc::new(Generation { number, parts: v.base().parts.clone() });
            let parts = vec![live::Part::of(base)];
            self.publish(View { number, epoch: v.epoch, parts });
            self.remove_other_generations(number)?;
        } else {
            // Over live layers, the base stays where it is, and so does the
            // write log that lays them over it.
            txn.commit_store(number)?;
            self.publish(View { number, epoch: v.epoch, parts: v.parts.clone() });
        }
        let view = store.reader().begin()?;
        after(number, view)?;
        Ok((out, number))
    }

    /// Everything of a commit before its commit point: the live layers
    /// folded into the text index, the caller's writes, what they imply
    /// (children of replaced parents, derived streets), and the
    /// generation's files in `tmp`.
    fn stage_commit<T>(
        &self,
        store: &Store,
        tmp: &Path,
        f: impl FnOnce(&mut Batch) -> Result<T>,
    ) -> Result<(T, StoreTxn, u64, u64)> {
        remove_path(tmp)?;
        fs::create_dir_all(tmp.join("text")).map_err(|e| Error::io(tmp, e))?;
        let view = self.view();
        if let Some(v) = &view {
            link_tree(&gen_dir(&self.dir, v.base().number).join("text"), &tmp.join("text"))?;
        }
        let mut text = TextWriter::open(&tmp.join("text"), Active::FILTERS)?;
        let mut txn = store.begin()?;
        if let Some(v) = &view {
            let records = v.layer_records(1, &mut txn)?;
            fold_layers(v, records, &mut text)?;
        }
        let mut batch = Batch::new(txn, Some(text), view);
        let out = f(&mut batch)?;
        let (mut txn, text, written, deleted) = batch.settle()?;
        if let Some(text) = text {
            text.finish()?;
        }
        build_read_files(tmp, &mut |f| txn.for_each(f), self.build_memory)?;
        Ok((out, txn, written, deleted))
    }

    /// Writes a snapshot of the visible generation to `out` (see
    /// [`crate::snapshot`]). Searches and commits go on meanwhile: the
    /// generation's files are read through handles opened once, and the
    /// store through a read transaction checked to be at the same
    /// generation. Needs a read-write database (`Database::open`).
    pub fn create_snapshot(&self, out: &mut dyn Write) -> Result<Manifest> {
        let view = self.store_view.read();
        let reader = view.as_ref().ok_or(Error::ReadOnly)?;
        snapshot::write(out, &reader.begin()?)
    }

    /// Writes a snapshot file atomically: to a temporary file of its own
    /// beside `path` (`<name>.<unique>.tmp`, created exclusively, so that
    /// two writers never share one), synced, then renamed over `path`. On
    /// error no file is left at either name; of two writers to one path,
    /// the file is whole and is the one renamed last.
    pub fn create_snapshot_file(&self, path: impl AsRef<Path>) -> Result<Manifest> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .ok_or_else(|| Error::snapshot(format!("{} is not a file name", path.display())))?
            .to_string_lossy()
            .into_owned();
        let tmp = path.with_file_name(format!("{name}.{:016x}.tmp", crate::store::fresh_history()));
        let written = (|| {
            let file =
                fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let manifest = self.create_snapshot(&mut out)?;
            let file = out.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
            rename(&tmp, path)?;
            sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
            Ok(manifest)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Replaces the whole database with a snapshot, atomically: everything
    /// is read, verified and opened in staging first, and a refused or
    /// failed snapshot leaves the database as it was. Searches running on
    /// the old generation finish on it; new ones see the snapshot's. The
    /// snapshot's generation may be lower, equal or higher than the local
    /// one: it is installed as is.
    ///
    /// The database starts a history of its own ([`Database::history`]):
    /// what it commits from here on is no continuation of the snapshot's
    /// source, and replicas of either must tell them apart. A replica
    /// installs its primary's snapshots with [`Database::follow_snapshot`].
    pub fn restore_snapshot(&self, input: &mut dyn Read) -> Result<Manifest> {
        self.install_snapshot(input, true)
    }

    /// [`Database::restore_snapshot`] for a replica: the database takes the
    /// snapshot's history, and so stays comparable with its primary.
    pub fn follow_snapshot(&self, input: &mut dyn Read) -> Result<Manifest> {
        self.install_snapshot(input, false)
    }

    fn install_snapshot(&self, input: &mut dyn Read, new_history: bool) -> Result<Manifest> {
        let store = self.store.as_ref().ok_or(Error::ReadOnly)?;
        let _one = self.restoring.lock();
        let _no_fold = self.fold_lock.lock();
        let staging = self.dir.join(RESTORE_DIR);
        let incoming = self.dir.join(INCOMING_STORE);
        remove_path(&staging)?;
        remove_path(&incoming)?;
        let result = Self::stage(input, &staging, &incoming, new_history, self.build_memory)
            .and_then(|staged| self.install(store, staged));
        if result.is_err() {
            // Both names are gone once the commit point is passed, so this
            // only ever removes staging.
            let _ = remove_path(&staging);
            let _ = remove_path(&incoming);
        }
        result
    }

    fn stage(
        input: &mut dyn Read,
        staging: &Path,
        incoming: &Path,
        new_history: bool,
        build_memory: usize,
    ) -> Result<Staged> {
        let (manifest, store) = snapshot::stage(input, incoming)?;
        if new_history {
            store.new_history()?;
        } else {
            store.mark_following()?;
        }
        // Its files are built here from the whole store: they are its base.
        store.rebase()?;
        let n = manifest.generation;
        let view = store.reader().begin()?;
        let (stored, count) = (view.generation()?, view.count()?);
        drop(view);
        if stored != n {
            return Err(Error::snapshot(format!("its store is at generation {stored}, its manifest says {n}")));
        }
        if count != manifest.documents {
            return Err(Error::snapshot(format!(
                "its store has {count} documents, its manifest says {}",
                manifest.documents
            )));
        }
        // Checksums prove that the records arrived as sent, not that whoever
        // sent them made them right: the index files are built here, from
        // records checked to agree with each other.
        build_generation(&store, staging, true, build_memory).map_err(|e| match e {
            Error::Store(why) => Error::snapshot(format!("its records are unusable: {why}")),
            e => e,
        })?;
        let generation = open_generation(staging, n)?;
        if generation.docs.len() as u64 != manifest.documents {
            return Err(Error::snapshot(format!(
                "its records make {} documents, its manifest says {}",
                generation.docs.len(),
                manifest.documents
            )));
        }
        Ok(Staged { manifest, store, generation, staging: staging.to_owned(), incoming: incoming.to_owned() })
    }

    /// The commit of a restore. Until `store.redb.incoming` is renamed over
    /// `store.redb`, a crash or an error leaves the old database; after,
    /// recovery at open finishes the install.
    fn install(&self, store: &Mutex<Store>, staged: Staged) -> Result<Manifest> {
        let Staged { manifest, store: new_store, generation, staging, incoming } = staged;
        let n = manifest.generation;
        // No commit and no snapshot runs from here on.
        let mut guard = store.lock();
        let mut view = self.store_view.write();
        // The number of the live directory.
        let local = guard.base()?;
        let (dest, tmp) = (gen_dir(&self.dir, n), tmp_dir(&self.dir, n));
        // Starts with gen-: removed with the other generations at the end.
        let displaced = self.dir.join(format!("gen-{n:010}.old"));
        remove_path(&tmp)?;
        if n == local {
            // The live directory has the snapshot's number, so recovery
            // could pair its files, or staged files marked COMPLETE, with
            // either store. Until the install ends, neither gen-N nor
            // gen-N.tmp is marked: a crash makes the next open rebuild
            // gen-N from whichever store is committed.
            remove_path(&displaced)?;
            if dest.exists() {
                rename(&dest, &displaced)?;
            }
            remove_path(&staging.join(COMPLETE_FILE))?;
        } else {
            // A leftover, never the live one: safe to remove.
            remove_path(&dest)?;
        }
        let undo = |e: Error| {
            let _ = remove_path(&tmp);
            if displaced.exists() && !dest.exists() {
                let _ = fs::rename(&displaced, &dest);
            }
            e
        };
        rename(&staging, &tmp).and_then(|()| sync_dir(&self.dir)).map_err(undo)?;
        // The commit point.
        rename(&incoming, &self.dir.join(STORE_FILE)).map_err(undo)?;
        let old = std::mem::replace(&mut *guard, new_store);
        *view = Some(guard.reader());
        drop(view);
        drop(old);
        // Under the writer's lock, so that no collection commit lands
        // between the install and this.
        let reader = guard.reader();
        let loaded = self.collections.load(&|| reader.begin());
        // Opened from staging: open files and maps follow the renames.
        self.publish(View::of_base(Arc::new(generation), n));
        let finished = (|| {
            sync_dir(&self.dir)?;
            if n == local {
                let marker = tmp.join(COMPLETE_FILE);
                fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
                fs::File::open(&marker).and_then(|f| f.sync_all()).map_err(|e| Error::io(&marker, e))?;
                sync_dir(&tmp)?;
            }
            rename(&tmp, &dest)?;
            write_current(&self.dir, n)?;
            self.remove_other_generations(n)
        })();
        drop(guard);
        finished.and(loaded).map(|()| manifest)
    }

    /// Searches the visible generation.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<Feature>> {
        self.search_by(q, None)
    }

    /// Searches like [`Database::search`], but gives up with
    /// [`Error::Timeout`] once `deadline` has passed, so that one costly
    /// query cannot hold a server's worker for long.
    pub fn search_until(&self, q: &SearchQuery, deadline: std::time::Instant) -> Result<Vec<Feature>> {
        self.search_by(q, Some(deadline))
    }

    /// The profile's search on the visible records: on the base, and on
    /// each layer with what later layers replaced masked, the answers
    /// merged by score (scores are absolute, not relative to an index); an
    /// error if it read a damaged record.
    fn search_by(&self, q: &SearchQuery, deadline: Option<std::time::Instant>) -> Result<Vec<Feature>> {
        let Some(v) = self.view() else { return Ok(Vec::new()) };
        let counts = crate::text::Counts::new(v.parts.iter().map(|p| (&p.gen.text, p.mask.as_deref())).collect());
        let mut lists = Vec::with_capacity(v.parts.len());
        for part in &v.parts {
            lists.push(Active::search(&part.gen, &counts, part.mask.as_deref(), q, deadline)?);
        }
        v.check()?;
        Ok(merged(lists, q.limit))
    }

    /// The records nearest a point.
    pub fn reverse(&self, q: &ReverseQuery) -> Result<Vec<Feature>> {
        let Some(v) = self.view() else { return Ok(Vec::new()) };
        let lists: Vec<Vec<Feature>> = v.parts.iter().map(|p| Active::reverse(&p.gen, p.mask.as_deref(), q)).collect();
        v.check()?;
        if lists.len() == 1 {
            return Ok(lists.into_iter().flatten().collect());
        }
        // As one index orders them: by the distance measured from the
        // record's point (the `distance` shown is rounded, and the score
        // can be equal for points a nanometre apart), then the record
        // stored first.
        let key = |f: &Feature| f.prop_str("id").and_then(|id| v.locate(id)).map(|(p, s)| v.parts[p].gen.docs.key(s));
        let mut all: Vec<(f64, Feature)> =
            lists.into_iter().flatten().map(|f| (crate::geo::distance_m(q.at, f.point), f)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| key(&a.1).cmp(&key(&b.1))));
        let mut all: Vec<Feature> = all.into_iter().map(|(_, f)| f).collect();
        all.truncate(q.limit);
        Ok(all)
    }

    /// A cheap check that the visible generation answers, for readiness
    /// probes: a point of the base's geo index is looked up and its
    /// document read.
    pub fn probe(&self) -> Result<()> {
        let Some(v) = self.view() else { return Ok(()) };
        let g = v.base();
        // No point: an empty index, or a damaged first block of points.
        let Some((at, _)) = g.geo.any_point() else { return v.check() };
        let found = Active::reverse(g, None, &ReverseQuery { at, limit: 1, filters: Vec::new() });
        // A generation found damaged by any read is not ready.
        v.check()?;
        if found.is_empty() {
            return Err(Error::Corrupt {
                path: gen_dir(&self.dir, g.number),
                reason: "the geo index lost a point".into(),
            });
        }
        Ok(())
    }

    /// One record by id, as a feature.
    pub fn get(&self, id: &str) -> Result<Option<Feature>> {
        let Some(v) = self.view() else { return Ok(None) };
        let found = v.locate(id).map(|(p, slot)| {
            let docs = &v.parts[p].gen.docs;
            profile::feature(docs, Target::of(docs, slot), 1.0, None)
        });
        v.check().map(|()| found)
    }
}

/// The best `limit` of the answers of each part, in the order one search
/// gives them: score, then importance, then id.
fn merged(mut lists: Vec<Vec<Feature>>, limit: usize) -> Vec<Feature> {
    if lists.len() == 1 {
        return lists.pop().unwrap_or_default();
    }
    let mut all: Vec<Feature> = lists.into_iter().flatten().collect();
    let importance = |f: &Feature| match f.prop("importance") {
        Some(profile::Prop::Num(n)) => *n,
        _ => 0.0,
    };
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(importance(b).total_cmp(&importance(a)))
            .then_with(|| a.prop_str("id").cmp(&b.prop_str("id")))
    });
    all.truncate(limit);
    all
}

/// A verified snapshot waiting for its commit point.
struct Staged {
    manifest: Manifest,
    store: Store,
    generation: Generation,
    staging: PathBuf,
    incoming: PathBuf,
}

/// Writes every file of a generation into `dir`, which must not exist, from
/// the store alone. `checked`: the store came from elsewhere, and its tables
/// are checked to agree (see [`StoreTxn::for_each_checked`]).
fn build_generation(store: &Store, dir: &Path, checked: bool, memory: usize) -> Result<()> {
    fs::create_dir_all(dir.join("text")).map_err(|e| Error::io(dir, e))?;
    let mut text = TextWriter::open(&dir.join("text"), Active::FILTERS)?;
    let mut txn = store.begin()?;
    let mut add = |key, r: Record| {
        if let Some(d) = Active::text_doc(key, &r) {
            text.add(d)?;
        }
        Ok(())
    };
    if checked {
        txn.for_each_checked(&mut add)?;
    } else {
        txn.for_each(&mut add)?;
    }
    text.finish()?;
    build_read_files(dir, &mut |f| txn.for_each(f), memory)
}

/// Brings the base's text index (being copied into the next generation's)
/// up to the view: the documents of masked base records out, those of
/// `records` (the layers' live records, read from the store) in.
fn fold_layers(view: &View, records: Vec<(u64, Record)>, text: &mut TextWriter) -> Result<()> {
    let base = &view.parts[0];
    if let Some(mask) = &base.mask {
        for slot in (0..base.gen.docs.len() as u32).filter(|s| mask.contains(*s)) {
            text.delete(base.gen.docs.key(slot));
        }
    }
    for (key, r) in records {
        if let Some(d) = Active::text_doc(key, &r) {
            text.add(d)?;
        }
    }
    Ok(())
}

/// Writes the documents and geo files of a generation from the store, then
/// the COMPLETE marker, and syncs the directory. The sorts of the two
/// files, one after the other, each hold up to `memory` bytes.
type Records<'a> = dyn FnMut(&mut dyn FnMut(u64, Record) -> Result<()>) -> Result<()> + 'a;

fn build_read_files(dir: &Path, records: &mut Records<'_>, memory: usize) -> Result<()> {
    let mut docs = DocsBuilder::create(&dir.join("docs"), Active::child_tag)?;
    docs.set_memory(memory);
    let mut geo = GeoBuilder::new(&dir.join("geo"));
    geo.set_memory(memory);
    records(&mut |key, r| {
        let slot = docs.add(key, &r)?;
        if let Some(p) = r.point {
            geo.add(p, slot)?;
        }
        Ok(())
    })?;
    docs.finish()?;
    geo.write()?;
    crate::generation::save(dir, Active::FILTERS, |docs, text| {
        Active::derive(docs, text, None).map(|d| Active::save(&d))
    })?;
    sync_dir(&dir.join("text"))?;
    let format = dir.join(FORMAT_FILE);
    fs::write(&format, GENERATION_FORMAT).map_err(|e| Error::io(&format, e))?;
    let marker = dir.join(COMPLETE_FILE);
    fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
    fs::File::open(&marker).and_then(|f| f.sync_all()).map_err(|e| Error::io(&marker, e))?;
    sync_dir(dir)
}

/// Hard-links a directory tree (copies where links fail), lock files left
/// out, and syncs it: the previous generation's files, which are never
/// modified in place (tantivy's segments; a collection commit's address
/// files), so the next generation starts from them for free.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        let target = to.join(&name);
        if e.file_type().map_err(|err| Error::io(e.path(), err))?.is_dir() {
            link_tree(&e.path(), &target)?;
        } else if fs::hard_link(e.path(), &target).is_err() {
            fs::copy(e.path(), &target).map_err(|err| Error::io(&target, err))?;
        }
    }
    sync_dir(to)
}

fn read_current(dir: &Path) -> Result<u64> {
    let path = dir.join(CURRENT_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| Error::Corrupt { path, reason: "CURRENT is not a number".into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_current(dir: &Path, n: u64) -> Result<()> {
    let tmp = dir.join("CURRENT.tmp");
    fs::write(&tmp, format!("{n}\n")).map_err(|e| Error::io(&tmp, e))?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, dir.join(CURRENT_FILE)).map_err(|e| Error::io(&tmp, e))?;
    sync_dir(dir)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{Field, Point, Value};
    use crate::store::RawTable;
    use crate::SearchQuery;

    pub(crate) fn street(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            kind: "street".into(),
            parent: None,
            point: Some(Point { lat: 45.0, lon: 5.0 }),
            fields: vec![
                Field { name: "name".into(), value: Value::Str(name.into()) },
                Field { name: "city".into(), value: Value::Str("Grenoble".into()) },
            ],
        }
    }

    fn top(db: &Database, q: &str) -> Option<String> {
        db.search(&SearchQuery::new(q)).unwrap().first().and_then(|f| f.prop_str("id").map(str::to_owned))
    }

    fn two_generations(dir: &Path) {
        let db = Database::open(dir).unwrap();
        db.write(|b| b.put(street("a", "Rue Alpha"))).unwrap();
        let ((), report) = db
            .write(|b| {
                b.put(street("b", "Rue Beta"))?;
                b.put(street("a", "Rue Gamma"))
            })
            .unwrap();
        assert_eq!((report.generation, report.written, report.total), (2, 2, 2));
    }

    #[test]
    fn replaced_and_deleted_records_leave_the_index() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(top(&db, "rue gamma grenoble").as_deref(), Some("a"));
        assert!(db.search(&SearchQuery::new("alpha")).unwrap().is_empty(), "old text of a replaced record is gone");
        db.write(|b| b.delete("b").map(|_| ())).unwrap();
        assert!(db.get("b").unwrap().is_none());
        assert_eq!(db.len(), 1);
        assert!(db.search(&SearchQuery::new("beta")).unwrap().is_empty());
    }

    #[test]
    fn crash_after_the_commit_point_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        // As if the process died after the redb commit, before the rename.
        fs::rename(gen_dir(dir.path(), 2), tmp_dir(dir.path(), 2)).unwrap();
        write_current(dir.path(), 1).unwrap();
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.generation(), 2);
        assert_eq!(top(&db, "rue beta").as_deref(), Some("b"));
        assert_eq!(read_current(dir.path()).unwrap(), 2);
    }

    #[test]
    fn lost_generation_files_are_rebuilt_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        fs::remove_dir_all(gen_dir(dir.path(), 2)).unwrap();
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.generation(), 2);
        assert_eq!(db.len(), 2);
        assert_eq!(top(&db, "rue gamma").as_deref(), Some("a"));
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let db = Database::open(dir.path()).unwrap();
        let r = db.write(|b| {
            b.put(street("c", "Rue Delta"))?;
            Err::<(), _>(Error::BadInput { line: 7, reason: "test".into() })
        });
        assert!(matches!(r, Err(Error::BadInput { line: 7, .. })));
        assert_eq!(db.generation(), 2);
        assert!(db.get("c").unwrap().is_none());
        drop(db);
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.generation(), 2);
        assert!(db.get("c").unwrap().is_none());
        assert!(fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn mismatched_generation_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let mut geo = GeoBuilder::new(&gen_dir(dir.path(), 2).join("geo"));
        geo.add(Point { lat: 45.0, lon: 5.0 }, 999).unwrap();
        geo.write().unwrap();
        assert!(matches!(Database::open_read_only(dir.path()), Err(Error::Corrupt { .. })));
    }

    /// A byte flipped in a record of the documents file after it was
    /// written: searches that read that record fail with `Corrupt` (the
    /// server's 500), never answer without it; other records still answer.
    #[test]
    fn a_damaged_record_fails_the_queries_that_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let names: Vec<String> = (0..2000).map(|i| format!("Rue Numero{i:04} Longue")).collect();
        db.write(|b| names.iter().enumerate().try_for_each(|(i, n)| b.put(street(&format!("s{i}"), n)))).unwrap();
        let path = gen_dir(dir.path(), 1).join("docs");
        drop(db);
        // The last record lies far past the first block: flip a byte of its
        // name.
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.windows(14).rposition(|w| w == b"Numero1999 Lon").unwrap();
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let db = Database::open_read_only(dir.path()).unwrap();
        assert_eq!(top(&db, "rue numero0001 longue").as_deref(), Some("s1"));
        assert!(matches!(db.search(&SearchQuery::new("rue numero1999 longue")), Err(Error::Corrupt { .. })));
        assert!(matches!(db.get("s1999"), Err(Error::Corrupt { .. })));
        // From then on the generation is not ready.
        assert!(matches!(db.probe(), Err(Error::Corrupt { .. })));
        drop(db);
        // A commit that reads the damaged record fails and writes nothing.
        let db = Database::open(dir.path()).unwrap();
        assert!(matches!(db.write(|b| b.delete("s1999").map(|_| ())), Err(Error::Corrupt { .. })));
        assert_eq!(db.generation(), 1);
    }

    /// A generation's saved state (text slots, town words) gives the same
    /// answers as deriving it at open; without the file, with a damaged
    /// one, or with another generation's, the state is derived again.
    #[test]
    fn the_saved_state_answers_as_the_derived_one() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let path = gen_dir(dir.path(), 2).join("saved");
        assert!(path.exists());
        let queries = ["rue beta", "rue gamma grenoble", "grenoble", "rue alpha"];
        let answers = |db: &Database| queries.iter().map(|q| top(db, q)).collect::<Vec<_>>();
        let saved = answers(&Database::open_read_only(dir.path()).unwrap());
        assert_eq!(saved[0].as_deref(), Some("b"));
        let bytes = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(answers(&Database::open_read_only(dir.path()).unwrap()), saved);
        // Damaged, or of other documents: derived again, same answers.
        let mut damaged = bytes.clone();
        damaged[bytes.len() / 2] ^= 0x10;
        fs::write(&path, &damaged).unwrap();
        assert_eq!(answers(&Database::open_read_only(dir.path()).unwrap()), saved);
        let other = tempfile::tempdir().unwrap();
        Database::open(other.path()).unwrap().write(|b| b.put(street("z", "Rue Zeta"))).unwrap();
        fs::copy(gen_dir(other.path(), 1).join("saved"), &path).unwrap();
        assert_eq!(answers(&Database::open_read_only(dir.path()).unwrap()), saved);
    }

    /// The readiness probe reads the first block of points: damaged, the
    /// generation is not ready, though it opens.
    #[test]
    fn a_damaged_first_block_of_points_fails_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let path = gen_dir(dir.path(), 2).join("geo");
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let db = Database::open_read_only(dir.path()).unwrap();
        assert!(matches!(db.probe(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn read_only_readers_see_the_published_generation() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let writer = Database::open(dir.path()).unwrap();
        let reader = Database::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.generation(), 2);
        assert!(matches!(reader.write(|_| Ok(())), Err(Error::ReadOnly)));
        drop(writer);
    }

    fn ids(db: &Database) -> Vec<String> {
        let v = db.view().unwrap();
        let mut v: Vec<String> = v
            .parts
            .iter()
            .flat_map(|p| (0..p.gen.docs.len() as u32).filter(|s| !p.masked(*s)).map(|s| p.gen.docs.record(s).id()))
            .collect();
        v.sort();
        v
    }

    /// Snapshots made while commits land are each one whole generation:
    /// restored, generation `g` holds exactly records 1..g.
    #[test]
    fn snapshots_during_commits_are_each_one_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path().join("src")).unwrap());
        db.write(|b| b.put(street("r1", "Rue Un"))).unwrap();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 2..=10 {
                    db.write(|b| b.put(street(&format!("r{i}"), &format!("Rue Numero {i}")))).unwrap();
                }
            })
        };
        let mut snapshots = Vec::new();
        while !writer.is_finished() || snapshots.is_empty() {
            let mut out = Vec::new();
            let m = db.create_snapshot(&mut out).unwrap();
            assert!(top(&db, "rue un grenoble").is_some(), "searches go on");
            // One of each generation is enough to check.
            if snapshots.last().is_none_or(|(last, _): &(Manifest, Vec<u8>)| last.generation != m.generation) {
                snapshots.push((m, out));
            }
        }
        writer.join().unwrap();
        let target = Database::open(dir.path().join("dst")).unwrap();
        for (m, bytes) in &snapshots {
            let restored = target.restore_snapshot(&mut &bytes[..]).unwrap();
            assert_eq!(&restored, m);
            assert_eq!(target.generation(), m.generation);
            let mut want: Vec<String> = (1..=m.generation).map(|i| format!("r{i}")).collect();
            want.sort();
            assert_eq!(ids(&target), want, "generation {}", m.generation);
            assert_eq!(target.len() as u64, m.documents);
        }
        assert!(snapshots.len() > 1, "made {} snapshots", snapshots.len());
    }

    fn snapshot_of(dir: &Path) -> Vec<u8> {
        let db = Database::open(dir).unwrap();
        let mut out = Vec::new();
        db.create_snapshot(&mut out).unwrap();
        out
    }

    /// Restoring generation 2 over a database at generation 2 (other
    /// records): the live directory has the same name as the one coming in.
    #[test]
    fn restore_over_the_same_generation_number() {
        let root = tempfile::tempdir().unwrap();
        two_generations(&root.path().join("a"));
        let b = root.path().join("b");
        let db = Database::open(&b).unwrap();
        db.write(|x| x.put(street("x", "Rue Xi"))).unwrap();
        db.write(|x| x.put(street("y", "Rue Ypsilon"))).unwrap();
        let bytes = snapshot_of(&root.path().join("a"));
        db.restore_snapshot(&mut &bytes[..]).unwrap();
        assert_eq!((db.generation(), ids(&db)), (2, vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(top(&db, "rue gamma").as_deref(), Some("a"));
        drop(db);
        let db = Database::open(&b).unwrap();
        assert_eq!((db.generation(), ids(&db)), (2, vec!["a".to_owned(), "b".to_owned()]));
        db.write(|x| x.put(street("z", "Rue Zeta"))).unwrap();
        assert_eq!(top(&db, "rue zeta").as_deref(), Some("z"));
    }

    /// A restore killed before its commit point leaves staging behind:
    /// the next open removes it and serves the old database.
    #[test]
    fn a_restore_killed_before_its_commit_point_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let b = root.path().join("b");
        two_generations(&b);
        fs::create_dir_all(b.join(RESTORE_DIR).join("text")).unwrap();
        fs::write(b.join(RESTORE_DIR).join("docs"), b"half").unwrap();
        fs::write(b.join(INCOMING_STORE), b"half a store").unwrap();
        let db = Database::open(&b).unwrap();
        assert_eq!((db.generation(), ids(&db)), (2, vec!["a".to_owned(), "b".to_owned()]));
        assert!(!b.join(RESTORE_DIR).exists() && !b.join(INCOMING_STORE).exists());
    }

    /// Killed right after the commit point (the new store in place, its
    /// files still in gen-N.tmp): the next open finishes the install.
    #[test]
    fn a_restore_killed_after_its_commit_point_is_finished_at_open() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let db = Database::open(&a).unwrap();
        for i in 1..=5 {
            db.write(|x| x.put(street(&format!("r{i}"), &format!("Rue Numero {i}")))).unwrap();
        }
        let mut bytes = Vec::new();
        db.create_snapshot(&mut bytes).unwrap();
        drop(db);
        let b = root.path().join("b");
        two_generations(&b);
        // Stage and pass the commit point by hand, as `install` does.
        let (manifest, store) = snapshot::stage(&mut &bytes[..], &b.join(INCOMING_STORE)).unwrap();
        build_generation(&store, &b.join(RESTORE_DIR), true, DEFAULT_BUILD_MEMORY).unwrap();
        drop(store);
        fs::rename(b.join(RESTORE_DIR), tmp_dir(&b, manifest.generation)).unwrap();
        fs::rename(b.join(INCOMING_STORE), b.join(STORE_FILE)).unwrap();
        let db = Database::open(&b).unwrap();
        assert_eq!(db.generation(), 5);
        assert_eq!(ids(&db).len(), 5);
        assert_eq!(top(&db, "rue numero 3").as_deref(), Some("r3"));
        assert_eq!(read_current(&b).unwrap(), 5);
    }

    type Tables = Vec<(RawTable, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn tables_of(db: &Database) -> Tables {
        let view = db.store_view.read().as_ref().unwrap().begin().unwrap();
        RawTable::ALL
            .into_iter()
            .map(|t| {
                let mut pairs = Vec::new();
                view.export(t, &mut |k, v| {
                    pairs.push((k.to_vec(), v.to_vec()));
                    Ok(())
                })
                .unwrap();
                (t, pairs)
            })
            .collect()
    }

    /// A snapshot with right checksums of whatever tables it is given, as
    /// a careless or hostile producer could make one.
    fn snapshot_of_tables(dir: &Path, tables: &Tables) -> Vec<u8> {
        let mut import = Store::create_for_import(&dir.join("crafted.redb")).unwrap();
        for (t, pairs) in tables {
            let mut it = pairs.iter().cloned();
            import.import(*t, &mut || Ok(it.next())).unwrap();
        }
        let store = import.commit().unwrap();
        let mut out = Vec::new();
        snapshot::write(&mut out, &store.reader().begin().unwrap()).unwrap();
        out
    }

    fn pairs(tables: &mut Tables, t: RawTable) -> &mut Vec<(Vec<u8>, Vec<u8>)> {
        &mut tables.iter_mut().find(|(x, _)| *x == t).unwrap().1
    }

    /// The restore builds the index files from the snapshot's records, so
    /// it reads those records, and the tables that point to them, as input
    /// from elsewhere: tables that disagree are refused, with the database
    /// left as it was, instead of being installed to lose records later.
    #[test]
    fn a_snapshot_whose_tables_disagree_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let a = Database::open(root.path().join("a")).unwrap();
        for i in 0..40 {
            a.write(|x| x.put(street(&format!("r{i}"), &format!("Rue Numero {i}")))).unwrap();
        }
        let good = tables_of(&a);
        let b = root.path().join("b");
        two_generations(&b);
        let db = Database::open(&b).unwrap();
        let before = (db.generation(), ids(&db));
        let u64le = |n: u64| n.to_le_bytes().to_vec();
        type Damage<'a> = Box<dyn Fn(&mut Tables) + 'a>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "an id mapped to another record's key",
                Box::new(|t| {
                    let ids = pairs(t, RawTable::Ids);
                    let other = ids[1].1.clone();
                    ids[0].1 = other;
                }),
            ),
            (
                "an id with no record",
                Box::new(|t| {
                    let ids = pairs(t, RawTable::Ids);
                    let v = ids[0].1.clone();
                    ids.push((b"zz-ghost".to_vec(), v));
                }),
            ),
            (
                "a record with no id",
                Box::new(|t| {
                    pairs(t, RawTable::Ids).remove(3);
                }),
            ),
            (
                "next_block at an existing block",
                Box::new(|t| {
                    for (k, v) in pairs(t, RawTable::Meta).iter_mut() {
                        if k == b"next_block" {
                            *v = u64le(0);
                        }
                    }
                }),
            ),
            (
                "a block under another block's number",
                Box::new(|t| {
                    let blocks = pairs(t, RawTable::Blocks);
                    let last = blocks.len() - 1;
                    blocks[last].0 = u64le(9_999);
                }),
            ),
            (
                "a block claiming 4 GiB",
                Box::new(|t| {
                    // After the four bytes that mark a coded block.
                    let blocks = pairs(t, RawTable::Blocks);
                    blocks[0].1[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                }),
            ),
            (
                "a block that is not lz4",
                Box::new(|t| {
                    let blocks = pairs(t, RawTable::Blocks);
                    let n = blocks[0].1.len();
                    blocks[0].1[8..n].fill(0xff);
                }),
            ),
        ];
        for (i, (what, damage)) in cases.iter().enumerate() {
            let mut tables = good.clone();
            damage(&mut tables);
            let dir = root.path().join(format!("c{i}"));
            fs::create_dir(&dir).unwrap();
            let bytes = snapshot_of_tables(&dir, &tables);
            match db.restore_snapshot(&mut &bytes[..]) {
                Err(Error::Snapshot { reason }) => assert!(reason.contains("records are unusable"), "{what}: {reason}"),
                other => panic!("{what}: {:?}", other.map(|m| m.generation)),
            }
            assert_eq!((db.generation(), ids(&db)), before, "{what}");
            assert!(!b.join(RESTORE_DIR).exists() && !b.join(INCOMING_STORE).exists(), "{what}");
        }
        // The same tables undamaged are installed.
        let bytes = snapshot_of_tables(root.path(), &good);
        db.restore_snapshot(&mut &bytes[..]).unwrap();
        assert_eq!(ids(&db).len(), 40);
        assert_eq!(top(&db, "rue numero 17").as_deref(), Some("r17"));
    }

    /// Queries made only of common words reuse their candidates within a
    /// generation; a commit must make them see the new one at once.
    #[test]
    fn common_word_queries_see_each_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        db.write(|b| (0..20).try_for_each(|i| b.put(street(&format!("s{i}"), &format!("Rue de la Forge {i}")))))
            .unwrap();
        let found = |q: &str| -> Vec<String> {
            db.search(&SearchQuery::new(q))
                .unwrap()
                .iter()
                .filter_map(|f| f.prop_str("id").map(str::to_owned))
                .collect()
        };
        let first = found("rue de la");
        assert!(!first.is_empty());
        assert_eq!(found("rue de la"), first, "the same generation answers the same");
        db.write(|b| first.iter().try_for_each(|id| b.delete(id).map(|_| ()))).unwrap();
        let second = found("rue de la");
        assert!(!second.is_empty());
        assert!(second.iter().all(|id| !first.contains(id)), "deleted records came back: {second:?}");
    }
}
