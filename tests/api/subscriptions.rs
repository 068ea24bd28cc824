//! Live subscriptions over a real WebSocket (`graphql-transport-ws`), as Apollo's
//! `GraphQLWsLink` and urql's `subscriptionExchange` use them: every kind of change, bulk
//! changes and rollbacks, scoping to the caller, filters, and events of any size.

use serde_json::{Value, json};

use crate::common::{
    TestApp,
    api::Client as _,
    ws::{Socket, TASK_CHANGED, task_changed},
};

#[tokio::test]
async fn every_kind_of_change_arrives_with_the_task_as_it_now_is() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    assert_eq!(socket.protocol.as_deref(), Some("graphql-transport-ws"));
    socket.subscribe("1", TASK_CHANGED, json!({})).await;

    let id = app.create_task(&token, "Buy milk").await;
    let created = socket.next("1").await;
    let event = task_changed(&created);
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
    assert_eq!(task_changed(&updated)["kind"], "UPDATED");
    assert_eq!(task_changed(&updated)["task"]["title"], "Buy oat milk");

    for (completed, kind) in [(true, "COMPLETED"), (false, "UNCOMPLETED")] {
        app.gql(
            Some(&token),
            "mutation($id: ID!, $c: Boolean!) { updateTask(id: $id, input: { completed: $c }) { id } }",
            json!({ "id": id, "c": completed }),
        )
        .await
        .ok();
        let event = socket.next("1").await;
        assert_eq!(task_changed(&event)["kind"], kind);
        assert_eq!(task_changed(&event)["task"]["completed"], completed);
    }

    app.gql(
        Some(&token),
        "mutation($id: ID!) { deleteTask(id: $id) }",
        json!({ "id": id }),
    )
    .await
    .ok();
    let deleted = socket.next("1").await;
    assert_eq!(task_changed(&deleted)["kind"], "DELETED");
    assert_eq!(task_changed(&deleted)["taskId"], id.as_str());
    assert_eq!(task_changed(&deleted)["task"], Value::Null);

    // Completing from the client's side ends the subscription: a later change is not sent,
    // and the id can be used again.
    socket.send(&json!({ "type": "complete", "id": "1" })).await;
    socket.subscribe("1", TASK_CHANGED, json!({})).await;
    let again = app.create_task(&token, "Again").await;
    assert_eq!(
        task_changed(&socket.next("1").await)["taskId"],
        again.as_str()
    );
}

#[tokio::test]
async fn bulk_mutations_and_delete_me_send_one_event_per_task_and_rollbacks_send_none() {
    let app = TestApp::spawn().await;
    let token = app.token_for("bob");
    let a = app.create_task(&token, "a").await;
    let b = app.create_task(&token, "b").await;
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
        assert_eq!(task_changed(&event)["kind"], "COMPLETED");
        completed.push(
            task_changed(&event)["taskId"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
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
    let marker = app.create_task(&token, "after the rollback").await;
    let next = socket.next("s").await;
    assert_eq!(
        task_changed(&next)["taskId"],
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
        assert_eq!(task_changed(&event)["kind"], "DELETED");
        gone.push(
            task_changed(&event)["taskId"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
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
        app.create_task(token, &format!("{user}'s task")).await;
    }
    for (user, token, _) in &sockets {
        app.create_task(token, &format!("{user}'s marker")).await;
    }
    for (user, _, socket) in &mut sockets {
        for title in [format!("{user}'s task"), format!("{user}'s marker")] {
            let event = socket.next("all").await;
            assert_eq!(
                task_changed(&event)["task"]["title"],
                title.as_str(),
                "{user}"
            );
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
    app.create_task(&token, "walk the dog").await;
    let milk = app.create_task(&token, "buy milk").await;
    let event = socket.next("open").await;
    assert_eq!(
        task_changed(&event)["taskId"],
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
    assert_eq!(task_changed(&left)["kind"], "COMPLETED");
    // A later edit of the completed task concerns the filter no more.
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { title: \"buy more milk\" }) { id } }",
        json!({ "id": milk }),
    )
    .await
    .ok();
    let marker = app.create_task(&token, "milk again").await;
    let next = socket.next("open").await;
    assert_eq!(task_changed(&next)["taskId"], marker.as_str());

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
    let task = app
        .create_task_from(
            &token,
            json!({ "title": format!("x{}", &title[..199]), "description": description }),
        )
        .await;
    let id = task["id"].as_str().expect("id").to_owned();
    let event = socket.next("1").await;
    assert_eq!(task_changed(&event)["taskId"], id.as_str());
    assert_eq!(
        task_changed(&event)["task"]["description"],
        description.as_str()
    );
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { completed: true }) { id } }",
        json!({ "id": id }),
    )
    .await
    .ok();
    let event = socket.next("1").await;
    assert_eq!(
        task_changed(&event)["kind"],
        "COMPLETED",
        "told apart without the old row"
    );
}
