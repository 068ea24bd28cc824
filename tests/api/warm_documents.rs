//! A document is parsed, planned and validated once per text, then served from its plan:
//! every answer must be the same whether the text is new to the server (cold) or was
//! planned and passed validation before (warm), with any variables.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, TestConfig};

/// Sends `query` with `good` variables (which must run), then `bad` (which must be refused
/// with `code`, the text now warm), then `good` again; and `bad` to a server that never
/// saw the text (cold), which must answer the same.
async fn warm_and_cold(
    config: fn() -> TestConfig,
    query: &str,
    good: Value,
    bad: Value,
    code: &str,
) {
    let app = TestApp::spawn_with(config()).await;
    let token = app.token_for("alice");
    app.gql(Some(&token), query, good.clone()).await.ok();
    let warm = app.gql(Some(&token), query, bad.clone()).await;
    warm.assert_request_error(code);
    app.gql(Some(&token), query, good).await.ok();

    let cold_app = TestApp::spawn_with(config()).await;
    let cold = cold_app
        .gql(Some(&cold_app.token_for("alice")), query, bad)
        .await;
    assert_eq!(cold.status, warm.status, "{query}");
    assert_eq!(cold.body, warm.body, "{query}");
}

#[tokio::test]
async fn a_variable_of_the_wrong_type_is_refused_after_the_text_passed() {
    warm_and_cold(
        TestConfig::new,
        "query($n: Int) { tasks(first: $n) { totalCount } }",
        json!({ "n": 5 }),
        json!({ "n": "five" }),
        "BAD_USER_INPUT",
    )
    .await;
}

#[tokio::test]
async fn an_input_object_variable_with_an_unknown_field_is_refused_warm() {
    warm_and_cold(
        TestConfig::new,
        "query($f: TaskFilter) { tasks(filter: $f) { totalCount } }",
        json!({ "f": { "completed": true } }),
        json!({ "f": { "completed": true, "owner": "bob" } }),
        "BAD_USER_INPUT",
    )
    .await;
}

#[tokio::test]
async fn an_input_object_variable_without_a_required_field_is_refused_warm() {
    warm_and_cold(
        TestConfig::new,
        "query($o: [TaskOrder!]) { tasks(orderBy: $o) { totalCount } }",
        json!({ "o": [{ "field": "TITLE" }] }),
        json!({ "o": [{ "direction": "DESC" }] }),
        "BAD_USER_INPUT",
    )
    .await;
}

/// Complexity depends on the page sizes the variables ask for: it is checked per request.
#[tokio::test]
async fn the_complexity_limit_follows_the_variables_of_each_request() {
    fn limited() -> TestConfig {
        TestConfig::new().set("GRAPHQL_MAX_COMPLEXITY", "50")
    }
    // n = 2: 2 × (nodes 1 + owner (1 + 2 × (nodes 1 + id 1))) = 12; n = 5: 60.
    warm_and_cold(
        limited,
        "query($n: Int) { tasks(first: $n) { nodes { owner { tasks(first: $n) { nodes { id } } } } } }",
        json!({ "n": 2 }),
        json!({ "n": 5 }),
        "GRAPHQL_VALIDATION_FAILED",
    )
    .await;
}

/// What a document breaks is reported the same every time it is sent.
#[tokio::test]
async fn a_broken_document_is_refused_the_same_every_time() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    for query in [
        "{ tasks { nodes { titl } } }",
        "{ tasks(first: \"x\") { totalCount } }",
        "{ __typename(x: 1) }",
        "{ task(id: \"1\") { id } ... on Query { task(id: \"2\") { id } } }",
        "{ me @skip(iff: true) { id } }",
        "{ me @deprecated { id } }",
        "query($unused: Int) { apiVersion }",
        "{ ...Missing }",
    ] {
        let first = app.gql(Some(&token), query, json!({})).await;
        assert_eq!(
            first.status,
            StatusCode::BAD_REQUEST,
            "{query}: {:#}",
            first.body
        );
        assert!(
            first.body.get("data").is_none(),
            "{query}: {:#}",
            first.body
        );
        for _ in 0..2 {
            let again = app.gql(Some(&token), query, json!({})).await;
            assert_eq!(again.status, first.status, "{query}");
            assert_eq!(again.body, first.body, "{query}");
        }
    }
}

/// A document that passed validation keeps its null rules and hidden fields right when
/// served from its plan: `@skip` by a variable, both ways, on the same text.
#[tokio::test]
async fn skipping_by_variable_answers_from_the_plan_both_ways() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let query = "query($s: Boolean!) { me @skip(if: $s) { id } }";
    for _ in 0..2 {
        let shown = app.gql(Some(&token), query, json!({ "s": false })).await;
        assert_eq!(shown.ok(), &json!({ "me": { "id": "alice" } }));
        let skipped = app.gql(Some(&token), query, json!({ "s": true })).await;
        assert_eq!(skipped.ok(), &json!({}));
    }
}
