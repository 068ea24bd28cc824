//! Spec-exact `data`: the null rules of GraphQL, applied to what async-graphql produced.
//!
//! async-graphql 7.2 departs from the spec's "Handling Field Errors" in two ways (upstream:
//! <https://github.com/async-graphql/async-graphql/issues/531>, and
//! `resolver_utils/container.rs`, `do_resolve_container`):
//!
//! - a field whose resolver fails is left *out* of its object instead of being null, and the
//!   null does not propagate: `tasks` (a `TaskConnection!`) could be missing from `data`,
//!   where the spec makes `data` itself null;
//! - an object left with no fields becomes `null`, so `{ me @skip(if: true) { id } }`
//!   answered `{"data": null}` instead of `{"data": {}}`.
//!
//! [`mark_skippable`] gives every selection set that directives could empty one hidden
//! `__typename` (under an alias no client can see), so its object keeps a key and is never
//! turned into `null`. After execution, [`complete`] walks the response against the document
//! and the schema: a missing field is null, a null where the type is non-null makes the
//! parent null, up to the nearest nullable field or `data`; the hidden fields are removed.
//! Responses without errors and without skippable sets are left untouched (no cost).

use std::collections::HashSet;

use async_graphql::indexmap::IndexMap;
use async_graphql::{
    Name, PathSegment, Positioned,
    parser::types::{
        BaseType, Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition,
        Selection, SelectionSet, Type,
    },
};
use async_graphql_value::{ConstValue, Value};
use serde_json::{Map, Value as Json};

use super::{
    document,
    shape::{self, Shape},
};

/// The response key of the hidden `__typename`: `__` names are reserved by the spec, so no
/// client document uses it.
const PRESENT: &str = "__taskql_present";

/// Adds the hidden `__typename` to every selection set of the document that `@skip` or
/// `@include` could leave empty. Returns whether it added any (then [`complete`] must run to
/// take them out again).
pub fn mark_skippable(doc: &mut ExecutableDocument) -> bool {
    let mut marked = false;
    let mut pending: Vec<&mut SelectionSet> = Vec::new();
    match &mut doc.operations {
        DocumentOperations::Single(op) => pending.push(&mut op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => {
            pending.extend(ops.values_mut().map(|op| &mut op.node.selection_set.node));
        }
    }
    for fragment in doc.fragments.values_mut() {
        pending.push(&mut fragment.node.selection_set.node);
    }
    while let Some(set) = pending.pop() {
        // A set with a plain field (no directives) can never be empty.
        let can_empty = !set.items.iter().any(|item| {
            matches!(&item.node, Selection::Field(field) if field.node.directives.is_empty())
        });
        if can_empty && !set.items.is_empty() {
            let pos = set.items[0].pos;
            let field = Field {
                alias: Some(Positioned::new(Name::new(PRESENT), pos)),
                name: Positioned::new(Name::new("__typename"), pos),
                arguments: Vec::new(),
                directives: Vec::new(),
                selection_set: Positioned::new(SelectionSet::default(), pos),
            };
            set.items.push(Positioned::new(
                Selection::Field(Positioned::new(field, pos)),
                pos,
            ));
            marked = true;
        }
        for item in &mut set.items {
            match &mut item.node {
                Selection::Field(field) => pending.push(&mut field.node.selection_set.node),
                Selection::InlineFragment(fragment) => {
                    pending.push(&mut fragment.node.selection_set.node);
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    marked
}

/// Applies the null rules to `data`, the result of `op` on `root`. `error_paths` are the
/// paths of the field errors of the response.
pub fn complete(
    data: &mut ConstValue,
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    root: &str,
    shape: &Shape,
    variables: &Map<String, Json>,
    error_paths: Vec<Vec<PathSegment>>,
) {
    let walk = Completion {
        doc,
        op,
        shape,
        variables,
        error_paths,
    };
    let mut path = Vec::new();
    if !walk.object(root, &[&op.selection_set.node], data, &mut path) {
        *data = ConstValue::Null;
    }
}

struct Completion<'a> {
    doc: &'a ExecutableDocument,
    op: &'a OperationDefinition,
    shape: &'a Shape,
    variables: &'a Map<String, Json>,
    error_paths: Vec<Vec<PathSegment>>,
}

impl<'a> Completion<'a> {
    /// Completes the object at `path`; false when it must become null (a non-null field of
    /// it is null).
    fn object(
        &self,
        ty: &str,
        sets: &[&'a SelectionSet],
        value: &mut ConstValue,
        path: &mut Vec<PathSegment>,
    ) -> bool {
        if matches!(value, ConstValue::Null) {
            // Null because the resolver returned none, or because async-graphql turned an
            // object whose every field failed into null: the errors below it tell which.
            let existed = self
                .error_paths
                .iter()
                .any(|p| p.len() > path.len() && p.starts_with(path));
            if !existed {
                return true;
            }
            *value = ConstValue::Object(IndexMap::new());
        }
        let ConstValue::Object(map) = value else {
            return true;
        };
        let mut old = std::mem::take(map);
        let mut grouped = document::Grouped::new();
        let mut visited = HashSet::new();
        let included = |directives: &[Positioned<Directive>]| self.included(directives);
        for set in sets {
            document::collect_fields(self.doc, set, &included, &mut grouped, &mut visited);
        }
        for (key, fields) in grouped {
            if key == PRESENT {
                continue;
            }
            let name = fields[0].node.name.node.as_str();
            let mut item = old.swap_remove(key).unwrap_or(ConstValue::Null);
            if let Some(definition) = self.shape.field(ty, name) {
                let children: Vec<&'a SelectionSet> =
                    fields.iter().map(|f| &f.node.selection_set.node).collect();
                path.push(PathSegment::Field(key.to_owned()));
                self.value(&definition.ty, &children, &mut item, path);
                path.pop();
                if matches!(item, ConstValue::Null) && !definition.ty.nullable {
                    return false;
                }
            } else if name == "__typename" && matches!(item, ConstValue::Null) {
                item = ConstValue::String(ty.to_owned());
            }
            map.insert(Name::new(key), item);
        }
        true
    }

    fn value(
        &self,
        ty: &Type,
        sets: &[&'a SelectionSet],
        value: &mut ConstValue,
        path: &mut Vec<PathSegment>,
    ) {
        match &ty.base {
            BaseType::List(inner) => {
                let ConstValue::List(items) = value else {
                    return;
                };
                let mut broken = false;
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(PathSegment::Index(i));
                    self.value(inner, sets, item, path);
                    path.pop();
                    broken |= matches!(item, ConstValue::Null) && !inner.nullable;
                }
                if broken {
                    *value = ConstValue::Null;
                }
            }
            BaseType::Named(name) if self.shape.is_object(name) => {
                if !self.object(name, sets, value, path) {
                    *value = ConstValue::Null;
                }
            }
            BaseType::Named(_) => {}
        }
    }

    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|directive| {
            let condition = directive
                .node
                .get_argument("if")
                .map(|value| self.boolean(&value.node));
            !matches!(
                (directive.node.name.node.as_str(), condition),
                ("skip", Some(true)) | ("include", Some(false))
            )
        })
    }

    fn boolean(&self, value: &Value) -> bool {
        match value {
            Value::Boolean(flag) => *flag,
            Value::Variable(name) => match self.variables.get(name.as_str()) {
                Some(value) => value.as_bool().unwrap_or(false),
                None => self
                    .op
                    .variable_definitions
                    .iter()
                    .find(|def| def.node.name.node == *name)
                    .and_then(|def| def.node.default_value.as_ref())
                    .is_some_and(|default| matches!(default.node, ConstValue::Boolean(true))),
            },
            _ => false,
        }
    }
}

/// The root type of `op`.
pub fn root_of(op: &OperationDefinition) -> &'static str {
    match op.ty {
        async_graphql::parser::types::OperationType::Mutation => shape::MUTATION,
        async_graphql::parser::types::OperationType::Subscription => shape::SUBSCRIPTION,
        async_graphql::parser::types::OperationType::Query => shape::QUERY,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use serde_json::json;

    use super::*;

    /// `data` as `text` with `variables` should answer it, after async-graphql produced
    /// `produced` with field errors at `errors`.
    fn completed(text: &str, variables: Json, produced: Json, errors: &[&[&str]]) -> Json {
        let shape = Shape::from_sdl(&crate::graphql::sdl()).expect("the shape");
        let mut doc = parse_query(text).expect("parses");
        mark_skippable(&mut doc);
        let op = match &doc.operations {
            DocumentOperations::Single(op) => op.node.clone(),
            DocumentOperations::Multiple(_) => unreachable!("one anonymous operation"),
        };
        let paths = errors
            .iter()
            .map(|path| {
                path.iter()
                    .map(|segment| match segment.parse::<usize>() {
                        Ok(index) => PathSegment::Index(index),
                        Err(_) => PathSegment::Field((*segment).to_owned()),
                    })
                    .collect()
            })
            .collect();
        let mut data = ConstValue::from_json(produced).expect("json");
        let variables = serde_json::from_value(variables).expect("an object");
        complete(
            &mut data,
            &doc,
            &op,
            root_of(&op),
            &shape,
            &variables,
            paths,
        );
        data.into_json().expect("json")
    }

    #[test]
    fn a_failed_non_null_field_nulls_the_nearest_nullable_parent() {
        // `title` is non-null: its task is null, and `task` is nullable, so it stops there.
        assert_eq!(
            completed(
                "{ task(id: \"1\") { id title } apiVersion }",
                json!({}),
                json!({ "task": { "id": "1" }, "apiVersion": "1" }),
                &[&["task", "title"]],
            ),
            json!({ "task": null, "apiVersion": "1" })
        );
    }

    #[test]
    fn with_no_nullable_parent_data_itself_is_null() {
        // Task! in [Task!]! in TaskConnection! under a non-null root field.
        assert_eq!(
            completed(
                "{ tasks(first: 1) { nodes { id title } } }",
                json!({}),
                json!({ "tasks": { "nodes": [{ "id": "1" }] } }),
                &[&["tasks", "nodes", "0", "title"]],
            ),
            Json::Null
        );
        // async-graphql turns an object whose only field failed into null itself.
        assert_eq!(
            completed(
                "{ me { id } }",
                json!({}),
                json!({ "me": null }),
                &[&["me", "id"]]
            ),
            Json::Null
        );
    }

    #[test]
    fn a_null_without_an_error_below_it_is_the_resolvers_answer() {
        assert_eq!(
            completed(
                "{ task(id: \"1\") { id } }",
                json!({}),
                json!({ "task": null }),
                &[]
            ),
            json!({ "task": null })
        );
    }

    #[test]
    fn a_selection_skipped_empty_is_an_empty_object_and_the_marker_is_gone() {
        let mut plain = parse_query("{ apiVersion }").expect("parses");
        assert!(!mark_skippable(&mut plain), "nothing can empty it");

        assert_eq!(
            completed(
                "{ me @skip(if: true) { id } }",
                json!({}),
                json!({ "__taskql_present": "Query" }),
                &[]
            ),
            json!({})
        );
        assert_eq!(
            completed(
                "query($s: Boolean!) { apiVersion @skip(if: $s) me @include(if: $s) { id } }",
                json!({ "s": true }),
                json!({ "__taskql_present": "Query", "me": { "id": "alice" } }),
                &[]
            ),
            json!({ "me": { "id": "alice" } })
        );
    }
}
