//! The WebSocket transport (`graphql-transport-ws`) and what a client can hold over it:
//! queries and mutations through the same pipeline, protocol violations closed with the
//! protocol's codes, expiring tokens, liveness and idleness, connections per address, per user
//! and per origin, slow consumers, and shutdown.

use std::time::Duration;

use serde_json::json;

use crate::common::{
    TestApp, TestConfig,
    api::Client as _,
    keys::{self},
    ws::{Socket, TASK_CHANGED, task_changed},
};

#[tokio::test]
async fn queries_and_mutations_run_over_the_socket_through_the_same_pipeline() {
    let app = TestApp::spawn().await;
    let token = app.token_for("erin");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "m", "payload": {
            "query": "mutation { createTask(input: { title: \"over ws\" }) { title } }" } }))
        .await;
    let next = socket.next("m").await;
    assert_eq!(next["data"]["createTask"]["title"], "over ws");
    let complete = socket.recv().await.expect("complete");
    assert_eq!(complete, json!({ "type": "complete", "id": "m" }));

    // The same limits as HTTP: a syntax error and an over-deep document are `error` messages.
    socket
        .send(&json!({ "type": "subscribe", "id": "bad", "payload": { "query": "{ me { " } }))
        .await;
    let error = socket.recv().await.expect("error");
    assert_eq!(error["type"], "error");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let deep = format!("{{ me {}{} }}", "{ __typename ".repeat(60), "}".repeat(60));
    socket
        .send(&json!({ "type": "subscribe", "id": "deep", "payload": { "query": deep } }))
        .await;
    let error = socket.recv().await.expect("error");
    assert_eq!(error["type"], "error", "{error}");

    // A subscription over HTTP is refused with a pointer to the WebSocket.
    let reply = app.gql(Some(&token), TASK_CHANGED, json!({})).await;
    assert_eq!(reply.status, 400);
    assert!(reply.message().contains("WebSocket"), "{}", reply.message());

    // Anonymous connections may introspect, as over HTTP, but not subscribe.
    let mut anonymous = Socket::open(app.addr, None).await;
    anonymous
        .send(&json!({ "type": "subscribe", "id": "1", "payload": { "query": TASK_CHANGED } }))
        .await;
    let error = anonymous.recv().await.expect("error");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn protocol_violations_close_with_the_protocols_codes() {
    let app = TestApp::spawn_with(TestConfig::new().set("WS_INIT_TIMEOUT", "300ms")).await;
    let token = app.token_for("frank");

    // 4400: not JSON, or an unknown type.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.send_text("{not json".to_owned()).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4400));
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.send(&json!({ "type": "dance" })).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4400));

    // 4401: subscribing before the connection was acknowledged.
    let mut socket = Socket::connect(app.addr).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "1", "payload": { "query": TASK_CHANGED } }))
        .await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4401));

    // 4403: a forged or expired token, with the code HTTP would answer in the reason.
    let mut socket = Socket::connect(app.addr).await;
    socket
        .send(&json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged.token.here" } }))
        .await;
    let closed = socket.closed().await.expect("a close frame");
    assert_eq!(closed.0, 4403);
    assert!(closed.1.starts_with("UNAUTHENTICATED"), "{}", closed.1);
    let mut expired_claims = keys::claims("frank");
    expired_claims["exp"] = json!(taskql::auth::claims::now() - 3600);
    let expired = keys::hs256_token(crate::common::TEST_SECRET, &expired_claims);
    let mut socket = Socket::connect(app.addr).await;
    socket
        .send(&json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {expired}") } }))
        .await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4403));

    // 4406: no supported subprotocol offered.
    let mut socket = Socket::connect_with(app.addr, None).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4406));

    // 4408: no connection_init in time (300 ms here).
    let mut socket = Socket::connect(app.addr).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4408));

    // 4409: an id already in use.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("dup", TASK_CHANGED, json!({})).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "dup", "payload": { "query": TASK_CHANGED } }))
        .await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4409));

    // 4429: a second connection_init.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.send(&json!({ "type": "connection_init" })).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(4429));

    // Pings are answered with pongs, and the payload comes back.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket
        .send(&json!({ "type": "ping", "payload": { "n": 1 } }))
        .await;
    let pong = socket.recv().await.expect("pong");
    assert_eq!(pong, json!({ "type": "pong", "payload": { "n": 1 } }));
}

#[tokio::test]
async fn an_expiring_token_ends_the_connection_with_4403() {
    let app = TestApp::spawn().await;
    let mut claims = keys::claims("gina");
    // Valid now, expired two seconds from now: the connection must end then, on its own.
    claims["exp"] = json!(taskql::auth::claims::now() + 2);
    let token = keys::hs256_token(crate::common::TEST_SECRET, &claims);
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("1", TASK_CHANGED, json!({})).await;
    let closed = socket.closed().await.expect("a close frame");
    assert_eq!(closed.0, 4403);
    assert!(closed.1.contains("expired"), "{}", closed.1);
}

#[tokio::test]
async fn the_limits_hold_and_each_is_configurable() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("WS_MAX_SUBSCRIPTIONS_PER_USER", "3")
            .set("WS_MAX_OPERATIONS_PER_CONNECTION", "2")
            .set("WS_MAX_MESSAGE_BYTES", "2048"),
    )
    .await;
    let token = app.token_for("hank");

    // Per connection: the third operation is refused, the connection stays.
    let mut first = Socket::open(app.addr, Some(&token)).await;
    first.subscribe("a", TASK_CHANGED, json!({})).await;
    first.subscribe("b", TASK_CHANGED, json!({})).await;
    first
        .send(&json!({ "type": "subscribe", "id": "c", "payload": { "query": TASK_CHANGED } }))
        .await;
    let refused = first.recv().await.expect("an error");
    assert_eq!(refused["id"], "c");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );

    // Per user, over connections: two here plus one elsewhere make three; a fourth is refused.
    let mut second = Socket::open(app.addr, Some(&token)).await;
    second.subscribe("x", TASK_CHANGED, json!({})).await;
    second
        .send(&json!({ "type": "subscribe", "id": "y", "payload": { "query": TASK_CHANGED } }))
        .await;
    let refused = second.recv().await.expect("an error");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );
    // The live ones still work.
    let id = app.create_task(&token, "still live").await;
    assert_eq!(task_changed(&second.next("x").await)["taskId"], id.as_str());

    // Message size: over the limit closes with 1009.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    let big = json!({ "type": "subscribe", "id": "big", "payload": { "query": format!("{{ apiVersion }} #{}", "x".repeat(4000)) } });
    socket.send(&big).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_without_slowing_others() {
    let app = TestApp::spawn_with(TestConfig::new().set("WS_EVENT_BUFFER", "128")).await;
    let token = app.token_for("jack");
    let mut ids = Vec::new();
    for i in 0..100 {
        let task = app
            .create_task_from(
                &token,
                json!({ "title": format!("t{i}"), "description": "d".repeat(1000) }),
            )
            .await;
        ids.push(task["id"].clone());
    }
    let mut slow = Socket::open(app.addr, Some(&token)).await;
    slow.subscribe("slow", TASK_CHANGED, json!({})).await;
    let mut fast = Socket::open(app.addr, Some(&token)).await;
    fast.subscribe("fast", TASK_CHANGED, json!({})).await;

    // 80 rounds of 100 changes of about 1.2 KB: up to 8,000 events, about 10 MB, more than
    // the slow socket's queue, the server's send buffer (4 MB at most here) and an unread
    // receive buffer hold. `slow` reads nothing meanwhile; `fast` reads everything until the
    // marker created after the last round, and ends with every task as the last round left
    // it (rounds the server read together arrive as one event per task, as the task then
    // was).
    const ROUNDS: usize = 80;
    let total = ROUNDS * ids.len();
    let reader = tokio::spawn(async move {
        let mut last = std::collections::HashMap::new();
        let mut received = 0;
        loop {
            let event = fast.next("fast").await;
            assert!(event.get("errors").is_none(), "{event}");
            let change = &event["data"]["taskChanged"];
            if change["task"]["title"] == "marker" {
                return (last, received);
            }
            received += 1;
            last.insert(
                change["taskId"].as_str().expect("an id").to_owned(),
                change["task"]["completed"].as_bool().expect("a task"),
            );
        }
    });
    for round in 0..ROUNDS {
        app.gql(
            Some(&token),
            "mutation($ids: [ID!]!, $c: Boolean!) { setTasksCompleted(ids: $ids, completed: $c) { id } }",
            json!({ "ids": ids, "c": round % 2 == 0 }),
        )
        .await
        .ok();
    }
    app.create_task(&token, "marker").await;
    let (last, received) = reader.await.expect("the fast subscriber kept up");
    assert_eq!(last.len(), ids.len(), "every task was reported");
    let final_state = (ROUNDS - 1).is_multiple_of(2);
    assert!(last.values().all(|completed| *completed == final_state));
    assert!(received >= ids.len() && received <= total, "{received}");

    // The slow one got what fitted, then a close saying why.
    let mut received = 0;
    let closed = loop {
        match slow.recv().await {
            Some(message) if message["type"] == "next" => received += 1,
            Some(message) => panic!("unexpected {message}"),
            None => break slow.closed().await,
        }
    };
    assert!(received < total, "{received} of {total} arrived");
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("Too slow"), "{reason}");
}

#[tokio::test]
async fn shutdown_answers_in_flight_work_then_closes_sockets_with_1001() {
    let app = TestApp::spawn().await;
    let token = app.token_for("kate");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("1", TASK_CHANGED, json!({})).await;
    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    let closed = socket.closed().await.expect("a close frame");
    assert_eq!(closed.0, 1001, "{}", closed.1);
    let _app = stopping.await.expect("the server stopped cleanly");
}

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
    app.create_task(&token, "still here").await;
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
