//! What a hostile or broken client can hold over WebSocket, and for how long: liveness,
//! idleness, connections per client address and per user, origins, places among the
//! operations in flight, and token times no clock can hold.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    TestApp, TestConfig, keys,
    ws::{Socket, TASK_CHANGED},
};

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_one_that_does_stays() {
    let app = TestApp::spawn_with(TestConfig::new().set("WS_KEEPALIVE", "1s")).await;
    // Both acknowledged anonymously, at the same time.
    let mut silent = Socket::open(app.addr, None).await;
    let mut answering = Socket::open(app.addr, None).await;
    // The silent one never answers a ping: closed after two keep-alive periods. The other
    // answers every ping meanwhile (its reader does).
    let closed = silent.silent_until_closed(Duration::from_secs(10));
    tokio::pin!(closed);
    let (code, reason) = tokio::select! {
        closed = &mut closed => closed.expect("a close frame"),
        message = answering.recv() => panic!("the answering socket got {message:?}"),
    };
    assert_eq!(code, 4408, "{reason}");
    assert!(reason.contains("Ping timeout"), "{reason}");
    // The answering one is still served.
    answering.send(&json!({ "type": "ping" })).await;
    let pong = answering.recv().await.expect("still open");
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn a_connection_that_runs_nothing_is_closed_when_idle_and_a_subscriber_is_not() {
    let app = TestApp::spawn_with(TestConfig::new().set("WS_IDLE_TIMEOUT", "1s")).await;
    let token = app.token_for("ida");
    let mut subscriber = Socket::open(app.addr, Some(&token)).await;
    subscriber.subscribe("s", TASK_CHANGED, json!({})).await;
    let mut idle = Socket::open(app.addr, Some(&token)).await;
    let (code, reason) = idle.closed().await.expect("a close frame");
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.contains("Idle"), "{reason}");
    // The subscriber, idle as long, is still served.
    app.gql(
        Some(&token),
        "mutation { createTask(input: { title: \"still here\" }) { id } }",
        json!({}),
    )
    .await
    .ok();
    let event = subscriber.next("s").await;
    assert_eq!(event["data"]["taskChanged"]["task"]["title"], "still here");
}

#[tokio::test]
async fn one_client_address_cannot_take_every_slot() {
    let app =
        TestApp::spawn_with(TestConfig::new().set("WS_MAX_CONNECTIONS_PER_CLIENT", "3")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Socket::open(app.addr, None).await);
    }
    // The reproduction: more sockets from 127.0.0.1. Refused at the upgrade, with a reason.
    let refused = Socket::try_connect(app.addr, &[]).await.err();
    assert_eq!(refused, Some(429));
    let reply = app
        .client
        .get(app.url("/graphql"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "graphql-transport-ws")
        .send()
        .await
        .expect("an answer");
    assert_eq!(reply.status(), 429);
    assert!(reply.headers().contains_key("retry-after"));
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");

    // A closed socket gives its place back (once the server has let go of it: observed).
    let mut gone = held.pop().expect("a socket");
    gone.send_close().await;
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while Socket::try_connect(app.addr, &[]).await.is_err() {
        assert!(
            std::time::Instant::now() < give_up,
            "the place never came back"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn one_user_cannot_take_every_slot_from_many_addresses() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("WS_MAX_CONNECTIONS_PER_CLIENT", "3")
            .set("TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let token = app.token_for("una");
    let init = json!({ "type": "connection_init",
        "payload": { "authorization": format!("Bearer {token}") } });
    let mut held = Vec::new();
    for i in 1..=3 {
        let mut socket = Socket::connect_with_headers(
            app.addr,
            &[("x-forwarded-for", &format!("198.51.100.{i}"))],
        )
        .await;
        socket.send(&init).await;
        assert_eq!(
            socket.recv().await.expect("an ack")["type"],
            "connection_ack"
        );
        held.push(socket);
    }
    let mut fourth =
        Socket::connect_with_headers(app.addr, &[("x-forwarded-for", "198.51.100.4")]).await;
    fourth.send(&init).await;
    assert_eq!(fourth.recv().await, None, "no ack");
    let (code, reason) = fourth.closed().await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.starts_with("RATE_LIMITED:"), "{reason}");
    // Another user from that address is not affected.
    let mut other =
        Socket::connect_with_headers(app.addr, &[("x-forwarded-for", "198.51.100.4")]).await;
    other.init(Some(&app.token_for("vic"))).await;
}

#[tokio::test]
async fn pages_of_other_origins_cannot_open_sockets() {
    let app = TestApp::spawn_with(
        TestConfig::new().set("CORS_ALLOWED_ORIGINS", "https://app.example.com"),
    )
    .await;
    assert_eq!(
        Socket::try_connect(app.addr, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    for allowed in [
        vec![("origin", "https://app.example.com")],
        vec![],
        // The playground, served from this very server.
        vec![("origin", &*format!("http://{}", app.addr))],
    ] {
        let socket = Socket::try_connect(app.addr, &allowed).await;
        assert!(socket.is_ok(), "{allowed:?}");
    }
}

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

/// Waits (bounded) until a server backend waits on a lock: a write is in flight.
async fn a_write_waits(app: &TestApp) {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&app.db)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "no write started waiting"
        );
        tokio::task::yield_now().await;
    }
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
    a_write_waits(&app).await;
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

#[tokio::test]
async fn a_token_whose_times_no_clock_can_hold_is_refused_not_a_panic() {
    let app = TestApp::spawn().await;
    let mut claims = keys::claims("zed");
    claims["exp"] = json!(9_999_999_999_999_999_999_u64);
    let token = keys::hs256_token(crate::common::TEST_SECRET, &claims);
    let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.message().contains("\"exp\""), "{}", reply.message());

    // The reproduction: over the socket it panicked a worker and dropped the connection.
    let mut socket = Socket::connect(app.addr).await;
    socket
        .send(&json!({ "type": "connection_init",
            "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(socket.recv().await, None);
    let (code, reason) = socket.closed().await.expect("a close frame");
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.starts_with("UNAUTHENTICATED:"), "{reason}");
    for claim in ["iat", "nbf"] {
        let mut claims = keys::claims("zed");
        claims[claim] = json!(1e300);
        let token = keys::hs256_token(crate::common::TEST_SECRET, &claims);
        let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
        assert_eq!(reply.status, 401, "{claim}: {}", reply.body);
    }
}
