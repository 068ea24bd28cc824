//! Traces over OTLP: a request sent with a W3C `traceparent` becomes a child of the caller's
//! trace, with spans for parsing, validation, execution, each database resolver and each SQL
//! statement (text without values), exported to a local OTLP/HTTP receiver this test runs.
//! The same trace id is on the request's log lines and in `INTERNAL_SERVER_ERROR`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::Span,
};
use prost::Message as _;
use serde_json::{Value, json};

use crate::common::{Process, TEST_SECRET, TestApp, TestDb, api::Client as _, keys};

type Received = Arc<Mutex<Vec<Span>>>;

/// A minimal OTLP/HTTP trace receiver: decodes each export and keeps its spans.
async fn receiver() -> (String, Received) {
    let spans: Received = Arc::default();
    let router = Router::new()
        .route(
            "/v1/traces",
            post(|State(spans): State<Received>, body: Bytes| async move {
                let request =
                    ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let mut kept = spans.lock().expect("lock");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        kept.extend(scope.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }),
        )
        .with_state(Arc::clone(&spans));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

async fn traced(
    addr: std::net::SocketAddr,
    token: &str,
    traceparent: &str,
    query: &str,
) -> (reqwest::header::HeaderMap, Value) {
    let reply = TestApp::reply(
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(token)
            .header("traceparent", traceparent)
            .json(&json!({ "query": query })),
    )
    .await;
    (reply.headers, reply.body)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const FAILING_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

// Multi-threaded: the receiver must keep serving while the test blocks on the server's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_traced_from_the_callers_span_down_to_its_sql() {
    let (endpoint, received) = receiver().await;
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("tracy"));

    addr.create_task(&token, "private-title-7f3a").await;
    let (headers, body) = traced(
        addr,
        &token,
        &format!("00-{TRACE}-{CALLER_SPAN}-01"),
        "query Traced { tasks(first: 5) { totalCount nodes { id title } } }",
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let response_trace = headers
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .expect("a traceresponse header");
    assert!(
        response_trace.starts_with(&format!("00-{TRACE}-")),
        "{response_trace}"
    );
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();

    // An internal error names the trace next to its errorId.
    sqlx::query("alter table users rename column email to email_address")
        .execute(&db.pool().await)
        .await
        .expect("break the schema");
    let (_, failed) = traced(
        addr,
        &keys::hs256_token(TEST_SECRET, &keys::claims("newcomer")),
        &format!("00-{FAILING_TRACE}-{CALLER_SPAN}-01"),
        "{ me { id email } }",
    )
    .await;
    let extensions = &failed["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "INTERNAL_SERVER_ERROR", "{failed}");
    assert!(extensions["errorId"].is_string(), "{failed}");
    assert_eq!(extensions["traceId"], FAILING_TRACE, "{failed}");

    // Every log line of the traced request carries its trace id.
    server.wait_for_line(Duration::from_secs(30), |line| {
        line.contains("finished processing request") && line.contains(&request_id)
    });
    let lines: Vec<&String> = server
        .seen
        .iter()
        .filter(|l| l.contains(&request_id))
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.contains(&format!("\"trace_id\":\"{TRACE}\"")),
            "{line}"
        );
    }

    // Stopping flushes the spans still buffered.
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    let spans = received.lock().expect("lock").clone();
    let ours: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE).collect();
    let by_id: HashMap<String, &Span> = ours.iter().map(|s| (hex(&s.span_id), *s)).collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_str()).collect();

    let request = ours
        .iter()
        .find(|s| s.name == "request")
        .expect("the request span");
    assert_eq!(
        hex(&request.parent_span_id),
        CALLER_SPAN,
        "a child of the caller's span"
    );
    let child_of = |name: &str, parent: &Span| {
        ours.iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .unwrap_or_else(|| panic!("no {name} under {}: {names:?}", parent.name))
    };
    child_of("graphql.parse", request);
    child_of("graphql.validate", request);
    let execute = child_of("graphql.execute", request);
    let tasks = child_of("Query.tasks", execute);
    let count = ours
        .iter()
        .find(|s| s.name == "TaskConnection.totalCount")
        .expect("the totalCount resolver");
    // Every SQL span sits under a resolver of this request, with its text and no values.
    let statements: Vec<&&Span> = ours
        .iter()
        .filter(|s| attribute(s, "db.system.name").as_deref() == Some("postgresql"))
        .collect();
    assert!(statements.len() >= 2, "the page and the count: {names:?}");
    for statement in &statements {
        let text = attribute(statement, "db.query.text").expect("statement text");
        assert!(text.contains("tasks"), "{text}");
        assert!(
            !text.contains("private-title-7f3a") && !text.contains("tracy"),
            "{text}"
        );
        let parent = by_id
            .get(&hex(&statement.parent_span_id))
            .expect("a parent in the trace");
        assert!(
            parent.span_id == tasks.span_id || parent.span_id == count.span_id,
            "{} is under {}",
            statement.name,
            parent.name
        );
    }
    // The failing request is a trace of its own, continued from its caller too.
    assert!(
        spans
            .iter()
            .any(|s| hex(&s.trace_id) == FAILING_TRACE && s.name == "request"),
    );
}

#[tokio::test]
async fn without_tracing_a_callers_trace_id_is_logged_apart_never_taken_as_ours() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[]);
    let claimed = "0af7651916cd43dd8448eb211c80319c";
    let reply = TestApp::reply(
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .header("traceparent", format!("00-{claimed}-b7ad6b7169203331-01"))
            .header("x-request-id", "borrowed-trace")
            .json(&serde_json::json!({ "query": "{ apiVersion }" })),
    )
    .await;
    reply.ok();
    let line = server.wait_for_line(Duration::from_secs(30), |line| {
        line.contains("finished processing request") && line.contains("borrowed-trace")
    });
    assert!(
        line.contains(&format!("\"caller_trace_id\":\"{claimed}\"")),
        "{line}"
    );
    assert!(
        !line.contains(&format!("\"trace_id\":\"{claimed}\"")),
        "{line}"
    );
    assert!(
        line.contains("\"trace_id\":\""),
        "an id of taskql's own: {line}"
    );
}
