//! Group commit: live writes of many threads that arrive while a commit is
//! under way wait in a queue, and the first of them to reach its head
//! commits them all at once (one redb commit, one fsync, one layer), as
//! the writers of `LevelDB` and `PostgreSQL` do. A write still returns only once
//! it is durable, and each stays atomic: the group's commit holds all of
//! them or none, and a write that fails is taken out of the group, which is
//! then run again without it.
//!
//! The queue only orders and hands over; what a group's commit does is the
//! database's ([`crate::Database::write_grouped`]).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::db::CommitReport;
use crate::error::{Error, Result};
use crate::profiles::address::Batch;

/// One write of a group, run by whichever thread leads it. It may be run
/// more than once (when another write of its group fails), each time on a
/// fresh batch.
pub(crate) type Job = Box<dyn FnMut(&mut Batch) -> Result<()> + Send>;

/// The most writes one group commits: a bound on the memory and the time
/// of one commit, whatever the number of writers.
const MAX_GROUP: usize = 256;

/// A write waiting in the queue.
pub(crate) struct Waiter {
    job: Mutex<Job>,
    /// Set, under the queue's lock, when its group is done.
    result: Mutex<Option<Result<CommitReport>>>,
}

/// The writes waiting, in order of arrival; the head's thread leads.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: Mutex<VecDeque<Arc<Waiter>>>,
    turn: Condvar,
}

/// What joining the queue came to.
pub(crate) enum Joined<'q> {
    /// Another thread's group committed (or failed) this write.
    Done(Result<CommitReport>),
    /// This thread leads a group, this write first.
    Lead(Group<'q>),
}

/// The writes a leader commits. They stay at the queue's head until
/// [`Group::finish`] (or the group's drop, on a panic) hands each its
/// result, so that later writes wait for the next group.
pub(crate) struct Group<'q> {
    queue: &'q Queue,
    members: Vec<Arc<Waiter>>,
}

impl Queue {
    /// Writes waiting, the group being committed included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// Queues `job`, then waits until a group has committed it, or until it
    /// is at the head, to lead the writes queued behind it.
    pub(crate) fn join(&self, job: Job) -> Joined<'_> {
        let me = Arc::new(Waiter { job: Mutex::new(job), result: Mutex::new(None) });
        let mut waiting = self.waiting.lock();
        waiting.push_back(me.clone());
        loop {
            if let Some(r) = me.result.lock().take() {
                return Joined::Done(r);
            }
            if waiting.front().is_some_and(|w| Arc::ptr_eq(w, &me)) {
                return Joined::Lead(Group { queue: self, members: vec![me] });
            }
            self.turn.wait(&mut waiting);
        }
    }
}

impl Group<'_> {
    /// Takes into the group the writes queued behind its leader, up to a
    /// bound: called once the leader holds the writer's lock, so that the
    /// writes that arrived while it waited for it share its commit.
    pub(crate) fn gather(&mut self) {
        let waiting = self.queue.waiting.lock();
        debug_assert!(self.members.len() == 1 && waiting.front().is_some_and(|w| Arc::ptr_eq(w, &self.members[0])));
        self.members = waiting.iter().take(MAX_GROUP).cloned().collect();
    }

    /// How many writes the group holds.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Runs the `i`th write of the group on `batch`.
    pub(crate) fn run(&self, i: usize, batch: &mut Batch) -> Result<()> {
        let mut job = self.members[i].job.lock();
        // A write that panics fails alone, and the waiters behind it are
        // not left waiting for a leader that is gone.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (*job)(batch)))
            .unwrap_or_else(|_| Err(Error::Store("the write panicked".into())))
    }

    /// Hands each write its result (`results[i]` the `i`th's) and wakes
    /// their threads; gives back the leader's own.
    pub(crate) fn finish(mut self, results: Vec<Result<CommitReport>>) -> Result<CommitReport> {
        debug_assert_eq!(results.len(), self.members.len());
        self.deliver(results.into_iter().map(Some).collect())
            .unwrap_or_else(|| Err(Error::Store("the group commit gave no result".into())))
    }

    fn deliver(&mut self, results: Vec<Option<Result<CommitReport>>>) -> Option<Result<CommitReport>> {
        let members = std::mem::take(&mut self.members);
        let mut waiting = self.queue.waiting.lock();
        let mut mine = None;
        for (i, (m, r)) in members.iter().zip(results).enumerate() {
            let r = r.unwrap_or_else(|| Err(Error::Store("the group commit was abandoned".into())));
            debug_assert!(waiting.front().is_some_and(|w| Arc::ptr_eq(w, m)));
            waiting.pop_front();
            if i == 0 {
                mine = Some(r);
            } else {
                *m.result.lock() = Some(r);
            }
        }
        self.queue.turn.notify_all();
        mine
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if !self.members.is_empty() {
            let none = (0..self.members.len()).map(|_| None).collect();
            self.deliver(none);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::db::tests::street;
    use crate::{Database, Error};

    type Write = Box<dyn FnMut(&mut crate::Batch) -> crate::Result<u64> + Send>;

    /// Holds the writer's lock with a live write of `hold`, on a thread of
    /// its own, until `n` writes wait in the queue; returns once it holds
    /// it, with the thread, which gives the generation of its commit.
    pub(super) fn hold_writer(
        db: &Arc<Database>,
        n: usize,
        hold: impl FnOnce(&mut crate::Batch) -> crate::Result<()> + Send + 'static,
    ) -> std::thread::JoinHandle<u64> {
        let (holding, held) = std::sync::mpsc::channel();
        let db = db.clone();
        let holder = std::thread::spawn(move || {
            db.write_live(|b| {
                holding.send(()).unwrap();
                let until = Instant::now() + Duration::from_secs(20);
                while db.queue.len() < n && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                hold(b)
            })
            .unwrap()
            .1
            .generation
        });
        held.recv().unwrap();
        holder
    }

    /// Holds the writer's lock (a live write of `s_hold`) until `n` writes
    /// wait in the queue, then runs `writes` grouped, each on its thread.
    /// Gives their results, and the generation of the holder's commit.
    fn held_then_grouped(
        db: &Arc<Database>,
        writes: Vec<Write>,
    ) -> (Vec<crate::Result<(u64, crate::CommitReport)>>, u64) {
        let holder = hold_writer(db, writes.len(), |b| b.put(street("s_hold", "Rue Tenue")));
        let writers: Vec<_> = writes
            .into_iter()
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || db.write_grouped(w))
            })
            .collect();
        let results = writers.into_iter().map(|h| h.join().unwrap()).collect();
        (results, holder.join().unwrap())
    }

    #[test]
    fn writes_that_wait_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path()).unwrap());
        db.write(|b| b.put(street("s0", "Rue Premiere"))).unwrap();
        let writes = (0..6)
            .map(|i| {
                let w: Write = Box::new(move |b| {
                    // Writer 2 writes two records.
                    for j in 0..if i == 2 { 2 } else { 1 } {
                        b.put(street(&format!("s{i}_{j}"), &format!("Rue Groupee {i} {j}")))?;
                    }
                    Ok(i)
                });
                w
            })
            .collect();
        let (results, held) = held_then_grouped(&db, writes);
        assert_eq!(held, 2);
        for (i, r) in results.into_iter().enumerate() {
            let (out, report) = r.unwrap();
            assert_eq!(out, i as u64, "each write gets its own output");
            assert_eq!(report.generation, 3, "one commit for the six writes");
            assert_eq!(report.written, if i == 2 { 2 } else { 1 }, "each write counts its own records");
            assert_eq!(report.total, 9);
        }
        assert_eq!(db.generation(), 3);
        assert_eq!(db.len(), 9);
        assert!(db.get("s2_1").unwrap().is_some());
        let reopened = {
            drop(Arc::try_unwrap(db).ok().unwrap());
            Database::open(dir.path()).unwrap()
        };
        assert_eq!(reopened.len(), 9, "durable");
    }

    #[test]
    fn a_failing_write_is_left_out_of_its_group_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path()).unwrap());
        db.write(|b| b.put(street("s0", "Rue Premiere"))).unwrap();
        let writes = (0..4)
            .map(|i| {
                let w: Write = Box::new(move |b| {
                    b.put(street(&format!("w{i}"), "Rue Groupee"))?;
                    if i == 1 {
                        // Half written, then refused: nothing of it may stay.
                        return Err(Error::InvalidQuery("refused".into()));
                    }
                    assert!(i != 3, "a write that panics");
                    Ok(i)
                });
                w
            })
            .collect();
        let (results, _) = held_then_grouped(&db, writes);
        assert!(matches!(results[1], Err(Error::InvalidQuery(_))), "{:?}", results[1].as_ref().err());
        assert!(results[3].is_err());
        for i in [0, 2] {
            assert_eq!(results[i].as_ref().unwrap().1.generation, 3);
        }
        assert!(db.get("w1").unwrap().is_none(), "the failed write left nothing");
        assert!(db.get("w3").unwrap().is_none(), "the write that panicked left nothing");
        assert!(db.get("w0").unwrap().is_some() && db.get("w2").unwrap().is_some());
        assert_eq!(db.len(), 4);
        assert_eq!(db.generation(), 3);
        // The queue is free: the next write commits.
        db.put_live(street("s9", "Rue Suivante")).unwrap();
        assert!(db.delete_live("s9").unwrap());
        assert!(!db.delete_live("s9").unwrap());
        assert_eq!(db.len(), 4);
    }
}

/// Found by a break-it run: a group answers as its writes committed one
/// after the other would, in queue order.
#[cfg(test)]
mod as_commits_one_after_another {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::import::{Format, OnError, Skipped};
    use crate::Database;

    #[derive(Clone, Debug)]
    enum W {
        Csv(&'static str),
        Nd(String),
        Del(&'static str),
    }

    const HEAD: &str = "id;numero;nom_voie;code_postal;code_insee;nom_commune;lon;lat\n";

    fn run(b: &mut crate::Batch, w: &W) -> crate::Result<String> {
        match w {
            W::Csv(rows) => {
                let body = format!("{HEAD}{rows}");
                b.import(body.as_bytes(), Format::BanCsv, OnError::Fail, &mut Skipped::default())?;
                Ok(String::new())
            }
            W::Nd(lines) => {
                b.import(lines.as_bytes(), Format::BanNdjson, OnError::Fail, &mut Skipped::default())?;
                Ok(String::new())
            }
            W::Del(id) => Ok(format!("found {}", b.delete(id)?)),
        }
    }

    fn street(id: &str, name: &str, numbers: &[u32]) -> String {
        let hn: Vec<String> = numbers.iter().map(|n| format!(r#""{n}": {{"lon": 5.7{n}, "lat": 45.1{n}}}"#)).collect();
        format!(
            r#"{{"id": "{id}", "type": "street", "name": "{name}", "postcode": "38000", "citycode": "38185", "city": "Grenoble", "lon": 5.7, "lat": 45.1, "importance": 0.5, "housenumbers": {{{}}}}}"#,
            hn.join(", ")
        )
    }

    /// Runs `setup` with full commits on both databases, then `writes` as one
    /// group (in this queue order) on one and one full commit each on the
    /// other; compares answers, records of `ids`, counts.
    fn grouped_vs_sequential(setup: &[W], writes: Vec<W>, ids: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let live = Arc::new(Database::open(dir.path().join("live")).unwrap());
        let full = Database::open(dir.path().join("full")).unwrap();
        for w in setup {
            live.write(|b| run(b, w)).unwrap();
            full.write(|b| run(b, w)).unwrap();
        }
        // A live write first, so that the next ones are live too.
        let seed = W::Nd(street("38185_9999", "Rue Graine", &[1]));
        live.write_live(|b| run(b, &seed)).unwrap();
        full.write(|b| run(b, &seed)).unwrap();
        let holder = super::tests::hold_writer(&live, writes.len(), |_| Ok(()));
        let mut handles = Vec::new();
        for (i, w) in writes.iter().cloned().enumerate() {
            let db = live.clone();
            handles.push(std::thread::spawn(move || db.write_grouped(move |b| run(b, &w))));
            // In this order in the queue.
            while live.queue.len() < i + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        holder.join().unwrap();
        full.write(|_| Ok(())).ok(); // the holder's empty write, to keep generations comparable (not compared)
        let mut problems = Vec::new();
        for (w, g) in writes.iter().zip(&got) {
            let want = full.write(|b| run(b, w));
            match (g, &want) {
                (Ok((o, r)), Ok((wo, wr))) => {
                    // The records settling derives (streets and towns that
                    // CSV rows imply, derived again when a row goes) are
                    // counted in a group's total, not in each write's: the
                    // counts are compared where nothing is derived.
                    let derives = !matches!(w, W::Nd(_));
                    if o != wo || (!derives && (r.written, r.deleted) != (wr.written, wr.deleted)) {
                        problems.push(format!(
                            "{w:?}: grouped said {o:?} written {} deleted {}, sequential {wo:?} written {} deleted {}",
                            r.written, r.deleted, wr.written, wr.deleted
                        ));
                    }
                }
                (Err(e), Ok(_)) => problems.push(format!("{w:?}: grouped failed ({e}), sequential committed")),
                (Ok(_), Err(e)) => problems.push(format!("{w:?}: grouped committed, sequential failed ({e})")),
                (Err(_), Err(_)) => {}
            }
        }
        for id in ids {
            let (a, b) = (live.get(id).unwrap(), full.get(id).unwrap());
            if a != b {
                problems.push(format!("get {id}: grouped {a:?}\n   sequential {b:?}"));
            }
        }
        if live.len() != full.len() {
            problems.push(format!("len: grouped {} sequential {}", live.len(), full.len()));
        }
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    /// A street derived from CSV rows by one write, deleted by the next of the group.
    #[test]
    fn delete_of_a_street_a_csv_write_of_the_group_derived() {
        grouped_vs_sequential(
            &[W::Nd(street("38185_0001", "Rue Base", &[1, 2]))],
            vec![W::Csv("38185_0500_00001;1;Rue Derivee;38000;38185;Grenoble;5.71;45.18\n"), W::Del("38185_0500")],
            &["38185_0500", "38185_0500_00001", "38185"],
        );
    }

    /// The same with the street derived before the group.
    #[test]
    fn delete_of_a_derived_street_after_a_row_of_the_group() {
        grouped_vs_sequential(
            &[W::Csv("38185_0500_00001;1;Rue Derivee;38000;38185;Grenoble;5.71;45.18\n")],
            vec![W::Csv("38185_0500_00002;2;Rue Renommee;38000;38185;Grenoble;5.72;45.19\n"), W::Del("38185_0500")],
            &["38185_0500", "38185_0500_00001", "38185_0500_00002", "38185"],
        );
    }

    /// A street put twice in one group; then deleted and put again.
    #[test]
    fn a_street_put_twice_in_a_group() {
        grouped_vs_sequential(
            &[W::Nd(street("38185_0001", "Rue Base", &[1, 2, 3]))],
            vec![
                W::Nd(street("38185_0001", "Rue Une", &[2, 3, 4])),
                W::Nd(street("38185_0001", "Rue Deux", &[5])),
                W::Del("38185_0001"),
                W::Nd(street("38185_0001", "Rue Trois", &[1, 5])),
            ],
            &["38185_0001", "38185_0001_1", "38185_0001_2", "38185_0001_3", "38185_0001_4", "38185_0001_5"],
        );
    }

    /// A street deleted, then one of its numbers put alone under it, in one group.
    #[test]
    fn delete_then_number_alone() {
        let num = r#"{"id": "38185_0001_9", "type": "housenumber", "parent": "38185_0001", "name": "9 Rue", "housenumber": "9", "lon": 5.7, "lat": 45.2}"#;
        grouped_vs_sequential(
            &[W::Nd(street("38185_0001", "Rue Base", &[1, 2, 3]))],
            vec![W::Del("38185_0001"), W::Nd(num.into()), W::Nd(street("38185_0001", "Rue Neuve", &[1]))],
            &["38185_0001", "38185_0001_1", "38185_0001_2", "38185_0001_9"],
        );
    }

    /// CSV rows moving a derived street's numbers to another derived street, then the first deleted.
    #[test]
    fn csv_rows_then_deletes() {
        grouped_vs_sequential(
            &[W::Csv(
                "38185_0500_00001;1;Rue Derivee;38000;38185;Grenoble;5.71;45.18\n38185_0500_00002;2;Rue Derivee;38000;38185;Grenoble;5.72;45.18\n",
            )],
            vec![
                W::Del("38185_0500_00001"),
                W::Csv("38185_0501_00003;3;Rue Autre;38000;38185;Grenoble;5.73;45.18\n"),
                W::Del("38185_0500_00002"),
                W::Del("38185_0501"),
            ],
            &["38185_0500", "38185_0500_00001", "38185_0500_00002", "38185_0501", "38185_0501_00003", "38185"],
        );
    }

    /// A housenumber put before its street exists, then the street with its
    /// full list of numbers, as two writes of one group: commits one after
    /// the other keep the number (it joins the street); one batch would
    /// remove it.
    #[test]
    fn number_before_its_new_street_in_one_group() {
        let num = r#"{"id": "38185_0002_9", "type": "housenumber", "parent": "38185_0002", "name": "9 Rue", "housenumber": "9", "lon": 5.7, "lat": 45.2}"#;
        grouped_vs_sequential(
            &[W::Nd(street("38185_0001", "Rue Base", &[1, 2, 3]))],
            vec![W::Nd(num.into()), W::Nd(street("38185_0002", "Rue Neuve", &[1]))],
            &["38185_0002", "38185_0002_1", "38185_0002_9"],
        );
    }

    /// The mirror: a number put before its street (an earlier commit), the
    /// street put, then put again with a list without it, both in one group:
    /// commits one after the other remove the number (it joined the street
    /// with the first put, the second's list lacks it); one batch would
    /// keep it.
    #[test]
    fn orphan_joins_then_next_list_in_one_group() {
        let num = r#"{"id": "38185_0002_9", "type": "housenumber", "parent": "38185_0002", "name": "9 Rue", "housenumber": "9", "lon": 5.7, "lat": 45.2}"#;
        grouped_vs_sequential(
            &[W::Nd(street("38185_0001", "Rue Base", &[1, 2, 3])), W::Nd(num.into())],
            vec![W::Nd(street("38185_0002", "Rue Neuve", &[1])), W::Nd(street("38185_0002", "Rue Neuve", &[1, 2]))],
            &["38185_0002", "38185_0002_1", "38185_0002_2", "38185_0002_9"],
        );
    }
}
