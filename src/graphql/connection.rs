//! Relay connections over tasks (`edges`, `nodes`, `pageInfo`, `totalCount`) and the opaque
//! cursors that point into them.
//!
//! A cursor is base64url JSON holding the row's sort values and id, plus a digest binding it
//! to the list it came from: the caller, the order, the filter, and the values themselves. A
//! cursor from another list (another user, order or filter), or one altered by hand, fails
//! the digest and is refused with `BAD_USER_INPUT` instead of silently paging somewhere else.

use std::collections::HashSet;

use async_graphql::{Context, Object, SimpleObject};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{task::Task, viewer::Viewer};
use crate::{
    auth::UserId,
    db,
    domain::query::{
        DEFAULT_PAGE_SIZE, Direction, Filter, MAX_PAGE_SIZE, Order, PageRequest, Position,
        SortField, SortValue,
    },
    error::{AppError, Result},
};

/// The arguments of a `tasks` field, parsed.
#[derive(Debug, Clone)]
pub struct ListArgs {
    pub filter: Filter,
    pub order: Order,
    pub page: PageRequest,
}

/// What a cursor is bound to.
struct Scope<'a> {
    user: &'a UserId,
    order: &'a Order,
    filter: &'a Filter,
}

impl Scope<'_> {
    fn digest(&self, payload: &str) -> String {
        // The filter's Debug text is deterministic for equal filters, which is all a binding
        // needs; cursors are not meant to outlive a deployment's version.
        let mut hasher = Sha256::new();
        for part in [
            self.user.as_str(),
            &self.order.describe(),
            &format!("{:?}", self.filter),
            payload,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize()[..9]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn encode_value(value: &SortValue) -> Json {
    match value {
        SortValue::Time(time) => time.map_or(Json::Null, |t| json!(t.timestamp_micros())),
        SortValue::Int(int) => json!(int),
        SortValue::Text(text) => json!(text),
        SortValue::Bool(flag) => json!(flag),
    }
}

fn encode(position: &Position, scope: &Scope<'_>) -> String {
    let values: Vec<Json> = position.values.iter().map(encode_value).collect();
    let payload = json!([values, position.id.to_string()]).to_string();
    let digest = scope.digest(&payload);
    URL_SAFE_NO_PAD.encode(json!([digest, values, position.id.to_string()]).to_string())
}

/// The longest cursor accepted: a 200-character title plus a little.
const MAX_CURSOR_BYTES: usize = 2048;

fn decode(cursor: &str, field: &'static str, scope: &Scope<'_>) -> Result<Position> {
    let refuse = |why: &str| AppError::invalid(field, format!("Invalid cursor: {why}."));
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(refuse("too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| refuse("not a cursor this API made"))?;
    let Ok(Json::Array(parts)) = serde_json::from_slice::<Json>(&bytes) else {
        return Err(refuse("not a cursor this API made"));
    };
    let [Json::String(digest), Json::Array(values), Json::String(id)] = parts.as_slice() else {
        return Err(refuse("not a cursor this API made"));
    };
    let payload = json!([values, id]).to_string();
    if *digest != scope.digest(&payload) {
        return Err(refuse(
            "it belongs to another list (a different order or filter) or was altered",
        ));
    }
    let id = Uuid::parse_str(id).map_err(|_| refuse("bad id"))?;
    let keys = scope.order.keys();
    if values.len() != keys.len() {
        return Err(refuse("it does not match orderBy"));
    }
    let values = keys
        .iter()
        .zip(values)
        .map(|(key, value)| {
            decode_value(key.field, value).ok_or_else(|| refuse("it does not match orderBy"))
        })
        .collect::<Result<_>>()?;
    Ok(Position { values, id })
}

fn decode_value(field: SortField, value: &Json) -> Option<SortValue> {
    let time = |micros: &Json| {
        micros
            .as_i64()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
    };
    Some(match (field, value) {
        (SortField::DueAt, Json::Null) => SortValue::Time(None),
        (SortField::CreatedAt | SortField::UpdatedAt | SortField::DueAt, micros) => {
            SortValue::Time(Some(time(micros)?))
        }
        (SortField::Priority, priority) => SortValue::Int(i16::try_from(priority.as_i64()?).ok()?),
        (SortField::Title, Json::String(title)) => SortValue::Text(title.clone()),
        (SortField::Completed, Json::Bool(flag)) => SortValue::Bool(*flag),
        _ => return None,
    })
}

/// Parses the pagination arguments (Relay's `first`/`after`, `last`/`before`).
pub fn page_args(
    user: &UserId,
    filter: Filter,
    order: Order,
    first: Option<i32>,
    after: Option<&str>,
    last: Option<i32>,
    before: Option<&str>,
) -> Result<ListArgs> {
    let size = |value: Option<i32>, field: &'static str| -> Result<u32> {
        match value {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    AppError::invalid(
                        field,
                        format!("{field} must be from 1 to {MAX_PAGE_SIZE}, not {n}."),
                    )
                }),
        }
    };
    let scope = Scope {
        user,
        order: &order,
        filter: &filter,
    };
    let page = |direction, size, cursor: Option<&str>, field| -> Result<PageRequest> {
        Ok(PageRequest {
            direction,
            size,
            cursor: cursor
                .map(|cursor| decode(cursor, field, &scope))
                .transpose()?,
        })
    };
    let page = match (first, after, last, before) {
        (Some(_), _, Some(_), _) => {
            return Err(AppError::invalid(
                "last",
                "first and last cannot be combined; page one way.",
            ));
        }
        (_, Some(_), _, Some(_)) => {
            return Err(AppError::invalid(
                "before",
                "after and before cannot be combined; page one way.",
            ));
        }
        (Some(_), _, None, Some(_)) => {
            return Err(AppError::invalid(
                "before",
                "first pages forward from after; use last with before.",
            ));
        }
        (None, Some(_), Some(_), None) => {
            return Err(AppError::invalid(
                "after",
                "last pages backward from before; use first with after.",
            ));
        }
        (_, _, Some(_), _) | (None, None, None, Some(_)) => {
            page(Direction::Backward, size(last, "last")?, before, "before")?
        }
        (_, _, None, None) => page(Direction::Forward, size(first, "first")?, after, "after")?,
    };
    Ok(ListArgs {
        filter,
        order,
        page,
    })
}

/// Information about a page, as Relay's pagination helpers (Apollo's `relayStylePagination`,
/// urql's `relayPagination`) read it.
#[derive(Debug, Clone, SimpleObject)]
pub struct PageInfo {
    /// Whether more tasks follow this page (ask with `first` and `after: endCursor`).
    pub has_next_page: bool,
    /// Whether tasks precede this page (ask with `last` and `before: startCursor`).
    pub has_previous_page: bool,
    /// The cursor of the first task of the page; null when the page is empty.
    pub start_cursor: Option<String>,
    /// The cursor of the last task of the page; null when the page is empty.
    pub end_cursor: Option<String>,
}

/// A task in a connection, with its cursor.
#[derive(Debug, Clone, SimpleObject)]
pub struct TaskEdge {
    /// Where this task stands in the list; pass it as `after` or `before`.
    pub cursor: String,
    /// The task.
    pub node: Task,
}

/// A page of tasks.
pub struct TaskConnection {
    user: UserId,
    args: ListArgs,
    /// Absent when the client asked only for `totalCount`: the page was not read.
    page: Option<Page>,
}

struct Page {
    rows: Vec<db::tasks::Task>,
    has_next: bool,
    has_previous: bool,
}

impl TaskConnection {
    /// Reads the page (unless `rows_wanted` is false) for the caller, and its tasks' owners
    /// when `owners_wanted`.
    pub async fn load(
        ctx: &Context<'_>,
        user: UserId,
        args: ListArgs,
        rows_wanted: bool,
        owners_wanted: bool,
    ) -> Result<Self> {
        let page = if rows_wanted {
            let page = read_page(ctx, &user, &args).await?;
            if owners_wanted {
                let owners: HashSet<String> =
                    page.rows.iter().map(|row| row.user_id.clone()).collect();
                Viewer::of(ctx)?.prime_owners(owners).await?;
            }
            Some(page)
        } else {
            None
        };
        Ok(Self { user, args, page })
    }

    fn cursor(&self, row: &db::tasks::Task) -> String {
        let scope = Scope {
            user: &self.user,
            order: &self.args.order,
            filter: &self.args.filter,
        };
        encode(&db::tasks::position(row, &self.args.order), &scope)
    }
}

async fn read_page(ctx: &Context<'_>, user: &UserId, args: &ListArgs) -> Result<Page> {
    let pool = Viewer::pool(ctx);
    let (rows, more) = db::tasks::list(pool, user, &args.filter, &args.order, &args.page).await?;
    // Whether rows exist on the cursor's other side: the first row of the page bounds it,
    // or the cursor itself when the page is empty.
    let behind = match (&args.page.cursor, args.page.direction) {
        (None, _) => false,
        (Some(cursor), direction) => {
            let edge = match direction {
                Direction::Forward => rows.first(),
                Direction::Backward => rows.last(),
            };
            let boundary = edge.map_or_else(
                || cursor.clone(),
                |row| db::tasks::position(row, &args.order),
            );
            let backward = direction == Direction::Backward;
            let inclusive_id = edge.is_none().then_some(cursor.id);
            db::tasks::exists_before(
                pool,
                user,
                &args.filter,
                &args.order,
                &boundary,
                backward,
                inclusive_id,
            )
            .await?
        }
    };
    let (has_next, has_previous) = match args.page.direction {
        Direction::Forward => (more, behind),
        Direction::Backward => (behind, more),
    };
    Ok(Page {
        rows,
        has_next,
        has_previous,
    })
}

/// A page of the caller's tasks.
#[Object]
impl TaskConnection {
    /// The tasks of this page with their cursors.
    async fn edges(&self) -> Vec<TaskEdge> {
        let rows = self.page.as_ref().map_or(&[][..], |page| &page.rows);
        rows.iter()
            .map(|row| TaskEdge {
                cursor: self.cursor(row),
                node: Task(row.clone()),
            })
            .collect()
    }

    /// The tasks of this page, without cursors.
    async fn nodes(&self) -> Vec<Task> {
        let rows = self.page.as_ref().map_or(&[][..], |page| &page.rows);
        rows.iter().cloned().map(Task).collect()
    }

    /// Where this page stands in the whole list.
    async fn page_info(&self) -> PageInfo {
        let Some(page) = &self.page else {
            return PageInfo {
                has_next_page: false,
                has_previous_page: false,
                start_cursor: None,
                end_cursor: None,
            };
        };
        PageInfo {
            has_next_page: page.has_next,
            has_previous_page: page.has_previous,
            start_cursor: page.rows.first().map(|row| self.cursor(row)),
            end_cursor: page.rows.last().map(|row| self.cursor(row)),
        }
    }

    /// How many tasks match the filter in all (every page together). Counted only when asked.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let count = db::tasks::count(Viewer::pool(ctx), &self.user, &self.args.filter).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }
}
