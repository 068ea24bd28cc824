//! More load than the server or its database can take, shed at once with 503 and
//! `Retry-After` rather than queued: requests past `MAX_IN_FLIGHT`, operations over a socket
//! counted among them, and a database pool with no connection to give.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, TestConfig, ws::Socket};

/// Holds the caller's row lock from outside, so that their next write waits in flight
/// (taskql's writes take it first); returns once a backend of the server waits on it.
async fn block_writes_of(app: &TestApp, user: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.db.begin().await.expect("a transaction");
    sqlx::query("select 1 from users where id = $1 for update")
        .bind(user)
        .execute(&mut *tx)
        .await
        .expect("lock the row");
    tx
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

#[tokio::test]
async fn operations_over_a_socket_take_places_in_flight_like_requests() {
    let app = TestApp::spawn_with(TestConfig::new().set("MAX_IN_FLIGHT", "1")).await;
    let token = app.token_for("wes");
    app.gql(Some(&token), "{ me { id } }", json!({})).await.ok();

    // A mutation over the socket holds the one place while it waits: HTTP is shed.
    let lock = block_writes_of(&app, "wes").await;
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "m", "payload": {
            "query": "mutation { createTask(input: { title: \"slow\" }) { id } }" } }))
        .await;
    app.until_a_statement_waits_on_a_lock().await;
    let shed = app.gql(Some(&token), "{ apiVersion }", json!({})).await;
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert!(shed.header("retry-after").is_some());
    // A second operation on the socket is answered SERVICE_UNAVAILABLE; the socket stays.
    socket
        .send(&json!({ "type": "subscribe", "id": "q", "payload": { "query": "{ apiVersion }" } }))
        .await;
    let refused = socket.recv().await.expect("an answer");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "q");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "SERVICE_UNAVAILABLE"
    );

    lock.rollback().await.expect("release");
    let done = socket.next("m").await;
    assert_eq!(
        done["data"]["createTask"]["id"].as_str().map(str::len),
        Some(36)
    );
    assert_eq!(socket.recv().await.expect("complete")["type"], "complete");
    // The place came back.
    app.gql(Some(&token), "{ apiVersion }", json!({}))
        .await
        .ok();
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
    app.until_a_statement_waits_on_a_lock().await;

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
