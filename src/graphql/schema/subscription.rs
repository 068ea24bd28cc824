//! The `Subscription` root, and the change events it shares with `Query.taskChanges`.
//!
//! The event shape is made for normalized client caches. `task` carries `id` and
//! `__typename`, so Apollo Client and urql's graphcache update the cached task in place from
//! an UPDATED or COMPLETED event without a refetch; CREATED adds a task to whatever lists the
//! application keeps; DELETED gives `taskId` to evict. Every event carries the `version` it
//! brings the client to: a client that keeps the last one and subscribes again with
//! `since: version` after its connection dropped receives exactly what it missed. RESYNC
//! says the feed cannot be continued exactly from the client's version: read again.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, SimpleObject, Subscription as SubscriptionRoot};
use futures_util::Stream;

use super::{inputs::TaskFilter, scalars::DateTime, task::Task, viewer::Viewer};
use crate::{
    auth::UserId,
    db::changes::Stamp,
    error::{AppError, Result},
    live::{self, ChangeKind, Event, Hub, Link},
};

/// The root of every subscription.
#[derive(Default)]
pub struct Subscription;

#[SubscriptionRoot]
impl Subscription {
    /// Changes to the signed-in user's tasks, as they commit, from any client and any
    /// server instance: creates, edits, completions, deletions (bulk mutations and `deleteMe`
    /// included, one event per task). With `filter`, only tasks that match it after the change
    /// or matched it before (so a filtered list also learns that a task left it).
    ///
    /// With `since` (a `version` from an earlier event, `taskChanges` or `tasks`), the
    /// subscription first delivers every change after that version, then live ones, with no
    /// gap and nothing twice: a client that reconnects with the last version it saw ends up
    /// exactly where the server is. A RESYNC event means the changes since that version
    /// cannot be told exactly (it is older than the deletions kept, or of the account's
    /// earlier life): refetch what you show, then continue from the RESYNC's `version`.
    async fn task_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only changes to tasks matching this filter (before or after the change)."
        )]
        filter: Option<TaskFilter>,
        #[graphql(
            desc = "Start after this version (an event's, `taskChanges`' or a page's `version`) instead of now."
        )]
        since: Option<String>,
    ) -> Result<impl Stream<Item = TaskChangedEvent> + use<>> {
        let filter = filter.map(|filter| filter.parse("filter")).transpose()?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?.clone();
        let since = since
            .map(|since| parse_version(&user, &since, "since"))
            .transpose()?;
        let hub = hub(ctx)?;
        // The transport links each subscription to its connection; without a link, an
        // overflow only ends the stream.
        let link = ctx.data_opt::<Arc<Link>>();
        let overflow = link
            .map(|link| Arc::clone(&link.overflow))
            .unwrap_or_default();
        let subscription = viewer
            .as_user(|user| hub.subscribe(user, filter.clone(), since, Arc::clone(&overflow)))
            .await?;
        if let Some(link) = link {
            link.settle();
        }
        Ok(futures_util::stream::unfold(
            (subscription, user),
            |(mut subscription, user)| async move {
                let event = subscription.next().await?;
                let event = TaskChangedEvent {
                    event,
                    user: user.clone(),
                };
                Some((event, (subscription, user)))
            },
        ))
    }
}

/// The hub of live changes (always registered by `build_schema`).
pub fn hub<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Hub>> {
    ctx.data_opt::<Arc<Hub>>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no subscription hub")))
}

/// A version string the caller sent as the argument `field`.
pub fn parse_version(user: &UserId, text: &str, field: &'static str) -> Result<Stamp> {
    live::version::decode(user, text).map_err(|bad| AppError::invalid(field, bad.message()))
}

/// What happened.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TaskChangeKind {
    /// The task is new to the client (created since its version; it may have changed again
    /// since, and `task` is as it now is).
    Created,
    /// The task was edited (but not completed or reopened).
    Updated,
    /// The task was marked completed (other fields may have changed with it).
    Completed,
    /// The task was reopened (marked not completed).
    Uncompleted,
    /// The task was deleted (alone, in bulk, or with its user).
    Deleted,
    /// The changes since the client's version cannot be told exactly: refetch what you show,
    /// then continue from this event's `version`. No task is named.
    Resync,
}

impl From<ChangeKind> for TaskChangeKind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => Self::Created,
            ChangeKind::Updated => Self::Updated,
            ChangeKind::Completed => Self::Completed,
            ChangeKind::Uncompleted => Self::Uncompleted,
            ChangeKind::Deleted => Self::Deleted,
        }
    }
}

/// One change to the signed-in user's tasks, or a RESYNC notice.
pub struct TaskChangedEvent {
    pub event: Event,
    /// The user the event is for: its version is theirs.
    pub user: UserId,
}

/// One change to one of the signed-in user's tasks, or a notice to resync.
#[Object]
impl TaskChangedEvent {
    /// What happened, relative to the client's version.
    async fn kind(&self) -> TaskChangeKind {
        match &self.event {
            Event::Change { kind, .. } => (*kind).into(),
            Event::Resync { .. } => TaskChangeKind::Resync,
        }
    }

    /// The id of the task that changed: set on every kind but RESYNC. For DELETED, the id
    /// to evict from a cache.
    async fn task_id(&self) -> Option<ID> {
        match &self.event {
            Event::Change { change, .. } => Some(ID(change.task_id.to_string())),
            Event::Resync { .. } => None,
        }
    }

    /// The task as it is now; null for DELETED and RESYNC.
    async fn task(&self) -> Option<Task> {
        self.event.task().cloned().map(Task)
    }

    /// When the change was committed (for RESYNC: when the server decided it).
    async fn at(&self) -> DateTime {
        DateTime(self.event.at())
    }

    /// The version this event brings the client to. Keep the last one seen; pass it as
    /// `since` to `taskChanged` or `taskChanges` to continue from here. Opaque; valid for the
    /// signed-in user only.
    async fn version(&self) -> String {
        live::version::encode(&self.user, self.event.stamp())
    }
}

/// A page of changes to the signed-in user's tasks (`taskChanges`).
#[derive(SimpleObject)]
pub struct TaskChanges {
    /// The changes after the version asked from, in the order they were committed, each task
    /// at most once (as it now is); or a single RESYNC when they cannot be told exactly.
    pub changes: Vec<TaskChangedEvent>,
    /// Where the client stands after applying `changes`: the next `since`.
    pub version: String,
    /// Whether more changes follow `version` already: ask again from it.
    pub has_more: bool,
}
