//! What the pipeline reads of a parsed document for one request: which operation runs, the
//! variables it requires, and the rewrite for variables a request omitted. (What holds for
//! every request with the same text is in the document's `plan`.)
//!
//! These read the syntax tree only; they never consult the schema.

use std::collections::HashSet;

use async_graphql::{
    Positioned, ServerError,
    indexmap::IndexMap,
    parser::types::{
        Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition,
        OperationType, Selection, SelectionSet, Type, VariableDefinition,
    },
};
use async_graphql_value::Value;

use crate::graphql::error::{ErrorCode, server_error};

/// The name of the document's operation when it has exactly one, and it is named.
pub fn single_operation_name(doc: &ExecutableDocument) -> Option<String> {
    match &doc.operations {
        DocumentOperations::Multiple(ops) if ops.len() == 1 => {
            ops.keys().next().map(|name| name.to_string())
        }
        _ => None,
    }
}

/// Picks the operation to run, following the GraphQL spec's GetOperation.
pub fn select_operation<'a>(
    doc: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Result<&'a OperationDefinition, ServerError> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Ok(&op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .values()
            .next()
            .map(|op| &op.node)
            .ok_or_else(unknown_operation),
        (DocumentOperations::Multiple(_), None) => Err(server_error(
            ErrorCode::BadRequest,
            "The document has several operations; name the one to run in operationName.",
        )),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name).map(|op| &op.node).ok_or_else(|| {
                server_error(
                    ErrorCode::BadRequest,
                    format!("Unknown operation named \"{name}\"."),
                )
            })
        }
        (DocumentOperations::Single(_), Some(name)) => Err(server_error(
            ErrorCode::BadRequest,
            format!(
                "Unknown operation named \"{name}\": the document's only operation is anonymous."
            ),
        )),
    }
}

fn unknown_operation() -> ServerError {
    server_error(ErrorCode::BadRequest, "The document contains no operation.")
}

pub fn is_query(op: &OperationDefinition) -> bool {
    op.ty == OperationType::Query
}

/// Every selection set at the top of the document: operations' and fragments' (the sets
/// nested in them are the caller's to reach).
pub(crate) fn selection_sets(doc: &ExecutableDocument) -> impl Iterator<Item = &SelectionSet> {
    doc.operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
}

/// Fields of merged selection sets by response key, in document order.
pub(crate) type Grouped<'a> = IndexMap<&'a str, Vec<&'a Positioned<Field>>>;

/// The spec's CollectFields, the one taskql has: the fields of `set` by response key, in
/// document order, through inline fragments and fragment spreads (each fragment once per
/// `visited`), keeping only the selections `included` admits by their directives. The
/// overlap rule admits every selection (it holds whatever the variables); the null rules
/// apply `@skip` and `@include` with the request's variables, as execution does. Type
/// conditions are not checked: every type taskql's selections reach is an object type, so a
/// fragment that passed validation always applies.
pub(crate) fn collect_fields<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    included: &impl Fn(&[Positioned<Directive>]) -> bool,
    into: &mut Grouped<'a>,
    visited: &mut HashSet<&'a str>,
) {
    for item in &set.items {
        let nested = match &item.node {
            Selection::Field(field) => {
                if included(&field.node.directives) {
                    into.entry(field.node.response_key().node.as_str())
                        .or_default()
                        .push(field);
                }
                continue;
            }
            Selection::InlineFragment(fragment) => {
                included(&fragment.node.directives).then_some(&fragment.node.selection_set.node)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if included(&spread.node.directives) && visited.insert(name) {
                    doc.fragments
                        .get(name)
                        .map(|fragment| &fragment.node.selection_set.node)
                } else {
                    None
                }
            }
        };
        if let Some(nested) = nested {
            collect_fields(doc, nested, included, into, visited);
        }
    }
}

/// Visits every field of a selection set, nested ones included (fragment spreads are not
/// followed: every fragment definition is visited on its own by the callers).
fn for_each_field(
    set: &SelectionSet,
    visit: &mut impl FnMut(&async_graphql::parser::types::Field),
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                visit(&field.node);
                for_each_field(&field.node.selection_set.node, visit);
            }
            Selection::InlineFragment(fragment) => {
                for_each_field(&fragment.node.selection_set.node, visit)
            }
            Selection::FragmentSpread(_) => {}
        }
    }
}

/// Required variables (non-null type, no default) that were not provided or are null.
/// The spec makes these request errors; async-graphql would only notice them while
/// resolving, as field errors.
pub fn missing_required_variables(
    op: &OperationDefinition,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Vec<ServerError> {
    op.variable_definitions
        .iter()
        .filter(|def| !def.node.var_type.node.nullable && def.node.default_value.is_none())
        .filter(|def| {
            variables
                .get(def.node.name.node.as_str())
                .is_none_or(serde_json::Value::is_null)
        })
        .map(|def| {
            let mut error = server_error(
                ErrorCode::BadUserInput,
                format!(
                    "Variable \"${}\" of required type \"{}\" was not provided.",
                    def.node.name.node,
                    display_type(&def.node.var_type)
                ),
            );
            error.locations = vec![def.pos];
            error
        })
        .collect()
}

fn display_type(ty: &Positioned<Type>) -> String {
    ty.node.to_string()
}

/// Whether the request omits a variable `op` declares without a default: then the document
/// must be rewritten for it ([`drop_omitted_variables`]).
pub fn omits_variables(
    op: &OperationDefinition,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    op.variable_definitions
        .iter()
        .any(|def| is_omitted(&def.node, variables))
}

/// A declared variable the request did not send, without a default to stand in.
fn is_omitted(
    def: &VariableDefinition,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    def.default_value.is_none() && !variables.contains_key(def.name.node.as_str())
}

/// Makes variables that the operation declares but the request did not send (and that have
/// no default) mean "absent" inside input objects, as the GraphQL spec's input coercion says.
///
/// async-graphql 7 reads `input: { description: $d }` with `$d` omitted as `description: null`,
/// which for a partial update would clear the field. Removing such entries from the document
/// restores the spec's meaning. A declaration left without any use is removed too, so that
/// validation does not report it as unused.
pub fn drop_omitted_variables(
    doc: &mut ExecutableDocument,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, serde_json::Value>,
) {
    let omitted: HashSet<String> = match select_operation(doc, operation_name) {
        Ok(op) => op
            .variable_definitions
            .iter()
            .map(|def| &def.node)
            .filter(|def| is_omitted(def, variables))
            .map(|def| def.name.node.to_string())
            .collect(),
        Err(_) => return,
    };
    if omitted.is_empty() {
        return;
    }
    let used_before = arguments_variables(doc);
    for set in selection_sets_mut(doc) {
        for_each_field_mut(set, &mut |field| {
            for (_, value) in &mut field.arguments {
                drop_omitted_entries(&mut value.node, &omitted);
            }
        });
    }
    let used = arguments_variables(doc);
    let op = match &mut doc.operations {
        DocumentOperations::Single(op) => Some(&mut op.node),
        DocumentOperations::Multiple(ops) => match operation_name {
            Some(name) => ops.get_mut(name).map(|op| &mut op.node),
            None => ops.values_mut().next().map(|op| &mut op.node),
        },
    };
    if let Some(op) = op {
        // Only declarations this rewrite left unused go: one the client wrote unused (or used
        // only in a directive) stays, for validation to judge.
        op.variable_definitions.retain(|def| {
            let name = def.node.name.node.as_str();
            !omitted.contains(name) || used.contains(name) || !used_before.contains(name)
        });
    }
}

/// The variables the document's field arguments use.
fn arguments_variables(doc: &ExecutableDocument) -> HashSet<String> {
    let mut used = HashSet::new();
    for set in selection_sets(doc) {
        for_each_field(set, &mut |field| {
            for (_, value) in &field.arguments {
                collect_variables(&value.node, &mut used);
            }
        });
    }
    used
}

fn drop_omitted_entries(value: &mut Value, omitted: &HashSet<String>) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, field| !matches!(field, Value::Variable(name) if omitted.contains(name.as_str())));
            fields
                .values_mut()
                .for_each(|field| drop_omitted_entries(field, omitted));
        }
        Value::List(items) => items
            .iter_mut()
            .for_each(|item| drop_omitted_entries(item, omitted)),
        _ => {}
    }
}

fn collect_variables(value: &Value, into: &mut HashSet<String>) {
    match value {
        Value::Variable(name) => {
            into.insert(name.to_string());
        }
        Value::List(items) => items.iter().for_each(|item| collect_variables(item, into)),
        Value::Object(fields) => fields
            .values()
            .for_each(|field| collect_variables(field, into)),
        _ => {}
    }
}

fn selection_sets_mut(doc: &mut ExecutableDocument) -> Vec<&mut SelectionSet> {
    let operations: Vec<&mut SelectionSet> = match &mut doc.operations {
        DocumentOperations::Single(op) => vec![&mut op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => ops
            .values_mut()
            .map(|op| &mut op.node.selection_set.node)
            .collect(),
    };
    operations
        .into_iter()
        .chain(
            doc.fragments
                .values_mut()
                .map(|f| &mut f.node.selection_set.node),
        )
        .collect()
}

fn for_each_field_mut(
    set: &mut SelectionSet,
    visit: &mut impl FnMut(&mut async_graphql::parser::types::Field),
) {
    for selection in &mut set.items {
        match &mut selection.node {
            Selection::Field(field) => {
                visit(&mut field.node);
                for_each_field_mut(&mut field.node.selection_set.node, visit);
            }
            Selection::InlineFragment(fragment) => {
                for_each_field_mut(&mut fragment.node.selection_set.node, visit)
            }
            Selection::FragmentSpread(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::{parse_query, types::Field};
    use serde_json::json;

    use super::*;

    fn doc(text: &str) -> ExecutableDocument {
        parse_query(text).expect("parses")
    }

    fn variables(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_value(value).expect("an object")
    }

    /// Response keys and, for each, the names of the fields merged under it.
    fn grouped(text: &str, skip_all_directives: bool) -> Vec<(String, Vec<String>)> {
        let document = doc(text);
        let set = selection_sets(&document).next().expect("an operation");
        let mut into = Grouped::new();
        let included =
            |directives: &[Positioned<Directive>]| !skip_all_directives || directives.is_empty();
        collect_fields(&document, set, &included, &mut into, &mut HashSet::new());
        into.into_iter()
            .map(|(key, fields)| {
                let names = fields
                    .iter()
                    .map(|f| f.node.name.node.to_string())
                    .collect();
                (key.to_owned(), names)
            })
            .collect()
    }

    #[test]
    fn collect_fields_merges_by_response_key_through_fragments_in_order() {
        let text = "query { a: me { id } ...F ... on Query { apiVersion, a: me { name } } ...F \
                    apiVersion @skip(if: true) } \
                    fragment F on Query { me { id } ...G } fragment G on Query { a: apiVersion }";
        assert_eq!(
            grouped(text, false),
            vec![
                (
                    "a".to_owned(),
                    vec!["me".into(), "apiVersion".into(), "me".into()]
                ),
                ("me".to_owned(), vec!["me".into()]),
                (
                    "apiVersion".to_owned(),
                    vec!["apiVersion".into(), "apiVersion".into()]
                ),
            ],
            "each fragment once, however often spread; aliases merge under their key"
        );
        assert_eq!(
            grouped(
                "{ me @skip(if: true) { id } ... @include(if: false) { apiVersion } ...F } fragment F on Query { a: me { id } }",
                true
            ),
            vec![("a".to_owned(), vec!["me".into()])],
            "a selection the predicate refuses is left out, fragments and all"
        );
    }

    #[test]
    fn the_operation_is_chosen_as_the_spec_says() {
        let single = doc("{ apiVersion }");
        assert!(select_operation(&single, None).is_ok());
        assert_eq!(single_operation_name(&single), None);

        let named = doc("query Only { apiVersion }");
        assert_eq!(single_operation_name(&named).as_deref(), Some("Only"));
        assert!(select_operation(&named, None).is_ok());

        let two = doc("query A { apiVersion } mutation B { deleteMe }");
        assert_eq!(single_operation_name(&two), None);
        assert!(
            select_operation(&two, None).is_err(),
            "which one is ambiguous"
        );
        let b = select_operation(&two, Some("B")).expect("B");
        assert!(!is_query(b));
        assert!(is_query(select_operation(&two, Some("A")).expect("A")));
        assert!(select_operation(&two, Some("C")).is_err());
    }

    #[test]
    fn required_variables_must_be_given_and_not_null() {
        let text = "query($id: ID!, $n: Int! = 1, $o: String) { apiVersion }";
        let document = doc(text);
        let op = select_operation(&document, None).expect("op");
        let missing = missing_required_variables(op, &variables(json!({})));
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].message.contains("\"$id\""),
            "{}",
            missing[0].message
        );
        assert!(
            missing[0].message.contains("\"ID!\""),
            "{}",
            missing[0].message
        );
        assert_eq!(
            missing_required_variables(op, &variables(json!({ "id": null }))).len(),
            1
        );
        assert!(missing_required_variables(op, &variables(json!({ "id": "x" }))).is_empty());
    }

    /// The input object fields of the first argument of the document's first field.
    fn input_keys(document: &ExecutableDocument) -> Vec<String> {
        let mut keys = Vec::new();
        for set in selection_sets(document) {
            for_each_field(set, &mut |field: &Field| {
                for (_, value) in &field.arguments {
                    if let Value::Object(fields) = &value.node {
                        keys.extend(fields.keys().map(|name| name.to_string()));
                    }
                }
            });
        }
        keys
    }

    #[test]
    fn an_omitted_variable_leaves_its_input_field_out() {
        let text = "mutation($t: String, $d: String, $p: Int = 3) { updateTask(id: \"x\", input: { title: $t, description: $d, priority: $p }) { id } }";
        let mut document = doc(text);
        drop_omitted_variables(&mut document, None, &variables(json!({ "t": "milk" })));
        assert_eq!(input_keys(&document), ["title", "priority"]);
        let op = select_operation(&document, None).expect("op");
        let declared: Vec<&str> = op
            .variable_definitions
            .iter()
            .map(|def| def.node.name.node.as_str())
            .collect();
        assert_eq!(declared, ["t", "p"], "the unused declaration goes too");

        // Sent as null, it stays: null is a value that clears the field.
        let mut document = doc(text);
        drop_omitted_variables(
            &mut document,
            None,
            &variables(json!({ "t": "milk", "d": null })),
        );
        assert_eq!(input_keys(&document), ["title", "description", "priority"]);

        // A declaration the client left unused is not the rewrite's to remove.
        let mut document = doc("query($unused: Int) { apiVersion }");
        drop_omitted_variables(&mut document, None, &variables(json!({})));
        let op = select_operation(&document, None).expect("op");
        assert_eq!(op.variable_definitions.len(), 1);
    }
}
