//! Live subscriptions over a real WebSocket (`graphql-transport-ws`), as Apollo's
//! `GraphQLWsLink` and urql's `subscriptionExchange` use them: the events, their scoping,
//! the protocol's close codes and the limits.
//!
//! Absence is shown without waiting: events of one subscription arrive in commit order, so
//! when a later change's event arrives, an event that should not exist would have come first.

use serde_json::{Value, json};

use crate::common::{
    TestApp, TestConfig, keys,
    ws::{Socket, TASK_CHANGED},
};

async fn create(app: &TestApp, token: &str, title: &str) -> String {
    let reply = app
        .gql(
            Some(token),
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
            json!({ "input": { "title": title } }),
        )
        .await;
    reply.ok()["createTask"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

fn change(payload: &Value) -> &Value {
    assert!(payload.get("errors").is_none(), "{payload}");
    &payload["data"]["taskChanged"]
}

#[tokio::test]
async fn every_kind_of_change_arrives_with_the_task_as_it_now_is() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    assert_eq!(socket.protocol.as_deref(), Some("graphql-transport-ws"));
    socket.subscribe("1", TASK_CHANGED, json!({})).await;

    let id = create(&app, &token, "Buy milk").await;
    let created = socket.next("1").await;
    let event = change(&created);
    assert_eq!(event["kind"], "CREATED");
    assert_eq!(event["taskId"], id.as_str());
    assert_eq!(
        event["task"]["id"],
        id.as_str(),
        "normalisable: the task has its id"
    );
    assert_eq!(event["task"]["title"], "Buy milk");
    assert!(event["at"].as_str().is_some_and(|at| at.ends_with('Z')));

    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { title: \"Buy oat milk\" }) { id } }",
        json!({ "id": id }),
    )
    .await
    .ok();
    let updated = socket.next("1").await;
    assert_eq!(change(&updated)["kind"], "UPDATED");
    assert_eq!(change(&updated)["task"]["title"], "Buy oat milk");

    for (completed, kind) in [(true, "COMPLETED"), (false, "UNCOMPLETED")] {
        app.gql(
            Some(&token),
            "mutation($id: ID!, $c: Boolean!) { updateTask(id: $id, input: { completed: $c }) { id } }",
            json!({ "id": id, "c": completed }),
        )
        .await
        .ok();
        let event = socket.next("1").await;
        assert_eq!(change(&event)["kind"], kind);
        assert_eq!(change(&event)["task"]["completed"], completed);
    }

    app.gql(
        Some(&token),
        "mutation($id: ID!) { deleteTask(id: $id) }",
        json!({ "id": id }),
    )
    .await
    .ok();
    let deleted = socket.next("1").await;
    assert_eq!(change(&deleted)["kind"], "DELETED");
    assert_eq!(change(&deleted)["taskId"], id.as_str());
    assert_eq!(change(&deleted)["task"], Value::Null);

    // Completing from the client's side ends the subscription: a later change is not sent,
    // and the id can be used again.
    socket.send(&json!({ "type": "complete", "id": "1" })).await;
    socket.subscribe("1", TASK_CHANGED, json!({})).await;
    let again = create(&app, &token, "Again").await;
    assert_eq!(change(&socket.next("1").await)["taskId"], again.as_str());
}

#[tokio::test]
async fn bulk_mutations_and_delete_me_send_one_event_per_task_and_rollbacks_send_none() {
    let app = TestApp::spawn().await;
    let token = app.token_for("bob");
    let a = create(&app, &token, "a").await;
    let b = create(&app, &token, "b").await;
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("s", TASK_CHANGED, json!({})).await;

    app.gql(
        Some(&token),
        "mutation($ids: [ID!]!) { setTasksCompleted(ids: $ids, completed: true) { id } }",
        json!({ "ids": [a, b] }),
    )
    .await
    .ok();
    let mut completed = Vec::new();
    for _ in 0..2 {
        let event = socket.next("s").await;
        assert_eq!(change(&event)["kind"], "COMPLETED");
        completed.push(change(&event)["taskId"].as_str().expect("id").to_owned());
    }
    completed.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(completed, both);

    // All or nothing: one unknown id rolls the whole bulk back, and nothing is announced.
    let missing = "0193a7a0-0000-7000-8000-000000000000";
    let refused = app
        .gql(
            Some(&token),
            "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }",
            json!({ "ids": [a, missing] }),
        )
        .await;
    assert_eq!(refused.code(), Some("NOT_FOUND"));
    let marker = create(&app, &token, "after the rollback").await;
    let next = socket.next("s").await;
    assert_eq!(
        change(&next)["taskId"],
        marker.as_str(),
        "the rolled-back delete sent nothing"
    );

    // deleteMe removes every task by cascade: each one is announced as deleted.
    app.gql(Some(&token), "mutation { deleteMe }", json!({}))
        .await
        .ok();
    let mut gone = Vec::new();
    for _ in 0..3 {
        let event = socket.next("s").await;
        assert_eq!(change(&event)["kind"], "DELETED");
        gone.push(change(&event)["taskId"].as_str().expect("id").to_owned());
    }
    gone.sort();
    let mut all = vec![a, b, marker];
    all.sort();
    assert_eq!(gone, all);
}

#[tokio::test]
async fn no_event_of_another_user_ever_reaches_a_socket() {
    let app = TestApp::spawn().await;
    let users = ["u1", "u2", "u3"];
    let mut sockets = Vec::new();
    for user in users {
        let token = app.token_for(user);
        let mut socket = Socket::open(app.addr, Some(&token)).await;
        socket.subscribe("all", TASK_CHANGED, json!({})).await;
        sockets.push((user, token, socket));
    }
    // Everyone writes, in turn; then each writes a marker. Each socket must see exactly its
    // own two events, in order, and nothing of the others before its marker.
    for (user, token, _) in &sockets {
        create(&app, token, &format!("{user}'s task")).await;
    }
    for (user, token, _) in &sockets {
        create(&app, token, &format!("{user}'s marker")).await;
    }
    for (user, _, socket) in &mut sockets {
        for title in [format!("{user}'s task"), format!("{user}'s marker")] {
            let event = socket.next("all").await;
            assert_eq!(change(&event)["task"]["title"], title.as_str(), "{user}");
        }
    }
}

#[tokio::test]
async fn a_filter_narrows_the_stream_and_reports_tasks_leaving_it() {
    let app = TestApp::spawn().await;
    let token = app.token_for("carol");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    // Open tasks with "milk" in them (words matched as `tasks` matches them).
    socket
        .subscribe(
            "open",
            TASK_CHANGED,
            json!({ "filter": { "completed": false, "search": "MILK" } }),
        )
        .await;
    create(&app, &token, "walk the dog").await;
    let milk = create(&app, &token, "buy milk").await;
    let event = socket.next("open").await;
    assert_eq!(
        change(&event)["taskId"],
        milk.as_str(),
        "the dog was filtered out"
    );

    // Completing it moves it out of the filter: the subscriber hears of it (it matched before).
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { completed: true }) { id } }",
        json!({ "id": milk }),
    )
    .await
    .ok();
    let left = socket.next("open").await;
    assert_eq!(change(&left)["kind"], "COMPLETED");
    // A later edit of the completed task concerns the filter no more.
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { title: \"buy more milk\" }) { id } }",
        json!({ "id": milk }),
    )
    .await
    .ok();
    let marker = create(&app, &token, "milk again").await;
    let next = socket.next("open").await;
    assert_eq!(change(&next)["taskId"], marker.as_str());

    // A filter that cannot be valid is refused like `tasks` refuses it.
    socket
        .send(&json!({ "type": "subscribe", "id": "bad", "payload": {
            "query": TASK_CHANGED, "variables": { "filter": { "search": "   " } } } }))
        .await;
    let error = socket.recv().await.expect("an answer");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_long_description_in_four_byte_characters_still_arrives() {
    let app = TestApp::spawn().await;
    let token = app.token_for("dave");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("1", TASK_CHANGED, json!({})).await;
    let description = "🦀".repeat(1000);
    // Control characters are escaped six bytes each: with the crabs, far over NOTIFY's
    // 8000 bytes, so the row is read by the listening instance instead of carried.
    let title = "\u{1}".repeat(200);
    let reply = app
        .gql(
            Some(&token),
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
            json!({ "input": { "title": format!("x{}", &title[..199]), "description": description } }),
        )
        .await;
    let id = reply.ok()["createTask"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let event = socket.next("1").await;
    assert_eq!(change(&event)["taskId"], id.as_str());
    assert_eq!(change(&event)["task"]["description"], description.as_str());
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { completed: true }) { id } }",
        json!({ "id": id }),
    )
    .await
    .ok();
    let event = socket.next("1").await;
    assert_eq!(
        change(&event)["kind"],
        "COMPLETED",
        "told apart without the old row"
    );
}

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
    let id = create(&app, &token, "still live").await;
    assert_eq!(change(&second.next("x").await)["taskId"], id.as_str());

    // Message size: over the limit closes with 1009.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    let big = json!({ "type": "subscribe", "id": "big", "payload": { "query": format!("{{ apiVersion }} #{}", "x".repeat(4000)) } });
    socket.send(&big).await;
    assert_eq!(socket.closed().await.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn subscribe_requests_count_against_the_rate_limit() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "3"),
    )
    .await;
    let token = app.token_for("ivy");
    // The upgrade is charged to the address, init's token check too; subscriptions to the user.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    let mut refused = None;
    for i in 0..5 {
        socket
            .send(&json!({ "type": "subscribe", "id": format!("{i}"),
                           "payload": { "query": "{ apiVersion }" } }))
            .await;
        loop {
            let message = socket.recv().await.expect("an answer");
            if message["type"] == "error" {
                refused = Some(message);
                break;
            }
            if message["type"] == "complete" {
                break;
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("the budget runs out");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_without_slowing_others() {
    let app = TestApp::spawn_with(TestConfig::new().set("WS_EVENT_BUFFER", "128")).await;
    let token = app.token_for("jack");
    let mut ids = Vec::new();
    for i in 0..100 {
        let reply = app
            .gql(
                Some(&token),
                "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
                json!({ "input": { "title": format!("t{i}"), "description": "d".repeat(1000) } }),
            )
            .await;
        ids.push(reply.ok()["createTask"]["id"].clone());
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
    create(&app, &token, "marker").await;
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
