//! Relay connections over tasks (`edges`, `nodes`, `pageInfo`, `totalCount`): the
//! pagination arguments, the page read, and the previous-page probe. Cursors themselves are
//! `cursor`'s.

use async_graphql::{Context, Object, SimpleObject};

use super::{
    cursor::{CursorKeys, Scope},
    subscription::hub,
    task::Task,
    viewer::Viewer,
};
use crate::{
    auth::UserId,
    db::{self, changes::Stamp},
    domain::query::{DEFAULT_PAGE_SIZE, Direction, Filter, MAX_PAGE_SIZE, Order, PageRequest},
    error::{AppError, Result},
};

/// The arguments of a `tasks` field, parsed.
#[derive(Debug, Clone)]
pub struct ListArgs {
    pub filter: Filter,
    pub order: Order,
    pub page: PageRequest,
}

/// Relay's pagination arguments, as a client sent them.
#[derive(Debug, Clone, Default)]
pub struct Relay {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// Parses the pagination arguments (Relay's `first`/`after`, `last`/`before`).
pub fn page_args(
    keys: &CursorKeys,
    user: &UserId,
    filter: Filter,
    order: Order,
    relay: &Relay,
) -> Result<ListArgs> {
    let (first, after, last, before) = (
        relay.first,
        relay.after.as_deref(),
        relay.last,
        relay.before.as_deref(),
    );
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
                .map(|cursor| keys.open(cursor, field, &scope))
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
    /// The caller's feed version, read before the page; absent when not asked for.
    version: Option<Stamp>,
}

struct Page {
    rows: Vec<db::tasks::Task>,
    has_next: bool,
    has_previous: bool,
}

impl TaskConnection {
    /// Reads what `wanted` asks of the page for the caller: nothing when only `totalCount`
    /// is selected.
    pub async fn load(
        ctx: &Context<'_>,
        user: UserId,
        args: ListArgs,
        wanted: Wanted,
    ) -> Result<Self> {
        // Read before the page: every change at or below it is in the page's snapshot too,
        // so a client following changes from it misses none (and may see one it has again).
        let version = if wanted.version {
            Some(hub(ctx)?.current(&user).await?)
        } else {
            None
        };
        let page = if wanted.rows {
            Some(read_page(ctx, &user, &args, wanted).await?)
        } else {
            None
        };
        Ok(Self {
            user,
            args,
            page,
            version,
        })
    }

    fn cursor(&self, keys: &CursorKeys, row: &db::tasks::Task) -> Result<String> {
        let scope = Scope {
            user: &self.user,
            order: &self.args.order,
            filter: &self.args.filter,
        };
        keys.seal(&db::tasks::position(row, &self.args.order), &scope)
    }
}

/// What of a page the client selected, so that nothing unasked is read.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// `version`: the caller's feed version, read before the page.
    pub version: bool,
    /// `edges`, `nodes` or `pageInfo`: the page itself.
    pub rows: bool,
    /// The columns the page's tasks show; with some row's `owner`, the caller's row, read
    /// with the page.
    pub columns: db::tasks::Columns,
    /// `pageInfo.hasPreviousPage`.
    pub has_previous: bool,
    /// `pageInfo.hasNextPage`.
    pub has_next: bool,
}

async fn read_page(
    ctx: &Context<'_>,
    user: &UserId,
    args: &ListArgs,
    wanted: Wanted,
) -> Result<Page> {
    let pool = Viewer::pool(ctx);
    let db::tasks::Page { rows, more, owner } = db::tasks::list(
        pool,
        user,
        &args.filter,
        &args.order,
        &args.page,
        wanted.columns,
    )
    .await?;
    if let Some(owner) = owner {
        Viewer::of(ctx)?.row_read(owner).await;
    }
    // Whether rows exist on the cursor's other side costs a second statement, run only when
    // the client selected that flag (Relay allows `false` when it is not computed).
    let behind_wanted = match args.page.direction {
        Direction::Forward => wanted.has_previous,
        Direction::Backward => wanted.has_next,
    };
    // The first row of the page bounds it, or the cursor itself when the page is empty.
    let behind = match (&args.page.cursor, args.page.direction) {
        (None, _) => false,
        (Some(_), _) if !behind_wanted => false,
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
    async fn edges(&self, ctx: &Context<'_>) -> Result<Vec<TaskEdge>> {
        let keys = ctx.data_unchecked::<CursorKeys>();
        let rows = self.page.as_ref().map_or(&[][..], |page| &page.rows);
        rows.iter()
            .map(|row| {
                Ok(TaskEdge {
                    cursor: self.cursor(keys, row)?,
                    node: Task(row.clone()),
                })
            })
            .collect()
    }

    /// The tasks of this page, without cursors.
    async fn nodes(&self) -> Vec<Task> {
        let rows = self.page.as_ref().map_or(&[][..], |page| &page.rows);
        rows.iter().cloned().map(Task).collect()
    }

    /// Where this page stands in the whole list.
    async fn page_info(&self, ctx: &Context<'_>) -> Result<PageInfo> {
        let keys = ctx.data_unchecked::<CursorKeys>();
        let Some(page) = &self.page else {
            return Ok(PageInfo {
                has_next_page: false,
                has_previous_page: false,
                start_cursor: None,
                end_cursor: None,
            });
        };
        Ok(PageInfo {
            has_next_page: page.has_next,
            has_previous_page: page.has_previous,
            start_cursor: page
                .rows
                .first()
                .map(|row| self.cursor(keys, row))
                .transpose()?,
            end_cursor: page
                .rows
                .last()
                .map(|row| self.cursor(keys, row))
                .transpose()?,
        })
    }

    /// The signed-in user's change version as of this page: every change it includes is
    /// reflected in the page. Subscribe to `taskChanged(since: version)` (or poll
    /// `taskChanges(since: version)`) after loading the page, and no change made after the
    /// page was read is missed, whatever happened in between (a change already in the page
    /// may be delivered again; applying it twice does no harm).
    async fn version(&self, ctx: &Context<'_>) -> Result<String> {
        let stamp = match self.version {
            Some(stamp) => stamp,
            None => hub(ctx)?.current(&self.user).await?,
        };
        Ok(crate::live::version::encode(&self.user, stamp))
    }

    /// How many tasks match the filter in all (every page together). Counted only when asked.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let count = Viewer::of(ctx)?.count(&self.args.filter).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }
}
