//! SQL for the `tasks` table.
//!
//! Every statement is scoped by the caller's `UserId`: it appears in the WHERE clause of
//! every read, update and delete, and in the row of every insert. Nothing here takes a user
//! id from anywhere else, so a task of another user is indistinguishable from a missing one.
//!
//! - this file: the row, single reads, counts and statistics;
//! - [`list`]: keyset pages (a page continues from a position with a predicate the indexes
//!   of `migrations/0003_tasks.sql` answer as a seek, never with OFFSET) and the probe;
//! - [`filter`]: a typed filter as a SQL expression, shared by pages and counts;
//! - [`write`]: inserts, updates, deletes and the all-or-nothing bulk writes;
//! - [`idempotent`]: creates that a retry with the same key does not repeat.

mod filter;
mod idempotent;
mod list;
mod write;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, QueryBuilder};
use uuid::Uuid;

pub use filter::matching;
pub use idempotent::create;
pub use list::{Columns, Page, exists_before, list, position, push_list_query};
pub use write::{delete, delete_many, insert, set_completed, update};

use crate::{auth::UserId, domain::query::Filter, error::Result};

/// A task row.
/// Serialisable because change announcements carry rows as JSON (`db::changes`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: i16,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at";

/// One of the caller's tasks.
pub async fn get(executor: impl PgExecutor<'_>, user: &UserId, id: Uuid) -> Result<Option<Task>> {
    Ok(sqlx::query_as!(
        Task,
        "select id, user_id, title, description, completed, priority, due_at, completed_at,
                created_at, updated_at
         from tasks where id = $1 and user_id = $2",
        id,
        user.as_str()
    )
    .fetch_optional(executor)
    .await?)
}

/// The caller's tasks after `after` in id order, at most `limit`: one batch of a data export,
/// which walks the primary key (scoped by user) so no task comes twice and none is skipped.
pub async fn export_batch(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Task>> {
    Ok(sqlx::query_as!(
        Task,
        "select id, user_id, title, description, completed, priority, due_at, completed_at,
                created_at, updated_at
         from tasks where user_id = $1 and ($2::uuid is null or id > $2)
         order by id limit $3",
        user.as_str(),
        after,
        limit
    )
    .fetch_all(executor)
    .await?)
}

/// How many of the caller's tasks match `filter`.
pub async fn count(executor: impl PgExecutor<'_>, user: &UserId, filter: &Filter) -> Result<i64> {
    let mut query = QueryBuilder::new("select count(*) from tasks where user_id = ");
    query.push_bind(user.as_str().to_owned());
    query.push(" and ");
    filter::push_filter(&mut query, filter);
    Ok(query.build_query_scalar().fetch_one(executor).await?)
}

/// Counts over the caller's tasks matching a filter.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stats {
    pub total: i64,
    pub completed: i64,
    pub overdue: i64,
    pub priority_1: i64,
    pub priority_2: i64,
    pub priority_3: i64,
    pub priority_4: i64,
    pub priority_5: i64,
}

/// Totals, completion, overdue and per-priority counts in one pass over the matching rows.
pub async fn stats(executor: impl PgExecutor<'_>, user: &UserId, filter: &Filter) -> Result<Stats> {
    let mut query = QueryBuilder::new(
        "select count(*) as total,
                count(*) filter (where completed) as completed,
                count(*) filter (where not completed and due_at < now()) as overdue,
                count(*) filter (where priority = 1) as priority_1,
                count(*) filter (where priority = 2) as priority_2,
                count(*) filter (where priority = 3) as priority_3,
                count(*) filter (where priority = 4) as priority_4,
                count(*) filter (where priority = 5) as priority_5
         from tasks where user_id = ",
    );
    query.push_bind(user.as_str().to_owned());
    query.push(" and ");
    filter::push_filter(&mut query, filter);
    Ok(query.build_query_as().fetch_one(executor).await?)
}
