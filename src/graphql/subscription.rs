//! The `Subscription` root: live changes to the caller's tasks.
//!
//! The event shape is made for normalized client caches. `task` carries `id` and
//! `__typename`, so Apollo Client and urql's graphcache update the cached task in place from
//! an UPDATED or COMPLETED event without a refetch; CREATED adds a task to whatever lists the
//! application keeps; DELETED gives `taskId` to evict. RESYNC says events may have been
//! missed (the server lost its link to the database for a while): read again.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Subscription as SubscriptionRoot};
use futures_util::Stream;

use super::{inputs::TaskFilter, scalars::DateTime, task::Task, viewer::Viewer};
use crate::{
    error::{AppError, Result},
    live::{ChangeKind, Event, Hub, Link},
};

/// The root of every subscription.
#[derive(Default)]
pub struct Subscription;

#[SubscriptionRoot]
impl Subscription {
    /// Changes to the signed-in user's tasks, as they commit, from any client and any
    /// server instance: creates, edits, completions, deletions (bulk mutations and `deleteMe`
    /// included, one event per task). With `filter`, only tasks that match it after the change
    /// or matched it before (so a filtered list also learns that a task left it). A RESYNC
    /// event means changes may have been missed: refetch what you show.
    async fn task_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only changes to tasks matching this filter (before or after the change)."
        )]
        filter: Option<TaskFilter>,
    ) -> Result<impl Stream<Item = TaskChangedEvent> + use<>> {
        let filter = filter.map(|filter| filter.parse("filter")).transpose()?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?;
        let hub = ctx
            .data_opt::<Arc<Hub>>()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no subscription hub")))?;
        // The transport links each subscription to its connection; without a link, an
        // overflow only ends the stream.
        let link = ctx.data_opt::<Arc<Link>>();
        let overflow = link
            .map(|link| Arc::clone(&link.overflow))
            .unwrap_or_default();
        let subscription = hub.subscribe(user, filter, overflow).map_err(|limit| {
            AppError::TooManySubscriptions(
                format!(
                    "You have {} live subscriptions on this server, the most it allows; end one first.",
                    limit.limit
                )
                .into(),
            )
        })?;
        if let Some(link) = link {
            link.settle();
        }
        Ok(futures_util::stream::unfold(
            subscription,
            |mut subscription| async move {
                let event = subscription.events.recv().await?;
                Some((TaskChangedEvent(event), subscription))
            },
        ))
    }
}

/// What happened.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TaskChangeKind {
    /// The task was created.
    Created,
    /// The task was edited (but not completed or reopened).
    Updated,
    /// The task was marked completed (other fields may have changed with it).
    Completed,
    /// The task was reopened (marked not completed).
    Uncompleted,
    /// The task was deleted (alone, in bulk, or with its user).
    Deleted,
    /// Changes may have been missed: refetch what you show. No task is named.
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
pub struct TaskChangedEvent(Event);

/// One change to one of the signed-in user's tasks, or a notice to resync.
#[Object]
impl TaskChangedEvent {
    /// What happened.
    async fn kind(&self) -> TaskChangeKind {
        match &self.0 {
            Event::Change(change) => change.kind.into(),
            Event::Resync { .. } => TaskChangeKind::Resync,
        }
    }

    /// The id of the task that changed: set on every kind but RESYNC. For DELETED, the id
    /// to evict from a cache.
    async fn task_id(&self) -> Option<ID> {
        match &self.0 {
            Event::Change(change) => Some(ID(change.task_id.to_string())),
            Event::Resync { .. } => None,
        }
    }

    /// The task as it is after the change; null for DELETED and RESYNC.
    async fn task(&self) -> Option<Task> {
        match &self.0 {
            Event::Change(change) => change.task.clone().map(Task),
            Event::Resync { .. } => None,
        }
    }

    /// When the change was committed (for RESYNC: when the server noticed the gap).
    async fn at(&self) -> DateTime {
        match &self.0 {
            Event::Change(change) => DateTime(change.at),
            Event::Resync { at } => DateTime(*at),
        }
    }
}
