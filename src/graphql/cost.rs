//! What a document will cost the database, estimated from its text before anything runs.
//!
//! async-graphql's complexity measures the size of a response; it prices `totalCount` the
//! same as `title`, although one is a `count(*)` and the other a column already read. A
//! document the complexity limit accepted could run thousands of statements at once. This
//! estimate counts statements instead, as an upper bound:
//!
//! | field                                        | statements                             |
//! |----------------------------------------------|----------------------------------------|
//! | `Query.task`, `taskStats`                     | 1                                      |
//! | a `TaskConnection` with `edges`/`nodes`/`pageInfo` | 1 (the page), +1 with `after`/`before` (the probe) |
//! | `TaskConnection.totalCount`                  | 1                                      |
//! | `TaskConnection.version`, `Query.taskChanges` | 1                                     |
//! | each mutation                                | [`MUTATION_STATEMENTS`]                |
//! | `me`, `owner`, scalars                       | 0 (the caller's row is read once per request) |
//!
//! and everything below a connection's `edges` or `nodes` counts once per row of the page
//! (`first`/`last`, or the default size). Counts that repeat in a request are computed once
//! (`Viewer::count`), so the real number is often lower, never higher; what every request
//! pays regardless (the user sync and the caller's row, at most two) is not part of it.
//!
//! The same walk measures how many fields the document expands to through its fragments:
//! `fragment A { ...B ...B }`, `fragment B { ...C ...C }` and so on doubles the work of
//! every later pass with each line, and is refused here, in linear time.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql_value::Value;
use serde_json::{Map, Value as Json};

use super::shape::{self, Shape};
use crate::domain::query::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// The statements one mutation field may run at most: an idempotent create reads its key,
/// forgets an expired one, and inserts the task and the key in a transaction.
pub const MUTATION_STATEMENTS: u64 = 6;

/// The most fields a document may expand to through its fragments.
pub const MAX_EXPANDED_FIELDS: u64 = 5_000;

/// How deeply fragment spreads may nest inside fragments.
pub const MAX_FRAGMENT_NESTING: usize = 32;

/// The estimate for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// SQL statements, at most.
    pub statements: u64,
    /// Fields after expanding fragments (not multiplied by page sizes).
    pub fields: u64,
    /// Whether the selection reads a connection's page (`edges`, `nodes` or `pageInfo`):
    /// carried up to the connection field, which prices its page once.
    reads_page: bool,
}

impl Cost {
    fn add(self, other: Self) -> Self {
        Self {
            statements: self.statements.saturating_add(other.statements),
            fields: self.fields.saturating_add(other.fields),
            reads_page: self.reads_page || other.reads_page,
        }
    }

    fn statements(statements: u64) -> Self {
        Self {
            statements,
            ..Self::default()
        }
    }
}

/// Why the walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooCostly {
    FragmentNesting,
}

/// Estimates the cost of `selection_set` (an operation's), whose type is `root`.
pub fn estimate(
    doc: &ExecutableDocument,
    shape: &Shape,
    root: &str,
    selection_set: &SelectionSet,
    variables: &Map<String, Json>,
) -> Result<Cost, TooCostly> {
    let mut walk = Walk {
        doc,
        shape,
        variables,
        memo: HashMap::new(),
        stack: Vec::new(),
        rows: 1,
    };
    walk.set(root, selection_set)
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    shape: &'a Shape,
    variables: &'a Map<String, Json>,
    /// Each fragment's cost for a page size, computed once however often it is spread.
    memo: HashMap<(&'a str, u64), Cost>,
    /// The fragments being expanded, innermost last: a spread of one of these is a cycle,
    /// which validation reports; here it costs nothing.
    stack: Vec<&'a str>,
    /// The page size of the innermost connection: how often its rows' selections run.
    rows: u64,
}

impl<'a> Walk<'a> {
    fn set(&mut self, ty: &str, set: &'a SelectionSet) -> Result<Cost, TooCostly> {
        let mut cost = Cost::default();
        for selection in &set.items {
            let part = match &selection.node {
                Selection::Field(field) => self.field(ty, &field.node)?,
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(ty, |condition| condition.node.on.node.as_str());
                    self.set(on, &fragment.node.selection_set.node)?
                }
                Selection::FragmentSpread(spread) => {
                    self.spread(&spread.node.fragment_name.node)?
                }
            };
            cost = cost.add(part);
        }
        Ok(cost)
    }

    fn spread(&mut self, name: &str) -> Result<Cost, TooCostly> {
        let Some((name, fragment)) = self.doc.fragments.get_key_value(name) else {
            return Ok(Cost::default());
        };
        let name = name.as_str();
        if let Some(cost) = self.memo.get(&(name, self.rows)) {
            return Ok(*cost);
        }
        if self.stack.contains(&name) {
            return Ok(Cost::default());
        }
        if self.stack.len() >= MAX_FRAGMENT_NESTING {
            return Err(TooCostly::FragmentNesting);
        }
        self.stack.push(name);
        let cost = self.set(
            fragment.node.type_condition.node.on.node.as_str(),
            &fragment.node.selection_set.node,
        );
        self.stack.pop();
        let cost = cost?;
        self.memo.insert((name, self.rows), cost);
        Ok(cost)
    }

    fn field(&mut self, parent: &str, field: &'a Field) -> Result<Cost, TooCostly> {
        let name = field.name.node.as_str();
        let own = Cost {
            fields: 1,
            ..Cost::default()
        };
        let Some(shape) = self.shape.field(parent, name) else {
            // `__typename`, introspection, or a field validation will refuse.
            return Ok(own);
        };
        let ty = shape::named(&shape.ty);
        let children = &field.selection_set.node;
        if ty == CONNECTION {
            let rows = self.page_size(field);
            let outer = std::mem::replace(&mut self.rows, rows);
            let below = self.set(ty, children);
            self.rows = outer;
            let below = below?;
            let mut statements = below.statements;
            if below.reads_page {
                let has_cursor = ["after", "before"]
                    .iter()
                    .any(|arg| field.get_argument(arg).is_some());
                statements += 1 + u64::from(has_cursor);
            }
            return Ok(own.add(Cost {
                statements,
                fields: below.fields,
                reads_page: false,
            }));
        }
        let below = self.set(ty, children)?;
        let cost = match (parent, name) {
            (CONNECTION, "totalCount" | "version") => Cost::statements(1),
            (CONNECTION, "pageInfo") => Cost {
                reads_page: true,
                ..below
            },
            // Everything below a row runs once per row of the page.
            (CONNECTION, "edges" | "nodes") => Cost {
                statements: below.statements.saturating_mul(self.rows),
                fields: below.fields,
                reads_page: true,
            },
            (shape::MUTATION, _) => below.add(Cost::statements(MUTATION_STATEMENTS)),
            (shape::QUERY, "task" | "taskChanges") => below.add(Cost::statements(1)),
            _ if ty == "TaskStats" => below.add(Cost::statements(1)),
            _ => below,
        };
        Ok(own.add(cost))
    }

    /// `first` or `last` as a literal or a variable, clamped to what a page can hold.
    fn page_size(&self, field: &Field) -> u64 {
        let given = ["first", "last"]
            .iter()
            .find_map(|arg| match &field.get_argument(arg)?.node {
                Value::Number(n) => n.as_u64(),
                Value::Variable(name) => self.variables.get(name.as_str())?.as_u64(),
                _ => None,
            });
        given.map_or(u64::from(DEFAULT_PAGE_SIZE), |n| {
            n.clamp(1, u64::from(MAX_PAGE_SIZE))
        })
    }
}

/// The type of a page of tasks.
const CONNECTION: &str = "TaskConnection";

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;
    use crate::graphql::document::select_operation;

    fn cost_of(query: &str) -> Result<Cost, TooCostly> {
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        let doc = parse_query(query).expect("parses");
        let op = select_operation(&doc, None).expect("one operation");
        let root = match op.ty {
            async_graphql::parser::types::OperationType::Mutation => shape::MUTATION,
            _ => shape::QUERY,
        };
        estimate(&doc, &shape, root, &op.selection_set.node, &Map::new())
    }

    fn statements(query: &str) -> u64 {
        cost_of(query).expect("within limits").statements
    }

    #[test]
    fn fields_that_run_statements_are_counted() {
        assert_eq!(statements("{ apiVersion me { id name } }"), 0);
        assert_eq!(statements("{ tasks { nodes { id } } }"), 1);
        assert_eq!(statements("{ tasks { totalCount } }"), 1);
        assert_eq!(statements("{ tasks { totalCount nodes { id } } }"), 2);
        assert_eq!(statements("{ tasks { version nodes { id } } }"), 2);
        assert_eq!(
            statements("{ taskChanges(since: \"v\") { version changes { task { id } } } }"),
            1
        );
        assert_eq!(
            statements("{ tasks(after: \"x\") { pageInfo { hasPreviousPage } } }"),
            2
        );
        assert_eq!(
            statements("{ taskStats { total } me { taskStats { open } } }"),
            2
        );
        assert_eq!(
            statements("mutation { a: deleteMe b: deleteMe }"),
            2 * MUTATION_STATEMENTS
        );
    }

    #[test]
    fn rows_multiply_what_is_below_them() {
        let amplified =
            "{ tasks(first: 100) { nodes { owner { tasks(first: 1) { totalCount } } } } }";
        assert_eq!(statements(amplified), 1 + 100);
        let through_fragments = "{ tasks(first: 50) { ...Rows } }
            fragment Rows on TaskConnection { edges { node { owner { ...Stats } } } }
            fragment Stats on User { taskStats { total } }";
        assert_eq!(statements(through_fragments), 1 + 50);
    }

    #[test]
    fn fragments_are_expanded_once_each() {
        let mut query = String::from("{ ...F0 }");
        for i in 0..30 {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{0} ...F{0} }}",
                i + 1
            ));
        }
        query.push_str(" fragment F30 on Query { apiVersion }");
        let cost = cost_of(&query).expect("nested 30 deep");
        assert_eq!(
            cost.fields,
            1 << 30,
            "the expansion is measured, not walked"
        );

        let mut chain = String::from("{ ...F0 }");
        for i in 0..40 {
            chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        chain.push_str(" fragment F40 on Query { apiVersion }");
        assert_eq!(cost_of(&chain), Err(TooCostly::FragmentNesting));
    }
}
