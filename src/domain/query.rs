//! Typed task queries: filters, orders, and positions in an order (what a cursor points at).
//!
//! These are the vocabulary `db::tasks` builds SQL from. Every value here is already bounded:
//! a filter's size, an order's keys, a page's length.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A condition on a user's tasks. Built from the API's `TaskFilter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Completed(bool),
    Priority(Comparison, i32),
    PriorityIn(Vec<i32>),
    Time(TimeColumn, Comparison, DateTime<Utc>),
    TimeIsNull(TimeColumn, bool),
    TitleEquals(String),
    /// Case-insensitive substring.
    TitleContains(String),
    /// Case-insensitive prefix.
    TitleStartsWith(String),
    /// Full-text: every word must appear in the title or the description, in any case.
    Search(String),
}

/// The most conditions one filter may hold, nested ones included.
pub const MAX_FILTER_NODES: usize = 100;
/// The deepest `and`/`or`/`not` nesting accepted.
pub const MAX_FILTER_DEPTH: usize = 8;

impl Filter {
    /// The filter that keeps everything.
    pub fn all() -> Self {
        Self::And(Vec::new())
    }

    /// How many conditions the filter holds, nested ones included.
    pub fn size(&self) -> usize {
        match self {
            Self::And(parts) | Self::Or(parts) => 1 + parts.iter().map(Self::size).sum::<usize>(),
            Self::Not(inner) => 1 + inner.size(),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    DueAt,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

/// A field tasks can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    DueAt,
    Priority,
    Title,
    Completed,
}

impl SortField {
    pub fn name(self) -> &'static str {
        match self {
            Self::CreatedAt => "CREATED_AT",
            Self::UpdatedAt => "UPDATED_AT",
            Self::DueAt => "DUE_AT",
            Self::Priority => "PRIORITY",
            Self::Title => "TITLE",
            Self::Completed => "COMPLETED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

/// An order over tasks: one to six distinct keys, then the task id as the final tiebreak (in
/// the direction of the last key), so the order is total and stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order(Vec<SortKey>);

impl Order {
    /// Newest first: the default.
    pub fn newest_first() -> Self {
        Self(vec![SortKey {
            field: SortField::CreatedAt,
            descending: true,
        }])
    }

    pub fn parse(keys: Vec<SortKey>) -> Result<Self, String> {
        if keys.is_empty() {
            return Ok(Self::newest_first());
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|earlier| earlier.field == key.field) {
                return Err(format!(
                    "{} appears more than once in orderBy.",
                    key.field.name()
                ));
            }
        }
        Ok(Self(keys))
    }

    pub fn keys(&self) -> &[SortKey] {
        &self.0
    }

    /// The direction of the id tiebreak.
    pub fn id_descending(&self) -> bool {
        self.0.last().is_some_and(|key| key.descending)
    }

    /// A stable text naming the order, e.g. `PRIORITY:DESC,CREATED_AT:ASC`.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|key| {
                format!(
                    "{}:{}",
                    key.field.name(),
                    if key.descending { "DESC" } else { "ASC" }
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The value of one sort key for one task. `Time(None)` is a task without a due date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Time(Option<DateTime<Utc>>),
    Int(i16),
    Text(String),
    Bool(bool),
}

/// A task's place in an order: its sort values and id. Cursors encode this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub values: Vec<SortValue>,
    pub id: Uuid,
}

/// Which way a page is read from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `first`/`after`: rows after the cursor, in order.
    Forward,
    /// `last`/`before`: rows before the cursor, in order.
    Backward,
}

/// One page of a keyset walk.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub direction: Direction,
    /// Rows wanted; the query reads one more to learn whether more exist.
    pub size: u32,
    pub cursor: Option<Position>,
}

/// The most tasks one page may hold, and the size when none is asked for.
pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
