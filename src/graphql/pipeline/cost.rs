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
//! The same walk prices the document as async-graphql's complexity does (each field 1 plus
//! what is below it, `__typename` free, a page of tasks its page size times what each row
//! selects, `taskChanges` its `first` times the same), with the request's variables: the
//! part of validation that depends on them, so async-graphql's own validation can run once
//! per document text (see `pipeline`).
//!
//! It also measures how many fields the document expands to through its fragments:
//! `fragment A { ...B ...B }`, `fragment B { ...C ...C }` and so on doubles the work of
//! every later pass with each line, and is refused here, in linear time.

use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet,
};
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
    /// async-graphql's complexity: the response's size, pages priced by their sizes.
    pub complexity: u64,
    /// Whether the selection reads a connection's page (`edges`, `nodes` or `pageInfo`):
    /// carried up to the connection field, which prices its page once.
    reads_page: bool,
}

impl Cost {
    fn add(self, other: Self) -> Self {
        Self {
            statements: self.statements.saturating_add(other.statements),
            fields: self.fields.saturating_add(other.fields),
            complexity: self.complexity.saturating_add(other.complexity),
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

/// Estimates the cost of operation `op`, whose type is `root`, with `variables`.
pub fn estimate(
    doc: &ExecutableDocument,
    shape: &Shape,
    root: &str,
    op: &OperationDefinition,
    variables: &Map<String, Json>,
) -> Result<Cost, TooCostly> {
    let mut walk = Walk {
        doc,
        shape,
        variables,
        op,
        memo: HashMap::new(),
        stack: Vec::new(),
        rows: 1,
    };
    walk.set(root, &op.selection_set.node)
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    shape: &'a Shape,
    variables: &'a Map<String, Json>,
    /// The operation, whose declared defaults stand in for variables not sent.
    op: &'a OperationDefinition,
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
        if name == "__typename" {
            // Free for async-graphql's complexity, which never visits it.
            return Ok(own);
        }
        let Some(shape) = self.shape.field(parent, name) else {
            // Introspection, or a field validation will refuse: 1 for each field below.
            let below = self.set("", &field.selection_set.node)?;
            return Ok(Cost {
                complexity: below.complexity.saturating_add(1),
                ..own.add(below)
            });
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
                complexity: self.complexity(parent, field, below.complexity),
                reads_page: false,
            }));
        }
        let below = self.set(ty, children)?;
        let complexity = self.complexity(parent, field, below.complexity);
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
                complexity: below.complexity,
                reads_page: true,
            },
            (shape::MUTATION, _) => below.add(Cost::statements(MUTATION_STATEMENTS)),
            (shape::QUERY, "task" | "taskChanges") => below.add(Cost::statements(1)),
            _ if ty == "TaskStats" => below.add(Cost::statements(1)),
            _ => below,
        };
        Ok(Cost {
            complexity,
            ..own.add(cost)
        })
    }

    /// The field's complexity as its resolver declares it (`task::page_cost` for pages of
    /// tasks, `first` for `taskChanges`), else 1, plus or times what is below it.
    fn complexity(&self, parent: &str, field: &Field, below: u64) -> u64 {
        match (parent, field.name.node.as_str()) {
            (shape::QUERY | "User", "tasks") => {
                let size = self
                    .int_argument(field, "first")
                    .or_else(|| self.int_argument(field, "last"));
                let size = size.map_or(u64::from(DEFAULT_PAGE_SIZE), |n| {
                    u64::try_from(n.clamp(1, i64::from(MAX_PAGE_SIZE))).unwrap_or(1)
                });
                size.saturating_mul(below)
            }
            (shape::QUERY, "taskChanges") => {
                let first = self
                    .int_argument(field, "first")
                    .unwrap_or(DEFAULT_CHANGES_PAGE);
                u64::try_from(first)
                    .unwrap_or(1)
                    .max(1)
                    .saturating_mul(below)
            }
            _ => below.saturating_add(1),
        }
    }

    /// An integer argument, given literally or by a variable (sent, or else its declared
    /// default); `None` when absent or null.
    fn int_argument(&self, field: &Field, name: &str) -> Option<i64> {
        match &field.get_argument(name)?.node {
            Value::Number(n) => n.as_i64(),
            Value::Variable(var) => match self.variables.get(var.as_str()) {
                Some(value) => value.as_i64(),
                None => self
                    .op
                    .variable_definitions
                    .iter()
                    .find(|def| def.node.name.node == *var)
                    .and_then(|def| match &def.node.default_value.as_ref()?.node {
                        async_graphql_value::ConstValue::Number(n) => n.as_i64(),
                        _ => None,
                    }),
            },
            _ => None,
        }
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

/// `taskChanges`' page size when `first` is not given (its declared default).
const DEFAULT_CHANGES_PAGE: i64 = 100;

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use serde_json::json;

    use super::*;
    use crate::graphql::pipeline::document::select_operation;

    fn cost_of(query: &str) -> Result<Cost, TooCostly> {
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        let doc = parse_query(query).expect("parses");
        let op = select_operation(&doc, None).expect("one operation");
        let root = match op.ty {
            async_graphql::parser::types::OperationType::Mutation => shape::MUTATION,
            _ => shape::QUERY,
        };
        estimate(&doc, &shape, root, op, &Map::new())
    }

    fn statements(query: &str) -> u64 {
        cost_of(query).expect("within limits").statements
    }

    /// async-graphql's own complexity of `query` with `variables`, from its validation.
    async fn their_complexity(query: &str, variables: &Json) -> usize {
        use async_graphql::{
            ServerError, ValidationResult,
            extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation},
        };
        use std::sync::{Arc, Mutex};

        struct Capture(Arc<Mutex<Option<usize>>>);
        impl ExtensionFactory for Capture {
            fn create(&self) -> Arc<dyn Extension> {
                Arc::new(Capture(Arc::clone(&self.0)))
            }
        }
        #[async_graphql::async_trait::async_trait]
        impl Extension for Capture {
            async fn validation(
                &self,
                ctx: &ExtensionContext<'_>,
                next: NextValidation<'_>,
            ) -> Result<ValidationResult, Vec<ServerError>> {
                let result = next.run(ctx).await?;
                *self.0.lock().expect("not poisoned") = Some(result.complexity);
                // Stop here: nothing is there to execute against.
                Err(vec![ServerError::new("measured", None)])
            }
        }
        let seen = Arc::new(Mutex::new(None));
        let schema = crate::graphql::schema::builder()
            .extension(Capture(Arc::clone(&seen)))
            .finish();
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables.clone()));
        let response = schema.execute(request).await;
        let measured = *seen.lock().expect("not poisoned");
        measured.unwrap_or_else(|| panic!("{query}: {:?}", response.errors))
    }

    /// Ours, per request, must be theirs exactly: the pipeline enforces the limit in their
    /// place, so that their validation can run once per document text.
    #[tokio::test]
    async fn complexity_is_async_graphqls_with_the_requests_variables() {
        let cases = [
            ("{ apiVersion }", json!({})),
            ("{ __typename apiVersion me { __typename id } }", json!({})),
            ("{ tasks { nodes { id title } } }", json!({})),
            ("{ tasks(first: 5) { totalCount } }", json!({})),
            ("{ tasks(first: 500) { totalCount } }", json!({})),
            ("{ tasks(first: -2, last: 7) { totalCount } }", json!({})),
            (
                "{ me { tasks(last: 3) { edges { node { id owner { id } } } } } }",
                json!({}),
            ),
            (
                "{ taskChanges(since: \"v\") { version changes { task { id } } } }",
                json!({}),
            ),
            (
                "{ taskChanges(since: \"v\", first: 0) { version } }",
                json!({}),
            ),
            (
                "query($n: Int = 4) { tasks(first: $n) { totalCount } }",
                json!({}),
            ),
            (
                "query($n: Int = 4) { tasks(first: $n) { totalCount } }",
                json!({ "n": 7 }),
            ),
            (
                "query($n: Int = 4) { tasks(first: $n) { totalCount } }",
                json!({ "n": null }),
            ),
            (
                "query($n: Int) { tasks(last: $n) { nodes { owner { tasks(first: $n) { nodes { id } } } } } }",
                json!({ "n": 3 }),
            ),
            (
                "{ ...F ...F } fragment F on Query { apiVersion tasks(first: 2) { ...G } } fragment G on TaskConnection { nodes { id } }",
                json!({}),
            ),
            (
                "{ ... on Query { me { id } } ... { apiVersion } }",
                json!({}),
            ),
            (
                "{ __schema { queryType { name fields { name } } } }",
                json!({}),
            ),
            (
                "{ __type(name: \"Task\") { fields { name type { ofType { name } } } } }",
                json!({}),
            ),
            (
                "mutation { createTask(input: {title: \"a\"}) { id owner { tasks(first: 2) { totalCount } } } }",
                json!({}),
            ),
        ];
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        for (query, variables) in cases {
            let doc = parse_query(query).expect("parses");
            let op = select_operation(&doc, None).expect("one operation");
            let root = crate::graphql::pipeline::nulls::root_of(op);
            let vars = variables.as_object().cloned().unwrap_or_default();
            let ours = estimate(&doc, &shape, root, op, &vars).expect("within limits");
            let theirs = their_complexity(query, &variables).await;
            assert_eq!(ours.complexity, theirs as u64, "{query} with {variables}");
        }
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
