//! What taskql knows of a document, learned once per text and shared, behind an `Arc`, by
//! every request that sends the same text: the parsed document, the document async-graphql
//! runs (with the hidden fields of `nulls::mark_skippable`), the facts the admission checks
//! read (aliases, introspection, where variables feed arguments), each operation's verdict
//! on the rules that read only the document, and async-graphql's own validation verdict
//! once it has been reached.
//!
//! A request then runs only what depends on its variables: their coercion, the cost with
//! their page sizes, and the document's rewrite when a variable was omitted (see
//! [`document::drop_omitted_variables`]).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::{
    Pos, ServerError, ValidationResult,
    parser::types::{ExecutableDocument, OperationDefinition, Selection, SelectionSet},
};
use async_graphql_value::Value;
use serde_json::Map;

use super::{
    cost,
    document::{self, select_operation},
    nulls,
    shape::Shape,
    validate,
};

/// One document text, planned.
#[derive(Debug)]
pub struct Plan {
    /// The document as parsed: what the null rules walk after execution.
    doc: ExecutableDocument,
    /// The document as async-graphql runs it, when `mark_skippable` changed it.
    marked: Option<ExecutableDocument>,
    /// Aliases written in the document.
    pub aliases: usize,
    /// Whether the document asks for `__schema` or `__type`.
    pub introspection: bool,
    /// Arguments whose value is, or contains, a variable: where async-graphql reports a
    /// variable's value, which is the client's input rather than a broken document.
    pub variable_positions: HashSet<Pos>,
    /// The name of the document's only operation, when it has one and it is named.
    pub single_name: Option<String>,
    /// Whether every operation selects only meta fields at its root (`__schema`, `__type`,
    /// `__typename`): the document reads the schema and nothing of anyone's data.
    pub schema_only: bool,
    /// The verdict of the document-only rules for each operation, in `doc.operations` order.
    verdicts: Vec<Vec<ServerError>>,
    /// async-graphql's validation of the marked document, once it passed: it then answers
    /// every later request with this text (see `pipeline::ValidateOnce`).
    validated: OnceLock<ValidationResult>,
}

impl Plan {
    /// Plans a parsed document against the schema's `shape`.
    pub fn new(doc: ExecutableDocument, shape: &Shape) -> Self {
        let facts = Facts::of(&doc);
        let verdicts = doc
            .operations
            .iter()
            .map(|(_, op)| document_verdict(&doc, &op.node, shape))
            .collect();
        let mut marked = doc.clone();
        let marked = nulls::mark_skippable(&mut marked).then_some(marked);
        let schema_only = doc.operations.iter().all(|(_, op)| {
            op.node.selection_set.node.items.iter().all(|item| {
                matches!(&item.node, Selection::Field(field) if field.node.name.node.starts_with("__"))
            })
        });
        Self {
            single_name: document::single_operation_name(&doc),
            schema_only,
            doc,
            marked,
            aliases: facts.aliases,
            introspection: facts.introspection,
            variable_positions: facts.variable_positions,
            verdicts,
            validated: OnceLock::new(),
        }
    }

    pub fn doc(&self) -> &ExecutableDocument {
        &self.doc
    }

    /// The operation a request runs, following the spec's GetOperation.
    pub fn operation(&self, name: Option<&str>) -> Result<&OperationDefinition, ServerError> {
        select_operation(&self.doc, name)
    }

    /// What the document-only rules found wrong with `op` (one of this plan's operations).
    pub fn verdict(&self, op: &OperationDefinition) -> &[ServerError] {
        self.doc
            .operations
            .iter()
            .position(|(_, candidate)| std::ptr::eq(&candidate.node, op))
            .and_then(|at| self.verdicts.get(at))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the document async-graphql runs has hidden fields to take out again.
    pub fn marked(&self) -> bool {
        self.marked.is_some()
    }

    /// A copy of the document for async-graphql, which takes it by value; the copy is the
    /// one cost of a cached document per request. With `omitted` variables the copy is
    /// rewritten (see `document::drop_omitted_variables`) and marked anew, and async-graphql
    /// must validate it: the second value says whether its verdict may be shared.
    pub fn runnable(
        &self,
        operation_name: Option<&str>,
        variables: &Map<String, serde_json::Value>,
        omitted: bool,
    ) -> (ExecutableDocument, bool) {
        if !omitted {
            let doc = self.marked.as_ref().unwrap_or(&self.doc);
            return (doc.clone(), true);
        }
        let mut doc = self.doc.clone();
        document::drop_omitted_variables(&mut doc, operation_name, variables);
        nulls::mark_skippable(&mut doc);
        (doc, false)
    }

    pub fn validated(&self) -> Option<ValidationResult> {
        self.validated.get().copied()
    }

    pub fn remember_validated(&self, result: ValidationResult) {
        // A race between two first requests stores one of two equal results.
        let _ = self.validated.set(result);
    }
}

/// What the document-only rules find wrong with `op`. Their walks follow every spread, so
/// a document whose fragments nest or expand too far is not walked: each request refuses it
/// first, in the cost check.
fn document_verdict(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    shape: &Shape,
) -> Vec<ServerError> {
    let root = nulls::root_of(op);
    // Expansion does not depend on variables (page sizes multiply statements, not fields).
    match cost::estimate(doc, shape, root, op, &Map::new()) {
        Ok(cost) if cost.fields <= cost::MAX_EXPANDED_FIELDS => {
            validate::check_document(doc, op, root, shape)
        }
        _ => Vec::new(),
    }
}

/// The syntax-level facts, from one walk over every selection of the document.
#[derive(Debug, Default)]
struct Facts {
    aliases: usize,
    introspection: bool,
    variable_positions: HashSet<Pos>,
}

impl Facts {
    fn of(doc: &ExecutableDocument) -> Self {
        let mut facts = Self::default();
        // Every set once, fragments as defined (counting the text, not the expansion, is
        // the honest measure of alias abuse: repeating a spread does not repeat fields,
        // which merge by response key).
        let mut pending: Vec<&SelectionSet> = document::selection_sets(doc).collect();
        while let Some(set) = pending.pop() {
            for item in &set.items {
                match &item.node {
                    Selection::Field(field) => {
                        let field = &field.node;
                        facts.aliases += usize::from(field.alias.is_some());
                        // `__typename` is not introspection: clients add it for their caches.
                        facts.introspection |=
                            matches!(field.name.node.as_str(), "__schema" | "__type");
                        for (name, value) in &field.arguments {
                            if contains_variable(&value.node) {
                                facts.variable_positions.insert(name.pos);
                            }
                        }
                        pending.push(&field.selection_set.node);
                    }
                    Selection::InlineFragment(fragment) => {
                        pending.push(&fragment.node.selection_set.node);
                    }
                    Selection::FragmentSpread(_) => {}
                }
            }
        }
        facts
    }
}

fn contains_variable(value: &Value) -> bool {
    match value {
        Value::Variable(_) => true,
        Value::List(items) => items.iter().any(contains_variable),
        Value::Object(fields) => fields.values().any(contains_variable),
        _ => false,
    }
}

/// How many plans are remembered, and the longest text that is (so the cache holds at
/// most a few megabytes).
const PLAN_CACHE_SIZE: usize = 1000;
const MAX_CACHED_DOCUMENT_BYTES: usize = 4096;

/// Plans by their document's text. A hit skips the nesting scan, the parser and every
/// document-only check.
pub struct PlanCache(Option<Mutex<lru::LruCache<String, Arc<Plan>>>>);

impl Default for PlanCache {
    fn default() -> Self {
        Self(
            std::num::NonZeroUsize::new(PLAN_CACHE_SIZE)
                .map(|cap| Mutex::new(lru::LruCache::new(cap))),
        )
    }
}

impl PlanCache {
    pub fn get(&self, query: &str) -> Option<Arc<Plan>> {
        self.0.as_ref()?.lock().ok()?.get(query).cloned()
    }

    pub fn put(&self, query: &str, plan: &Arc<Plan>) {
        if query.len() > MAX_CACHED_DOCUMENT_BYTES {
            return;
        }
        if let Some(Ok(mut cache)) = self.0.as_ref().map(|cache| cache.lock()) {
            cache.put(query.to_owned(), Arc::clone(plan));
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn plan(text: &str) -> Plan {
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        Plan::new(parse_query(text).expect("parses"), &shape)
    }

    fn messages(plan: &Plan, name: Option<&str>) -> Vec<String> {
        let op = plan.operation(name).expect("an operation");
        plan.verdict(op).iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn facts_count_the_text_through_nested_and_repeated_fragments() {
        let facts = plan(
            "query Q($n: Int, $s: Boolean!) { a: tasks(first: $n) { ...Rows ...Rows } b: me { id } }
             fragment Rows on TaskConnection { x: nodes { ...Leaf ... on TaskConnection { y: totalCount } } }
             fragment Leaf on Task { id t: title @skip(if: $s) }",
        );
        assert_eq!(
            facts.aliases, 5,
            "each alias as written, spreads not repeated"
        );
        assert!(!facts.introspection);
        assert_eq!(
            facts.variable_positions.len(),
            1,
            "first: $n (directives are not arguments)"
        );
        assert_eq!(facts.single_name.as_deref(), Some("Q"));
        assert!(
            facts.verdicts.iter().all(Vec::is_empty),
            "{:?}",
            facts.verdicts
        );
        assert!(
            facts.marked(),
            "a set of only spreads could be emptied by theirs"
        );
    }

    #[test]
    fn schema_only_documents_select_nothing_but_meta_fields_at_their_roots() {
        assert!(plan("query IntrospectionQuery { __schema { types { ...T } } } fragment T on __Type { name }").schema_only);
        assert!(plan("{ __typename __type(name: \"Task\") { name } }").schema_only);
        assert!(!plan("{ __schema { queryType { name } } me { id } }").schema_only);
        assert!(
            !plan("{ ... { __schema { queryType { name } } } }").schema_only,
            "conservative"
        );
        assert!(!plan("query A { __typename } query B { me { id } }").schema_only);
    }

    #[test]
    fn aliases_are_counted_as_written_fragments_included() {
        let text =
            "{ a: apiVersion b: apiVersion ...F ...F } fragment F on Query { c: apiVersion }";
        assert_eq!(plan(text).aliases, 3);
        assert_eq!(plan("{ apiVersion }").aliases, 0);
    }

    #[test]
    fn arguments_fed_by_variables_are_found_however_deep() {
        let text = "query($t: String, $p: Int) { a: tasks(first: 1) { version } b: tasks(filter: { title: { contains: $t } }) { version } c: tasks(first: $p) { version } }";
        assert_eq!(plan(text).variable_positions.len(), 2);
    }

    #[test]
    fn introspection_is_schema_or_type_anywhere_but_not_typename() {
        assert!(
            plan("{ __typename me { __typename } }")
                .introspection
                .eq(&false)
        );
        assert!(
            plan("{ ...F } fragment F on Query { __type(name: \"Task\") { name } }").introspection
        );
        assert!(plan("{ me { id } ... { __schema { queryType { name } } } }").introspection);
    }

    #[test]
    fn variables_nested_in_lists_and_objects_are_positions() {
        let positions = plan(
            "query($t: String!, $p: Int) { createTask(input: {title: $t}) { id }
               tasks(filter: {priorityIn: [1, $p]}, first: 2) { totalCount } }",
        );
        assert_eq!(positions.variable_positions.len(), 2);
    }

    #[test]
    fn sets_that_directives_could_empty_are_marked_once() {
        let skippable = plan("query($s: Boolean!) { me @skip(if: $s) { id } }");
        assert!(skippable.marked());
        let (runnable, shared) = skippable.runnable(None, &Map::new(), false);
        assert!(shared);
        assert_ne!(
            format!("{runnable:?}"),
            format!("{:?}", skippable.doc()),
            "hidden field added"
        );
        assert!(!plan("{ me @skip(if: false) { id } apiVersion }").marked());
        assert!(
            plan("{ me @include(if: true) { id } }").marked(),
            "literals too"
        );
    }

    #[test]
    fn an_omitted_variable_gets_its_own_rewritten_copy() {
        let update = plan(
            "mutation($id: ID!, $d: String) { updateTask(id: $id, input: {description: $d}) { id } }",
        );
        let variables = serde_json::from_value(serde_json::json!({"id": "1"})).expect("object");
        let (runnable, shared) = update.runnable(None, &variables, true);
        assert!(!shared, "a rewritten document is validated on its own");
        let text = format!("{runnable:?}");
        assert!(!text.contains("description"), "{text}");
    }

    #[test]
    fn each_operation_has_its_own_verdict() {
        let two =
            plan("query Good { me { id } } query Bad { me { id id: email } __typename(x: 1) }");
        assert!(messages(&two, Some("Good")).is_empty());
        let bad = messages(&two, Some("Bad"));
        assert!(bad.iter().any(|m| m.contains("__typename")), "{bad:?}");
        assert!(bad.iter().any(|m| m.contains("\"id\"")), "{bad:?}");
    }

    #[test]
    fn directives_other_than_skip_and_include_are_refused_in_the_plan() {
        let problems = messages(
            &plan(
                "{ me @skip(iff: true) { id } ...F @deprecated } fragment F on Query { apiVersion }",
            ),
            None,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|m| !m.contains("Did you mean")));
    }

    #[test]
    fn a_document_that_expands_too_far_is_not_walked_by_the_rules() {
        let mut text = String::from("{ ...F0 }");
        for i in 0..20 {
            text.push_str(&format!(
                " fragment F{i} on Query {{ ...F{0} ...F{0} }}",
                i + 1
            ));
        }
        text.push_str(" fragment F20 on Query { apiVersion __typename(x: 1) }");
        assert!(
            messages(&plan(&text), None).is_empty(),
            "left to the cost check"
        );
        let small = "{ ...F0 } fragment F0 on Query { apiVersion __typename(x: 1) }";
        assert_eq!(messages(&plan(small), None).len(), 1);
    }
}
