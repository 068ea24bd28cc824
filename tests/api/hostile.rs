//! Hostile and malformed requests, each answered with a clear 4xx and a code, never a crash,
//! a 5xx or a leak: the requests a fuzzer, a security auditor and a schema-recovery tool
//! found (issue "Unbreakable"), sent exactly as they were.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use taskql::{
    auth::Verifier,
    domain::query::{Filter, Order, Position, SortValue},
    graphql::cursor::{CursorKeys, Scope},
};

use crate::common::{Reply, TEST_SECRET, TestApp, TestConfig, keys};

#[track_caller]
fn assert_code(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:#}", reply.body);
    assert_eq!(reply.code(), Some(code), "{:#}", reply.body);
}

#[track_caller]
fn assert_bad_input(reply: &Reply, field: &str) {
    assert_code(reply, StatusCode::OK, "BAD_USER_INPUT");
    assert_eq!(
        reply.body["errors"][0]["extensions"]["field"], field,
        "{:#}",
        reply.body
    );
}

/// The server still answers: every test that sends something hostile ends with this.
async fn assert_alive(app: &TestApp) {
    app.gql(None, "{ apiVersion }", json!({})).await.ok();
}

async fn task_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from tasks")
        .fetch_one(&app.db)
        .await
        .expect("count")
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
            assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert_alive(&app).await;
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
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
    assert_alive(&app).await;
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert_alive(&app).await;
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
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

#[tokio::test]
async fn every_operation_of_a_batch_is_charged() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "5"),
    )
    .await;
    let token = app.token_for("alice");
    let op = json!({ "query": "{ apiVersion }" });
    let reply = app
        .post_json(Some(&token), &json!([op, op, op, op, op]))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "five operations fit a burst of five"
    );
    let reply = app.gql(Some(&token), "{ apiVersion }", json!({})).await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");

    let bob = app.token_for("bob");
    let reply = app
        .post_json(Some(&bob), &json!([op, op, op, op, op, op]))
        .await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

/// A token that has not been verified yet costs a signature check; its requests are charged
/// to the client address first, so a flood of forged tokens is limited like anonymous calls.
#[tokio::test]
async fn invalid_tokens_are_charged_to_the_client_address() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "3"),
    )
    .await;
    for i in 0..3 {
        let forged = keys::hs256_token(
            "not-the-secret-0123456789-abcdefghijkl",
            &keys::claims(&format!("mallory{i}")),
        );
        let reply = app.gql(Some(&forged), "{ apiVersion }", json!({})).await;
        assert_code(&reply, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    let forged = keys::hs256_token("not-the-secret-0123456789-abcdefghijkl", &keys::claims("m"));
    let reply = app.gql(Some(&forged), "{ apiVersion }", json!({})).await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let reply = app.gql(None, "{ apiVersion }", json!({})).await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

async fn anonymous_from(app: &TestApp, forwarded_for: &str) -> Reply {
    TestApp::reply(
        app.client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "query": "{ apiVersion }" })),
    )
    .await
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limited = || {
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "2")
    };
    // Untrusted: the header is the client's to invent, so it changes nothing.
    let app = TestApp::spawn_with(limited()).await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(anonymous_from(&app, forwarded).await.status, StatusCode::OK);
    }
    let reply = anonymous_from(&app, "198.51.100.3").await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");

    // Behind a trusted proxy (the test client on loopback), each client has its own budget.
    let app = TestApp::spawn_with(limited().set("TRUSTED_PROXIES", "127.0.0.0/8, ::1")).await;
    for _ in 0..2 {
        assert_eq!(
            anonymous_from(&app, "198.51.100.1").await.status,
            StatusCode::OK
        );
    }
    let reply = anonymous_from(&app, "198.51.100.1").await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert_eq!(
        anonymous_from(&app, "198.51.100.2").await.status,
        StatusCode::OK
    );
    // A client-written entry left of the last hop is not believed.
    let reply = anonymous_from(&app, "203.0.113.50, 198.51.100.1").await;
    assert_code(&reply, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

/// Past `MAX_IN_FLIGHT`, requests are shed at once with 503 and `Retry-After` instead of
/// queueing. The request in flight is one whose body has not finished arriving.
#[tokio::test]
async fn load_past_the_in_flight_cap_is_shed_with_503() {
    use tokio::io::AsyncWriteExt as _;

    let app = TestApp::spawn_with(TestConfig::new().set("MAX_IN_FLIGHT", "1")).await;
    let mut held = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let body = r#"{"query": "{ apiVersion }"}"#;
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        app.addr,
        body.len()
    );
    held.write_all(head.as_bytes())
        .await
        .expect("send the head");

    // The held request occupies the only slot once the server has started reading it; retry
    // until the shedding is observed (each attempt is itself a real request).
    let mut shed = None;
    for _ in 0..200 {
        let reply = app.gql(None, "{ apiVersion }", json!({})).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(reply);
            break;
        }
        tokio::task::yield_now().await;
    }
    let shed = shed.expect("a request past the cap is shed");
    assert_eq!(shed.code(), Some("SERVICE_UNAVAILABLE"));
    assert_eq!(shed.header("retry-after"), Some("1"));

    held.write_all(&body.as_bytes()[1..])
        .await
        .expect("finish the body");
    drop(held);
    // The slot is free again once the held request is done.
    let mut served = false;
    for _ in 0..200 {
        if app.gql(None, "{ apiVersion }", json!({})).await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served);
}

/// PostgreSQL's text cannot hold U+0000. Every string input refuses it as bad input naming
/// the field, and nothing is written.
#[tokio::test]
async fn nul_characters_are_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let create = |input: Value| {
        app.gql(
            Some(&token),
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
            json!({ "input": input }),
        )
    };
    assert_bad_input(&create(json!({ "title": "a\u{0}b" })).await, "input.title");
    assert_bad_input(
        &create(json!({ "title": "ok", "description": "\u{0}" })).await,
        "input.description",
    );
    assert_bad_input(
        &create(json!({ "title": "ok", "idempotencyKey": "k\u{0}" })).await,
        "input.idempotencyKey",
    );
    assert_eq!(task_rows(&app).await, 0);

    let list = |filter: Value| {
        app.gql(
            Some(&token),
            "query($f: TaskFilter) { tasks(filter: $f) { totalCount } }",
            json!({ "f": filter }),
        )
    };
    assert_bad_input(
        &list(json!({ "search": "milk\u{0}" })).await,
        "filter.search",
    );
    assert_bad_input(
        &list(json!({ "title": { "contains": "\u{0}" } })).await,
        "filter.title.contains",
    );
    assert_bad_input(
        &list(json!({ "or": [{ "title": { "eq": "\u{0}" } }] })).await,
        "filter.or.0.title.eq",
    );

    let update_me = |input: Value| {
        app.gql(
            Some(&token),
            "mutation($input: UpdateMeInput!) { updateMe(input: $input) { name } }",
            json!({ "input": input }),
        )
    };
    assert_bad_input(&update_me(json!({ "name": "\u{0}" })).await, "input.name");
    assert_bad_input(
        &update_me(json!({ "image": "https://x.example/\u{0}" })).await,
        "input.image",
    );
    // As a literal in the document, too.
    let reply = app
        .gql(
            Some(&token),
            "mutation { createTask(input: {title: \"a\\u0000b\"}) { id } }",
            json!({}),
        )
        .await;
    assert_bad_input(&reply, "input.title");
    assert_eq!(task_rows(&app).await, 0);
}

/// A token whose claims PostgreSQL cannot store would fail every request of its user with a
/// server error; it is refused with a clear 401 instead.
#[tokio::test]
async fn tokens_with_unstorable_claims_are_refused_with_401() {
    let app = TestApp::spawn().await;
    for claim in ["sub", "name", "email"] {
        let mut claims = keys::claims("alice");
        claims[claim] = json!("ali\u{0}ce");
        let token = keys::hs256_token(TEST_SECRET, &claims);
        let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
        assert_code(&reply, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
        assert!(
            reply.message().contains(claim),
            "{claim}: {}",
            reply.message()
        );
    }
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(users, 0);
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
    assert_code(&reply, StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED");
    assert!(reply.body.get("data").is_none());
    let reply = app
        .gql(
            Some(&token),
            "query($o: [TaskOrder!]) { tasks(orderBy: $o) { totalCount } }",
            json!({ "o": [[{ "field": "TITLE" }]] }),
        )
        .await;
    assert_code(&reply, StatusCode::BAD_REQUEST, "BAD_USER_INPUT");
}

/// Cursors are sealed: they reveal nothing, and a changed one is refused. One made with the
/// server's own key (a leaked key) but holding a time PostgreSQL cannot store is refused too.
#[tokio::test]
async fn cursors_are_opaque_and_tampering_is_refused() {
    const SECRET: &str = "cursor-secret-0123456789-abcdefghijklmnop";
    let app = TestApp::spawn_with(TestConfig::new().set("CURSOR_SECRET", SECRET)).await;
    let token = app.token_for("alice");
    for title in ["secret plan one", "secret plan two"] {
        app.gql(
            Some(&token),
            "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
            json!({ "t": title }),
        )
        .await
        .ok();
    }
    let page = |after: Option<&str>| {
        app.gql(
            Some(&token),
            "query($after: String) { tasks(first: 1, after: $after, orderBy: [{field: TITLE}]) { edges { cursor } } }",
            json!({ "after": after }),
        )
    };
    let reply = page(None).await;
    let cursor = reply.ok()["tasks"]["edges"][0]["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cursor)
        .expect("base64url");
    assert!(!String::from_utf8_lossy(&raw).contains("secret plan"));
    page(Some(&cursor)).await.ok();

    let mut tampered = raw.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tampered);
    assert_bad_input(&page(Some(&tampered)).await, "after");

    // The caller's id, as only verification mints it.
    let verifier = Verifier::from_config(&app.config.auth)
        .await
        .expect("verifier");
    let alice = verifier.verify(&token).await.expect("valid").user_id;
    let keys = CursorKeys::from_secrets([SECRET.as_bytes()]).expect("keys");
    let order = Order::parse(vec![taskql::domain::query::SortKey {
        field: taskql::domain::query::SortField::CreatedAt,
        descending: true,
    }])
    .expect("order");
    let far_future = chrono::DateTime::from_timestamp(300_000_000_000, 0).expect("year 11476");
    let forged = keys.seal(
        &Position {
            values: vec![SortValue::Time(Some(far_future))],
            id: uuid::Uuid::now_v7(),
        },
        &Scope {
            user: &alice,
            order: &order,
            filter: &Filter::all(),
        },
    );
    let reply = app
        .gql(
            Some(&token),
            "query($after: String) { tasks(first: 1, after: $after) { totalCount edges { cursor } } }",
            json!({ "after": forged }),
        )
        .await;
    assert_bad_input(&reply, "after");
    assert!(
        reply.message().contains("out of range"),
        "{}",
        reply.message()
    );
}

/// Rotation: a server that lists the new key first and the old one after opens cursors made
/// with either; once the old key is dropped, its cursors are refused.
#[tokio::test]
async fn cursor_keys_rotate_with_a_grace_period() {
    const OLD: &str = "old-cursor-secret-0123456789-abcdefghijk";
    const NEW: &str = "new-cursor-secret-0123456789-abcdefghijk";
    let old = TestApp::spawn_with(TestConfig::new().set("CURSOR_SECRET", OLD)).await;
    let token = old.token_for("alice");
    for title in ["a", "b"] {
        old.gql(
            Some(&token),
            "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
            json!({ "t": title }),
        )
        .await
        .ok();
    }
    let first = old
        .gql(
            Some(&token),
            "{ tasks(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = first.ok()["tasks"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let next = "query($c: String) { tasks(first: 1, after: $c) { nodes { id } } }";
    // Both servers read the same database, as two instances of one deployment would.
    let url = old.test_db.url.clone();
    let rotated = TestApp::spawn_with(
        TestConfig::new()
            .set("CURSOR_SECRET", format!("{NEW},{OLD}"))
            .set("DATABASE_URL", url.clone()),
    )
    .await;
    rotated
        .gql(Some(&token), next, json!({ "c": cursor }))
        .await
        .ok();
    let dropped = TestApp::spawn_with(
        TestConfig::new()
            .set("CURSOR_SECRET", NEW)
            .set("DATABASE_URL", url),
    )
    .await;
    assert_bad_input(
        &dropped
            .gql(Some(&token), next, json!({ "c": cursor }))
            .await,
        "after",
    );
}
