//! Writes to the caller's tasks: one row at a time, or several all or nothing.
//!
//! Every write advances the caller's change version (`migrations/0007_change_feed.sql`) in
//! the statement that changes the tasks: a common table expression takes the caller's `users`
//! row lock first, advances `version` and hands the new number to the rows it writes (and to
//! the tombstones of the rows it deletes). Taking that lock before any task's keeps writers
//! of one user from waiting on each other in opposite orders; writers of different users never
//! meet. Each write returns what it [`Committed`] to the feed, which the caller announces
//! once it has committed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{COLUMNS, Task, get};
use crate::{
    auth::UserId,
    db::changes::{Change, Changed, Committed},
    domain::task::{NewTask, TaskPatch},
    error::{AppError, Result},
};

/// A task as a write left it, with its place in the caller's change feed.
#[derive(sqlx::FromRow)]
struct Written {
    #[sqlx(flatten)]
    task: Task,
    version: i64,
    created_version: i64,
    completed_version: i64,
    epoch: i64,
}

impl Written {
    fn change(&self) -> Change {
        Change {
            task_id: self.task.id,
            version: self.version,
            what: Changed::Task {
                task: self.task.clone(),
                created_version: self.created_version,
                completed_version: self.completed_version,
            },
        }
    }

    /// The write of this one row, which took one version.
    fn committed(&self) -> Committed {
        Committed {
            epoch: self.epoch,
            after: self.version - 1,
            upto: self.version,
            changes: vec![self.change()],
        }
    }
}

/// Inserts a task for the caller. `UserGone` when the caller's row is missing.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    task: &NewTask,
) -> Result<(Task, Committed)> {
    let row = sqlx::query!(
        r#"
        with v as (
            update users set version = version + 1 where id = $2 returning version, sync_epoch
        )
        insert into tasks (id, user_id, title, description, priority, due_at, completed,
                           version, created_version, completed_version)
        select $1::uuid, $2::text, $3::text, $4::text, $5::smallint, $6::timestamptz, $7::boolean,
               v.version, v.version, v.version
        from v
        returning id, user_id, title, description, completed, priority, due_at, completed_at,
                  created_at, updated_at, version, (select sync_epoch from v) as "epoch!"
        "#,
        Uuid::now_v7(),
        user.as_str(),
        task.title.as_str(),
        task.description.as_ref().map(|d| d.as_str()),
        task.priority.value(),
        task.due_at,
        task.completed
    )
    .fetch_optional(executor)
    .await?
    // No row to advance: the user was deleted under the request.
    .ok_or(AppError::UserGone)?;
    let task = Task {
        id: row.id,
        user_id: row.user_id,
        title: row.title,
        description: row.description,
        completed: row.completed,
        priority: row.priority,
        due_at: row.due_at,
        completed_at: row.completed_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    let written = Written {
        task,
        version: row.version,
        created_version: row.version,
        completed_version: row.version,
        epoch: row.epoch,
    };
    let committed = written.committed();
    Ok((written.task, committed))
}

/// Applies `patch` to one of the caller's tasks. With `expected`, only if the task's
/// `updated_at` still equals it (optimistic concurrency): otherwise nothing changes and the
/// error carries the current value. One statement, so the check and the write are atomic.
/// A patch that would change nothing (the values the task already has) writes nothing and
/// returns no stamp: there is no change to announce.
pub async fn update(
    pool: &PgPool,
    user: &UserId,
    id: Uuid,
    patch: &TaskPatch,
    expected: Option<DateTime<Utc>>,
) -> Result<(Task, Option<Committed>)> {
    let updated = if patch.is_empty() {
        None
    } else {
        let mut query =
            QueryBuilder::new("with v as (update users set version = version + 1 where id = ");
        query.push_bind(user.as_str().to_owned());
        query.push(" returning version, sync_epoch) update tasks t set ");
        // Each patched column, and the condition that it really changes.
        let mut differs = Vec::new();
        let mut assignments = query.separated(", ");
        if let Some(title) = &patch.title {
            assignments
                .push("title = ")
                .push_bind_unseparated(title.as_str().to_owned());
            differs.push(("title", Value::Text(Some(title.as_str().to_owned()))));
        }
        if let Some(description) = &patch.description {
            let value = description.as_ref().map(|d| d.as_str().to_owned());
            assignments
                .push("description = ")
                .push_bind_unseparated(value.clone());
            differs.push(("description", Value::Text(value)));
        }
        if let Some(priority) = patch.priority {
            assignments
                .push("priority = ")
                .push_bind_unseparated(priority.value());
            differs.push(("priority", Value::Int(priority.value())));
        }
        if let Some(due_at) = patch.due_at {
            assignments.push("due_at = ").push_bind_unseparated(due_at);
            differs.push(("due_at", Value::Time(due_at)));
        }
        if let Some(completed) = patch.completed {
            assignments
                .push("completed = ")
                .push_bind_unseparated(completed);
            assignments
                .push("completed_version = case when t.completed is distinct from ")
                .push_bind_unseparated(completed)
                .push_unseparated(" then v.version else t.completed_version end");
            differs.push(("completed", Value::Bool(completed)));
        }
        assignments.push("version = v.version");
        query.push(" from v where t.id = ");
        query.push_bind(id);
        query.push(" and t.user_id = ");
        query.push_bind(user.as_str().to_owned());
        if let Some(expected) = expected {
            query.push(" and t.updated_at = ");
            query.push_bind(expected);
        }
        query.push(" and (");
        for (i, (column, value)) in differs.into_iter().enumerate() {
            if i > 0 {
                query.push(" or ");
            }
            query.push(format_args!("t.{column} is distinct from "));
            match value {
                Value::Text(text) => query.push_bind(text),
                Value::Int(int) => query.push_bind(int),
                Value::Time(time) => query.push_bind(time),
                Value::Bool(flag) => query.push_bind(flag),
            };
        }
        query.push(")");
        query.push(format_args!(
            " returning {}, t.version, t.created_version, t.completed_version, \
             v.sync_epoch as epoch",
            qualified_columns()
        ));
        query
            .build_query_as::<Written>()
            .fetch_optional(pool)
            .await?
    };
    if let Some(written) = updated {
        let committed = written.committed();
        return Ok((written.task, Some(committed)));
    }
    // Nothing was written: the task is missing, the expectation stale, or the patch changes
    // nothing. Only the current row tells which.
    match get(pool, user, id).await? {
        Some(current) if expected.is_none_or(|at| at == current.updated_at) => Ok((current, None)),
        Some(current) => Err(AppError::StaleUpdate {
            current_updated_at: current.updated_at,
        }),
        None => Err(AppError::not_found("task")),
    }
}

/// A patched value, bound again in the "does it change?" condition.
enum Value {
    Text(Option<String>),
    Int(i16),
    Time(Option<DateTime<Utc>>),
    Bool(bool),
}

/// [`COLUMNS`] of the table aliased `t`.
fn qualified_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|column| format!("t.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deletes one of the caller's tasks, leaving its tombstone; `None` when there was none.
pub async fn delete(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    id: Uuid,
) -> Result<Option<Committed>> {
    let deleted = sqlx::query!(
        r#"
        with v as (
            update users set version = version + 1 where id = $2 returning version, sync_epoch
        ), own as (
            -- This statement writes its own tombstone: the trigger for deletes made
            -- elsewhere (migrations/0007_change_feed.sql) leaves it alone.
            select set_config('taskql.writer', 'on', true)
        ), d as (
            delete from tasks t using v, own
            where t.id = $1 and t.user_id = $2
            returning t.id, v.version
        )
        insert into task_tombstones (user_id, version, task_id)
        select $2, d.version, d.id from d
        returning version, deleted_at, (select sync_epoch from v) as "epoch!"
        "#,
        id,
        user.as_str()
    )
    .fetch_optional(executor)
    .await?;
    Ok(deleted.map(|row| Committed {
        epoch: row.epoch,
        after: row.version - 1,
        upto: row.version,
        changes: vec![Change {
            task_id: id,
            version: row.version,
            what: Changed::Deleted { at: row.deleted_at },
        }],
    }))
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
/// Returns the tasks in the order of `ids`, and what changed (completing a completed task
/// changes nothing). Each changed task gets a version of its own, so a client reading changes
/// a page at a time never splits one version.
pub async fn set_completed(
    pool: &PgPool,
    user: &UserId,
    ids: &[Uuid],
    completed: bool,
) -> Result<(Vec<Task>, Option<Committed>)> {
    let ids = distinct(ids);
    let mut tx = pool.begin().await?;
    let updated: Vec<Bulk> = sqlx::query_as(
        "with v as (
             update users set version = version + cardinality($2::uuid[]) where id = $1
             returning version - cardinality($2::uuid[]) as base, sync_epoch
         )
         update tasks t set
             completed = $3,
             version = case when t.completed is distinct from $3
                            then v.base + array_position($2, t.id) else t.version end,
             completed_version = case when t.completed is distinct from $3
                                      then v.base + array_position($2, t.id)
                                      else t.completed_version end
         from v
         where t.user_id = $1 and t.id = any($2)
         returning t.id, t.user_id, t.title, t.description, t.completed, t.priority, t.due_at,
                   t.completed_at, t.created_at, t.updated_at, t.version, t.created_version,
                   t.completed_version, v.sync_epoch as epoch, v.base",
    )
    .bind(user.as_str())
    .bind(&ids)
    .bind(completed)
    .fetch_all(&mut *tx)
    .await?;
    let found: HashSet<Uuid> = updated.iter().map(|row| row.written.task.id).collect();
    commit_if_all_found(tx, &ids, &found).await?;
    let committed = updated.first().map(|first| {
        let mut changes: Vec<Change> = updated
            .iter()
            .filter(|row| row.written.version > row.base)
            .map(|row| row.written.change())
            .collect();
        changes.sort_by_key(|change| change.version);
        Committed {
            epoch: first.written.epoch,
            after: first.base,
            upto: first.base + reserved(&ids),
            changes,
        }
    });
    let mut by_id: std::collections::HashMap<Uuid, Task> = updated
        .into_iter()
        .map(|row| (row.written.task.id, row.written.task))
        .collect();
    Ok((
        ids.iter().filter_map(|id| by_id.remove(id)).collect(),
        committed.filter(|committed| !committed.changes.is_empty()),
    ))
}

/// How many versions a bulk write of `ids` reserves: one per id.
fn reserved(ids: &[Uuid]) -> i64 {
    i64::try_from(ids.len()).unwrap_or(i64::MAX)
}

/// A row of a bulk write: the task, its stamp, and the version the write's numbers start
/// after (rows at or below it did not change).
#[derive(sqlx::FromRow)]
struct Bulk {
    #[sqlx(flatten)]
    written: Written,
    base: i64,
}

/// Deletes several of the caller's tasks, all or none (see [`set_completed`]), leaving a
/// tombstone for each. Returns the deleted ids in the order given, and what changed.
pub async fn delete_many(
    pool: &PgPool,
    user: &UserId,
    ids: &[Uuid],
) -> Result<(Vec<Uuid>, Option<Committed>)> {
    let ids = distinct(ids);
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query!(
        r#"
        with v as (
            update users set version = version + cardinality($2::uuid[]) where id = $1
            returning version - cardinality($2::uuid[]) as base, sync_epoch
        ), own as (
            select set_config('taskql.writer', 'on', true)
        ), d as (
            delete from tasks t using v, own
            where t.user_id = $1 and t.id = any($2)
            returning t.id, v.base + array_position($2, t.id) as version
        )
        insert into task_tombstones (user_id, version, task_id)
        select $1, d.version, d.id from d
        returning task_id, version, deleted_at, (select sync_epoch from v) as "epoch!",
                  (select base from v) as "base!"
        "#,
        user.as_str(),
        &ids
    )
    .fetch_all(&mut *tx)
    .await?;
    let found: HashSet<Uuid> = deleted.iter().map(|row| row.task_id).collect();
    commit_if_all_found(tx, &ids, &found).await?;
    let committed = deleted.first().map(|first| {
        let mut changes: Vec<Change> = deleted
            .iter()
            .map(|row| Change {
                task_id: row.task_id,
                version: row.version,
                what: Changed::Deleted { at: row.deleted_at },
            })
            .collect();
        changes.sort_by_key(|change| change.version);
        Committed {
            epoch: first.epoch,
            after: first.base,
            upto: first.base + reserved(&ids),
            changes,
        }
    });
    Ok((ids, committed))
}
