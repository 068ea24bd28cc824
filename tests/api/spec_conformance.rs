//! Responses exactly as the GraphQL spec defines them where async-graphql departs from it:
//! null propagation, skipped fields, validation of `__typename` and of overlapping fields, and
//! no suggestions that leak the schema when introspection is off.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, TestConfig, api::Client as _};

/// A field error under a non-null field nulls the nearest nullable ancestor, or `data`.
#[tokio::test]
async fn errors_in_non_null_fields_propagate_to_the_nearest_nullable_parent() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");

    // `tasks` is `TaskConnection!` on the root: data itself becomes null.
    let reply = app
        .gql(
            Some(&token),
            "{ a: apiVersion tasks(first: 1000) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["data"], json!(null), "{:#}", reply.body);
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    assert_eq!(reply.body["errors"][0]["path"], json!(["tasks"]));

    // `task` is nullable: the error stops there, and the rest of data stands.
    let id = app.create_task(&token, "t").await;
    let reply = app
        .gql(
            Some(&token),
            "query($id: ID!) { apiVersion task(id: $id) { id owner { tasks(first: 0) { totalCount } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["data"]["task"], json!(null), "{:#}", reply.body);
    assert!(reply.body["data"]["apiVersion"].is_string());
    assert_eq!(
        reply.body["errors"][0]["path"],
        json!(["task", "owner", "tasks"])
    );
}

/// Every root field skipped: `{"data": {}}`; every field of an object skipped: `{}`.
#[tokio::test]
async fn skipped_fields_leave_empty_objects_not_nulls() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let reply = app
        .gql(Some(&token), "{ me @skip(if: true) { id } }", json!({}))
        .await;
    assert_eq!(reply.body, json!({ "data": {} }));
    let reply = app
        .gql(
            Some(&token),
            "query($no: Boolean!) { me { id @include(if: $no) } apiVersion @skip(if: $no) }",
            json!({ "no": false }),
        )
        .await;
    assert_eq!(
        reply.body,
        json!({ "data": { "me": {}, "apiVersion": "0.1.0" } })
    );
    // The server's own bookkeeping never shows.
    let reply = app
        .gql(
            Some(&token),
            "{ ... @skip(if: false) { me { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.body, json!({ "data": { "me": { "id": "alice" } } }));
}

#[tokio::test]
async fn typename_takes_no_arguments_and_only_known_directives() {
    let app = TestApp::spawn().await;
    for query in [
        "{ __typename(x: 1) }",
        "{ __typename @foo }",
        "{ __typename @skip(unless: true) }",
        "{ __typename { name } }",
        "{ me { __typename @deprecated } }",
    ] {
        let reply = app.gql(None, query, json!({})).await;
        reply.assert_request_error("GRAPHQL_VALIDATION_FAILED");
    }
    let reply = app
        .gql(None, "{ __typename @include(if: true) }", json!({}))
        .await;
    assert_eq!(reply.ok(), &json!({ "__typename": "Query" }));
}

/// One response key, two questions: refused, also when one of them comes through a
/// fragment (async-graphql's own rule missed that case, and answered only one of them).
#[tokio::test]
async fn fields_that_share_a_response_key_must_ask_the_same() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    for query in [
        "{ task(id: \"00000000-0000-0000-0000-000000000001\") { id } ... on Query { task(id: \"00000000-0000-0000-0000-000000000002\") { id } } }",
        "{ t: me { id } ... { t: apiVersion } }",
        "{ me { id } ...F } fragment F on Query { me { id: email } }",
        "{ tasks(first: 1) { totalCount } ... { tasks(first: 2) { totalCount } } }",
    ] {
        let reply = app.gql(Some(&token), query, json!({})).await;
        reply.assert_request_error("GRAPHQL_VALIDATION_FAILED");
        assert!(
            reply.message().contains("conflict"),
            "{query}: {}",
            reply.message()
        );
    }
    // The same field asked twice, however it is written, is one field.
    let reply = app
        .gql(
            Some(&token),
            "{ me { id } ... on Query { me { id email } } ...F } fragment F on Query { me { email } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply.ok(),
        &json!({ "me": { "id": "alice", "email": "alice@example.com" } })
    );
}

/// With introspection off, no message hints at the schema, for anyone.
#[tokio::test]
async fn no_suggestions_leak_the_schema_when_introspection_is_off() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_INTROSPECTION", "false")).await;
    let token = app.token_for("alice");
    // (The spec's own "argument if is required" names the built-in directive's argument,
    // which every GraphQL server has; nothing of taskql's schema.)
    for (query, near) in [
        ("{ tasks { nodes { titl } } }", "title"),
        ("{ tasks(firts: 1) { totalCount } }", "first"),
        ("{ me @skip(iff: true) { id } }", ""),
        ("{ taks { totalCount } }", "tasks"),
    ] {
        for auth in [None, Some(token.as_str())] {
            let reply = app.gql(auth, query, json!({})).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
            let text = reply.body.to_string();
            assert!(!text.contains("Did you mean"), "{query}: {text}");
            assert!(
                near.is_empty() || !text.contains(&format!("\\\"{near}\\\"")),
                "{query}: {text}"
            );
        }
    }
    // With introspection on, the hints stay: they help developers.
    let open = TestApp::spawn().await;
    let reply = open
        .gql(Some(&token), "{ tasks { nodes { titl } } }", json!({}))
        .await;
    assert!(
        reply.message().contains("Did you mean"),
        "{}",
        reply.message()
    );
}
