//! Responses exactly as the GraphQL spec defines them where async-graphql departs from it:
//! null propagation, skipped fields, validation of `__typename` and of custom scalars, and no
//! schema hints with introspection off. Also: strict JSON bodies, and the database going away
//! under requests (a clean 503, never an internal error or a hang).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Reply, TestApp, TestConfig};

#[track_caller]
fn assert_request_error(reply: &Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:#}", reply.body);
    assert_eq!(reply.code(), Some(code), "{:#}", reply.body);
    assert!(reply.body.get("data").is_none(), "{:#}", reply.body);
}

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
    let created = app
        .gql(
            Some(&token),
            "mutation { createTask(input: {title: \"t\"}) { id } }",
            json!({}),
        )
        .await;
    let id = created.ok()["createTask"]["id"].clone();
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
        assert_request_error(&reply, "GRAPHQL_VALIDATION_FAILED");
    }
    let reply = app
        .gql(None, "{ __typename @include(if: true) }", json!({}))
        .await;
    assert_eq!(reply.ok(), &json!({ "__typename": "Query" }));
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
    assert_request_error(&reply, "BAD_USER_INPUT");
    let reply = app
        .gql(
            Some(&token),
            "query($d: DateTime = \"yesterday\") { tasks(filter: {dueAt: {gt: $d}}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_request_error(&reply, "GRAPHQL_VALIDATION_FAILED");

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
    assert_request_error(&reply, "BAD_USER_INPUT");
    let reply = app
        .gql(
            Some(&token),
            "mutation { createTask(input: {title: \"t\", dueAt: \"9999-12-31T23:59:59-23:59\"}) { id } }",
            json!({}),
        )
        .await;
    assert_request_error(&reply, "GRAPHQL_VALIDATION_FAILED");
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
        assert_request_error(&reply, "BAD_REQUEST");
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

/// `deleteMe` and then `createTask` in one batch: the second operation starts the user
/// afresh, as a later request would, instead of failing on the deleted row.
#[tokio::test]
async fn a_batch_that_deletes_the_user_and_then_writes_starts_afresh() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    app.gql(
        Some(&token),
        "mutation { createTask(input: {title: \"old\"}) { id } }",
        json!({}),
    )
    .await
    .ok();
    let reply = app
        .post_json(
            Some(&token),
            &json!([
                { "query": "mutation { deleteMe }" },
                { "query": "mutation { createTask(input: {title: \"new\"}) { title owner { id } } }" },
                { "query": "{ tasks { totalCount } }" },
            ]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body[0], json!({ "data": { "deleteMe": true } }));
    assert_eq!(
        reply.body[1],
        json!({ "data": { "createTask": { "title": "new", "owner": { "id": "alice" } } } })
    );
    assert_eq!(
        reply.body[2],
        json!({ "data": { "tasks": { "totalCount": 1 } } })
    );
}

/// Every connection busy with a slow statement: other requests get a quick 503 with
/// `Retry-After`, not a hang; and once the statement finishes, service resumes.
#[tokio::test]
async fn an_exhausted_pool_answers_503_quickly() {
    let app = TestApp::spawn_with(TestConfig::new().set("DATABASE_POOL_SIZE", "1")).await;
    let token = app.token_for("alice");
    app.gql(Some(&token), "{ me { id } }", json!({})).await.ok();

    // A lock the test holds makes the server's one connection wait in a write.
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("select 1 from users where id = 'alice' for update")
        .execute(&mut *blocker)
        .await
        .expect("lock the user row");
    let slow = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/graphql");
        let token = token.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(
                    &json!({ "query": "mutation { createTask(input: {title: \"slow\"}) { id } }" }),
                )
                .send()
                .await
                .expect("answer")
                .status()
        }
    });
    // Wait until the server's statement is blocked on the lock (an event PostgreSQL reports).
    let name = app.test_db.name.clone();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = $1 and application_name = 'taskql' and wait_event_type = 'Lock'",
        )
        .bind(&name)
        .fetch_one(&mut *blocker)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let reply = app
        .gql(Some(&token), "{ tasks { totalCount } }", json!({}))
        .await;
    let waited = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:#}",
        reply.body
    );
    assert_eq!(reply.code(), Some("SERVICE_UNAVAILABLE"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(waited < Duration::from_secs(3), "answered in {waited:?}");

    blocker.rollback().await.expect("release");
    assert_eq!(slow.await.expect("slow request"), StatusCode::OK);
    app.gql(Some(&token), "{ tasks { totalCount } }", json!({}))
        .await
        .ok();
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
        assert_request_error(&reply, "GRAPHQL_VALIDATION_FAILED");
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
    assert_request_error(&reply, "GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.message().contains("\"direction\""),
        "{}",
        reply.message()
    );
}
