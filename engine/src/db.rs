//! A database directory and its generations.
//!
//! ```text
//! DIR/store.redb          durable documents (the source of truth)
//! DIR/CURRENT             number of the generation readers open
//! DIR/gen-<N>/docs        documents, memory-mapped
//! DIR/gen-<N>/geo         geo index, memory-mapped
//! DIR/gen-<N>/text/       tantivy index
//! DIR/gen-<N>/COMPLETE    written last: the directory is whole
//! ```
//!
//! A commit builds `gen-<N>.tmp/` completely and syncs it, then commits the
//! redb transaction that records generation N (the commit point), then
//! renames the directory and updates `CURRENT`. A crash before the redb
//! commit leaves generation N-1 untouched; a crash after it is finished at
//! the next read-write open, which rebuilds the files from redb if needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::docs::{Docs, DocsBuilder};
use crate::error::{Error, Result};
use crate::geo::{GeoBuilder, GeoIndex};
use crate::profile::{self, Feature, Target};
use crate::query::{self, ReverseQuery, SearchQuery};
use crate::record::Record;
use crate::store::{Store, StoreTxn};
use crate::text::{TextIndex, TextWriter};

const STORE_FILE: &str = "store.redb";
const CURRENT_FILE: &str = "CURRENT";
const COMPLETE_FILE: &str = "COMPLETE";

fn gen_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("gen-{n:010}"))
}

fn tmp_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("gen-{n:010}.tmp"))
}

fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// One committed, immutable state of the database, open for reading.
pub struct Generation {
    pub(crate) number: u64,
    pub(crate) docs: Docs,
    pub(crate) geo: GeoIndex,
    pub(crate) text: TextIndex,
}

impl Generation {
    fn open(dir: &Path, number: u64) -> Result<Generation> {
        let docs = Docs::open(&dir.join("docs"))?;
        let geo = GeoIndex::open(&dir.join("geo"))?;
        // Each file is checked on its own at open; this checks that they
        // belong together, so a query can never index past the documents.
        if geo.max_slot().is_some_and(|s| s as usize >= docs.len()) {
            return Err(Error::Corrupt {
                path: dir.join("geo"),
                reason: "refers to documents that do not exist".into(),
            });
        }
        Ok(Generation { number, docs, geo, text: TextIndex::open(&dir.join("text"), &profile::FILTERS)? })
    }
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
    dir: PathBuf,
    store: Option<Mutex<Store>>,
    current: RwLock<Option<Arc<Generation>>>,
}

impl Database {
    /// Opens (creating if needed) a database for reading and writing. Only
    /// one process may hold it so; finishes any commit a crash interrupted.
    pub fn open(dir: impl AsRef<Path>) -> Result<Database> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let store = Store::open(&dir.join(STORE_FILE))?;
        let committed = store.generation()?;
        let db = Database { dir, store: None, current: RwLock::new(None) };
        db.recover(&store, committed)?;
        let current = if committed > 0 {
            Some(Arc::new(Generation::open(&gen_dir(&db.dir, committed), committed)?))
        } else {
            None
        };
        Ok(Database { store: Some(Mutex::new(store)), current: RwLock::new(current), ..db })
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
            n => Some(Arc::new(Generation::open(&gen_dir(&dir, n), n)?)),
        };
        Ok(Database { dir, store: None, current: RwLock::new(current) })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Brings the directory in line with the committed generation.
    fn recover(&self, store: &Store, committed: u64) -> Result<()> {
        let dir = &self.dir;
        if committed > 0 && !gen_dir(dir, committed).join(COMPLETE_FILE).exists() {
            let tmp = tmp_dir(dir, committed);
            if tmp.join(COMPLETE_FILE).exists() {
                fs::rename(&tmp, gen_dir(dir, committed)).map_err(|e| Error::io(&tmp, e))?;
            } else {
                self.rebuild(store, committed)?;
            }
        }
        if read_current(dir)? != committed {
            write_current(dir, committed)?;
        }
        self.remove_other_generations(committed)
    }

    /// Rebuilds a generation's files from redb alone.
    fn rebuild(&self, store: &Store, number: u64) -> Result<()> {
        let tmp = tmp_dir(&self.dir, number);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(tmp.join("text")).map_err(|e| Error::io(&tmp, e))?;
        let mut text = TextWriter::open(&tmp.join("text"), &profile::FILTERS)?;
        let mut txn = store.begin()?;
        txn.for_each(|key, r| {
            if let Some(d) = profile::text_doc(key, &r) {
                text.add(d)?;
            }
            Ok(())
        })?;
        text.finish()?;
        build_read_files(&tmp, &mut txn)?;
        drop(txn);
        fs::rename(&tmp, gen_dir(&self.dir, number)).map_err(|e| Error::io(&tmp, e))?;
        sync_dir(&self.dir)
    }

    fn remove_other_generations(&self, keep: u64) -> Result<()> {
        let keep_name = gen_dir(&self.dir, keep).file_name().map(|n| n.to_owned());
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

    /// The generation queries run against, if anything was committed.
    pub fn snapshot(&self) -> Option<Arc<Generation>> {
        self.current.read().clone()
    }

    /// The number of the visible generation (0 for an empty database).
    pub fn generation(&self) -> u64 {
        self.snapshot().map_or(0, |g| g.number)
    }

    /// Records in the visible generation.
    pub fn len(&self) -> u64 {
        self.snapshot().map_or(0, |g| g.docs.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies `f` as one atomic commit: everything it writes becomes
    /// visible at once as a new generation, or nothing does.
    pub fn write<T>(&self, f: impl FnOnce(&mut Batch) -> Result<T>) -> Result<(T, CommitReport)> {
        let store = self.store.as_ref().ok_or(Error::ReadOnly)?.lock();
        let previous = store.generation()?;
        let number = previous + 1;
        let tmp = tmp_dir(&self.dir, number);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(tmp.join("text")).map_err(|e| Error::io(&tmp, e))?;
        if previous > 0 {
            link_dir(&gen_dir(&self.dir, previous).join("text"), &tmp.join("text"))?;
        }
        let mut batch = Batch {
            txn: store.begin()?,
            text: TextWriter::open(&tmp.join("text"), &profile::FILTERS)?,
            written: 0,
            deleted: 0,
        };
        let out = match f(&mut batch) {
            Ok(out) => out,
            Err(e) => {
                drop(batch);
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let Batch { mut txn, text, written, deleted } = batch;
        text.finish()?;
        build_read_files(&tmp, &mut txn)?;
        let total = txn.count()?;
        txn.commit(number)?;
        let dest = gen_dir(&self.dir, number);
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&tmp, e))?;
        write_current(&self.dir, number)?;
        let generation = Arc::new(Generation::open(&dest, number)?);
        *self.current.write() = Some(generation);
        self.remove_other_generations(number)?;
        Ok((out, CommitReport { generation: number, written, deleted, total }))
    }

    /// Searches the visible generation.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<Feature>> {
        match self.snapshot() {
            Some(g) => query::search(&g, q, None),
            None => Ok(Vec::new()),
        }
    }

    /// The records nearest a point.
    pub fn reverse(&self, q: &ReverseQuery) -> Result<Vec<Feature>> {
        match self.snapshot() {
            Some(g) => Ok(query::reverse(&g, q)),
            None => Ok(Vec::new()),
        }
    }

    /// One record by id, as a feature.
    pub fn get(&self, id: &str) -> Option<Feature> {
        let g = self.snapshot()?;
        let slot = g.docs.slot_of_id(id)?;
        Some(profile::feature(&g.docs, Target::of(&g.docs, slot), 1.0, None))
    }
}

/// The writes of one commit.
pub struct Batch {
    txn: StoreTxn,
    text: TextWriter,
    written: u64,
    deleted: u64,
}

impl Batch {
    /// Adds a record, replacing any record with the same id.
    pub fn put(&mut self, record: Record) -> Result<()> {
        // The text is taken before the store owns the record, so the record
        // is never copied; the key is known only once it is stored.
        let doc = profile::text_doc(0, &record);
        let (key, old) = self.txn.put(record)?;
        if let Some(old) = old {
            self.text.delete(old);
        }
        if let Some(mut d) = doc {
            d.key = key;
            self.text.add(d)?;
        }
        self.written += 1;
        Ok(())
    }

    /// Removes the record with this id; false if there was none.
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        match self.txn.delete(id)? {
            Some(key) => {
                self.text.delete(key);
                self.deleted += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Writes the documents and geo files of a generation from the store, then
/// the COMPLETE marker, and syncs the directory.
fn build_read_files(dir: &Path, txn: &mut StoreTxn) -> Result<()> {
    let mut docs = DocsBuilder::create(&dir.join("docs"))?;
    let mut geo = GeoBuilder::default();
    txn.for_each(|key, r| {
        let slot = docs.add(key, &r)?;
        if let Some(p) = r.point {
            geo.add(p, slot);
        }
        Ok(())
    })?;
    docs.finish()?;
    geo.write(&dir.join("geo"))?;
    sync_dir(&dir.join("text"))?;
    let marker = dir.join(COMPLETE_FILE);
    fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))?;
    fs::File::open(&marker).and_then(|f| f.sync_all()).map_err(|e| Error::io(&marker, e))?;
    sync_dir(dir)
}

/// Hard-links the files of the previous tantivy index, which tantivy never
/// modifies in place, so the next generation starts from it for free.
fn link_dir(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        let target = to.join(&name);
        if fs::hard_link(e.path(), &target).is_err() {
            fs::copy(e.path(), &target).map_err(|err| Error::io(&target, err))?;
        }
    }
    Ok(())
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
mod tests {
    use super::*;
    use crate::record::{Field, Point, Value};
    use crate::SearchQuery;

    fn street(id: &str, name: &str) -> Record {
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
        let (_, report) = db
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
        assert!(db.get("b").is_none());
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
        assert!(db.get("c").is_none());
        drop(db);
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.generation(), 2);
        assert!(db.get("c").is_none());
        assert!(fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn mismatched_generation_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        two_generations(dir.path());
        let mut geo = GeoBuilder::default();
        geo.add(Point { lat: 45.0, lon: 5.0 }, 999);
        geo.write(&gen_dir(dir.path(), 2).join("geo")).unwrap();
        assert!(matches!(Database::open_read_only(dir.path()), Err(Error::Corrupt { .. })));
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
}
