//! A typed filter as a boolean SQL expression, with every value bound.

use sqlx::{PgExecutor, Postgres, QueryBuilder, Row as _};

use super::Task;
use crate::{
    domain::query::{Comparison, Filter, TimeColumn},
    error::Result,
};

/// For each of `rows` (tasks that need not be in the table: a task as it was before a change),
/// whether each of `filters` holds for it: `result[row][filter]`. PostgreSQL decides, from the
/// same SQL as a page's WHERE clause, so a live subscription's filter means exactly what it
/// means in `tasks` (case rules of `ilike`, the words of `search`). One statement for all.
pub async fn matching(
    executor: impl PgExecutor<'_>,
    rows: &[&Task],
    filters: &[&Filter],
) -> Result<Vec<Vec<bool>>> {
    if filters.is_empty() || rows.is_empty() {
        return Ok(vec![vec![false; filters.len()]; rows.len()]);
    }
    let mut query = QueryBuilder::new("select ");
    for (i, filter) in filters.iter().enumerate() {
        if i > 0 {
            query.push(", ");
        }
        query.push("coalesce(");
        push_filter(&mut query, filter);
        query.push(", false)");
    }
    // `search` as the generated column of migrations/0003_tasks.sql computes it.
    query.push(
        " from (select id, user_id, title, description, completed, priority, due_at, \
           completed_at, created_at, updated_at, \
           to_tsvector('simple', title || ' ' || coalesce(description, '')) as search, \
           ordinality \
         from jsonb_populate_recordset(null::tasks, ",
    );
    query.push_bind(sqlx::types::Json(rows));
    query.push(") with ordinality) as given order by ordinality");
    let found = query.build().fetch_all(executor).await?;
    found
        .iter()
        .map(|row| {
            (0..filters.len())
                .map(|i| Ok(row.try_get::<bool, _>(i)?))
                .collect()
        })
        .collect()
}

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
