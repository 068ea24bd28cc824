//! One subscription's stream: what changed after its starting version, replayed from the
//! database a page at a time as the client takes it, then its feed's live events.
//!
//! The replay holds one page at most, so a client that was away for ten thousand changes
//! costs a page of memory, not ten thousand events; and it reads the next page only when the
//! transport asks for more, so a slow client slows its own replay and nobody else's.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::mpsc;

use super::{
    ChangeKind, Event, Hub,
    feed::{Feed, Join},
    must_resync,
};
use crate::{
    db::{
        self,
        changes::{Change, Changed, Stamp},
    },
    domain::query::Filter,
    error::Result,
};

/// How many changes one replay page reads.
const PAGE: i64 = 100;
/// How long a replay waits after a failed read, at first and at most.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// A live subscription: [`Subscription::next`] gives its events; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    feed: Arc<Feed>,
    id: u64,
    filter: Option<Arc<Filter>>,
    /// Everything up to here has been given to the client (or filtered out for it).
    at: Stamp,
    /// The version the client stood at when the replay began (or its last resync): an
    /// event's kind is relative to it.
    since: i64,
    /// Replaying from the database; false once the feed sends its events.
    replaying: bool,
    /// Whether the last read reached the feed's end (`at` is where the database stood), so
    /// that the subscription may join the live feed there.
    caught_up: bool,
    /// The user's row was found gone: after the resync queued for it, the stream ends.
    ended: bool,
    queue: VecDeque<Event>,
    events: mpsc::Receiver<Event>,
    _counted: crate::metrics::Held,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.feed, self.id);
    }
}

impl Subscription {
    pub(super) fn new(
        hub: Arc<Hub>,
        feed: Arc<Feed>,
        id: u64,
        filter: Option<Arc<Filter>>,
        start: Stamp,
        caught_up: bool,
        events: mpsc::Receiver<Event>,
    ) -> Self {
        Self {
            hub,
            feed,
            id,
            filter,
            at: start,
            since: start.version,
            replaying: true,
            caught_up,
            ended: false,
            queue: VecDeque::new(),
            events,
            _counted: crate::metrics::get().hold_subscription(),
        }
    }

    /// The next event, or `None` when the subscription has ended (its queue overflowed, or
    /// the user was deleted).
    pub async fn next(&mut self) -> Option<Event> {
        let mut retry = FIRST_RETRY;
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if !self.replaying {
                return self.events.recv().await;
            }
            if self.caught_up {
                match self.feed.join(self.id, self.at) {
                    Join::Joined => {
                        self.replaying = false;
                        continue;
                    }
                    Join::Alone => {
                        self.replaying = false;
                        tokio::spawn(Arc::clone(&self.hub).read(Arc::clone(&self.feed)));
                        continue;
                    }
                    Join::Behind => self.caught_up = false,
                }
            }
            // Boxed: the read's future is large, and a subscription that is live (most of them,
            // most of the time) should not carry room for it.
            match Box::pin(self.replay_page()).await {
                Ok(()) => retry = FIRST_RETRY,
                Err(err) => {
                    // The database is away: try again, as the listener does; the client
                    // keeps its subscription.
                    tracing::warn!(error = %err, retry_ms = retry.as_millis(), "could not replay changes");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Reads the next page after `at` into the queue.
    async fn replay_page(&mut self) -> Result<()> {
        let read =
            db::changes::after(&self.hub.pool, &self.feed.user, self.at.version, PAGE).await?;
        let Some(head) = read.head else {
            // The user was deleted: nothing to follow any more.
            self.queue.push_back(Event::Resync {
                at: Utc::now(),
                stamp: Stamp {
                    epoch: self.at.epoch,
                    version: 0,
                },
            });
            self.ended = true;
            return Ok(());
        };
        if must_resync(self.at, head) {
            self.queue.push_back(Event::Resync {
                at: Utc::now(),
                stamp: head.stamp,
            });
            self.at = head.stamp;
            self.since = head.stamp.version;
            self.caught_up = true;
            return Ok(());
        }
        let full = i64::try_from(read.changes.len()).unwrap_or(i64::MAX) >= PAGE;
        let upto = match read.changes.last() {
            Some(last) if full => last.version,
            _ => head.stamp.version,
        };
        let wanted = self.wanted(&read.changes).await?;
        for (change, wanted) in read.changes.into_iter().zip(wanted) {
            if wanted {
                self.queue.push_back(Event::Change {
                    kind: ChangeKind::of(&change, self.since),
                    change: Arc::new(change),
                    epoch: head.stamp.epoch,
                });
            }
        }
        self.at = Stamp {
            epoch: head.stamp.epoch,
            version: upto,
        };
        self.caught_up = !full;
        Ok(())
    }

    /// Which replayed changes a filtered subscription is sent: those whose task matches now,
    /// and those whose task it may have been shown before (what it was shown is not known
    /// here: every deletion, and every task that existed at `since`).
    async fn wanted(&self, changes: &[Change]) -> Result<Vec<bool>> {
        let Some(filter) = &self.filter else {
            return Ok(vec![true; changes.len()]);
        };
        let tasks: Vec<_> = changes
            .iter()
            .filter_map(|change| match &change.what {
                Changed::Task { task, .. } => Some(task),
                Changed::Deleted { .. } => None,
            })
            .collect();
        let matched = db::tasks::matching(&self.hub.pool, &tasks, &[filter.as_ref()]).await?;
        let mut matched = matched.into_iter();
        Ok(changes
            .iter()
            .map(|change| match &change.what {
                Changed::Task {
                    created_version, ..
                } => {
                    let now = matched.next().is_some_and(|m| m.first() == Some(&true));
                    now || *created_version <= self.since
                }
                Changed::Deleted { .. } => true,
            })
            .collect())
    }
}
