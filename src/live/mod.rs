//! Live updates: the changes PostgreSQL announces, fanned out to this instance's subscribers.
//!
//! Every instance keeps one listening connection ([`listener`]); a change committed through
//! any instance reaches all of them, and each hands it to its own subscribers of the task's
//! owner. The [`Hub`] holds those subscribers by user, so an event costs a map lookup plus the
//! owner's own subscribers, whatever other users have subscribed.
//!
//! A subscriber's queue is bounded. One that is not read in time overflows: it is removed at
//! once, its connection is told (see [`Overflow`]), and nobody else waits for it.

pub mod listener;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::{
    auth::UserId,
    db::{
        self,
        changes::{Change, Op},
        tasks::Task,
    },
    domain::query::Filter,
};

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// Changed, with `completed` as it was.
    Updated,
    /// `completed` went from false to true (other fields may have changed too).
    Completed,
    /// `completed` went from true to false.
    Uncompleted,
    Deleted,
}

/// One change to one task, as delivered to its owner's subscribers.
#[derive(Debug, Clone)]
pub struct TaskChange {
    pub kind: ChangeKind,
    pub task_id: Uuid,
    /// The task after the change; `None` for a deletion.
    pub task: Option<Task>,
    pub at: DateTime<Utc>,
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Event {
    Change(Arc<TaskChange>),
    /// Changes may have been missed (the listening connection was lost and is back): what the
    /// subscriber shows must be read again.
    Resync {
        at: DateTime<Utc>,
    },
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

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySubscriptions {
    pub limit: usize,
}

/// One subscription as the hub keeps it. Cheap to clone: dispatch works on copies, outside
/// the lock.
#[derive(Clone)]
struct Subscriber {
    id: u64,
    filter: Option<Arc<Filter>>,
    sender: mpsc::Sender<Event>,
    overflow: Arc<Overflow>,
}

/// The subscribers of one user on this instance.
struct UserSubscribers {
    /// The verified id the subscriptions were made with: reads for this user's events (a row
    /// too large for its announcement) are scoped by it, never by the payload's text.
    user: UserId,
    subscribers: Vec<Subscriber>,
}

/// This instance's subscribers, by user.
pub struct Hub {
    users: Mutex<HashMap<String, UserSubscribers>>,
    next_id: AtomicU64,
    per_user: usize,
    buffer: usize,
    pool: PgPool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("per_user", &self.per_user)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A live subscription: events arrive on `events`; dropping it unsubscribes.
pub struct Subscription {
    pub events: mpsc::Receiver<Event>,
    hub: Weak<Hub>,
    user: String,
    id: u64,
    _counted: crate::metrics::Held,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(&self.user, self.id);
        }
    }
}

impl Hub {
    /// A hub allowing `per_user` live subscriptions per user on this instance, each with a
    /// queue of `buffer` events. `pool` serves the reads some events need.
    pub fn new(pool: PgPool, per_user: usize, buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            per_user,
            buffer: buffer.max(1),
            pool,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserSubscribers>> {
        // A panic while holding this lock leaves the map consistent (every change is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes `user` to changes of their tasks matching `filter` (all, if `None`).
    pub fn subscribe(
        self: &Arc<Self>,
        user: &UserId,
        filter: Option<Filter>,
        overflow: Arc<Overflow>,
    ) -> Result<Subscription, TooManySubscriptions> {
        let (sender, events) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut users = self.lock();
        let entry = users
            .entry(user.as_str().to_owned())
            .or_insert_with(|| UserSubscribers {
                user: user.clone(),
                subscribers: Vec::new(),
            });
        if entry.subscribers.len() >= self.per_user {
            return Err(TooManySubscriptions {
                limit: self.per_user,
            });
        }
        entry.subscribers.push(Subscriber {
            id,
            filter: filter.map(Arc::new),
            sender,
            overflow,
        });
        Ok(Subscription {
            events,
            hub: Arc::downgrade(self),
            user: user.as_str().to_owned(),
            id,
            _counted: crate::metrics::get().hold_subscription(),
        })
    }

    fn remove(&self, user: &str, id: u64) {
        let mut users = self.lock();
        if let Some(entry) = users.get_mut(user) {
            entry.subscribers.retain(|s| s.id != id);
            if entry.subscribers.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The subscribers of `user` and the verified id they subscribed with, copied out of the
    /// lock: the reads dispatch may do must not hold up subscribing and unsubscribing.
    fn subscribers_of(&self, user: &str) -> Option<(UserId, Vec<Subscriber>)> {
        let users = self.lock();
        let entry = users.get(user)?;
        Some((entry.user.clone(), entry.subscribers.clone()))
    }

    /// Hands one announcement to the owner's subscribers on this instance.
    pub async fn dispatch(&self, payload: &str) {
        let change = match Change::parse(payload) {
            Ok(change) => change,
            Err(err) => {
                tracing::error!(error = %err, "unreadable change announcement");
                return;
            }
        };
        let Some((user, targets)) = self.subscribers_of(&change.uid) else {
            return;
        };
        let Some(event) = self.event(&change, &user).await else {
            return;
        };
        let wanted = self.wanted(&change, &event, &targets).await;
        let event = Event::Change(Arc::new(event));
        for (target, wanted) in targets.iter().zip(wanted) {
            if wanted {
                self.deliver(&change.uid, target, event.clone());
            }
        }
    }

    /// The event an announcement stands for, with the task as it now is.
    async fn event(&self, change: &Change<'_>, user: &UserId) -> Option<TaskChange> {
        let new = match change.new_row() {
            Ok(new) => new,
            Err(err) => {
                tracing::error!(error = %err, "unreadable row in a change announcement");
                return None;
            }
        };
        let task = match (change.op, new) {
            (Op::Delete, _) => None,
            (_, Some(task)) => Some(task),
            // The row did not fit the announcement: read it, scoped by the subscriber's id.
            (_, None) => match db::tasks::get(&self.pool, user, change.id).await {
                Ok(Some(task)) => Some(task),
                // Deleted since: its own announcement follows.
                Ok(None) => return None,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read an announced task; telling its subscribers to resync");
                    self.resync_user(&change.uid);
                    return None;
                }
            },
        };
        let kind = match (change.op, &task, change.was_completed) {
            (Op::Insert, ..) => ChangeKind::Created,
            (Op::Delete, ..) => ChangeKind::Deleted,
            (Op::Update, Some(task), Some(was)) if task.completed != was => {
                if task.completed {
                    ChangeKind::Completed
                } else {
                    ChangeKind::Uncompleted
                }
            }
            (Op::Update, ..) => ChangeKind::Updated,
        };
        Some(TaskChange {
            kind,
            task_id: change.id,
            task,
            at: change.at,
        })
    }

    /// Which targets want the event: all unfiltered ones, and the filtered ones whose filter
    /// the task matches after the change or matched before it (so a list can drop a task that
    /// left it). When that cannot be decided, the event is delivered: it is the owner's own
    /// data, and a surplus event is harmless where a missing one is not.
    async fn wanted(
        &self,
        change: &Change<'_>,
        event: &TaskChange,
        targets: &[Subscriber],
    ) -> Vec<bool> {
        let filtered: Vec<&Filter> = targets.iter().filter_map(|t| t.filter.as_deref()).collect();
        if filtered.is_empty() {
            return vec![true; targets.len()];
        }
        let old = change.old_row().ok().flatten();
        let old_unknown = change.op != Op::Insert && old.is_none();
        if old_unknown {
            return vec![true; targets.len()];
        }
        let rows: Vec<&Task> = event.task.iter().chain(old.iter()).collect();
        let matched = match db::tasks::matching(&self.pool, &rows, &filtered).await {
            Ok(matched) => matched,
            Err(err) => {
                tracing::warn!(error = %err, "could not evaluate subscription filters; delivering to all");
                return vec![true; targets.len()];
            }
        };
        let mut matched = matched.into_iter();
        targets
            .iter()
            .map(|t| t.filter.is_none() || matched.next().unwrap_or(true))
            .collect()
    }

    /// Queues `event` for one subscriber, without waiting. A full queue means the subscriber
    /// is not being read: it is dropped and its connection alarmed.
    fn deliver(&self, user: &str, target: &Subscriber, event: Event) {
        match target.sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(user_id = %user, "a subscriber fell behind; closing its connection");
                self.remove(user, target.id);
                target.overflow.raise();
            }
            // The subscription ended while the event was on its way.
            Err(mpsc::error::TrySendError::Closed(_)) => self.remove(user, target.id),
        }
    }

    /// Tells every subscriber on this instance to read again.
    pub fn resync_all(&self) {
        let users: Vec<String> = self.lock().keys().cloned().collect();
        for user in users {
            self.resync_user(&user);
        }
    }

    fn resync_user(&self, user: &str) {
        let Some((_, targets)) = self.subscribers_of(user) else {
            return;
        };
        let at = Utc::now();
        for target in &targets {
            self.deliver(user, target, Event::Resync { at });
        }
    }
}
