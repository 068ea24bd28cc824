//! Input types: filters, orders and mutation inputs, and their parsing into `domain` values.
//! Each parse error names the input field it is about (`extensions.field`).

use async_graphql::{Enum, InputObject, MaybeUndefined};

use super::scalars::DateTime;
use crate::{
    domain::{
        query::{
            Comparison, Filter, MAX_FILTER_DEPTH, MAX_FILTER_NODES, Order, SortField, SortKey,
            TimeColumn,
        },
        task::{Description, NewTask, Priority, TaskPatch, Title},
    },
    error::{AppError, Result},
};

/// Conditions on tasks. All the fields given must hold (they combine with AND); use `or` and
/// `not` for other combinations. An empty filter matches every task.
#[derive(Debug, Clone, Default, InputObject)]
pub struct TaskFilter {
    /// Only completed tasks (`true`) or only open ones (`false`).
    pub completed: Option<bool>,
    /// Conditions on the priority (1 to 5).
    pub priority: Option<IntComparison>,
    /// Conditions on the due date. `isNull: true` selects tasks without one.
    pub due_at: Option<DateTimeComparison>,
    /// Conditions on when the task was created.
    pub created_at: Option<DateTimeComparison>,
    /// Conditions on when the task last changed.
    pub updated_at: Option<DateTimeComparison>,
    /// Conditions on when the task was completed. `isNull: true` selects open tasks.
    pub completed_at: Option<DateTimeComparison>,
    /// Conditions on the title.
    pub title: Option<StringComparison>,
    /// Words that must all appear in the title or description, in any case (e.g. `milk
    /// eggs`). Quoted phrases and `-word` exclusions work as in web search.
    pub search: Option<String>,
    /// Every one of these filters must hold.
    pub and: Option<Vec<TaskFilter>>,
    /// At least one of these filters must hold.
    pub or: Option<Vec<TaskFilter>>,
    /// This filter must not hold.
    pub not: Option<Box<TaskFilter>>,
}

/// Comparisons with an integer. All the given ones must hold.
#[derive(Debug, Clone, Default, InputObject)]
pub struct IntComparison {
    /// Equal to.
    pub eq: Option<i32>,
    /// Not equal to.
    pub ne: Option<i32>,
    /// Greater than.
    pub gt: Option<i32>,
    /// Greater than or equal to.
    pub gte: Option<i32>,
    /// Less than.
    pub lt: Option<i32>,
    /// Less than or equal to.
    pub lte: Option<i32>,
    /// One of these values (at most 100).
    #[graphql(name = "in")]
    pub in_: Option<Vec<i32>>,
}

/// Comparisons with a point in time. All the given ones must hold.
#[derive(Debug, Clone, Default, InputObject)]
pub struct DateTimeComparison {
    /// At exactly this instant.
    pub eq: Option<DateTime>,
    /// After this instant.
    pub gt: Option<DateTime>,
    /// At or after this instant.
    pub gte: Option<DateTime>,
    /// Before this instant.
    pub lt: Option<DateTime>,
    /// At or before this instant.
    pub lte: Option<DateTime>,
    /// Whether the value is absent (`true`) or present (`false`).
    pub is_null: Option<bool>,
}

/// Comparisons with a text. All the given ones must hold.
#[derive(Debug, Clone, Default, InputObject)]
pub struct StringComparison {
    /// Exactly this text (case-sensitive).
    pub eq: Option<String>,
    /// Contains this text, in any case.
    pub contains: Option<String>,
    /// Starts with this text, in any case.
    pub starts_with: Option<String>,
}

/// A field tasks can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TaskOrderField {
    /// When the task was created.
    CreatedAt,
    /// When the task last changed.
    UpdatedAt,
    /// The due date; tasks without one come last in both directions.
    DueAt,
    /// The priority (1 to 5).
    Priority,
    /// The title, alphabetically.
    Title,
    /// Open tasks (`false`) before completed ones (`true`) when ascending.
    Completed,
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Enum)]
pub enum OrderDirection {
    /// Smallest, earliest or alphabetically first first.
    #[default]
    Asc,
    /// Largest, latest or alphabetically last first.
    Desc,
}

/// One sort key. Several keys sort lexicographically; the task id always breaks remaining
/// ties, so the order is total and stable across pages.
#[derive(Debug, Clone, Copy, InputObject)]
pub struct TaskOrder {
    /// The field to sort by.
    pub field: TaskOrderField,
    /// The direction to sort in.
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// What a new task holds.
#[derive(Debug, Clone, InputObject)]
pub struct CreateTaskInput {
    /// The title: 1 to 200 characters once surrounding whitespace is trimmed.
    pub title: String,
    /// Free text, at most 1000 characters.
    pub description: Option<String>,
    /// The priority, from 1 (lowest) to 5 (highest).
    #[graphql(default = 3)]
    pub priority: i32,
    /// When the task is due, if ever.
    pub due_at: Option<DateTime>,
    /// Whether the task starts out completed.
    #[graphql(default)]
    pub completed: bool,
    /// A key of the client's choosing (at most 255 characters). Retrying a create with the
    /// same key and input within 24 hours returns the task the first attempt made instead of
    /// creating another; the same key with a different input is a `CONFLICT`.
    pub idempotency_key: Option<String>,
}

/// Changes to a task. Fields left out are left alone; `null` clears a nullable field
/// (`description`, `dueAt`).
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateTaskInput {
    /// A new title (1 to 200 characters, trimmed). Cannot be null.
    pub title: MaybeUndefined<String>,
    /// A new description (at most 1000 characters), or null to remove it.
    pub description: MaybeUndefined<String>,
    /// A new priority (1 to 5). Cannot be null.
    pub priority: MaybeUndefined<i32>,
    /// A new due date, or null to remove it.
    pub due_at: MaybeUndefined<DateTime>,
    /// Complete (`true`) or reopen (`false`) the task. Cannot be null.
    pub completed: MaybeUndefined<bool>,
    /// Optimistic concurrency: the `updatedAt` the client last saw. If the task changed
    /// since, the update fails with `CONFLICT` (and `extensions.currentUpdatedAt`) and
    /// nothing is written.
    pub expected_updated_at: Option<DateTime>,
}

/// Changes to the caller's profile. Fields left out are left alone; `null` clears them.
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateMeInput {
    /// A display name (at most 200 characters), or null to remove it.
    pub name: MaybeUndefined<String>,
    /// An avatar image URL (http or https, at most 2048 characters), or null to remove it.
    pub image: MaybeUndefined<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(field.to_owned(), message.into())
}

/// Refuses text PostgreSQL cannot hold, naming the field.
fn storable(field: &str, text: &str) -> Result<()> {
    crate::domain::text::check_storable(text).map_err(|message| invalid(field, message))
}

/// The most characters in a text used to filter or search.
const MAX_FILTER_TEXT: usize = 200;

impl TaskFilter {
    /// Parses the filter, bounding its size and depth: a filter is client input, and a
    /// thousand nested `or`s must not become a thousand-level SQL expression.
    pub fn parse(self, field: &str) -> Result<Filter> {
        let filter = self.parse_at(field, 1)?;
        if filter.size() > MAX_FILTER_NODES {
            return Err(invalid(
                field,
                format!("The filter has more than {MAX_FILTER_NODES} conditions."),
            ));
        }
        Ok(filter)
    }

    fn parse_at(self, path: &str, depth: usize) -> Result<Filter> {
        if depth > MAX_FILTER_DEPTH {
            return Err(invalid(
                path,
                format!("Filters may nest at most {MAX_FILTER_DEPTH} levels deep."),
            ));
        }
        let mut all = Vec::new();
        if let Some(completed) = self.completed {
            all.push(Filter::Completed(completed));
        }
        if let Some(priority) = self.priority {
            priority.parse(&format!("{path}.priority"), &mut all)?;
        }
        let times = [
            (self.due_at, TimeColumn::DueAt, "dueAt"),
            (self.created_at, TimeColumn::CreatedAt, "createdAt"),
            (self.updated_at, TimeColumn::UpdatedAt, "updatedAt"),
            (self.completed_at, TimeColumn::CompletedAt, "completedAt"),
        ];
        for (comparison, column, _) in times {
            if let Some(comparison) = comparison {
                comparison.parse(column, &mut all);
            }
        }
        if let Some(title) = self.title {
            title.parse(&format!("{path}.title"), &mut all)?;
        }
        if let Some(search) = self.search {
            storable(&format!("{path}.search"), &search)?;
            let words = search.trim();
            if words.is_empty() || words.chars().count() > MAX_FILTER_TEXT {
                return Err(invalid(
                    &format!("{path}.search"),
                    format!("search must hold 1 to {MAX_FILTER_TEXT} characters of words."),
                ));
            }
            all.push(Filter::Search(words.to_owned()));
        }
        if let Some(parts) = self.and {
            let field = format!("{path}.and");
            let parts = parse_list(parts, &field, depth)?;
            all.push(Filter::And(parts));
        }
        if let Some(parts) = self.or {
            let field = format!("{path}.or");
            let parts = parse_list(parts, &field, depth)?;
            all.push(Filter::Or(parts));
        }
        if let Some(inner) = self.not {
            all.push(Filter::Not(Box::new(
                inner.parse_at(&format!("{path}.not"), depth + 1)?,
            )));
        }
        Ok(match all.len() {
            1 => all.remove(0),
            _ => Filter::And(all),
        })
    }
}

fn parse_list(parts: Vec<TaskFilter>, field: &str, depth: usize) -> Result<Vec<Filter>> {
    if parts.len() > MAX_FILTER_NODES {
        return Err(invalid(
            field,
            format!("At most {MAX_FILTER_NODES} filters may be combined."),
        ));
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| part.parse_at(&format!("{field}.{i}"), depth + 1))
        .collect()
}

impl IntComparison {
    fn parse(self, path: &str, into: &mut Vec<Filter>) -> Result<()> {
        let comparisons = [
            (self.eq, Comparison::Eq),
            (self.ne, Comparison::Ne),
            (self.gt, Comparison::Gt),
            (self.gte, Comparison::Gte),
            (self.lt, Comparison::Lt),
            (self.lte, Comparison::Lte),
        ];
        for (value, comparison) in comparisons {
            if let Some(value) = value {
                into.push(Filter::Priority(comparison, value));
            }
        }
        if let Some(values) = self.in_ {
            if values.len() > 100 {
                return Err(invalid(
                    &format!("{path}.in"),
                    "At most 100 values may be listed.",
                ));
            }
            into.push(Filter::PriorityIn(values));
        }
        Ok(())
    }
}

impl DateTimeComparison {
    fn parse(self, column: TimeColumn, into: &mut Vec<Filter>) {
        let comparisons = [
            (self.eq, Comparison::Eq),
            (self.gt, Comparison::Gt),
            (self.gte, Comparison::Gte),
            (self.lt, Comparison::Lt),
            (self.lte, Comparison::Lte),
        ];
        for (value, comparison) in comparisons {
            if let Some(DateTime(time)) = value {
                into.push(Filter::Time(column, comparison, time));
            }
        }
        if let Some(is_null) = self.is_null {
            into.push(Filter::TimeIsNull(column, is_null));
        }
    }
}

impl StringComparison {
    fn parse(self, path: &str, into: &mut Vec<Filter>) -> Result<()> {
        let checks = [
            (self.eq, "eq", Filter::TitleEquals as fn(String) -> Filter),
            (self.contains, "contains", Filter::TitleContains),
            (self.starts_with, "startsWith", Filter::TitleStartsWith),
        ];
        for (value, name, make) in checks {
            if let Some(value) = value {
                storable(&format!("{path}.{name}"), &value)?;
                if value.chars().count() > MAX_FILTER_TEXT {
                    return Err(invalid(
                        &format!("{path}.{name}"),
                        format!("At most {MAX_FILTER_TEXT} characters."),
                    ));
                }
                into.push(make(value));
            }
        }
        Ok(())
    }
}

/// Parses `orderBy`: at most one key per field.
pub fn parse_order(order_by: Option<Vec<TaskOrder>>) -> Result<Order> {
    let keys = order_by
        .unwrap_or_default()
        .into_iter()
        .map(|key| SortKey {
            field: match key.field {
                TaskOrderField::CreatedAt => SortField::CreatedAt,
                TaskOrderField::UpdatedAt => SortField::UpdatedAt,
                TaskOrderField::DueAt => SortField::DueAt,
                TaskOrderField::Priority => SortField::Priority,
                TaskOrderField::Title => SortField::Title,
                TaskOrderField::Completed => SortField::Completed,
            },
            descending: key.direction == OrderDirection::Desc,
        })
        .collect();
    Order::parse(keys).map_err(|message| invalid("orderBy", message))
}

impl CreateTaskInput {
    pub fn parse(self) -> Result<(NewTask, Option<String>)> {
        let title = Title::parse(&self.title).map_err(|message| invalid("input.title", message))?;
        let description = match self.description {
            Some(text) => Description::parse(&text)
                .map_err(|message| invalid("input.description", message))?,
            None => None,
        };
        let priority =
            Priority::parse(self.priority).map_err(|message| invalid("input.priority", message))?;
        if let Some(key) = &self.idempotency_key {
            storable("input.idempotencyKey", key)?;
        }
        let key = match self.idempotency_key {
            Some(key) if key.is_empty() || key.chars().count() > 255 => {
                return Err(invalid(
                    "input.idempotencyKey",
                    "The key must be 1 to 255 characters long.",
                ));
            }
            key => key,
        };
        let task = NewTask {
            title,
            description,
            priority,
            due_at: self.due_at.map(|DateTime(time)| time),
            completed: self.completed,
        };
        Ok((task, key))
    }
}

impl UpdateTaskInput {
    pub fn parse(self) -> Result<(TaskPatch, Option<chrono::DateTime<chrono::Utc>>)> {
        let not_null =
            |field: &str| invalid(field, "This field cannot be null; leave it out to keep it.");
        let patch = TaskPatch {
            title: match self.title {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => return Err(not_null("input.title")),
                MaybeUndefined::Value(title) => {
                    Some(Title::parse(&title).map_err(|message| invalid("input.title", message))?)
                }
            },
            description: match self.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(text) => Some(
                    Description::parse(&text)
                        .map_err(|message| invalid("input.description", message))?,
                ),
            },
            priority: match self.priority {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => return Err(not_null("input.priority")),
                MaybeUndefined::Value(priority) => Some(
                    Priority::parse(priority)
                        .map_err(|message| invalid("input.priority", message))?,
                ),
            },
            due_at: match self.due_at {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(DateTime(time)) => Some(Some(time)),
            },
            completed: match self.completed {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => return Err(not_null("input.completed")),
                MaybeUndefined::Value(completed) => Some(completed),
            },
        };
        Ok((patch, self.expected_updated_at.map(|DateTime(time)| time)))
    }
}

/// A profile change: `None` keeps a field, `Some(None)` clears it.
pub type ProfilePatch = (Option<Option<String>>, Option<Option<String>>);

impl UpdateMeInput {
    pub fn parse(self) -> Result<ProfilePatch> {
        let name = match self.name {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(name) => {
                storable("input.name", &name)?;
                let name = name.trim();
                if name.chars().count() > 200 {
                    return Err(invalid(
                        "input.name",
                        "The name is longer than 200 characters.",
                    ));
                }
                Some(Some(name.to_owned()).filter(|name| !name.is_empty()))
            }
        };
        let image = match self.image {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(url) => {
                storable("input.image", &url)?;
                let url = url.trim();
                let web = url.starts_with("https://") || url.starts_with("http://");
                if !web || url.chars().count() > 2048 || url.contains(char::is_whitespace) {
                    return Err(invalid(
                        "input.image",
                        "The image must be an http(s) URL of at most 2048 characters.",
                    ));
                }
                Some(Some(url.to_owned()))
            }
        };
        Ok((name, image))
    }
}

/// Parses a task id argument (the UUID the API gave out).
pub fn parse_task_id(id: &async_graphql::ID, field: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| invalid(field, "Not a task id: task ids are UUIDs."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_fields_combine_with_and() {
        let filter = TaskFilter {
            completed: Some(false),
            priority: Some(IntComparison {
                gte: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            filter.parse("filter").expect("valid"),
            Filter::And(vec![
                Filter::Completed(false),
                Filter::Priority(Comparison::Gte, 4)
            ])
        );
        assert_eq!(
            TaskFilter::default().parse("filter").expect("valid"),
            Filter::all()
        );
    }

    #[test]
    fn deep_or_large_filters_are_refused_with_their_field() {
        let mut filter = TaskFilter::default();
        for _ in 0..MAX_FILTER_DEPTH {
            filter = TaskFilter {
                not: Some(Box::new(filter)),
                ..Default::default()
            };
        }
        let err = filter.parse("filter").expect_err("too deep");
        assert!(
            matches!(err, AppError::InvalidInput { ref field, .. } if field.starts_with("filter.not")),
            "{err:?}"
        );

        let wide = TaskFilter {
            or: Some(vec![
                TaskFilter {
                    completed: Some(true),
                    ..Default::default()
                };
                MAX_FILTER_NODES
            ]),
            ..Default::default()
        };
        assert!(wide.parse("filter").is_err(), "101 conditions");
    }
}
