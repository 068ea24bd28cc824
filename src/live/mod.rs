//! Live updates and sync: every user's changes as a feed ordered by version, read by
//! subscriptions and by `taskChanges`, and fanned out to this instance's subscribers.
//!
//! # The design, and why
//!
//! **Versions, written with the change.** Every write of a user's tasks advances the user's
//! `version` in the statement that writes them (`db::tasks` says how), and stamps the rows
//! with it; a deleted task leaves a tombstone with its version. Writers of one user serialize
//! on that user's row, so versions follow commit order per user, and a read that sees version
//! v sees everything below it. Writers of different users share nothing. A client holding a
//! version can therefore ask for exactly what changed since, deletions included, and a page of
//! tasks read together with a version is a starting point that misses nothing.
//!
//! **No NOTIFY in a write.** `pg_notify` inside a transaction makes its commit take a global
//! lock until flushed: every notifying commit in the database waited for every other (the
//! trigger this replaces cost 57 % of the database's insert throughput). The instance that
//! committed a change now announces it afterwards ([`announce`]): at most one small
//! notification every few milliseconds, naming users and versions, in a transaction of its
//! own. Its own subscribers hear at once, without the round trip.
//!
//! **Listeners read, by version.** An instance that hears of a user it serves subscribers
//! for reads that user's changes after its head ([`feed`]), one statement for any number of
//! changes, and sends each to each live subscriber above whose position it lies. So an
//! announcement carries no rows and cannot be too large, a lost one costs nothing but time
//! (the next announcement, or the listener's periodic check of its users' versions, reads
//! from the head, which includes what was missed), and a forged one can only make an instance
//! read a user's own changes for that user's own subscribers. When the listening connection
//! comes back after a loss, every feed reads on from its head: subscribers get what they
//! missed instead of being told to start over.
//!
//! **Resuming.** A subscription given a version first replays what changed after it, a page
//! at a time from the database as its client takes them, then joins its feed's live stream
//! at the position it reached ([`feed::Feed::join`] allows that only where no change can fall
//! between the two). A subscription without a version starts at the user's current one. A
//! version the feed cannot answer exactly (from a past life of the account, ahead of the
//! database, or older than a purged tombstone) is answered with one `RESYNC` and the version
//! to continue from.
//!
//! **Deletions** leave tombstones for `SYNC_RETENTION`; [`retention`] purges older ones in
//! small batches. `deleteMe` removes the user with everything, tombstones included; the
//! subscribers it had are told of each deleted task (or, past a hundred, to resync).
//!
//! **Writes made outside taskql** (psql, a data migration) are stamped by triggers of
//! `migrations/0007_change_feed.sql` that taskql's own statements never fire. Nobody announces
//! them: subscribers hear of them with the user's next announced change, or within the
//! listener's check interval (`SYNC_POLL`), whichever comes first.

pub mod announce;
mod feed;
mod follow;
pub mod listener;
pub mod retention;
pub mod settings;
pub mod version;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};

pub use follow::Subscription;

use self::{
    announce::{Announcer, Gone, Payload, feed_key},
    feed::{Batch, Feed, Subscriber},
};
use crate::{
    auth::UserId,
    db::{
        self,
        changes::{Change, Changed, Committed, Stamp},
        tasks::Task,
        users::Deleted,
    },
    domain::query::Filter,
    error::{AppError, Result},
};

/// How many changes the reader of a feed reads at once.
const READ_BATCH: i64 = 128;

/// What happened to a task, as seen by a client that stood at some version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created since (it may have changed again since).
    Created,
    /// Changed, with `completed` as it was.
    Updated,
    /// `completed` went from false to true (other fields may have changed too).
    Completed,
    /// `completed` went from true to false.
    Uncompleted,
    Deleted,
}

impl ChangeKind {
    /// The kind of `change` for a client that has everything up to version `since`.
    pub fn of(change: &Change, since: i64) -> Self {
        match &change.what {
            Changed::Deleted { .. } => Self::Deleted,
            Changed::Task {
                created_version, ..
            } if *created_version > since => Self::Created,
            Changed::Task {
                task,
                completed_version,
                ..
            } if *completed_version > since => {
                if task.completed {
                    Self::Completed
                } else {
                    Self::Uncompleted
                }
            }
            Changed::Task { .. } => Self::Updated,
        }
    }
}

/// What a subscriber receives, and what `taskChanges` answers with.
#[derive(Debug, Clone)]
pub enum Event {
    /// One change, with its kind for the receiving client.
    Change {
        change: Arc<Change>,
        kind: ChangeKind,
        /// The epoch the change's version counts in.
        epoch: i64,
    },
    /// The feed cannot be continued exactly from where the client stood: read everything
    /// again. Changes after `stamp` follow.
    Resync { at: DateTime<Utc>, stamp: Stamp },
}

impl Event {
    /// The feed position the event brings its receiver to.
    pub fn stamp(&self) -> Stamp {
        match self {
            Self::Change { change, epoch, .. } => Stamp {
                epoch: *epoch,
                version: change.version,
            },
            Self::Resync { stamp, .. } => *stamp,
        }
    }

    /// When the change was committed (for a resync: when it was decided).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Change { change, .. } => change.at(),
            Self::Resync { at, .. } => *at,
        }
    }

    /// The task as it now is; `None` for a deletion and a resync.
    pub fn task(&self) -> Option<&Task> {
        match self {
            Self::Change { change, .. } => match &change.what {
                Changed::Task { task, .. } => Some(task),
                Changed::Deleted { .. } => None,
            },
            Self::Resync { .. } => None,
        }
    }
}

/// A connection's alarm: raised when one of its subscriptions overflowed, so the transport
/// can close the connection with a clear code instead of silently dropping events.
#[derive(Debug, Default)]
pub struct Overflow {
    raised: AtomicBool,
    notify: Notify,
}

impl Overflow {
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Completes once the alarm is raised.
    pub async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// What a transport hands a subscription it starts: the connection's [`Overflow`] alarm,
/// and a signal for when the operation has settled, that is, its subscription is registered
/// in the hub (or it turned out not to be one, or failed). The WebSocket transport reads no
/// further message of the connection until then, so a client knows that once the server has
/// answered anything sent after `subscribe` (a `ping`), no later change can be missed.
#[derive(Debug)]
pub struct Link {
    pub overflow: Arc<Overflow>,
    settled: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Link {
    pub fn new(overflow: Arc<Overflow>) -> (Arc<Self>, tokio::sync::oneshot::Receiver<()>) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let link = Self {
            overflow,
            settled: Mutex::new(Some(sender)),
        };
        (Arc::new(link), receiver)
    }

    /// The operation has settled (see the type's docs); later calls do nothing.
    pub fn settle(&self) {
        let sender = self
            .settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
    }
}

/// A page of a user's changes, for `taskChanges`.
#[derive(Debug)]
pub struct Delta {
    /// In version order, each task at most once; or a single resync.
    pub events: Vec<Event>,
    /// Where the client stands after these: pass it as the next `since`.
    pub stamp: Stamp,
    /// Whether more changes follow `stamp` already.
    pub has_more: bool,
}

/// Why a feed cannot be continued exactly from `since`, read against `head`: the epoch is of
/// another life of the account, the version is ahead of the database (a restore), or a
/// deletion after it may have been purged.
fn must_resync(since: Stamp, head: db::changes::Head) -> bool {
    since.epoch != head.stamp.epoch
        || since.version > head.stamp.version
        || since.version < head.floor
}

/// This instance's feeds, one per user with subscribers here.
pub struct Hub {
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    next_id: AtomicU64,
    per_user: usize,
    buffer: usize,
    pool: PgPool,
    announcer: Announcer,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("per_user", &self.per_user)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub allowing `per_user` subscriptions per user on this instance, each with a queue
    /// of `buffer` events. `pool` serves the feed's reads and the announcements.
    pub fn new(pool: PgPool, per_user: usize, buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            feeds: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            per_user,
            buffer: buffer.max(1),
            pool,
            announcer: Announcer::default(),
        })
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Feed>>> {
        // Inserts and removals only: a poisoned lock leaves the map consistent.
        self.feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn feed(&self, key: &str) -> Option<Arc<Feed>> {
        self.feeds().get(key).cloned()
    }

    /// Sends the announcements of this instance's commits until `shutdown`.
    pub async fn announce(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        self.announcer.run(self.pool.clone(), shutdown).await;
    }

    /// A write of `user`'s tasks committed: this instance's subscribers hear of it now (each
    /// change as written, when nothing came between), the other instances' once it is
    /// announced.
    pub fn committed(self: &Arc<Self>, user: &UserId, committed: &Committed) {
        let key = feed_key(user.as_str());
        if let Some(feed) = self.feed(&key)
            && feed.committed(committed)
        {
            tokio::spawn(Arc::clone(self).read(feed));
        }
        self.announcer.changed(key, committed.stamp());
    }

    /// `user` was deleted (committed), as `deleted` says.
    pub fn user_deleted(self: &Arc<Self>, user: &UserId, deleted: &Deleted) {
        let gone = Gone {
            key: feed_key(user.as_str()),
            epoch: deleted.stamp.epoch,
            version: deleted.stamp.version,
            tasks: deleted.ids.clone(),
        };
        self.apply_gone(&gone);
        self.announcer.gone(gone);
    }

    /// An announcement heard from the database (any instance's, this one's included).
    pub fn heard(self: &Arc<Self>, payload: &str) {
        let payload = match Payload::parse(payload) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::warn!(error = %err, "unreadable change announcement");
                return;
            }
        };
        for gone in payload.gone {
            // Anyone who may connect to the database may NOTIFY: a deletion announced by
            // another instance is believed only once the database confirms the user is gone
            // (or back under a new epoch). The other announcements carry no data at all.
            let hub = Arc::clone(self);
            tokio::spawn(async move {
                let Some(feed) = hub.feed(&gone.key) else {
                    return;
                };
                match db::changes::current(&hub.pool, &feed.user).await {
                    Ok(Some(now)) if now.epoch == gone.epoch => {
                        tracing::warn!("ignored an announced deletion of a user who still exists");
                    }
                    Ok(_) => hub.apply_gone(&gone),
                    // Not confirmed: the feed's next read finds the user gone and resyncs.
                    Err(err) => {
                        tracing::warn!(error = %err, "could not confirm an announced deletion");
                        hub.advanced(&gone.key, None);
                    }
                }
            });
        }
        for (key, epoch, version) in payload.changed {
            self.advanced(&key, Some(Stamp { epoch, version }));
        }
    }

    fn apply_gone(&self, gone: &Gone) {
        if let Some(feed) = self.feed(&gone.key) {
            let stamp = Stamp {
                epoch: gone.epoch,
                version: gone.version,
            };
            feed.gone(stamp, gone.tasks.as_deref());
        }
    }

    /// The feed `key` stands at `stamp` (`None`: unknown): its reader starts if behind.
    fn advanced(self: &Arc<Self>, key: &str, stamp: Option<Stamp>) {
        if let Some(feed) = self.feed(key)
            && feed.announced(stamp)
        {
            tokio::spawn(Arc::clone(self).read(feed));
        }
    }

    /// Every feed reads on from its head: announcements may have been missed (the listening
    /// connection was lost and is back).
    pub fn heal_all(self: &Arc<Self>) {
        let keys: Vec<String> = self.feeds().keys().cloned().collect();
        for key in keys {
            self.advanced(&key, None);
        }
    }

    /// Compares every feed's head with its user's version in the database and reads where
    /// they differ: heals announcements that were lost, and picks up writes made outside
    /// taskql. One statement for all users.
    pub async fn check(self: &Arc<Self>) -> Result<()> {
        let feeds: Vec<(String, String)> = self
            .feeds()
            .iter()
            .map(|(key, feed)| (key.clone(), feed.user.as_str().to_owned()))
            .collect();
        if feeds.is_empty() {
            return Ok(());
        }
        let users: Vec<String> = feeds.iter().map(|(_, user)| user.clone()).collect();
        let heads: HashMap<String, Stamp> = db::changes::heads(&self.pool, &users)
            .await?
            .into_iter()
            .collect();
        for (key, user) in feeds {
            // A user without a row was deleted: unknown, so the reader looks.
            self.advanced(&key, heads.get(&user).copied());
        }
        Ok(())
    }

    /// A feed's reader: reads and sends until the feed is caught up.
    async fn read(self: Arc<Self>, feed: Arc<Feed>) {
        while let Some(plan) = feed.next_read() {
            let read = match db::changes::after(&self.pool, &feed.user, plan.from, READ_BATCH).await
            {
                Ok(read) => read,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read a user's changes; retrying with the next announcement");
                    feed.read_failed();
                    return;
                }
            };
            let Some(head) = read.head else {
                feed.resync(plan.epoch, None);
                continue;
            };
            let adopting = plan.epoch.is_none();
            let since = Stamp {
                epoch: plan.epoch.unwrap_or(head.stamp.epoch),
                version: plan.from,
            };
            if !adopting && must_resync(since, head) || adopting && plan.from < head.floor {
                feed.resync(plan.epoch, Some(head.stamp));
                continue;
            }
            let full = i64::try_from(read.changes.len()).unwrap_or(i64::MAX) >= READ_BATCH;
            let upto = match read.changes.last() {
                Some(last) if full => last.version,
                _ => head.stamp.version,
            };
            let (now, before) = match self.evaluate(&feed, &plan.filters, &read.changes).await {
                Ok(matched) => matched,
                Err(err) => {
                    tracing::warn!(error = %err, "could not evaluate subscription filters; retrying");
                    feed.read_failed();
                    return;
                }
            };
            feed.deliver(
                &plan,
                Batch {
                    epoch: head.stamp.epoch,
                    changes: read.changes,
                    now,
                    before,
                    upto,
                },
            );
            if full {
                feed.announced(None);
            }
        }
    }

    /// Whether each change's task matches each filter now, and as it was last sent.
    async fn evaluate(
        &self,
        feed: &Feed,
        filters: &[Arc<Filter>],
        changes: &[Change],
    ) -> Result<(Vec<Vec<bool>>, Vec<Option<Vec<bool>>>)> {
        if filters.is_empty() {
            return Ok((vec![Vec::new(); changes.len()], vec![None; changes.len()]));
        }
        let remembered = feed.remembered(changes);
        let mut rows: Vec<&Task> = Vec::new();
        // Where each change's rows are in `rows`: its task now, and as last sent.
        let mut index = Vec::with_capacity(changes.len());
        for (change, last) in changes.iter().zip(&remembered) {
            let now = match &change.what {
                Changed::Task { task, .. } => {
                    rows.push(task);
                    Some(rows.len() - 1)
                }
                Changed::Deleted { .. } => None,
            };
            let before = match last {
                Some(Some(task)) => {
                    rows.push(task);
                    Some(Some(rows.len() - 1))
                }
                // Known deleted: it cannot have matched.
                Some(None) => Some(None),
                None => None,
            };
            index.push((now, before));
        }
        let filters: Vec<&Filter> = filters.iter().map(AsRef::as_ref).collect();
        let matched = db::tasks::matching(&self.pool, &rows, &filters).await?;
        let none = vec![false; filters.len()];
        let now = index
            .iter()
            .map(|(now, _)| now.map_or_else(|| none.clone(), |row| matched[row].clone()))
            .collect();
        let before = index
            .iter()
            .map(|(_, before)| {
                before.map(|row| row.map_or_else(|| none.clone(), |row| matched[row].clone()))
            })
            .collect();
        Ok((now, before))
    }

    /// Subscribes `user` to the changes of their tasks matching `filter` (all, if `None`)
    /// after `since`, or after their current version.
    pub async fn subscribe(
        self: &Arc<Self>,
        user: &UserId,
        filter: Option<Filter>,
        since: Option<Stamp>,
        overflow: Arc<Overflow>,
    ) -> Result<Subscription> {
        // Without `since`, the subscription starts where the database stands now: caught up.
        let (start, caught_up) = match since {
            Some(since) => (since, false),
            None => (
                db::changes::current(&self.pool, user)
                    .await?
                    .ok_or(AppError::UserGone)?,
                true,
            ),
        };
        let (sender, events) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let filter = filter.map(Arc::new);
        let key = feed_key(user.as_str());
        let feed = {
            let mut feeds = self.feeds();
            let feed = Arc::clone(
                feeds
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(Feed::new(user.clone(), key))),
            );
            let mut state = feed.lock();
            if state.subscribers.len() >= self.per_user {
                return Err(AppError::TooManySubscriptions(
                    format!(
                        "You have {} live subscriptions on this server, the most it allows; end one first.",
                        self.per_user
                    )
                    .into(),
                ));
            }
            state.subscribers.push(Subscriber {
                id,
                filter: filter.clone(),
                sender,
                overflow,
                position: None,
            });
            drop(state);
            feed
        };
        Ok(Subscription::new(
            Arc::clone(self),
            feed,
            id,
            filter,
            start,
            caught_up,
            events,
        ))
    }

    /// Ends subscription `id` of `feed`; a feed left without subscribers goes.
    fn unsubscribe(&self, feed: &Arc<Feed>, id: u64) {
        let mut feeds = self.feeds();
        let empty = {
            let mut state = feed.lock();
            state.subscribers.retain(|s| s.id != id);
            state.subscribers.is_empty()
        };
        if empty
            && feeds
                .get(&feed.key)
                .is_some_and(|current| Arc::ptr_eq(current, feed))
        {
            feeds.remove(&feed.key);
        }
    }

    /// `user`'s changes after `since`, at most `first`, for `taskChanges`.
    pub async fn changes(&self, user: &UserId, since: Stamp, first: i64) -> Result<Delta> {
        let read =
            db::changes::after(&self.pool, user, since.version, first.saturating_add(1)).await?;
        let head = read.head.ok_or(AppError::UserGone)?;
        if must_resync(since, head) {
            return Ok(Delta {
                events: vec![Event::Resync {
                    at: Utc::now(),
                    stamp: head.stamp,
                }],
                stamp: head.stamp,
                has_more: false,
            });
        }
        let mut changes = read.changes;
        let has_more = i64::try_from(changes.len()).unwrap_or(i64::MAX) > first;
        changes.truncate(usize::try_from(first).unwrap_or(0));
        let version = match changes.last() {
            Some(last) if has_more => last.version,
            _ => head.stamp.version,
        };
        let events = changes
            .into_iter()
            .map(|change| Event::Change {
                kind: ChangeKind::of(&change, since.version),
                change: Arc::new(change),
                epoch: head.stamp.epoch,
            })
            .collect();
        Ok(Delta {
            events,
            stamp: Stamp {
                epoch: head.stamp.epoch,
                version,
            },
            has_more,
        })
    }

    /// Where `user`'s feed stands now.
    pub async fn current(&self, user: &UserId) -> Result<Stamp> {
        db::changes::current(&self.pool, user)
            .await?
            .ok_or(AppError::UserGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changes_kind_depends_on_where_the_client_stood() {
        let now = Utc::now();
        let change = |completed, created_version, completed_version| Change {
            task_id: uuid::Uuid::nil(),
            version: 10,
            what: Changed::Task {
                task: Task {
                    id: uuid::Uuid::nil(),
                    user_id: "u".to_owned(),
                    title: "t".to_owned(),
                    description: None,
                    completed,
                    priority: 3,
                    due_at: None,
                    completed_at: completed.then_some(now),
                    created_at: now,
                    updated_at: now,
                },
                created_version,
                completed_version,
            },
        };
        assert_eq!(ChangeKind::of(&change(false, 8, 8), 5), ChangeKind::Created);
        assert_eq!(ChangeKind::of(&change(true, 8, 9), 5), ChangeKind::Created);
        assert_eq!(
            ChangeKind::of(&change(true, 2, 9), 5),
            ChangeKind::Completed
        );
        assert_eq!(
            ChangeKind::of(&change(false, 2, 9), 5),
            ChangeKind::Uncompleted
        );
        assert_eq!(ChangeKind::of(&change(true, 2, 4), 5), ChangeKind::Updated);
        assert_eq!(ChangeKind::of(&change(true, 2, 9), 9), ChangeKind::Updated);
        let deleted = Change {
            task_id: uuid::Uuid::nil(),
            version: 10,
            what: Changed::Deleted { at: now },
        };
        assert_eq!(ChangeKind::of(&deleted, 5), ChangeKind::Deleted);
    }

    #[test]
    fn a_version_the_feed_cannot_continue_from_means_resync() {
        let head = db::changes::Head {
            stamp: Stamp {
                epoch: 1,
                version: 100,
            },
            floor: 20,
        };
        let at = |epoch, version| Stamp { epoch, version };
        assert!(!must_resync(at(1, 50), head));
        assert!(!must_resync(at(1, 100), head));
        assert!(
            !must_resync(at(1, 20), head),
            "the purged tombstone is at 20"
        );
        assert!(
            must_resync(at(1, 19), head),
            "a deletion after 19 may be gone"
        );
        assert!(must_resync(at(1, 101), head), "ahead of the database");
        assert!(must_resync(at(2, 50), head), "another life of the account");
    }
}
