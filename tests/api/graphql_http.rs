//! GraphQL over HTTP: methods, media types, status codes, batches, persisted queries,
//! introspection, error masking, request ids, compression, CORS and the playground, each
//! through real requests.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Process, Reply, TestApp, TestConfig, TestDb};

async fn get(app: &TestApp, accept: &str, params: &[(&str, &str)]) -> Reply {
    TestApp::reply(
        app.client
            .get(app.url("/graphql"))
            .header("accept", accept)
            .query(params),
    )
    .await
}

async fn post_raw(app: &TestApp, content_type: Option<&str>, accept: &str, body: &str) -> Reply {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("accept", accept)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    TestApp::reply(request).await
}

fn content_type(reply: &Reply) -> &str {
    reply.header("content-type").unwrap_or_default()
}

fn sha256(query: &str) -> String {
    taskql::graphql::pipeline::apq::sha256_hex(query)
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

#[tokio::test]
async fn a_query_over_get_runs() {
    let app = TestApp::spawn().await;
    let reply = get(&app, GRAPHQL_RESPONSE, &[("query", "{ apiVersion }")]).await;
    assert_eq!(reply.ok()["apiVersion"], env!("CARGO_PKG_VERSION"));
    assert!(content_type(&reply).starts_with(GRAPHQL_RESPONSE));
}

#[tokio::test]
async fn a_mutation_over_get_is_405_with_allow_post() {
    let app = TestApp::spawn().await;
    for accept in [GRAPHQL_RESPONSE, "application/json"] {
        let reply = get(&app, accept, &[("query", "mutation { __typename }")]).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.header("allow"), Some("POST"));
        assert_eq!(reply.code(), Some("BAD_REQUEST"));
        assert!(reply.body.get("data").is_none());
    }
}

#[tokio::test]
async fn get_selects_the_operation_named_by_operation_name() {
    let app = TestApp::spawn().await;
    // urql sends every query this way.
    let document = "query A { a: __typename } query B { b: apiVersion }";
    let reply = get(
        &app,
        GRAPHQL_RESPONSE,
        &[("query", document), ("operationName", "B")],
    )
    .await;
    assert_eq!(reply.ok(), &json!({ "b": env!("CARGO_PKG_VERSION") }));
    let reply = get(&app, GRAPHQL_RESPONSE, &[("query", document)]).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "two operations and no name is ambiguous"
    );
    let reply = get(
        &app,
        GRAPHQL_RESPONSE,
        &[("query", document), ("operationName", "C")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.message().contains("Unknown operation"));
}

#[tokio::test]
async fn get_decodes_json_variables() {
    let app = TestApp::spawn().await;
    let reply = get(
        &app,
        GRAPHQL_RESPONSE,
        &[
            (
                "query",
                "query T($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name":"User"}"#),
        ],
    )
    .await;
    assert_eq!(reply.ok()["__type"]["name"], "User");
    let reply = get(
        &app,
        GRAPHQL_RESPONSE,
        &[("query", "{ apiVersion }"), ("variables", "[1]")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn clients_get_the_media_type_they_accept() {
    let app = TestApp::spawn().await;
    let body = r#"{"query":"{ apiVersion }"}"#;
    let json_only = post_raw(&app, Some("application/json"), "application/json", body).await;
    assert_eq!(json_only.status, StatusCode::OK);
    assert_eq!(content_type(&json_only), "application/json; charset=utf-8");
    let modern = post_raw(&app, Some("application/json"), GRAPHQL_RESPONSE, body).await;
    assert_eq!(
        content_type(&modern),
        "application/graphql-response+json; charset=utf-8"
    );
    let anything = post_raw(&app, Some("application/json"), "*/*", body).await;
    assert_eq!(content_type(&anything), "application/json; charset=utf-8");
}

#[tokio::test]
async fn unacceptable_accept_is_406_and_a_non_json_body_is_415() {
    let app = TestApp::spawn().await;
    let body = r#"{"query":"{ apiVersion }"}"#;
    let reply = post_raw(&app, Some("application/json"), "application/xml", body).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
    ] {
        let reply = post_raw(&app, content_type, GRAPHQL_RESPONSE, body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(reply.code(), Some("BAD_REQUEST"));
    }
}

#[tokio::test]
async fn request_errors_are_400_without_data_and_legacy_json_keeps_200() {
    let app = TestApp::spawn().await;
    let cases = [
        (r#"{"query":"{"}"#, "GRAPHQL_PARSE_FAILED"),
        (
            r#"{"query":"{ noSuchField }"}"#,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            r#"{"query":"query Q($id: ID!) { __typename }","variables":{"id":null}}"#,
            "BAD_USER_INPUT",
        ),
        (
            r#"{"query":"query Q($n: String!) { __type(name: $n) { name } }","variables":{"n":5}}"#,
            "BAD_USER_INPUT",
        ),
    ];
    for (body, code) in cases {
        let modern = post_raw(&app, Some("application/json"), GRAPHQL_RESPONSE, body).await;
        assert_eq!(modern.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(modern.code(), Some(code), "{body}: {:#}", modern.body);
        assert!(
            modern.body.get("data").is_none(),
            "{body}: a request error has no data entry"
        );
        let legacy = post_raw(&app, Some("application/json"), "application/json", body).await;
        assert_eq!(
            legacy.status,
            StatusCode::OK,
            "{body}: application/json keeps 200"
        );
        assert_eq!(legacy.code(), Some(code));
    }
}

#[tokio::test]
async fn malformed_parameters_are_400_in_both_media_types() {
    let app = TestApp::spawn().await;
    let cases = [
        "{ \"not json",
        r#"{"qeury":"{ apiVersion }"}"#,
        r#"{"query":1}"#,
        r#"{"query":"{ apiVersion }","variables":"x"}"#,
        r#"{"query":"{ apiVersion }","operationName":false}"#,
        r#"{"query":"{ apiVersion }","extensions":[1]}"#,
        "42",
        "",
    ];
    for body in cases {
        for accept in [GRAPHQL_RESPONSE, "application/json"] {
            let reply = post_raw(&app, Some("application/json"), accept, body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?} / {accept}");
            assert_eq!(reply.code(), Some("BAD_REQUEST"), "{body:?}");
        }
    }
}

#[tokio::test]
async fn a_batch_runs_in_order_and_answers_in_order() {
    let app = TestApp::spawn().await;
    let reply = app
        .post_json(
            None,
            &json!([
                { "query": "{ apiVersion }" },
                { "query": "{ nope }" },
                { "query": "query T { __typename }" },
                { "query": 5 },
            ]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let items = reply.body.as_array().expect("an array");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["data"]["apiVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        items[1]["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(items[2]["data"]["__typename"], "Query");
    assert_eq!(items[3]["errors"][0]["extensions"]["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_INTROSPECTION", "false")).await;
    let reply = app
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), Some("FORBIDDEN"));
    let reply = app
        .gql(
            None,
            "{ ... on Query { __type(name: \"User\") { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply.code(),
        Some("FORBIDDEN"),
        "hidden in a fragment is still introspection"
    );
    app.gql(None, "{ __typename apiVersion }", json!({}))
        .await
        .ok();
}

#[tokio::test]
async fn introspection_works_without_a_token_unless_configured_otherwise() {
    let open = TestApp::spawn().await;
    open.gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await
        .ok();
    let closed =
        TestApp::spawn_with(TestConfig::new().set("GRAPHQL_INTROSPECTION_WITHOUT_TOKEN", "false"))
            .await;
    let reply = closed
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), Some("UNAUTHENTICATED"));
    let token = closed.token_for("alice");
    closed
        .gql(
            Some(&token),
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await
        .ok();
}

#[tokio::test]
async fn persisted_queries_round_trip_over_post_and_get() {
    let app = TestApp::spawn().await;
    let query = "query Version { apiVersion }";
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(query) } });

    // 1. The hash alone: a miss, answered with the exact message both clients look for.
    let miss = app
        .post_json(None, &json!({ "extensions": extensions }))
        .await;
    assert_eq!(miss.message(), "PersistedQueryNotFound");
    assert_eq!(miss.code(), Some("PERSISTED_QUERY_NOT_FOUND"));
    assert!(miss.body.get("data").is_none());

    // 2. The retry with the query registers it.
    let registered = app
        .post_json(None, &json!({ "query": query, "extensions": extensions }))
        .await;
    assert_eq!(registered.ok()["apiVersion"], env!("CARGO_PKG_VERSION"));

    // 3. Now the hash alone works, by POST and by GET (Apollo's useGETForHashedQueries,
    //    urql's preferGetForPersistedQueries).
    let by_post = app
        .post_json(None, &json!({ "extensions": extensions }))
        .await;
    assert_eq!(by_post.ok()["apiVersion"], env!("CARGO_PKG_VERSION"));
    let by_get = get(
        &app,
        GRAPHQL_RESPONSE,
        &[
            ("operationName", "Version"),
            ("extensions", &extensions.to_string()),
        ],
    )
    .await;
    assert_eq!(by_get.ok()["apiVersion"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn a_persisted_query_whose_hash_does_not_match_is_refused() {
    let app = TestApp::spawn().await;
    let planted =
        json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256("{ apiVersion }") } });
    let reply = app
        .post_json(
            None,
            &json!({ "query": "{ __typename }", "extensions": planted }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("BAD_REQUEST"));
    assert!(reply.message().contains("does not match"));
    // Nothing was stored under the forged hash.
    let lookup = app.post_json(None, &json!({ "extensions": planted })).await;
    assert_eq!(lookup.message(), "PersistedQueryNotFound");
}

#[tokio::test]
async fn the_playground_loads_everything_from_taskql_itself() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = response.text().await.expect("html");
    assert!(
        html.contains("Authorization"),
        "the header editor starts with an Authorization entry"
    );

    let mut urls = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            urls.push(piece.split('"').next().expect("closing quote").to_owned());
        }
    }
    assert!(urls.len() >= 5, "scripts and a stylesheet: {urls:?}");
    assert!(
        !html.contains("<script>"),
        "no inline scripts (the CSP forbids them)"
    );
    // Inline data: URLs (the empty favicon) are not requests at all.
    urls.retain(|url| !url.starts_with("data:"));
    for url in urls {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "{url} is not served by taskql"
        );
        let asset = app.client.get(app.url(&url)).send().await.expect("asset");
        assert_eq!(asset.status(), StatusCode::OK, "{url}");
        let kind = asset.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{url}: {kind}"
        );
        assert!(asset.bytes().await.expect("body").len() > 100, "{url}");
    }
}

#[tokio::test]
async fn cors_answers_allowed_origins_with_credentials_and_ignores_others() {
    let app = TestApp::spawn_with(
        TestConfig::new().set("CORS_ALLOWED_ORIGINS", "https://app.example.com"),
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,apollographql-client-name",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com")
        .await
        .expect("preflight");
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    for name in ["authorization", "content-type", "apollographql-client-name"] {
        assert!(allow_headers.contains(name), "{allow_headers}");
    }
    assert!(headers.contains_key("access-control-max-age"));
    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

/// Breaks the database under a running server; the client sees a generic error with an id,
/// the log has the cause under the same id, and the response has no SQL in it.
#[tokio::test]
async fn internal_errors_are_masked_and_logged_with_an_error_id() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[]);

    let pool = db.pool().await;
    sqlx::query("alter table users rename column email to email_address")
        .execute(&pool)
        .await
        .expect("break the schema");

    let token = crate::common::keys::hs256_token(
        crate::common::TEST_SECRET,
        &crate::common::keys::claims("alice"),
    );
    let reply = crate::common::post(addr, Some(&token), "{ me { id email } }").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a field error, not a transport failure"
    );
    assert_eq!(reply.code(), Some("INTERNAL_SERVER_ERROR"));
    let error_id = reply.body["errors"][0]["extensions"]["errorId"]
        .as_str()
        .expect("an errorId")
        .to_owned();
    let text = reply.body.to_string();
    for leak in [
        "email", "column", "users", "select", "insert", "sqlx", "postgres",
    ] {
        let message = reply.message().to_lowercase();
        assert!(
            !message.contains(leak),
            "the message leaks {leak:?}: {text}"
        );
    }
    assert!(
        !text.contains("email_address") && !text.contains("SQLSTATE"),
        "{text}"
    );

    let line = server.wait_for_line(Duration::from_secs(30), |line| line.contains(&error_id));
    let log: Value = serde_json::from_str(&line).expect("JSON log line");
    let cause = log["fields"]["error.cause_chain"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.contains("does not exist"),
        "the log has the real cause: {line}"
    );
    assert!(
        log["span"]["request_id"].is_string(),
        "logged inside the request's span: {line}"
    );
}

#[tokio::test]
async fn a_mutation_sent_with_get_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let reply = TestApp::reply(
        app.client
            .get(app.url("/graphql"))
            .bearer_auth(&alice)
            .query(&[(
                "query",
                "mutation { createTask(input: { title: \"via GET\" }) { id } }",
            )]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.rows("tasks").await, 0);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("answer");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let response = app
        .client
        .get(app.url("/graphql?query={apiVersion}"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn large_responses_are_compressed_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let introspection = "{ __schema { types { name description fields { name description } } } }";
    let request = |encoding: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/graphql"))
            .json(&serde_json::json!({ "query": introspection }));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send()
    };
    let plain = request(None).await.expect("answer");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.expect("body").len();
    let gzipped = request(Some("gzip")).await.expect("answer");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped_len = gzipped.bytes().await.expect("body").len();
    assert!(
        gzipped_len * 3 < plain_len,
        "{gzipped_len} bytes gzipped vs {plain_len} plain"
    );
}
