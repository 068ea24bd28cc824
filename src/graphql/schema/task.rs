//! The `Task` type, task statistics, and the task queries and mutations.
//!
//! Every resolver gets the caller's id from the `Viewer` and passes it to `db::tasks`;
//! no argument can name another user.

use async_graphql::{Context, ID, Object, SimpleObject};
use sha2::{Digest as _, Sha256};

use super::{
    connection::{Relay, TaskConnection, Wanted, page_args},
    cursor::CursorKeys,
    inputs::{CreateTaskInput, TaskFilter, TaskOrder, UpdateTaskInput, parse_order, parse_task_id},
    scalars::DateTime,
    subscription::{TaskChangedEvent, TaskChanges, hub, parse_version},
    user::User,
    viewer::Viewer,
};
use crate::{
    auth::UserId,
    db::{self, changes::Committed},
    domain::{
        query::{DEFAULT_PAGE_SIZE, Filter, MAX_PAGE_SIZE},
        task::NewTask,
    },
    error::{AppError, Result},
};

/// The most ids a bulk mutation takes.
const MAX_BULK_IDS: usize = 100;
/// The most changes one `taskChanges` page holds.
pub const MAX_CHANGES_PAGE: i32 = 1000;

/// A task of the signed-in user.
#[derive(Debug, Clone)]
pub struct Task(pub db::tasks::Task);

/// A task: something to do, owned by one user.
#[Object]
impl Task {
    /// The task's id (a UUID). Stable for the life of the task.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The title (1 to 200 characters).
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Free text about the task (at most 1000 characters).
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// Whether the task is done.
    async fn completed(&self) -> bool {
        self.0.completed
    }

    /// The priority, from 1 (lowest) to 5 (highest).
    async fn priority(&self) -> i32 {
        i32::from(self.0.priority)
    }

    /// When the task is due, if ever.
    async fn due_at(&self) -> Option<DateTime> {
        self.0.due_at.map(DateTime)
    }

    /// When the task was completed; null while it is open.
    async fn completed_at(&self) -> Option<DateTime> {
        self.0.completed_at.map(DateTime)
    }

    /// When the task was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// When the task last changed. Send it back as `expectedUpdatedAt` to update safely.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }

    /// The user the task belongs to (always the signed-in user).
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        Viewer::of(ctx)?.owner(&self.0.user_id).await.map(User)
    }
}

/// Counts over a set of tasks.
#[derive(Debug, Clone, SimpleObject)]
pub struct TaskStats {
    /// How many tasks there are.
    pub total: i32,
    /// How many are completed.
    pub completed: i32,
    /// How many are open (not completed).
    pub open: i32,
    /// How many are open and past their due date.
    pub overdue: i32,
    /// How many there are of each priority, from 1 to 5 (always five entries).
    pub by_priority: Vec<PriorityCount>,
}

/// How many tasks have one priority.
#[derive(Debug, Clone, SimpleObject)]
pub struct PriorityCount {
    /// The priority (1 to 5).
    pub priority: i32,
    /// How many tasks have it.
    pub count: i32,
}

fn int(count: i64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

impl From<db::tasks::Stats> for TaskStats {
    fn from(stats: db::tasks::Stats) -> Self {
        let by_priority = [
            stats.priority_1,
            stats.priority_2,
            stats.priority_3,
            stats.priority_4,
            stats.priority_5,
        ]
        .into_iter()
        .zip(1..)
        .map(|(count, priority)| PriorityCount {
            priority,
            count: int(count),
        })
        .collect();
        Self {
            total: int(stats.total),
            completed: int(stats.completed),
            open: int(stats.total - stats.completed),
            overdue: int(stats.overdue),
            by_priority,
        }
    }
}

/// The complexity of a list field: its page size (the `first` or `last` asked for, or the
/// default) times the complexity of what is selected for each item.
pub fn page_cost(first: Option<i32>, last: Option<i32>) -> usize {
    let size = first.or(last).map_or(DEFAULT_PAGE_SIZE as i32, |n| {
        n.clamp(1, MAX_PAGE_SIZE as i32)
    });
    usize::try_from(size).unwrap_or(1)
}

/// `tasks(…)`, shared by `Query.tasks` and `User.tasks`.
pub async fn list(
    ctx: &Context<'_>,
    user: UserId,
    filter: Option<TaskFilter>,
    order_by: Option<Vec<TaskOrder>>,
    relay: Relay,
) -> Result<TaskConnection> {
    let filter = filter.map_or(Ok(Filter::all()), |filter| filter.parse("filter"))?;
    let order = parse_order(order_by)?;
    let args = page_args(
        ctx.data_unchecked::<CursorKeys>(),
        &user,
        filter,
        order,
        &relay,
    )?;
    // A client asking only for totalCount gets the count without the page being read.
    let look = ctx.look_ahead();
    let page_info = look.field("pageInfo");
    let (nodes, edge_nodes) = (look.field("nodes"), look.field("edges").field("node"));
    // A field of the page's tasks, through `nodes` or `edges.node` (fragments included).
    let shown = |field: &str| nodes.field(field).exists() || edge_nodes.field(field).exists();
    let wanted = Wanted {
        version: look.field("version").exists(),
        rows: look.field("edges").exists() || nodes.exists() || page_info.exists(),
        columns: db::tasks::Columns {
            owner: shown("owner"),
            description: shown("description"),
            completed_at: shown("completedAt"),
        },
        has_previous: page_info.field("hasPreviousPage").exists(),
        has_next: page_info.field("hasNextPage").exists(),
    };
    TaskConnection::load(ctx, user, args, wanted).await
}

/// `taskStats(filter)`, shared by `Query.taskStats` and `User.taskStats` (whose callers have
/// checked that the user is the caller).
pub async fn stats(ctx: &Context<'_>, filter: Option<TaskFilter>) -> Result<TaskStats> {
    let filter = filter.map_or(Ok(Filter::all()), |filter| filter.parse("filter"))?;
    Ok(Viewer::of(ctx)?.stats(&filter).await?.into())
}

#[derive(Default)]
pub struct TaskQuery;

#[Object]
impl TaskQuery {
    /// One of the signed-in user's tasks; null when no task has this id or it belongs to
    /// someone else (the two cases cannot be told apart).
    async fn task(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The task's id.")] id: ID,
    ) -> Result<Option<Task>> {
        let id = parse_task_id(&id, "id")?;
        let user = Viewer::of(ctx)?.ensure_user().await?;
        Ok(db::tasks::get(Viewer::pool(ctx), user, id).await?.map(Task))
    }

    /// The signed-in user's tasks, a page at a time (Relay cursor pagination). Newest first
    /// unless `orderBy` says otherwise.
    #[graphql(complexity = "page_cost(first, last) * child_complexity")]
    #[allow(clippy::too_many_arguments, reason = "the Relay connection arguments")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only tasks matching this filter.")] filter: Option<TaskFilter>,
        #[graphql(desc = "Sort keys, most significant first. Default: createdAt descending.")]
        order_by: Option<Vec<TaskOrder>>,
        #[graphql(desc = "Page forward: at most this many tasks (1 to 100, default 20).")]
        first: Option<i32>,
        #[graphql(desc = "Page forward: the tasks after this cursor.")] after: Option<String>,
        #[graphql(desc = "Page backward: at most this many tasks (1 to 100).")] last: Option<i32>,
        #[graphql(desc = "Page backward: the tasks before this cursor.")] before: Option<String>,
    ) -> Result<TaskConnection> {
        let user = Viewer::of(ctx)?.ensure_user().await?.clone();
        let relay = Relay {
            first,
            after,
            last,
            before,
        };
        list(ctx, user, filter, order_by, relay).await
    }

    /// Counts over the signed-in user's tasks matching a filter.
    async fn task_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only count tasks matching this filter.")] filter: Option<TaskFilter>,
    ) -> Result<TaskStats> {
        stats(ctx, filter).await
    }

    /// What changed in the signed-in user's tasks after a version, deletions included, in
    /// the order the changes were committed: each task at most once per page, as it now is
    /// (or only its id, when deleted). Start from the `version` of a `tasks` page or of an
    /// event; continue from the answer's `version` while `hasMore`. A version older than the
    /// deletions the server keeps (`SYNC_RETENTION`, 30 days by default), or from before the
    /// account was deleted, is answered with a single RESYNC: refetch, then continue from its
    /// `version`.
    #[graphql(complexity = "usize::try_from(first).unwrap_or(1).max(1) * child_complexity")]
    async fn task_changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version to read changes after.")] since: String,
        #[graphql(desc = "At most this many changes (1 to 1000).", default = 100)] first: i32,
    ) -> Result<TaskChanges> {
        if !(1..=MAX_CHANGES_PAGE).contains(&first) {
            return Err(AppError::invalid(
                "first",
                format!("first must be from 1 to {MAX_CHANGES_PAGE}, not {first}."),
            ));
        }
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?.clone();
        let since = parse_version(&user, &since, "since")?;
        let hub = hub(ctx)?;
        let delta = viewer
            .as_user(|user| hub.changes(user, since, i64::from(first)))
            .await?;
        Ok(TaskChanges {
            version: crate::live::version::encode(&user, delta.stamp),
            has_more: delta.has_more,
            changes: delta
                .events
                .into_iter()
                .map(|event| TaskChangedEvent {
                    event,
                    user: user.clone(),
                })
                .collect(),
        })
    }
}

/// Tells this instance's subscribers, and through the database every other instance's, what
/// a committed write changed.
fn announce(ctx: &Context<'_>, user: &UserId, committed: Option<Committed>) -> Result<()> {
    if let Some(committed) = committed {
        hub(ctx)?.committed(user, &committed);
    }
    Ok(())
}

/// SHA-256 of a create input, to tell a retry (same input) from a reused key.
fn digest(task: &NewTask) -> Vec<u8> {
    let canonical = serde_json::json!([
        task.title.as_str(),
        task.description.as_ref().map(|d| d.as_str()),
        task.priority.value(),
        task.due_at.map(|t| t.timestamp_micros()),
        task.completed,
    ]);
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
}

fn parse_ids(ids: &[ID]) -> Result<Vec<uuid::Uuid>> {
    if ids.len() > MAX_BULK_IDS {
        return Err(AppError::invalid(
            "ids",
            format!(
                "At most {MAX_BULK_IDS} ids per request; this one has {}.",
                ids.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let field = format!("ids.{i}");
            let id = parse_task_id(id, &field)?;
            // Results come back position by position; a repeated id has no single answer
            // (the second `setTasksCompleted` of a task is a no-op), so it is refused.
            if seen.insert(id) {
                Ok(id)
            } else {
                Err(AppError::invalid(
                    field,
                    format!("The id {id} is listed more than once; list each task once."),
                ))
            }
        })
        .collect()
}

#[derive(Default)]
pub struct TaskMutation;

#[Object]
impl TaskMutation {
    /// Creates a task for the signed-in user.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new task.")] input: CreateTaskInput,
    ) -> Result<Task> {
        let (task, key) = input.parse()?;
        let viewer = Viewer::of(ctx)?;
        let digest = digest(&task);
        let idempotency = key.as_deref().map(|key| (key, digest.as_slice()));
        let pool = Viewer::pool(ctx);
        let (created, stamp) = viewer
            .as_user(|user| db::tasks::create(pool, user, &task, idempotency))
            .await?;
        viewer.tasks_changed();
        announce(ctx, viewer.ensure_user().await?, stamp)?;
        Ok(Task(created))
    }

    /// Changes one of the signed-in user's tasks. `NOT_FOUND` when there is no such task (or
    /// it is someone else's); `CONFLICT` when `expectedUpdatedAt` is stale.
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The task to change.")] id: ID,
        #[graphql(desc = "The changes; fields left out are left alone.")] input: UpdateTaskInput,
    ) -> Result<Task> {
        let id = parse_task_id(&id, "id")?;
        let (patch, expected) = input.parse()?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?;
        let (updated, stamp) =
            db::tasks::update(Viewer::pool(ctx), user, id, &patch, expected).await?;
        viewer.tasks_changed();
        announce(ctx, user, stamp)?;
        Ok(Task(updated))
    }

    /// Deletes one of the signed-in user's tasks and returns its id (for `cache.evict`).
    async fn delete_task(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The task to delete.")] id: ID,
    ) -> Result<ID> {
        let task_id = parse_task_id(&id, "id")?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?;
        match db::tasks::delete(Viewer::pool(ctx), user, task_id).await? {
            Some(stamp) => {
                viewer.tasks_changed();
                announce(ctx, user, Some(stamp))?;
                Ok(ID(task_id.to_string()))
            }
            None => Err(AppError::not_found("task")),
        }
    }

    /// Completes (or reopens) several tasks at once, all or nothing: if any id is not one of
    /// the signed-in user's tasks, nothing changes and the error is `NOT_FOUND` with the
    /// missing ids in `extensions.ids`. At most 100 ids, each listed once (a repeated id is
    /// `BAD_USER_INPUT`); returns the tasks in the order given.
    async fn set_tasks_completed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tasks to change (at most 100).")] ids: Vec<ID>,
        #[graphql(desc = "true to complete, false to reopen.")] completed: bool,
    ) -> Result<Vec<Task>> {
        let ids = parse_ids(&ids)?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?;
        let (tasks, stamp) =
            db::tasks::set_completed(Viewer::pool(ctx), user, &ids, completed).await?;
        viewer.tasks_changed();
        announce(ctx, user, stamp)?;
        Ok(tasks.into_iter().map(Task).collect())
    }

    /// Deletes several tasks at once, all or nothing (see `setTasksCompleted`). At most 100
    /// ids, each listed once; returns the deleted ids in the order given.
    async fn delete_tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tasks to delete (at most 100).")] ids: Vec<ID>,
    ) -> Result<Vec<ID>> {
        let ids = parse_ids(&ids)?;
        let viewer = Viewer::of(ctx)?;
        let user = viewer.ensure_user().await?;
        let (deleted, stamp) = db::tasks::delete_many(Viewer::pool(ctx), user, &ids).await?;
        viewer.tasks_changed();
        announce(ctx, user, stamp)?;
        Ok(deleted.into_iter().map(|id| ID(id.to_string())).collect())
    }
}
