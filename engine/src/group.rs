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

    use crate::record::{Field, Point, Record, Value};
    use crate::{Database, Error};

    type Write = Box<dyn FnMut(&mut crate::Batch) -> crate::Result<u64> + Send>;

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

    /// Holds the writer's lock (a live write of `s_hold`) until `n` writes
    /// wait in the queue, then runs `writes` grouped, each on its thread.
    /// Gives their results, and the generation of the holder's commit.
    fn held_then_grouped(
        db: &Arc<Database>,
        writes: Vec<Write>,
    ) -> (Vec<crate::Result<(u64, crate::CommitReport)>>, u64) {
        let n = writes.len();
        let (holding, held) = std::sync::mpsc::channel();
        let holder = {
            let db = db.clone();
            std::thread::spawn(move || {
                db.write_live(|b| {
                    holding.send(()).unwrap();
                    let until = Instant::now() + Duration::from_secs(20);
                    while db.queue.len() < n && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    b.put(street("s_hold", "Rue Tenue"))
                })
                .unwrap()
                .1
                .generation
            })
        };
        held.recv().unwrap();
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
