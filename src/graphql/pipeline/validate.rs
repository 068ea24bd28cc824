//! Validation rules async-graphql 7.2 does not apply, run before its own validation so that
//! what they refuse is a request error (nothing runs), as the GraphQL spec requires.
//!
//! - `__typename` is skipped by async-graphql's validator entirely, so arguments, unknown
//!   directives and sub-selections on it were accepted.
//! - An input object argument given a non-object value (`orderBy: [[{field: TITLE}]]`)
//!   passes async-graphql's `is_valid_input_value` (its fallback arm accepts anything) and
//!   only fails while resolving, where it surfaced as an internal error. Variables get the
//!   same check against their declared types.
//! - Two fields with one response key must be the same field with the same arguments, also
//!   when one comes through a fragment (`{ task(id: A) ... on Query { task(id: B) } }`):
//!   async-graphql keys its check by type condition, so such pairs ran with one answer for
//!   two questions. Every type of taskql's schema is an object type, so the spec's rule
//!   reduces to "same name, same arguments", applied to the merged sub-selections too.
//!
//! The walks here run after `cost` has bounded fragment expansion and nesting.
//!
//! Upstream, in async-graphql 7.2.1 (no issue tracks these as of this writing): the
//! `__typename` skip is in `validation/visitor.rs` (`visit_selection`); the input-object
//! fallback in `validation/utils.rs` (`is_valid_input_value`, `_ => None`); the overlap key
//! in `validation/rules/overlapping_fields_can_be_merged.rs` (`(on_type, name)`). Null
//! propagation is async-graphql issue #531, handled in `nulls`.

use async_graphql::{
    Positioned, ServerError,
    parser::types::{
        BaseType, Directive, ExecutableDocument, Field, OperationDefinition, Selection,
        SelectionSet, Type,
    },
};
use async_graphql_value::Value;
use serde_json::{Map, Value as Json};

use super::{
    document,
    shape::{self, Shape},
};
use crate::graphql::{
    error::{ErrorCode, server_error},
    schema::scalars::parse_time,
};

/// Runs the rules over the document and `op`'s variables; every violation is returned.
pub fn check(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    root: &str,
    shape: &Shape,
    variables: &Map<String, Json>,
) -> Vec<ServerError> {
    let mut errors = check_document(doc, op, root, shape);
    errors.extend(check_variables(op, shape, variables));
    errors
}

/// The rules that read only the document: the same answer for every request that sends
/// its text, so the pipeline keeps it in the document's plan.
pub fn check_document(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    root: &str,
    shape: &Shape,
) -> Vec<ServerError> {
    let mut errors = Vec::new();
    fields(
        shape,
        root,
        &op.selection_set.node,
        doc,
        &mut |ty, field| {
            check_field(shape, ty, field, &mut errors);
        },
    );
    check_overlaps(doc, &[&op.selection_set.node], &mut errors);
    check_directives(doc, &mut errors);
    errors
}

/// The variables' values against their declared types: input coercion, which the spec
/// runs before execution. With it complete, async-graphql's own check of variable values
/// (inside its validation) finds nothing more, so that validation can be kept per text.
pub fn check_variables(
    op: &OperationDefinition,
    shape: &Shape,
    variables: &Map<String, Json>,
) -> Vec<ServerError> {
    let mut errors = Vec::new();
    for definition in &op.variable_definitions {
        let def = &definition.node;
        if let Some(value) = variables.get(def.name.node.as_str())
            && let Some(problem) = fits(shape, &def.var_type.node, value, true)
        {
            let mut error = server_error(
                ErrorCode::BadUserInput,
                format!(
                    "Variable \"${}\" got an invalid value: {problem}.",
                    def.name.node
                ),
            );
            error.locations = vec![definition.pos];
            errors.push(error);
        }
    }
    errors
}

/// Every `@skip` and `@include` in the document's selections, with one `if` argument; no
/// other directive is executable here. async-graphql would report an unknown argument of a
/// directive with "Did you mean", whether suggestions are switched off or not.
fn check_directives(doc: &ExecutableDocument, errors: &mut Vec<ServerError>) {
    let mut pending: Vec<&SelectionSet> = document::selection_sets(doc).collect();
    while let Some(set) = pending.pop() {
        for item in &set.items {
            let directives = match &item.node {
                Selection::Field(field) => {
                    pending.push(&field.node.selection_set.node);
                    &field.node.directives
                }
                Selection::InlineFragment(fragment) => {
                    pending.push(&fragment.node.selection_set.node);
                    &fragment.node.directives
                }
                Selection::FragmentSpread(spread) => &spread.node.directives,
            };
            for directive in directives {
                if let Some(message) = condition_directive_problem(&directive.node) {
                    let mut error = server_error(ErrorCode::GraphqlValidationFailed, message);
                    error.locations = vec![directive.pos];
                    errors.push(error);
                }
            }
        }
    }
}

/// Calls `visit` with each field of `set` and the type it is selected on, descending into
/// sub-selections, inline fragments and fragments (each fragment definition once per type).
fn fields<'a>(
    shape: &'a Shape,
    ty: &'a str,
    set: &'a SelectionSet,
    doc: &'a ExecutableDocument,
    visit: &mut impl FnMut(&str, &'a Positioned<Field>),
) {
    // An explicit stack: fragments may be spread many times, so each is visited once.
    let mut pending: Vec<(&'a str, &'a SelectionSet)> = vec![(ty, set)];
    let mut seen_fragments = std::collections::HashSet::new();
    while let Some((ty, set)) = pending.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    visit(ty, field);
                    if let Some(child) = shape.field(ty, &field.node.name.node) {
                        pending.push((shape::named(&child.ty), &field.node.selection_set.node));
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(ty, |c| c.node.on.node.as_str());
                    pending.push((on, &fragment.node.selection_set.node));
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(fragment) = doc.fragments.get(name)
                        && seen_fragments.insert(name.as_str())
                    {
                        pending.push((
                            fragment.node.type_condition.node.on.node.as_str(),
                            &fragment.node.selection_set.node,
                        ));
                    }
                }
            }
        }
    }
}

fn check_field(shape: &Shape, ty: &str, field: &Positioned<Field>, errors: &mut Vec<ServerError>) {
    let name = field.node.name.node.as_str();
    if name == "__typename" {
        typename_rules(field, errors);
        return;
    }
    let Some(definition) = shape.field(ty, name) else {
        return;
    };
    for (arg, value) in &field.node.arguments {
        if let Some(arg_type) = definition.args.get(arg.node.as_str())
            && let Some(problem) = fits(shape, arg_type, &value.node, false)
        {
            let mut error = server_error(
                ErrorCode::GraphqlValidationFailed,
                format!(
                    "Invalid value for argument \"{}\" of field \"{name}\": {problem}.",
                    arg.node
                ),
            );
            error.locations = vec![value.pos];
            errors.push(error);
        }
    }
}

/// Fields that share a response key in the (merged) selection sets `sets` must be the same
/// field with the same arguments; their sub-selections are merged and checked in turn.
fn check_overlaps(doc: &ExecutableDocument, sets: &[&SelectionSet], errors: &mut Vec<ServerError>) {
    let mut by_key = document::Grouped::new();
    let mut visited = std::collections::HashSet::new();
    for set in sets {
        document::collect_fields(doc, set, &|_| true, &mut by_key, &mut visited);
    }
    for (key, fields) in by_key {
        let first = fields[0];
        let conflict = fields[1..].iter().find_map(|other| {
            if other.node.name.node != first.node.name.node {
                Some(format!(
                    "Fields \"{key}\" conflict because \"{}\" and \"{}\" are different fields; use different aliases.",
                    first.node.name.node, other.node.name.node
                ))
            } else if !same_arguments(&first.node, &other.node) {
                Some(format!(
                    "Fields \"{key}\" conflict because they have differing arguments; use different aliases."
                ))
            } else {
                None
            }
            .map(|message| (message, other.pos))
        });
        if let Some((message, pos)) = conflict {
            let mut error = server_error(ErrorCode::GraphqlValidationFailed, message);
            error.locations = vec![first.pos, pos];
            errors.push(error);
            continue;
        }
        let children: Vec<&SelectionSet> = fields
            .iter()
            .map(|field| &field.node.selection_set.node)
            .filter(|set| !set.items.is_empty())
            .collect();
        if !children.is_empty() {
            check_overlaps(doc, &children, errors);
        }
    }
}

/// The same arguments, in any order.
fn same_arguments(a: &Field, b: &Field) -> bool {
    a.arguments.len() == b.arguments.len()
        && a.arguments.iter().all(|(name, value)| {
            b.get_argument(&name.node)
                .is_some_and(|other| other.node == value.node)
        })
}

/// `__typename` takes no arguments and no selection.
fn typename_rules(field: &Positioned<Field>, errors: &mut Vec<ServerError>) {
    let mut refuse = |pos, message: String| {
        let mut error = server_error(ErrorCode::GraphqlValidationFailed, message);
        error.locations = vec![pos];
        errors.push(error);
    };
    for (arg, _) in &field.node.arguments {
        refuse(
            arg.pos,
            format!(
                "Unknown argument \"{}\" on field \"__typename\"; it takes none.",
                arg.node
            ),
        );
    }
    if !field.node.selection_set.node.items.is_empty() {
        refuse(
            field.node.selection_set.pos,
            "Field \"__typename\" of type \"String!\" must not have a selection.".to_owned(),
        );
    }
    // Its directives are checked with every other selection's, in `check_directives`.
}

fn condition_directive_problem(directive: &Directive) -> Option<String> {
    let name = directive.name.node.as_str();
    if !matches!(name, "skip" | "include") {
        return Some(format!("Unknown directive \"@{name}\"."));
    }
    match directive.arguments.as_slice() {
        [(arg, value)] if arg.node == "if" => match value.node {
            Value::Boolean(_) | Value::Variable(_) => None,
            _ => Some(format!(
                "Invalid value for argument \"if\" of \"@{name}\": expected a Boolean."
            )),
        },
        _ => Some(format!(
            "Directive \"@{name}\" takes exactly one argument, \"if\"."
        )),
    }
}

/// A value as input coercion sees it, whether a literal of the document or a variable's
/// JSON, so both are checked by the one [`fits`].
enum Kind<'a, V> {
    /// A variable inside a literal: checked where its value is given.
    Variable,
    Null,
    List(&'a [V]),
    Object(Vec<(&'a str, &'a V)>),
    Number(&'a serde_json::Number),
    String(&'a str),
    Boolean,
    Enum(&'a str),
}

trait Input: Sized {
    fn kind(&self) -> Kind<'_, Self>;
}

impl Input for Value {
    fn kind(&self) -> Kind<'_, Self> {
        match self {
            Value::Variable(_) => Kind::Variable,
            Value::Null => Kind::Null,
            Value::List(items) => Kind::List(items),
            Value::Object(fields) => {
                Kind::Object(fields.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
            Value::Number(n) => Kind::Number(n),
            Value::String(text) => Kind::String(text),
            Value::Boolean(_) => Kind::Boolean,
            Value::Enum(name) => Kind::Enum(name.as_str()),
            // Upload values never appear in a document taskql accepts.
            Value::Binary(_) => Kind::Variable,
        }
    }
}

impl Input for Json {
    fn kind(&self) -> Kind<'_, Self> {
        match self {
            Json::Null => Kind::Null,
            Json::Array(items) => Kind::List(items),
            Json::Object(fields) => {
                Kind::Object(fields.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
            Json::Number(n) => Kind::Number(n),
            Json::String(text) => Kind::String(text),
            Json::Bool(_) => Kind::Boolean,
        }
    }
}

/// Where `value` does not fit `ty`, as the spec's input coercion decides it. async-graphql
/// checks top-level arguments itself, but inside input objects it lets wrong shapes and
/// out-of-range numbers through to execution. `json` says the value is a variable's: JSON
/// has no enum literal, so there a string names an enum value (in a document only an enum
/// token does), and its input objects are checked for unknown and missing fields, which
/// async-graphql checks for a document's literals only.
fn fits<V: Input>(shape: &Shape, ty: &Type, value: &V, json: bool) -> Option<String> {
    let kind = value.kind();
    match (&kind, &ty.base) {
        (Kind::Variable, _) => None,
        (Kind::Null, _) => (!ty.nullable).then(|| format!("expected a non-null \"{ty}\"")),
        (Kind::List(items), BaseType::List(inner)) => {
            items.iter().find_map(|item| fits(shape, inner, item, json))
        }
        // A single value where a list is expected is coerced to a list of one.
        (_, BaseType::List(inner)) => fits(shape, inner, value, json),
        (_, BaseType::Named(name)) => {
            if let Some(fields) = shape.input(name) {
                let Kind::Object(object) = kind else {
                    return Some(format!("expected an input object of type \"{name}\""));
                };
                // A document's literals are checked for unknown and missing fields by
                // async-graphql; a variable's JSON only here.
                if json {
                    if let Some((key, _)) =
                        object.iter().find(|(key, _)| !fields.contains_key(*key))
                    {
                        return Some(format!("\"{name}\" has no field \"{key}\""));
                    }
                    if let Some(missing) = shape
                        .required_inputs(name)
                        .iter()
                        .find(|field| !object.iter().any(|(key, _)| key == field))
                    {
                        return Some(format!("the field \"{missing}\" of \"{name}\" is required"));
                    }
                }
                return object
                    .into_iter()
                    .find_map(|(key, item)| fits(shape, fields.get(key)?, item, json));
            }
            let enum_value = match kind {
                Kind::Enum(value) => Some(value),
                Kind::String(value) if json => Some(value),
                _ => None,
            };
            let fits = match (name.as_str(), &kind) {
                ("Int", Kind::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                ("Float", Kind::Number(_)) | ("String", Kind::String(_)) => true,
                ("Boolean", Kind::Boolean) | ("ID", Kind::String(_)) => true,
                ("ID", Kind::Number(n)) => n.is_i64() || n.is_u64(),
                ("DateTime", Kind::String(text)) => parse_time(text).is_ok(),
                (other, _) => match shape.enum_values(other) {
                    Some(values) => enum_value.is_some_and(|v| values.iter().any(|x| x == v)),
                    None => !is_builtin(other),
                },
            };
            (!fits).then(|| format!("expected a value of type \"{name}\""))
        }
    }
}

fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "Int" | "Float" | "String" | "Boolean" | "ID" | "DateTime"
    )
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::{parse_query, types::DocumentOperations};
    use serde_json::json;

    use super::*;

    /// The messages of every rule `text` breaks with `variables`.
    fn problems(text: &str, variables: Json) -> Vec<String> {
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        let doc = parse_query(text).expect("parses");
        let op = match &doc.operations {
            DocumentOperations::Single(op) => op.node.clone(),
            DocumentOperations::Multiple(ops) => ops.values().next().expect("one").node.clone(),
        };
        let root = crate::graphql::pipeline::nulls::root_of(&op);
        let variables = serde_json::from_value(variables).expect("an object");
        check(&doc, &op, root, &shape, &variables)
            .into_iter()
            .map(|error| error.message)
            .collect()
    }

    #[test]
    fn valid_documents_break_no_rule() {
        for text in [
            "{ __typename tasks(first: 2) { __typename @skip(if: false) nodes { id } } }",
            "query($s: Boolean!) { me { __typename @include(if: $s) } }",
            "{ task(id: \"a\") { id } ... on Query { task(id: \"a\") { title } } }",
            "{ tasks(orderBy: [{ field: TITLE }]) { version } }",
            "{ tasks(orderBy: { field: TITLE }) { version } }",
        ] {
            assert_eq!(
                problems(text, json!({ "s": true })),
                Vec::<String>::new(),
                "{text}"
            );
        }
    }

    #[test]
    fn typename_takes_no_arguments_no_selection_and_only_skip_or_include() {
        let cases = [
            ("{ __typename(a: 1) }", "Unknown argument \"a\""),
            ("{ __typename { x } }", "must not have a selection"),
            (
                "{ __typename @deprecated }",
                "Unknown directive \"@deprecated\"",
            ),
            ("{ __typename @skip(if: 1) }", "expected a Boolean"),
            ("{ __typename @skip(unless: true) }", "exactly one argument"),
            (
                "{ tasks { nodes { ...F } } } fragment F on Task { __typename(x: 1) }",
                "Unknown argument \"x\"",
            ),
        ];
        for (text, expected) in cases {
            let found = problems(text, json!({}));
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert!(found[0].contains(expected), "{text}: {found:?}");
        }
    }

    #[test]
    fn one_response_key_must_ask_one_question() {
        for text in [
            "{ task(id: \"a\") { id } ... on Query { task(id: \"b\") { id } } }",
            "{ x: task(id: \"a\") { id } x: tasks { version } }",
            "{ ...A ...B } fragment A on Query { t: task(id: \"a\") { id } } fragment B on Query { t: task(id: \"b\") { id } }",
            "{ task(id: \"a\") { t: title } task(id: \"a\") { t: description } }",
        ] {
            assert_eq!(problems(text, json!({})).len(), 1, "{text}");
        }
    }

    #[test]
    fn input_objects_and_variables_must_have_the_declared_shape() {
        let cases = [
            (
                "{ tasks(orderBy: [[{ field: TITLE }]]) { version } }",
                json!({}),
            ),
            (
                "{ tasks(filter: { priority: { eq: 4294967296 } }) { version } }",
                json!({}),
            ),
            (
                "{ tasks(filter: { title: \"milk\" }) { version } }",
                json!({}),
            ),
            (
                "query($o: [TaskOrder!]) { tasks(orderBy: $o) { version } }",
                json!({ "o": [[{ "field": "TITLE" }]] }),
            ),
            (
                "query($o: [TaskOrder!]) { tasks(orderBy: $o) { version } }",
                json!({ "o": [{ "field": "NOT_A_FIELD" }] }),
            ),
            (
                "query($f: TaskFilter) { tasks(filter: $f) { version } }",
                json!({ "f": { "dueAt": { "lt": "tomorrow" } } }),
            ),
        ];
        for (text, variables) in cases {
            let found = problems(text, variables.clone());
            assert_eq!(found.len(), 1, "{text} {variables}: {found:?}");
        }
        // Variables name enum values as strings; in a document only the bare token does.
        assert!(
            problems(
                "query($o: [TaskOrder!]) { tasks(orderBy: $o) { version } }",
                json!({ "o": [{ "field": "TITLE", "direction": "DESC" }] }),
            )
            .is_empty()
        );
    }
}
