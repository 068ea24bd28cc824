//! One user's feed on this instance: their subscribers, how far the instance has read their
//! changes (the head), and the decisions about who is sent what. No I/O here: the hub reads,
//! this module decides and queues, under one lock per user.
//!
//! A subscriber is *replaying* (its own stream reads the changes it missed from the
//! database, a page at a time) or *live* (the feed's reader sends it each change). It becomes
//! live by [`Feed::join`]: allowed once the feed's head is not past the subscriber's position,
//! so that every change after its position is one the reader has yet to send. Live
//! subscribers keep a position too, and are sent only changes above it: a change reaches each
//! subscriber once, whichever way it came.

use std::{num::NonZeroUsize, sync::Arc};

use chrono::Utc;
use lru::LruCache;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChangeKind, Event, Overflow};
use crate::{
    auth::UserId,
    db::{
        changes::{Change, Changed, Committed, Stamp},
        tasks::Task,
    },
    domain::query::Filter,
};

/// How many tasks a feed remembers as it last sent them, for filtered subscribers (did the
/// task match before this change?). A task not remembered counts as "may have matched".
const REMEMBERED_TASKS: usize = 256;

/// One subscription as its feed keeps it.
pub(super) struct Subscriber {
    pub(super) id: u64,
    pub(super) filter: Option<Arc<Filter>>,
    pub(super) sender: mpsc::Sender<Event>,
    pub(super) overflow: Arc<Overflow>,
    /// `None` while replaying; once live, the version it has been sent everything up to.
    pub(super) position: Option<i64>,
}

/// What a feed knows and holds, behind its lock.
pub(super) struct State {
    /// The epoch the head counts in; `None` when unknown (no live subscriber yet, or the user
    /// was deleted): the next read adopts the one it finds.
    pub(super) epoch: Option<i64>,
    /// The version up to which this instance has read the user's changes and sent them to its
    /// live subscribers.
    pub(super) head: i64,
    /// Whether a read is wanted (something was announced past the head).
    pub(super) dirty: bool,
    /// Whether a reader task is running.
    pub(super) reading: bool,
    pub(super) subscribers: Vec<Subscriber>,
    /// Tasks as last sent (`None`: known deleted), kept while filtered subscribers are live;
    /// made on first use, so that feeds without filters carry no table.
    remembered: Option<LruCache<Uuid, Option<Task>>>,
}

/// A user's feed.
pub(super) struct Feed {
    pub(super) user: UserId,
    pub(super) key: String,
    state: std::sync::Mutex<State>,
}

/// What became of a subscriber that asked to go live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Join {
    /// Live; the feed's reader is running or not needed.
    Joined,
    /// Live as the feed's first live subscriber: a reader must be started.
    Alone,
    /// Not live: the feed has sent changes past its position; read on.
    Behind,
}

/// What the reader should read, and with what it decides.
pub(super) struct Plan {
    pub(super) from: i64,
    pub(super) epoch: Option<i64>,
    /// The distinct filters of live subscribers.
    pub(super) filters: Vec<Arc<Filter>>,
}

/// A read's result, ready to be sent under the lock.
pub(super) struct Batch {
    pub(super) epoch: i64,
    pub(super) changes: Vec<Change>,
    /// For each change, per filter of the plan: whether the task matches it now.
    pub(super) now: Vec<Vec<bool>>,
    /// For each change, per filter: whether the task as last sent matched (`None`: unknown).
    pub(super) before: Vec<Option<Vec<bool>>>,
    /// The version everything has been read up to.
    pub(super) upto: i64,
}

impl Feed {
    pub(super) fn new(user: UserId, key: String) -> Self {
        Self {
            user,
            key,
            state: std::sync::Mutex::new(State {
                epoch: None,
                head: 0,
                dirty: false,
                reading: false,
                subscribers: Vec::new(),
                remembered: None,
            }),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change under this lock leaves the state consistent step by step (pushes,
        // removals, numbers): a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Something at `stamp` was committed: whether a reader must be started (a read is wanted
    /// and none runs). Nothing is read for a feed without live subscribers.
    pub(super) fn announced(&self, stamp: Option<Stamp>) -> bool {
        let mut state = self.lock();
        if !state.has_live() {
            return false;
        }
        let behind = match stamp {
            Some(stamp) => state.epoch != Some(stamp.epoch) || stamp.version > state.head,
            // The user's row is gone, or the caller does not know: read and see.
            None => true,
        };
        if behind {
            state.dirty = true;
        }
        state.start_reader()
    }

    /// The reader's next read, or `None` when there is nothing to read (the reader then
    /// ends; a later announcement starts another).
    pub(super) fn next_read(&self) -> Option<Plan> {
        let mut state = self.lock();
        if !state.dirty || !state.has_live() {
            state.reading = false;
            return None;
        }
        state.dirty = false;
        let mut filters: Vec<Arc<Filter>> = Vec::new();
        for subscriber in state.live() {
            if let Some(filter) = &subscriber.filter
                && !filters.iter().any(|known| **known == **filter)
            {
                filters.push(Arc::clone(filter));
            }
        }
        Some(Plan {
            from: state.head,
            epoch: state.epoch,
            filters,
        })
    }

    /// A read failed: the reader stops, and the next announcement (or the periodic check)
    /// tries again.
    pub(super) fn read_failed(&self) {
        let mut state = self.lock();
        state.dirty = true;
        state.reading = false;
    }

    /// The tasks as last sent, for the changes just read, when filters need them.
    pub(super) fn remembered(&self, changes: &[Change]) -> Vec<Option<Option<Task>>> {
        let mut state = self.lock();
        changes
            .iter()
            .map(|change| {
                state
                    .remembered
                    .as_mut()
                    .and_then(|remembered| remembered.get(&change.task_id).cloned())
            })
            .collect()
    }

    /// A write committed through this instance, with every change it made to the feed: sent
    /// to the live subscribers at once, without a read, when the feed stands where the write
    /// began (or past it) and no live subscriber has a filter (filters are decided by the
    /// database). Otherwise, whether a reader must be started, as for an announcement.
    pub(super) fn committed(&self, committed: &Committed) -> bool {
        let mut state = self.lock();
        if !state.has_live() {
            return false;
        }
        let direct = state.epoch == Some(committed.epoch)
            && state.head >= committed.after
            && !state.live().any(|s| s.filter.is_some());
        if direct {
            let n = committed.changes.len();
            let plan = Plan {
                from: state.head,
                epoch: state.epoch,
                filters: Vec::new(),
            };
            deliver(
                &mut state,
                &plan,
                Batch {
                    epoch: committed.epoch,
                    changes: committed.changes.clone(),
                    now: vec![Vec::new(); n],
                    before: vec![None; n],
                    upto: committed.upto,
                },
            );
            return false;
        }
        if state.epoch != Some(committed.epoch) || committed.upto > state.head {
            state.dirty = true;
        }
        state.start_reader()
    }

    /// Sends a read's changes to the live subscribers the plan was made for and moves the
    /// head. A batch read under another epoch than the feed's now (the user was deleted
    /// meanwhile) is dropped and read again.
    pub(super) fn deliver(&self, plan: &Plan, batch: Batch) {
        deliver(&mut self.lock(), plan, batch);
    }
    /// Tells the live subscribers to read afresh from `stamp` (their epoch changed, or a
    /// deletion they may have missed was purged), unless the feed moved on since the read
    /// (`expected` is no longer its epoch). `None`: the user's row is gone.
    pub(super) fn resync(&self, expected: Option<i64>, stamp: Option<Stamp>) {
        let mut state = self.lock();
        if state.epoch != expected {
            state.dirty = true;
            return;
        }
        let (epoch, head) = match stamp {
            Some(stamp) => (Some(stamp.epoch), stamp.version),
            None => (None, 0),
        };
        let event = Event::Resync {
            at: Utc::now(),
            stamp: stamp.unwrap_or(Stamp {
                epoch: expected.unwrap_or_default(),
                version: 0,
            }),
        };
        state.restart(epoch, head, Some(&event));
    }

    /// The user was deleted at `stamp`, with `tasks` (`None`: too many to name). Their live
    /// subscribers are told of each task's deletion, or to resync; the feed then waits for the
    /// user's next life, from version 0.
    pub(super) fn gone(&self, stamp: Stamp, tasks: Option<&[Uuid]>) {
        let mut state = self.lock();
        if state.epoch != Some(stamp.epoch) {
            return;
        }
        let at = Utc::now();
        let mut overflowed = Vec::new();
        if let Some(tasks) = tasks {
            // Every live subscriber hears of every task, filtered ones too: whether a task
            // matched their filter is not known here, and a surplus deletion is harmless.
            for task_id in tasks {
                let change = Arc::new(Change {
                    task_id: *task_id,
                    version: stamp.version,
                    what: Changed::Deleted { at },
                });
                for subscriber in state.subscribers.iter() {
                    if subscriber.position.is_none() {
                        continue;
                    }
                    let event = Event::Change {
                        change: Arc::clone(&change),
                        kind: ChangeKind::Deleted,
                        epoch: stamp.epoch,
                    };
                    if !send(subscriber, event) {
                        overflowed.push(subscriber.id);
                    }
                }
            }
            state.drop_overflowed(&overflowed);
            state.restart(None, 0, None);
        } else {
            state.restart(None, 0, Some(&Event::Resync { at, stamp }));
        }
    }

    /// Makes a replaying subscriber live at `at` (a position its last read caught up to), if
    /// the feed's head is not past it (else it must read on: the reader has sent changes after
    /// `at` it did not get). A feed without live subscribers takes the subscriber's position
    /// as its head; it has ignored announcements meanwhile, so it then reads once
    /// ([`Join::Alone`]).
    pub(super) fn join(&self, id: u64, at: Stamp) -> Join {
        let mut state = self.lock();
        let joined = if !state.has_live() {
            state.epoch = Some(at.epoch);
            state.head = at.version;
            state.remembered = None;
            state.dirty = true;
            Join::Alone
        } else if state.epoch.is_none_or(|epoch| epoch == at.epoch) && state.head <= at.version {
            Join::Joined
        } else {
            return Join::Behind;
        };
        if state.epoch.is_none() {
            state.epoch = Some(at.epoch);
        }
        if let Some(subscriber) = state.subscribers.iter_mut().find(|s| s.id == id) {
            subscriber.position = Some(at.version);
        }
        if joined == Join::Alone && !state.start_reader() {
            return Join::Joined;
        }
        joined
    }
}

impl State {
    pub(super) fn has_live(&self) -> bool {
        self.subscribers.iter().any(|s| s.position.is_some())
    }

    fn live(&self) -> impl Iterator<Item = &Subscriber> {
        self.subscribers.iter().filter(|s| s.position.is_some())
    }

    /// Whether the caller must start a reader (one is wanted and none runs); marks it running.
    fn start_reader(&mut self) -> bool {
        if self.dirty && !self.reading {
            self.reading = true;
            return true;
        }
        false
    }

    /// Starts the feed again at `head` of `epoch`, sending each live subscriber `notice`
    /// first.
    fn restart(&mut self, epoch: Option<i64>, head: i64, notice: Option<&Event>) {
        let mut overflowed = Vec::new();
        for subscriber in self.subscribers.iter_mut() {
            if subscriber.position.is_none() {
                continue;
            }
            if let Some(event) = notice
                && !send(subscriber, event.clone())
            {
                overflowed.push(subscriber.id);
            }
            subscriber.position = Some(head);
        }
        self.epoch = epoch;
        self.head = head;
        self.remembered = None;
        self.drop_overflowed(&overflowed);
    }

    /// Removes subscribers whose queue overflowed; their connections were alarmed.
    fn drop_overflowed(&mut self, ids: &[u64]) {
        if !ids.is_empty() {
            self.subscribers.retain(|s| !ids.contains(&s.id));
        }
    }
}

/// Sends `batch`'s changes to the live subscribers above whose position they lie (filtered
/// ones as `plan`'s filters decided), and moves the head and their positions past it. Every
/// live subscriber has everything up to its position, and no position is below the head;
/// both stay so. A batch of another epoch than the feed's (the user was deleted meanwhile)
/// is dropped, to be read again.
fn deliver(state: &mut State, plan: &Plan, batch: Batch) {
    if state.epoch.is_some_and(|epoch| epoch != batch.epoch) || state.epoch != plan.epoch {
        state.dirty = true;
        return;
    }
    state.epoch = Some(batch.epoch);
    let filtered = !plan.filters.is_empty();
    let mut overflowed = Vec::new();
    let Batch {
        epoch,
        changes,
        now,
        before,
        upto,
    } = batch;
    for (i, change) in changes.into_iter().enumerate() {
        let change = Arc::new(change);
        for subscriber in state.subscribers.iter() {
            let Some(position) = subscriber.position else {
                continue;
            };
            if change.version <= position {
                continue;
            }
            // A filter that joined after the plan was made was not evaluated: such a
            // subscriber is sent the change (a surplus event, never a missing one).
            let evaluated = subscriber
                .filter
                .as_ref()
                .and_then(|filter| plan.filters.iter().position(|known| **known == **filter));
            if let Some(f) = evaluated {
                let before = before[i].as_ref().map(|matched| matched[f]);
                if !wanted(&change, now[i][f], before, position) {
                    continue;
                }
            }
            let event = Event::Change {
                kind: ChangeKind::of(&change, position),
                change: Arc::clone(&change),
                epoch,
            };
            if !send(subscriber, event) {
                overflowed.push(subscriber.id);
            }
        }
        if filtered {
            let last = match &change.what {
                Changed::Task { task, .. } => Some(task.clone()),
                Changed::Deleted { .. } => None,
            };
            state
                .remembered
                .get_or_insert_with(|| {
                    LruCache::new(NonZeroUsize::new(REMEMBERED_TASKS).unwrap_or(NonZeroUsize::MIN))
                })
                .put(change.task_id, last);
        }
    }
    if !filtered {
        state.remembered = None;
    }
    state.head = state.head.max(upto);
    for subscriber in state.subscribers.iter_mut() {
        if let Some(position) = subscriber.position.as_mut() {
            *position = (*position).max(upto);
        }
    }
    state.drop_overflowed(&overflowed);
}

/// Queues `event` without waiting; false when the subscriber is not keeping up (its
/// connection is alarmed and it must go) or gone.
fn send(subscriber: &Subscriber, event: Event) -> bool {
    match subscriber.sender.try_send(event) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!("a subscriber fell behind; closing its connection");
            subscriber.overflow.raise();
            false
        }
        // The subscription ended while the event was on its way; its drop removes it.
        Err(mpsc::error::TrySendError::Closed(_)) => true,
    }
}

/// Whether a filtered subscriber at `position` is sent `change`: when the task matches its
/// filter now, or matched as last sent; when that is unknown, unless the task was created
/// after `position` (the subscriber cannot have been shown it). A surplus event about the
/// owner's own task is harmless where a missing one is not.
pub(super) fn wanted(change: &Change, now: bool, before: Option<bool>, position: i64) -> bool {
    if now {
        return true;
    }
    match (&change.what, before) {
        (_, Some(matched)) => matched,
        (
            Changed::Task {
                created_version, ..
            },
            None,
        ) => *created_version <= position,
        (Changed::Deleted { .. }, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn task_change(version: i64, created_version: i64, completed_version: i64) -> Change {
        let now = Utc::now();
        Change {
            task_id: Uuid::nil(),
            version,
            what: Changed::Task {
                task: Task {
                    id: Uuid::nil(),
                    user_id: "u".to_owned(),
                    title: "t".to_owned(),
                    description: None,
                    completed: true,
                    priority: 3,
                    due_at: None,
                    completed_at: Some(now),
                    created_at: now,
                    updated_at: now,
                },
                created_version,
                completed_version,
            },
        }
    }

    fn deleted(version: i64) -> Change {
        Change {
            task_id: Uuid::nil(),
            version,
            what: Changed::Deleted { at: Utc::now() },
        }
    }

    #[test]
    fn a_filtered_subscriber_hears_of_tasks_entering_leaving_or_unknown() {
        let edited = task_change(10, 2, 2);
        assert!(wanted(&edited, true, None, 5), "matches now");
        assert!(wanted(&edited, false, Some(true), 5), "left the filter");
        assert!(!wanted(&edited, false, Some(false), 5), "never matched");
        assert!(wanted(&edited, false, None, 5), "may have been shown");
        let new = task_change(10, 8, 8);
        assert!(
            !wanted(&new, false, None, 5),
            "created since, never matched"
        );
        assert!(wanted(&deleted(10), false, None, 5));
        assert!(!wanted(&deleted(10), false, Some(false), 5));
    }

    fn feed() -> (Feed, mpsc::Receiver<Event>) {
        let feed = Feed::new(UserId::for_tests("u"), "k".to_owned());
        let (sender, receiver) = mpsc::channel(8);
        feed.lock().subscribers.push(Subscriber {
            id: 1,
            filter: None,
            sender,
            overflow: Arc::default(),
            position: None,
        });
        (feed, receiver)
    }

    fn stamp(epoch: i64, version: i64) -> Stamp {
        Stamp { epoch, version }
    }

    /// The feed's epoch and head.
    fn position(feed: &Feed) -> (Option<i64>, i64) {
        let state = feed.lock();
        (state.epoch, state.head)
    }

    #[test]
    fn a_subscriber_joins_only_where_the_head_has_not_passed_it() {
        let (feed, _events) = feed();
        assert_eq!(
            feed.join(1, stamp(7, 10)),
            Join::Alone,
            "the first live subscriber sets the head"
        );
        assert_eq!(position(&feed), (Some(7), 10));

        let (sender, _second) = mpsc::channel(8);
        feed.lock().subscribers.push(Subscriber {
            id: 2,
            filter: None,
            sender,
            overflow: Arc::default(),
            position: None,
        });
        assert_eq!(feed.join(2, stamp(7, 9)), Join::Behind, "behind the head");
        assert_eq!(feed.join(2, stamp(8, 20)), Join::Behind, "another epoch");
        assert_eq!(
            feed.join(2, stamp(7, 12)),
            Join::Joined,
            "at or past the head"
        );
    }

    #[test]
    fn delivery_skips_what_a_subscriber_has_and_moves_the_head() {
        let (feed, mut events) = feed();
        assert_eq!(feed.join(1, stamp(7, 10)), Join::Alone);
        assert!(feed.next_read().is_some());
        assert!(feed.next_read().is_none(), "the join's read is done");
        assert!(feed.announced(Some(stamp(7, 12))), "a reader is wanted");
        assert!(!feed.announced(Some(stamp(7, 13))), "one runs already");
        let plan = feed.next_read().expect("a read");
        assert_eq!((plan.from, plan.epoch), (10, Some(7)));
        let changes = vec![task_change(9, 1, 1), task_change(11, 11, 11), deleted(13)];
        let n = changes.len();
        feed.deliver(
            &plan,
            Batch {
                epoch: 7,
                changes,
                now: vec![Vec::new(); n],
                before: vec![None; n],
                upto: 13,
            },
        );
        let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|event| match event {
                Event::Change { kind, change, .. } => (kind, change.version),
                Event::Resync { .. } => panic!("no resync"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![(ChangeKind::Created, 11), (ChangeKind::Deleted, 13)]
        );
        assert_eq!(feed.lock().head, 13);
        assert!(feed.next_read().is_none(), "nothing more to read");
        assert!(!feed.lock().reading);
    }

    #[test]
    fn a_local_write_is_sent_as_written_unless_something_came_between() {
        let (feed, mut events) = feed();
        assert_eq!(feed.join(1, stamp(7, 10)), Join::Alone);
        assert!(feed.next_read().is_some());
        assert!(feed.next_read().is_none());
        let write = |after, upto| Committed {
            epoch: 7,
            after,
            upto,
            changes: vec![task_change(upto, upto, upto)],
        };
        assert!(!feed.committed(&write(10, 11)), "sent without a read");
        match events.try_recv() {
            Ok(Event::Change { kind, change, .. }) => {
                assert_eq!((kind, change.version), (ChangeKind::Created, 11));
            }
            _ => panic!("the write's change"),
        }
        assert_eq!(position(&feed), (Some(7), 11));
        // Version 12 went elsewhere: the write at 13 cannot be sent alone.
        assert!(feed.committed(&write(12, 13)), "a read is wanted");
        assert!(events.try_recv().is_err());
        assert_eq!(feed.next_read().map(|plan| plan.from), Some(11));
    }

    #[test]
    fn a_batch_of_a_past_epoch_is_dropped_and_a_deletion_restarts_the_feed() {
        let (feed, mut events) = feed();
        assert_eq!(feed.join(1, stamp(7, 10)), Join::Alone);
        let plan = feed.next_read().expect("a read");
        let id = Uuid::now_v7();
        feed.gone(stamp(7, 10), Some(&[id]));
        match events.try_recv() {
            Ok(Event::Change { kind, change, .. }) => {
                assert_eq!((kind, change.task_id), (ChangeKind::Deleted, id));
            }
            _ => panic!("a deletion"),
        }
        assert_eq!(position(&feed), (None, 0));
        feed.deliver(
            &plan,
            Batch {
                epoch: 7,
                changes: vec![task_change(11, 11, 11)],
                now: vec![Vec::new()],
                before: vec![None],
                upto: 11,
            },
        );
        assert!(
            events.try_recv().is_err(),
            "the old life's change is dropped"
        );
        assert!(feed.lock().dirty, "and read again");
    }
}
