//! `/metrics`, scraped by Debian's real Prometheus after a known sequence of requests: every
//! count is the one the sequence implies, and Prometheus reads the exposition without error.

use serde_json::json;

use crate::common::{
    Process, TestApp, TestDb,
    keys::{Alg, ISSUER, JwksServer, SigningKey, better_auth_claims},
    post,
    prometheus::Prometheus,
    skip,
    ws::{Socket, TASK_CHANGED},
};

#[tokio::test]
async fn prometheus_scrapes_the_counts_of_a_known_sequence() {
    let key = SigningKey::generate(Alg::EdDSA);
    let jwks = JwksServer::start(&[&key]).await;
    let db = TestDb::create().await;
    let (_server, addr) = Process::serve(
        &db,
        &[
            ("AUTH_JWT_SECRET", ""),
            ("AUTH_JWKS_URL", &jwks.url),
            ("AUTH_ISSUER", ISSUER),
            ("AUTH_AUDIENCE", ISSUER),
            ("RATE_LIMIT_PER_MINUTE", "1"),
            ("RATE_LIMIT_BURST", "20"),
            ("DATABASE_POOL_SIZE", "7"),
        ],
    );
    let prometheus = match Prometheus::start(&addr.to_string()).await {
        Ok(prometheus) => prometheus,
        Err(reason) => {
            skip("the metrics test needs Prometheus", reason);
            return;
        }
    };
    let alice = key.sign(&better_auth_claims("alice"));
    let flood = key.sign(&better_auth_claims("flood"));

    // alice: 3 creations (the first also stores her user row), 2 pages.
    for i in 0..3 {
        post(
            addr,
            Some(&alice),
            &format!(
                r#"mutation CreateTask {{ createTask(input: {{ title: "t{i}" }}) {{ id }} }}"#
            ),
        )
        .await
        .ok();
    }
    for _ in 0..2 {
        post(
            addr,
            Some(&alice),
            "query ListTasks { tasks { nodes { id } } }",
        )
        .await
        .ok();
    }
    // Refusals: no token, not GraphQL, a name nobody should get a series for.
    let anonymous = post(addr, None, "query ListTasks { tasks { nodes { id } } }").await;
    assert_eq!(anonymous.code(), Some("UNAUTHENTICATED"));
    let garbled = post(addr, None, "{ tasks {").await;
    assert_eq!(garbled.code(), Some("GRAPHQL_PARSE_FAILED"));
    // flood: 21 requests against a burst of 20 (refilled at one a minute: none during the
    // test, however slow the machine); the last is refused with 429.
    for i in 0..21 {
        let reply = post(addr, Some(&flood), "query Version { apiVersion }").await;
        assert_eq!(reply.status == 429, i == 20, "request {i}: {}", reply.body);
    }
    // A live subscription on one socket.
    let mut socket = Socket::open(addr, Some(&alice)).await;
    socket.subscribe("s", TASK_CHANGED, json!({})).await;

    let ops = |name: &str, kind: &str, code: &str| {
        format!(
            r#"taskql_graphql_operations_total{{operation="{name}",kind="{kind}",code="{code}"}}"#
        )
    };
    prometheus.wait_for("taskql_subscriptions", 1.0).await;
    for (query, expected) in [
        (ops("CreateTask", "mutation", "OK"), 3.0),
        (ops("ListTasks", "query", "OK"), 2.0),
        (ops("ListTasks", "query", "UNAUTHENTICATED"), 1.0),
        (ops("anonymous", "unknown", "GRAPHQL_PARSE_FAILED"), 1.0),
        (ops("Version", "query", "OK"), 20.0),
        (ops("Changes", "subscription", "OK"), 1.0),
        // Under legacy application/json (no Accept), refused documents are 200 too.
        (
            r#"taskql_http_requests_total{route="/graphql",method="POST",status="200"}"#.into(),
            27.0,
        ),
        (
            r#"taskql_http_requests_total{route="/graphql",method="POST",status="429"}"#.into(),
            1.0,
        ),
        (
            r#"taskql_http_requests_total{route="/graphql",method="GET",status="101"}"#.into(),
            1.0,
        ),
        (r#"taskql_rate_limited_total{transport="http"}"#.into(), 1.0),
        (
            r#"taskql_http_request_duration_seconds_count{route="/graphql"}"#.into(),
            29.0,
        ),
        // 29 GraphQL requests over HTTP: alice's first creation ran 2 statements (her user row,
        // the task), the other four of hers 1 each; refusals and apiVersion none.
        ("taskql_db_statements_per_request_count".into(), 28.0),
        ("taskql_db_statements_per_request_sum".into(), 6.0),
        (
            r#"taskql_db_statements_per_request_bucket{le="0.0"}"#.into(),
            23.0,
        ),
        ("taskql_websocket_connections".into(), 1.0),
        ("taskql_db_pool_max_connections".into(), 7.0),
        // Each statement checked a connection out of the pool (a transaction once for all).
        (
            "taskql_db_pool_acquire_duration_seconds_count >= bool 5".into(),
            1.0,
        ),
        (
            r#"taskql_jwks_fetches_total{outcome="ok"}"#.into(),
            jwks.hits() as f64,
        ),
        (r#"taskql_build_info{version="0.1.0"}"#.into(), 1.0),
    ] {
        prometheus.wait_for(&query, expected).await;
    }
    let connections = prometheus
        .value("taskql_db_pool_connections")
        .await
        .expect("pool size");
    let idle = prometheus
        .value("taskql_db_pool_idle_connections")
        .await
        .expect("idle");
    assert!(
        (1.0..=7.0).contains(&connections) && idle <= connections,
        "{connections} {idle}"
    );
    assert_eq!(prometheus.target().await, ("up".to_owned(), String::new()));
    drop(socket);
}

#[tokio::test]
async fn anonymous_callers_cannot_claim_operation_names() {
    let app = TestApp::spawn().await;
    // The reproduction: made-up names from callers without a token.
    for i in 0..120 {
        app.gql(None, &format!("query Junk{i} {{ __typename }}"), json!({}))
            .await
            .ok();
    }
    let token = app.token_for("mia");
    app.gql(Some(&token), "query Mine { me { id } }", json!({}))
        .await
        .ok();
    let exposition = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !exposition.contains("Junk"),
        "no series for anonymous names"
    );
    assert!(exposition.contains(r#"operation="Mine""#), "{exposition}");
    assert!(exposition.contains(r#"operation="other""#));
}

#[tokio::test]
async fn metrics_addr_moves_the_exposition_off_the_public_port() {
    let db = TestDb::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let (_server, addr) = Process::serve(&db, &[("METRICS_ADDR", &metrics_addr)]);
    let public = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("answer");
    assert_eq!(public.status(), 404);
    let private = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("answer");
    assert_eq!(private.status(), 200);
    assert!(
        private
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text")),
    );
    assert!(
        private
            .text()
            .await
            .expect("text")
            .contains("taskql_http_requests")
    );
}
