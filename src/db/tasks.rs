//! SQL for the `tasks` table.
//!
//! Every statement is scoped by the caller's `UserId`: it appears in the WHERE clause of
//! every read, update and delete, and in the row of every insert. Nothing here takes a user
//! id from anywhere else, so a task of another user is indistinguishable from a missing one.
//!
//! Lists are keyset-paginated: a page continues from a position (sort values + id) with a
//! predicate the indexes of `migrations/0003_tasks.sql` answer as a seek, never with OFFSET.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::users::User;
use crate::{
    auth::UserId,
    domain::{
        query::{
            Comparison, Direction, Filter, Order, PageRequest, Position, SortField, SortValue,
            TimeColumn,
        },
        task::{NewTask, TaskPatch},
    },
    error::{AppError, Result},
};

/// A task row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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

/// A page of tasks, as [`list`] reads it.
#[derive(Debug)]
pub struct Page {
    /// The rows, in `order` whichever the direction.
    pub rows: Vec<Task>,
    /// Whether more rows lie beyond the page in its direction.
    pub more: bool,
    /// The caller's row, when asked for with the page (`with_owner`) and the page has rows.
    pub owner: Option<User>,
}

/// A task row with the caller's row beside it (a page read with its owner). The owner's
/// columns are null when the caller's row is gone (a concurrent `deleteMe`).
#[derive(sqlx::FromRow)]
struct TaskWithOwner {
    #[sqlx(flatten)]
    task: Task,
    owner_email: Option<String>,
    owner_name: Option<String>,
    owner_image: Option<String>,
    owner_created_at: Option<DateTime<Utc>>,
    owner_updated_at: Option<DateTime<Utc>>,
}

/// The `users` columns read with a page, and their names in the result.
const OWNER_COLUMNS: [(&str, &str); 5] = [
    ("email", "owner_email"),
    ("name", "owner_name"),
    ("image", "owner_image"),
    ("created_at", "owner_created_at"),
    ("updated_at", "owner_updated_at"),
];

/// A page of the caller's tasks matching `filter` in `order`. With `with_owner`, the same
/// statement also reads the caller's row (every task's owner), so a page with its owners is
/// one round trip.
pub async fn list(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    filter: &Filter,
    order: &Order,
    page: &PageRequest,
    with_owner: bool,
) -> Result<Page> {
    let mut query = QueryBuilder::new("");
    push_list_query(&mut query, user, filter, order, page, with_owner);
    let (mut rows, owner) = if with_owner {
        let rows: Vec<TaskWithOwner> = query.build_query_as().fetch_all(executor).await?;
        let owner = rows.first().and_then(|row| {
            Some(User {
                id: row.task.user_id.clone(),
                email: row.owner_email.clone()?,
                name: row.owner_name.clone(),
                image: row.owner_image.clone(),
                created_at: row.owner_created_at?,
                updated_at: row.owner_updated_at?,
            })
        });
        (rows.into_iter().map(|row| row.task).collect(), owner)
    } else {
        let rows: Vec<Task> = query.build_query_as().fetch_all(executor).await?;
        (rows, None)
    };
    // One row more than asked was read: its presence says whether another page exists.
    let more = rows.len() > page.size as usize;
    rows.truncate(page.size as usize);
    if page.direction == Direction::Backward {
        rows.reverse();
    }
    Ok(Page { rows, more, owner })
}

/// Appends the page query to `query`. Public so a test can prefix it with `EXPLAIN` and check
/// that every common order is an index scan of the caller's rows.
pub fn push_list_query(
    query: &mut QueryBuilder<Postgres>,
    user: &UserId,
    filter: &Filter,
    order: &Order,
    page: &PageRequest,
    with_owner: bool,
) {
    let backward = page.direction == Direction::Backward;
    query.push(format_args!("select {COLUMNS}"));
    if with_owner {
        // The caller's row beside each task, as uncorrelated subqueries: PostgreSQL runs each
        // once per statement (an InitPlan, a primary-key lookup) whatever the page size, and
        // the page's own plan stays the index scan it is without them.
        for (column, alias) in OWNER_COLUMNS {
            query.push(format_args!(", (select {column} from users where id = "));
            query.push_bind(user.as_str().to_owned());
            query.push(format_args!(") as {alias}"));
        }
    }
    query.push(" from tasks where user_id = ");
    query.push_bind(user.as_str().to_owned());
    query.push(" and ");
    push_filter(query, filter);
    if let Some(position) = &page.cursor {
        query.push(" and ");
        push_after(query, order, position, backward);
    }
    query.push(" order by ");
    for key in order.keys() {
        let descending = key.descending != backward;
        query.push(format_args!(
            "{} {}, ",
            sort_expression(key.field, key.descending),
            if descending { "desc" } else { "asc" }
        ));
    }
    let id_descending = order.id_descending() != backward;
    query.push(if id_descending { "id desc" } else { "id asc" });
    query.push(" limit ");
    query.push_bind(i64::from(page.size) + 1);
}

/// Whether any matching task lies strictly before `position` in `order` (after it, when
/// `backward`), or is the task `also`: the `hasPreviousPage`/`hasNextPage` that looks behind
/// a page.
pub async fn exists_before(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    filter: &Filter,
    order: &Order,
    position: &Position,
    backward: bool,
    also: Option<Uuid>,
) -> Result<bool> {
    let mut query = QueryBuilder::new("select exists (select from tasks where user_id = ");
    query.push_bind(user.as_str().to_owned());
    query.push(" and ");
    push_filter(&mut query, filter);
    query.push(" and (");
    // "Before" in the requested order is "after" in the reversed one.
    push_after(&mut query, order, position, !backward);
    if let Some(id) = also {
        query.push(" or id = ");
        query.push_bind(id);
    }
    query.push("))");
    Ok(query.build_query_scalar().fetch_one(executor).await?)
}

/// How many of the caller's tasks match `filter`.
pub async fn count(executor: impl PgExecutor<'_>, user: &UserId, filter: &Filter) -> Result<i64> {
    let mut query = QueryBuilder::new("select count(*) from tasks where user_id = ");
    query.push_bind(user.as_str().to_owned());
    query.push(" and ");
    push_filter(&mut query, filter);
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
    push_filter(&mut query, filter);
    Ok(query.build_query_as().fetch_one(executor).await?)
}

/// The sort key of `field`, as the indexes define it. Due dates sort with tasks that have
/// none last, in both directions, through an infinite stand-in (never null, so comparable).
fn sort_expression(field: SortField, descending: bool) -> &'static str {
    match field {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::DueAt if descending => "coalesce(due_at, '-infinity'::timestamptz)",
        SortField::DueAt => "coalesce(due_at, 'infinity'::timestamptz)",
        SortField::Priority => "priority",
        SortField::Title => "title",
        SortField::Completed => "completed",
    }
}

/// The value of `field` for `task`, as a cursor records it.
fn sort_value(task: &Task, field: SortField) -> SortValue {
    match field {
        SortField::CreatedAt => SortValue::Time(Some(task.created_at)),
        SortField::UpdatedAt => SortValue::Time(Some(task.updated_at)),
        SortField::DueAt => SortValue::Time(task.due_at),
        SortField::Priority => SortValue::Int(task.priority),
        SortField::Title => SortValue::Text(task.title.clone()),
        SortField::Completed => SortValue::Bool(task.completed),
    }
}

/// Where `task` stands in `order`.
pub fn position(task: &Task, order: &Order) -> Position {
    Position {
        values: order
            .keys()
            .iter()
            .map(|key| sort_value(task, key.field))
            .collect(),
        id: task.id,
    }
}

/// Binds a cursor value as the same expression its column sorts by.
fn push_value(
    query: &mut QueryBuilder<Postgres>,
    field: SortField,
    descending: bool,
    value: &SortValue,
) {
    match value {
        SortValue::Time(time) if field == SortField::DueAt => {
            query.push("coalesce(");
            query.push_bind(*time);
            query.push(if descending {
                "::timestamptz, '-infinity'::timestamptz)"
            } else {
                "::timestamptz, 'infinity'::timestamptz)"
            });
        }
        SortValue::Time(time) => {
            query.push_bind(*time);
        }
        SortValue::Int(int) => {
            query.push_bind(*int);
        }
        SortValue::Text(text) => {
            query.push_bind(text.clone());
        }
        SortValue::Bool(flag) => {
            query.push_bind(*flag);
        }
    }
}

/// Rows strictly after `position` in `order` (reversed when `backward`).
///
/// When every key runs the same way this is one row comparison, `(k1, …, id) > (v1, …, vid)`,
/// which PostgreSQL turns into an index seek. Mixed directions need the expanded
/// lexicographic form: `k1 > v1 or (k1 = v1 and (k2 < v2 or (k2 = v2 and …)))`.
fn push_after(
    query: &mut QueryBuilder<Postgres>,
    order: &Order,
    position: &Position,
    backward: bool,
) {
    let keys = order.keys();
    let id_descending = order.id_descending() != backward;
    let uniform = keys
        .iter()
        .all(|key| (key.descending != backward) == id_descending);
    if uniform {
        query.push("(");
        for key in keys {
            query.push(format_args!(
                "{}, ",
                sort_expression(key.field, key.descending)
            ));
        }
        query.push(if id_descending { "id) < (" } else { "id) > (" });
        for (key, value) in keys.iter().zip(&position.values) {
            push_value(query, key.field, key.descending, value);
            query.push(", ");
        }
        query.push_bind(position.id);
        query.push(")");
        return;
    }
    // Each level nests the next inside its own parentheses: `and` binds tighter than `or`.
    for (key, value) in keys.iter().zip(&position.values) {
        let expression = sort_expression(key.field, key.descending);
        let operator = if key.descending != backward { "<" } else { ">" };
        query.push(format_args!("({expression} {operator} "));
        push_value(query, key.field, key.descending, value);
        query.push(format_args!(" or ({expression} = "));
        push_value(query, key.field, key.descending, value);
        query.push(" and ");
    }
    query.push(if id_descending { "id < " } else { "id > " });
    query.push_bind(position.id);
    query.push(")".repeat(2 * keys.len()));
}

/// Appends `filter` as a boolean SQL expression, values bound.
fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &Filter) {
    match filter {
        Filter::And(parts) if parts.is_empty() => {
            query.push("true");
        }
        Filter::Or(parts) if parts.is_empty() => {
            query.push("false");
        }
        Filter::And(parts) | Filter::Or(parts) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " and "
            } else {
                " or "
            };
            query.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    query.push(joiner);
                }
                push_filter(query, part);
            }
            query.push(")");
        }
        // A comparison on a null due date is unknown, not false; `not` of unknown would drop
        // the row. "Not due before Friday" should keep tasks without a due date.
        Filter::Not(inner) => {
            query.push("not coalesce(");
            push_filter(query, inner);
            query.push(", false)");
        }
        Filter::Completed(completed) => {
            query.push("completed = ");
            query.push_bind(*completed);
        }
        Filter::Priority(comparison, value) => {
            query.push(format_args!("priority {} ", operator(*comparison)));
            query.push_bind(*value);
        }
        Filter::PriorityIn(values) => {
            query.push("priority = any(");
            query.push_bind(values.clone());
            query.push(")");
        }
        Filter::Time(column, comparison, time) => {
            query.push(format_args!(
                "{} {} ",
                time_column(*column),
                operator(*comparison)
            ));
            query.push_bind(*time);
        }
        Filter::TimeIsNull(column, is_null) => {
            let test = if *is_null { "is null" } else { "is not null" };
            query.push(format_args!("{} {test}", time_column(*column)));
        }
        Filter::TitleEquals(title) => {
            query.push("title = ");
            query.push_bind(title.clone());
        }
        Filter::TitleContains(text) => {
            query.push("title ilike ");
            query.push_bind(format!("%{}%", escape_like(text)));
        }
        Filter::TitleStartsWith(text) => {
            query.push("title ilike ");
            query.push_bind(format!("{}%", escape_like(text)));
        }
        Filter::Search(words) => {
            // websearch_to_tsquery accepts any text (quotes, "or", -word) without syntax errors.
            query.push("search @@ websearch_to_tsquery('simple', ");
            query.push_bind(words.clone());
            query.push(")");
        }
    }
}

fn operator(comparison: Comparison) -> &'static str {
    match comparison {
        Comparison::Eq => "=",
        Comparison::Ne => "<>",
        Comparison::Gt => ">",
        Comparison::Gte => ">=",
        Comparison::Lt => "<",
        Comparison::Lte => "<=",
    }
}

fn time_column(column: TimeColumn) -> &'static str {
    match column {
        TimeColumn::DueAt => "due_at",
        TimeColumn::CreatedAt => "created_at",
        TimeColumn::UpdatedAt => "updated_at",
        TimeColumn::CompletedAt => "completed_at",
    }
}

/// Makes `%`, `_` and `\` literal in a LIKE pattern (backslash is LIKE's default escape).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

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

/// Creates a task; with an idempotency key, a retry of the same create returns the task the
/// first attempt made. One transaction: the task and the key are stored together or not at all.
pub async fn create(
    pool: &PgPool,
    user: &UserId,
    task: &NewTask,
    idempotency: Option<(&str, &[u8])>,
) -> Result<Task> {
    let Some((key, digest)) = idempotency else {
        return insert(pool, user, task).await;
    };
    if let Some(existing) = remembered(pool, user, key, digest).await? {
        return Ok(existing);
    }
    let mut tx = pool.begin().await?;
    let created = insert(&mut *tx, user, task).await?;
    let stored = sqlx::query!(
        "insert into task_idempotency_keys (user_id, idempotency_key, task_id, request_digest)
         values ($1, $2, $3, $4)
         on conflict (user_id, idempotency_key) do nothing",
        user.as_str(),
        key,
        created.id,
        digest
    )
    .execute(&mut *tx)
    .await?;
    if stored.rows_affected() == 1 {
        tx.commit().await?;
        return Ok(created);
    }
    // A concurrent attempt with the same key committed first (our insert waited for it):
    // drop our task and answer with theirs.
    tx.rollback().await?;
    remembered(pool, user, key, digest).await?.ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "idempotency key vanished during a concurrent create"
        ))
    })
}

/// The task an earlier create with this key made, if the key is still live. The same key
/// with a different input is a client bug, reported as a conflict rather than guessed at.
async fn remembered(
    pool: &PgPool,
    user: &UserId,
    key: &str,
    digest: &[u8],
) -> Result<Option<Task>> {
    // A key is honoured for 24 hours: long enough for any client retry.
    let found = sqlx::query!(
        "select task_id, request_digest from task_idempotency_keys
         where user_id = $1 and idempotency_key = $2 and created_at > now() - interval '24 hours'",
        user.as_str(),
        key
    )
    .fetch_optional(pool)
    .await?;
    let Some(found) = found else {
        // An expired key may be reused: forget it so the new create can record itself.
        sqlx::query!(
            "delete from task_idempotency_keys
             where user_id = $1 and idempotency_key = $2 and created_at <= now() - interval '24 hours'",
            user.as_str(),
            key
        )
        .execute(pool)
        .await?;
        return Ok(None);
    };
    if found.request_digest != digest {
        return Err(AppError::Conflict(
            "This idempotency key was already used for a different task.".into(),
        ));
    }
    get(pool, user, found.task_id).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_their_wildcards() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
    }
}
