//! A typed filter as a boolean SQL expression, with every value bound.

use sqlx::{Postgres, QueryBuilder};

use crate::domain::query::{Comparison, Filter, TimeColumn};

/// Appends `filter` as a boolean SQL expression, values bound.
pub(super) fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &Filter) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_their_wildcards() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
    }
}
