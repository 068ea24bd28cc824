//! What an input may hold, and how a bad one is named: NUL characters, date-times, input
//! objects given a list or a field twice, duplicate keys in a JSON body, and a variable
//! omitted inside an input object, which leaves its field alone.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, api::Client as _};

/// PostgreSQL's text cannot hold U+0000. Every string input refuses it as bad input naming
/// the field, and nothing is written.
#[tokio::test]
async fn nul_characters_are_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    app.try_create_task(&token, json!({ "title": "a\u{0}b" }))
        .await
        .assert_bad_input("input.title");
    app.try_create_task(&token, json!({ "title": "ok", "description": "\u{0}" }))
        .await
        .assert_bad_input("input.description");
    app.try_create_task(&token, json!({ "title": "ok", "idempotencyKey": "k\u{0}" }))
        .await
        .assert_bad_input("input.idempotencyKey");
    assert_eq!(app.rows("tasks").await, 0);

    let list = |filter: Value| {
        app.gql(
            Some(&token),
            "query($f: TaskFilter) { tasks(filter: $f) { totalCount } }",
            json!({ "f": filter }),
        )
    };
    list(json!({ "search": "milk\u{0}" }))
        .await
        .assert_bad_input("filter.search");
    list(json!({ "title": { "contains": "\u{0}" } }))
        .await
        .assert_bad_input("filter.title.contains");
    list(json!({ "or": [{ "title": { "eq": "\u{0}" } }] }))
        .await
        .assert_bad_input("filter.or.0.title.eq");

    let update_me = |input: Value| {
        app.gql(
            Some(&token),
            "mutation($input: UpdateMeInput!) { updateMe(input: $input) { name } }",
            json!({ "input": input }),
        )
    };
    update_me(json!({ "name": "\u{0}" }))
        .await
        .assert_bad_input("input.name");
    update_me(json!({ "image": "https://x.example/\u{0}" }))
        .await
        .assert_bad_input("input.image");
    // As a literal in the document, too.
    let reply = app
        .gql(
            Some(&token),
            "mutation { createTask(input: {title: \"a\\u0000b\"}) { id } }",
            json!({}),
        )
        .await;
    reply.assert_bad_input("input.title");
    assert_eq!(app.rows("tasks").await, 0);
}

/// A `DateTime` that does not coerce is a request error (nothing runs), in a variable, its
/// default, or a literal; and only times the API can write back are accepted.
#[tokio::test]
async fn invalid_date_times_are_request_errors() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let filter = "query($d: DateTime) { tasks(filter: {dueAt: {gt: $d}}) { totalCount } }";
    let reply = app
        .gql(Some(&token), filter, json!({ "d": "yesterday" }))
        .await;
    reply.assert_request_error("BAD_USER_INPUT");
    let reply = app
        .gql(
            Some(&token),
            "query($d: DateTime = \"yesterday\") { tasks(filter: {dueAt: {gt: $d}}) { totalCount } }",
            json!({}),
        )
        .await;
    reply.assert_request_error("GRAPHQL_VALIDATION_FAILED");

    // Year 10000 in UTC: could be stored, but never written back as RFC 3339.
    let create =
        "mutation($d: DateTime) { createTask(input: {title: \"t\", dueAt: $d}) { dueAt } }";
    let reply = app
        .gql(
            Some(&token),
            create,
            json!({ "d": "9999-12-31T23:59:59-23:59" }),
        )
        .await;
    reply.assert_request_error("BAD_USER_INPUT");
    let reply = app
        .gql(
            Some(&token),
            "mutation { createTask(input: {title: \"t\", dueAt: \"9999-12-31T23:59:59-23:59\"}) { id } }",
            json!({}),
        )
        .await;
    reply.assert_request_error("GRAPHQL_VALIDATION_FAILED");
    let reply = app
        .gql(
            Some(&token),
            create,
            json!({ "d": "9999-12-31T23:59:59+01:00" }),
        )
        .await;
    assert_eq!(
        reply.ok()["createTask"]["dueAt"],
        "9999-12-31T22:59:59.000000Z"
    );
}

/// An input object given where a list of them is expected, one level too deep: a request
/// error, not an internal one.
#[tokio::test]
async fn an_input_object_given_a_list_is_a_request_error() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let reply = app
        .gql(
            Some(&token),
            "{ tasks(orderBy: [[{field: TITLE}]]) { totalCount } }",
            json!({}),
        )
        .await;
    reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body.get("data").is_none());
    let reply = app
        .gql(
            Some(&token),
            "query($o: [TaskOrder!]) { tasks(orderBy: $o) { totalCount } }",
            json!({ "o": [[{ "field": "TITLE" }]] }),
        )
        .await;
    reply.assert_code(StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
}

/// `{direction: DESRITY, direction: DESC}`: the parser keeps one of the two, so the typo
/// would pass unseen; the spec makes a repeated input field a validation error.
#[tokio::test]
async fn an_input_object_may_name_a_field_once() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let reply = app
        .gql(
            Some(&token),
            "{ tasks(orderBy: [{field: PRIORITY, direction: DESRITY, direction: DESC}]) { totalCount } }",
            json!({}),
        )
        .await;
    reply.assert_request_error("GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.message().contains("\"direction\""),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn duplicate_keys_in_a_json_body_are_refused() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"query": "{ apiVersion }", "query": "mutation { deleteMe }"}"#,
        r#"{"query": "query($a: Int) { apiVersion }", "variables": {"a": 1, "a": 2}}"#,
        r#"[{"query": "{ apiVersion }", "operationName": "A", "operationName": "B"}]"#,
    ] {
        let reply = TestApp::reply(
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .header("accept", "application/graphql-response+json")
                .body(body),
        )
        .await;
        reply.assert_request_error("BAD_REQUEST");
        assert!(
            reply.message().contains("more than once"),
            "{}",
            reply.message()
        );
    }
    let reply =
        TestApp::reply(app.client.get(
            app.url("/graphql?query=%7BapiVersion%7D&variables=%7B%22a%22%3A1%2C%22a%22%3A2%7D"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// A variable that is declared but not sent leaves the input field it feeds absent (GraphQL
/// spec, input object coercion), so it keeps its value; `null` sent explicitly clears it.
#[tokio::test]
async fn an_omitted_variable_leaves_its_input_field_alone() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = app
        .create_task_from(
            &alice,
            json!({ "title": "keep", "description": "notes", "dueAt": "2027-01-01T00:00:00Z" }),
        )
        .await;
    let id = task["id"].as_str().expect("id");
    let mutation = "mutation($id: ID!, $title: String, $description: String, $due: DateTime) {
        updateTask(id: $id, input: { title: $title, description: $description, dueAt: $due, priority: 4 }) {
          title description dueAt priority
        }
      }";
    let reply = app.gql(Some(&alice), mutation, json!({ "id": id })).await;
    assert_eq!(
        reply.ok()["updateTask"],
        json!({ "title": "keep", "description": "notes", "dueAt": task["dueAt"], "priority": 4 }),
        "omitted variables changed nothing"
    );
    let reply = app
        .gql(
            Some(&alice),
            mutation,
            json!({ "id": id, "description": null }),
        )
        .await;
    assert_eq!(
        reply.ok()["updateTask"]["description"],
        Value::Null,
        "an explicit null clears"
    );
    assert_eq!(reply.ok()["updateTask"]["title"], "keep");
}
