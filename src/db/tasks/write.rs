//! Writes to the caller's tasks: one row at a time, or several all or nothing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{COLUMNS, Task, get};
use crate::{
    auth::UserId,
    domain::task::{NewTask, TaskPatch},
    error::{AppError, Result},
};

/// Inserts a task for the caller.
pub async fn insert(executor: impl PgExecutor<'_>, user: &UserId, task: &NewTask) -> Result<Task> {
    Ok(sqlx::query_as!(
        Task,
        "insert into tasks (id, user_id, title, description, priority, due_at, completed)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, user_id, title, description, completed, priority, due_at, completed_at,
                   created_at, updated_at",
        Uuid::now_v7(),
        user.as_str(),
        task.title.as_str(),
        task.description.as_ref().map(|d| d.as_str()),
        task.priority.value(),
        task.due_at,
        task.completed
    )
    .fetch_one(executor)
    .await?)
}

/// Applies `patch` to one of the caller's tasks. With `expected`, only if the task's
/// `updated_at` still equals it (optimistic concurrency): otherwise nothing changes and the
/// error carries the current value. One statement, so the check and the write are atomic.
pub async fn update(
    pool: &PgPool,
    user: &UserId,
    id: Uuid,
    patch: &TaskPatch,
    expected: Option<DateTime<Utc>>,
) -> Result<Task> {
    let updated = if patch.is_empty() {
        get(pool, user, id)
            .await?
            .filter(|task| expected.is_none_or(|at| at == task.updated_at))
    } else {
        let mut query = QueryBuilder::new("update tasks set ");
        let mut assignments = query.separated(", ");
        if let Some(title) = &patch.title {
            assignments
                .push("title = ")
                .push_bind_unseparated(title.as_str().to_owned());
        }
        if let Some(description) = &patch.description {
            assignments
                .push("description = ")
                .push_bind_unseparated(description.as_ref().map(|d| d.as_str().to_owned()));
        }
        if let Some(priority) = patch.priority {
            assignments
                .push("priority = ")
                .push_bind_unseparated(priority.value());
        }
        if let Some(due_at) = patch.due_at {
            assignments.push("due_at = ").push_bind_unseparated(due_at);
        }
        if let Some(completed) = patch.completed {
            assignments
                .push("completed = ")
                .push_bind_unseparated(completed);
        }
        query.push(" where id = ");
        query.push_bind(id);
        query.push(" and user_id = ");
        query.push_bind(user.as_str().to_owned());
        if let Some(expected) = expected {
            query.push(" and updated_at = ");
            query.push_bind(expected);
        }
        query.push(format_args!(" returning {COLUMNS}"));
        query.build_query_as::<Task>().fetch_optional(pool).await?
    };
    if let Some(task) = updated {
        return Ok(task);
    }
    match get(pool, user, id).await? {
        Some(current) => Err(AppError::StaleUpdate {
            current_updated_at: current.updated_at,
        }),
        None => Err(AppError::not_found("task")),
    }
}

/// Deletes one of the caller's tasks; false when there was none.
pub async fn delete(executor: impl PgExecutor<'_>, user: &UserId, id: Uuid) -> Result<bool> {
    let deleted = sqlx::query!(
        "delete from tasks where id = $1 and user_id = $2",
        id,
        user.as_str()
    )
    .execute(executor)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// `ids` without repeats, first occurrence first.
fn distinct(ids: &[Uuid]) -> Vec<Uuid> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// The all-or-nothing rule of the bulk mutations: commits when every wanted id was one of
/// the caller's tasks; otherwise rolls back and names the ids not found.
async fn commit_if_all_found(
    tx: sqlx::Transaction<'_, Postgres>,
    wanted: &[Uuid],
    found: &HashSet<Uuid>,
) -> Result<()> {
    if found.len() == wanted.len() {
        tx.commit().await?;
        return Ok(());
    }
    tx.rollback().await?;
    Err(AppError::NotFound {
        what: "task",
        ids: wanted
            .iter()
            .filter(|id| !found.contains(id))
            .map(Uuid::to_string)
            .collect(),
    })
}

/// Sets `completed` on several of the caller's tasks, all or none: if any id is not one of
/// the caller's tasks, the transaction rolls back and the error names the ids not found.
/// Returns the tasks in the order of `ids`.
pub async fn set_completed(
    pool: &PgPool,
    user: &UserId,
    ids: &[Uuid],
    completed: bool,
) -> Result<Vec<Task>> {
    let ids = distinct(ids);
    let mut tx = pool.begin().await?;
    let updated = sqlx::query_as!(
        Task,
        "update tasks set completed = $3 where user_id = $1 and id = any($2)
         returning id, user_id, title, description, completed, priority, due_at, completed_at,
                   created_at, updated_at",
        user.as_str(),
        &ids,
        completed
    )
    .fetch_all(&mut *tx)
    .await?;
    let found: HashSet<Uuid> = updated.iter().map(|task| task.id).collect();
    commit_if_all_found(tx, &ids, &found).await?;
    let mut by_id: std::collections::HashMap<Uuid, Task> =
        updated.into_iter().map(|t| (t.id, t)).collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// Deletes several of the caller's tasks, all or none (see [`set_completed`]). Returns the
/// deleted ids in the order given.
pub async fn delete_many(pool: &PgPool, user: &UserId, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let ids = distinct(ids);
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query_scalar!(
        "delete from tasks where user_id = $1 and id = any($2) returning id",
        user.as_str(),
        &ids
    )
    .fetch_all(&mut *tx)
    .await?;
    let found: HashSet<Uuid> = deleted.into_iter().collect();
    commit_if_all_found(tx, &ids, &found).await?;
    Ok(ids)
}
