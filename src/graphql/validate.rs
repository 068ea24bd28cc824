//! Validation rules async-graphql 7.2 does not apply, run before its own validation so that
//! what they refuse is a request error (nothing runs), as the GraphQL spec requires.
//!
//! - `__typename` is skipped by async-graphql's validator entirely, so arguments, unknown
//!   directives and sub-selections on it were accepted.
//! - An input object argument given a non-object value (`orderBy: [[{field: TITLE}]]`)
//!   passes async-graphql's `is_valid_input_value` (its fallback arm accepts anything) and
//!   only fails while resolving, where it surfaced as an internal error. Variables get the
//!   same check against their declared types.

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
    error::{ErrorCode, server_error},
    shape::{self, Shape},
};

/// Runs the rules over the document and `op`'s variables; every violation is returned.
pub fn check(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    root: &str,
    shape: &Shape,
    variables: &Map<String, Json>,
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
    for definition in &op.variable_definitions {
        let def = &definition.node;
        if let Some(value) = variables.get(def.name.node.as_str())
            && let Some(problem) = json_fits(shape, &def.var_type.node, value)
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

/// Calls `visit` with each field of `set` and the type it is selected on, descending into
/// sub-selections, inline fragments and fragments (each fragment definition once per type).
fn fields<'a>(
    shape: &Shape,
    ty: &str,
    set: &'a SelectionSet,
    doc: &'a ExecutableDocument,
    visit: &mut impl FnMut(&str, &'a Positioned<Field>),
) {
    // An explicit stack: fragments may be spread many times, so each is visited once.
    let mut pending: Vec<(String, &'a SelectionSet)> = vec![(ty.to_owned(), set)];
    let mut seen_fragments = std::collections::HashSet::new();
    while let Some((ty, set)) = pending.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    visit(&ty, field);
                    if let Some(child) = shape.field(&ty, &field.node.name.node) {
                        pending.push((
                            shape::named(&child.ty).to_owned(),
                            &field.node.selection_set.node,
                        ));
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(ty.clone(), |c| c.node.on.node.to_string());
                    pending.push((on, &fragment.node.selection_set.node));
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(fragment) = doc.fragments.get(name)
                        && seen_fragments.insert(name.as_str())
                    {
                        pending.push((
                            fragment.node.type_condition.node.on.node.to_string(),
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
            && let Some(problem) = literal_fits(shape, arg_type, &value.node)
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

/// `__typename` takes no arguments and no selection, and only the executable directives
/// `@skip` and `@include`, each with its one `if` argument.
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
    for directive in &field.node.directives {
        if let Some(message) = condition_directive_problem(&directive.node) {
            refuse(directive.pos, message);
        }
    }
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

/// Where a literal does not fit `ty`: only the input-object cases async-graphql lets pass
/// (scalars, enums and nullability it checks itself).
fn literal_fits(shape: &Shape, ty: &Type, value: &Value) -> Option<String> {
    match (value, &ty.base) {
        (Value::Null | Value::Variable(_), _) => None,
        (Value::List(items), BaseType::List(inner)) => items
            .iter()
            .find_map(|item| literal_fits(shape, inner, item)),
        // A single value where a list is expected is coerced to a list of one.
        (_, BaseType::List(inner)) => literal_fits(shape, inner, value),
        (_, BaseType::Named(name)) => {
            let fields = shape.input(name)?;
            let Value::Object(object) = value else {
                return Some(format!("expected an input object of type \"{name}\""));
            };
            object
                .iter()
                .find_map(|(key, item)| literal_fits(shape, fields.get(key.as_str())?, item))
        }
    }
}

/// The same for a variable's JSON value.
fn json_fits(shape: &Shape, ty: &Type, value: &Json) -> Option<String> {
    match (value, &ty.base) {
        (Json::Null, _) => None,
        (Json::Array(items), BaseType::List(inner)) => {
            items.iter().find_map(|item| json_fits(shape, inner, item))
        }
        (_, BaseType::List(inner)) => json_fits(shape, inner, value),
        (_, BaseType::Named(name)) => {
            let fields = shape.input(name)?;
            let Json::Object(object) = value else {
                return Some(format!("expected an input object of type \"{name}\""));
            };
            object
                .iter()
                .find_map(|(key, item)| json_fits(shape, fields.get(key.as_str())?, item))
        }
    }
}
