//! Every bound on one request, at the limit and one past it: document size, depth,
//! complexity (nested lists priced by their page sizes), aliases, batch size, body size,
//! values and variables nested deep, fragment expansion, the time a request may take; and
//! zero switching each document limit off.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, TestConfig};

/// A query `depth` levels deep: `__type` and then `ofType` nested.
fn nested(depth: usize) -> String {
    let mut query = "name".to_owned();
    for _ in 2..depth {
        query = format!("ofType {{ {query} }}");
    }
    format!("{{ __type(name: \"Query\") {{ {query} }} }}")
}

/// `{ a1: apiVersion … an: apiVersion }`: complexity n, n aliases.
fn aliased(n: usize) -> String {
    let fields: Vec<String> = (1..=n).map(|i| format!("a{i}: apiVersion")).collect();
    format!("{{ {} }}", fields.join(" "))
}

fn wrap(depth: usize, open: &str, inner: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Every place a value can stand, nested to `depth`.
fn nested_documents(depth: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "argument list",
            format!("{{ apiVersion(x: {}) }}", wrap(depth, "[", "1", "]")),
        ),
        (
            "input object",
            format!(
                "{{ tasks(filter: {}) {{ totalCount }} }}",
                wrap(depth, "{not: ", "{completed: true}", "}")
            ),
        ),
        (
            "orderBy",
            format!(
                "{{ tasks(orderBy: {}) {{ totalCount }} }}",
                wrap(depth, "[", "{field: TITLE}", "]")
            ),
        ),
        (
            "directive argument",
            format!(
                "{{ apiVersion @include(if: {}) }}",
                wrap(depth, "[", "true", "]")
            ),
        ),
        (
            "variable default",
            format!(
                "query($v: [Int] = {}) {{ apiVersion }}",
                wrap(depth, "[", "1", "]")
            ),
        ),
        (
            "variable type",
            format!(
                "query($v: {}) {{ apiVersion }}",
                wrap(depth, "[", "Int", "]")
            ),
        ),
        (
            "mutation input",
            format!(
                "mutation {{ createTask(input: {{title: {}}}) {{ id }} }}",
                wrap(depth, "[", "\"t\"", "]")
            ),
        ),
    ]
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_BATCH", "3")).await;
    let op = json!({ "query": "{ apiVersion }" });
    let reply = app.post_json(None, &json!([op, op, op])).await;
    assert_eq!(reply.status, StatusCode::OK, "at the limit");
    let reply = app.post_json(None, &json!([op, op, op, op])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("BAD_REQUEST"));
    assert!(
        reply.body.is_object(),
        "one error for the whole batch, no per-operation results"
    );
    assert_eq!(
        app.post_json(None, &json!([])).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_body_size_limit_is_enforced() {
    let app = TestApp::spawn_with(TestConfig::new().set("MAX_BODY_BYTES", "2048")).await;
    let fits = json!({ "query": format!("{{ apiVersion }} #{}", "x".repeat(1900)) }).to_string();
    assert!(fits.len() <= 2048);
    assert_eq!(app.post_text(&fits).await.status, StatusCode::OK);
    let too_big = json!({ "query": format!("{{ apiVersion }} #{}", "x".repeat(2100)) }).to_string();
    let reply = app.post_text(&too_big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), Some("BAD_REQUEST"));
}

#[tokio::test]
async fn the_depth_limit_allows_the_limit_and_refuses_one_more() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_DEPTH", "6")).await;
    app.gql(None, &nested(6), json!({})).await.ok();
    let reply = app.gql(None, &nested(7), json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(
        reply.message().contains("nested too deep"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn the_complexity_limit_allows_the_limit_and_refuses_one_more() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_COMPLEXITY", "5")).await;
    app.gql(None, &aliased(5), json!({})).await.ok();
    let reply = app.gql(None, &aliased(6), json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(
        reply.message().contains("too complex"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn the_alias_limit_allows_the_limit_and_refuses_one_more() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_ALIASES", "4")).await;
    app.gql(None, &aliased(4), json!({})).await.ok();
    let reply = app.gql(None, &aliased(5), json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(reply.message().contains("aliases"), "{}", reply.message());
}

#[tokio::test]
async fn the_document_size_limit_allows_the_limit_and_refuses_one_more() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_DOCUMENT_BYTES", "100")).await;
    let base = "{ apiVersion } #";
    let exact = format!("{base}{}", "x".repeat(100 - base.len()));
    app.gql(None, &exact, json!({})).await.ok();
    let reply = app.gql(None, &format!("{exact}x"), json!({})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("BAD_REQUEST"));
    assert!(reply.message().contains("100 bytes"), "{}", reply.message());
}

#[tokio::test]
async fn zero_switches_the_document_limits_off() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("GRAPHQL_MAX_DEPTH", "0")
            .set("GRAPHQL_MAX_COMPLEXITY", "0")
            .set("GRAPHQL_MAX_ALIASES", "0"),
    )
    .await;
    app.gql(None, &aliased(200), json!({})).await.ok();
    // Deeper than the default depth limit (async-graphql's parser keeps its own recursion limit of 32).
    app.gql(None, &nested(25), json!({})).await.ok();
}

/// A request that outlives the time limit is answered with `TIMEOUT`, and its database work
/// is cancelled, not left running: the statement is blocked on a lock the test holds, and
/// stops waiting on its own once the limit passes.
#[tokio::test]
async fn the_request_time_limit_answers_and_cancels_the_database_work() {
    let app = TestApp::spawn_with(TestConfig::new().set("REQUEST_TIMEOUT", "500ms")).await;
    let token = app.token_for("alice");
    app.gql(Some(&token), "{ apiVersion }", json!({}))
        .await
        .ok();

    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("lock table users in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .expect("lock");

    let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{:#}",
        reply.body
    );
    assert_eq!(reply.code(), Some("TIMEOUT"));
    assert!(reply.body.get("data").is_none());

    // While our lock is still held, the server's statement must end by itself (PostgreSQL's
    // statement_timeout). Watch for it; a statement that is never cancelled fails the test.
    let mut waited = 0;
    while app.statements_waiting_on_locks().await > 0 {
        waited += 1;
        assert!(
            waited < 200,
            "the server's statement is still waiting for the lock"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    blocker.rollback().await.expect("release");
    let rows: i64 = sqlx::query_scalar("select count(*) from users where id = 'alice'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(rows, 0, "the cancelled statement wrote nothing");
    // Under the limit, the same request succeeds.
    app.gql(Some(&token), "{ me { id } }", json!({})).await.ok();
}

#[tokio::test]
async fn a_batch_over_the_limit_runs_none_of_its_mutations() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_BATCH", "3")).await;
    let alice = app.token_for("alice");
    let op = json!({ "query": "mutation { createTask(input: { title: \"batched\" }) { id } }" });
    let reply = app.post_json(Some(&alice), &json!([op, op, op, op])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.rows("tasks").await, 0);
    let reply = app.post_json(Some(&alice), &json!([op, op, op])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.rows("tasks").await, 3);
}

#[tokio::test]
async fn nested_lists_are_priced_by_their_page_sizes() {
    // The statement budget would refuse the nested document first; this is about the
    // complexity limit alone.
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_STATEMENTS", "0")).await;
    let alice = app.token_for("alice");
    // 100 tasks with a handful of fields each: within the default budget.
    app.gql(
        Some(&alice),
        "{ tasks(first: 100) { nodes { id title priority dueAt owner { id } } } }",
        json!({}),
    )
    .await
    .ok();
    // A page of 100 tasks, each with its owner's page of 100: refused before anything runs.
    let reply = app
        .gql(
            Some(&alice),
            "{ tasks(first: 100) { nodes { owner { tasks(first: 100) { nodes { id title } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(reply.message().contains("too complex"));
}

/// The request that aborted the process (about 1,800 levels), and everything like it: at the
/// limit (32) the document is answered normally; past it, refused before it is parsed.
#[tokio::test]
async fn deeply_nested_values_never_crash_the_server() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    for (place, query) in nested_documents(32) {
        let reply = app.gql(Some(&token), &query, json!({})).await;
        assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{place} at the limit: {:#}",
            reply.body
        );
        assert_ne!(reply.code(), Some("INTERNAL_SERVER_ERROR"), "{place}");
    }
    for depth in [33, 1_800, 4_000] {
        for (place, query) in nested_documents(depth) {
            let reply = app.gql(None, &query, json!({})).await;
            reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
            assert!(reply.message().contains("nests more than 32"), "{place}");
        }
    }
    // By GET too, and anonymous.
    let query = format!("{{ apiVersion(x: {}) }}", wrap(1_800, "[", "1", "]"));
    let reply = TestApp::reply(
        app.client
            .get(app.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .query(&[("query", query.as_str())]),
    )
    .await;
    reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    app.assert_alive().await;
}

#[tokio::test]
async fn deeply_nested_variables_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let mut filter = json!({ "completed": true });
    for _ in 0..40 {
        filter = json!({ "not": filter });
    }
    let reply = app
        .gql(
            Some(&token),
            "query($f: TaskFilter) { tasks(filter: $f) { totalCount } }",
            json!({ "f": filter }),
        )
        .await;
    reply.assert_code(StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "$f");
    // Past serde_json's own limit the body is not JSON this server reads.
    let deep = format!(
        "{{\"query\": \"{{ apiVersion }}\", \"variables\": {{\"x\": {}}}}}",
        wrap(500, "[", "1", "]")
    );
    let reply = TestApp::reply(
        app.client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(deep),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    app.assert_alive().await;
}

/// `fragment F0 { ...F1 ...F1 }`, `fragment F1 { ...F2 ...F2 }`, …: each line doubles the
/// work of a naive walk. Refused in linear time; a chain of fragments nested too deep too.
#[tokio::test]
async fn exponential_fragment_expansion_is_refused() {
    let app = TestApp::spawn().await;
    let mut doubling = String::from("{ ...F0 }");
    for i in 0..30 {
        doubling.push_str(&format!(
            " fragment F{i} on Query {{ ...F{0} ...F{0} }}",
            i + 1
        ));
    }
    doubling.push_str(" fragment F30 on Query { apiVersion }");
    let started = Instant::now();
    let reply = app.gql(None, &doubling, json!({})).await;
    reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.message().contains("expands to"),
        "{}",
        reply.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused quickly"
    );

    let mut chain = String::from("{ ...F0 }");
    for i in 0..600 {
        chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    chain.push_str(" fragment F600 on Query { apiVersion }");
    let reply = app.gql(None, &chain, json!({})).await;
    reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    app.assert_alive().await;
}

/// The amplification document: 30 aliases of a page of 100 tasks, each asking its owner for
/// a count. Priced at about 9,000 by complexity, it would run ~3,000 statements; refused.
#[tokio::test]
async fn the_amplification_document_is_refused_before_anything_runs() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let fields: Vec<String> = (1..=30)
        .map(|i| format!("a{i}: tasks(first: 100) {{ nodes {{ owner {{ tasks(first: 1) {{ totalCount }} }} }} }}"))
        .collect();
    let reply = app
        .gql(
            Some(&token),
            &format!("{{ {} }}", fields.join(" ")),
            json!({}),
        )
        .await;
    reply.assert_code(StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert!(
        reply.message().contains("database statements"),
        "{}",
        reply.message()
    );
    assert!(reply.body.get("data").is_none());
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(users, 0, "nothing ran, not even the user sync");
}
