//! Keyset pages of the caller's tasks, and the probe that looks behind a page.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Task, filter::push_filter};
use crate::{
    auth::UserId,
    db::users::User,
    domain::query::{Direction, Filter, Order, PageRequest, Position, SortField, SortValue},
    error::Result,
};

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

/// What a page reads beyond the columns every page needs (the id, the owner's id, and every
/// column a sort key or a cursor can name): only what the selection shows, so a page of
/// titles does not carry descriptions from the database and decode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The caller's row (every task's owner), read by the same statement, so a page with its
    /// owners is one round trip.
    pub owner: bool,
    /// `description`; left out, it reads as null.
    pub description: bool,
    /// `completed_at`; left out, it reads as null.
    pub completed_at: bool,
}

impl Columns {
    /// Every column of a task, without its owner.
    pub const TASK: Self = Self {
        owner: false,
        description: true,
        completed_at: true,
    };
}

/// A page of the caller's tasks matching `filter` in `order`, reading `columns`. A column
/// left out reads as null in the rows: they are for showing what was selected, not for
/// anything else.
pub async fn list(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    filter: &Filter,
    order: &Order,
    page: &PageRequest,
    columns: Columns,
) -> Result<Page> {
    let mut query = QueryBuilder::new("");
    push_list_query(&mut query, user, filter, order, page, columns);
    let (mut rows, owner) = if columns.owner {
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
    columns: Columns,
) {
    let backward = page.direction == Direction::Backward;
    // The row's columns in `Task`'s order; one left out is a typed null of the same name.
    let description = if columns.description {
        "description"
    } else {
        "null::text as description"
    };
    let completed_at = if columns.completed_at {
        "completed_at"
    } else {
        "null::timestamptz as completed_at"
    };
    query.push(format_args!(
        "select id, user_id, title, {description}, completed, priority, due_at, {completed_at}, \
         created_at, updated_at"
    ));
    if columns.owner {
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
