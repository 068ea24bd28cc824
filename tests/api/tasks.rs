//! Every task operation (create, read, update, delete, bulk, stats): its happy path and its
//! failures, with two users wherever one could touch the other's data.

use serde_json::{Value, json};

use crate::common::{TestApp, api::Client as _};

/// The row as stored, for "nothing changed" assertions.
async fn stored(app: &TestApp, id: &str) -> Option<Value> {
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    sqlx::query_scalar::<_, Value>("select to_jsonb(t) - 'search' from tasks t where id = $1")
        .bind(id)
        .fetch_optional(&app.db)
        .await
        .expect("read")
}

#[tokio::test]
async fn create_task_fills_in_defaults_and_trims_the_title() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = app
        .create_task_from(&alice, json!({ "title": "  Buy milk  " }))
        .await;
    assert_eq!(task["title"], "Buy milk");
    assert_eq!(task["priority"], 3);
    assert_eq!(task["completed"], false);
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["dueAt"], Value::Null);
    assert_eq!(task["completedAt"], Value::Null);
    assert_eq!(task["owner"]["id"], "alice");
    assert_eq!(task["createdAt"], task["updatedAt"]);
    assert!(uuid::Uuid::parse_str(task["id"].as_str().expect("id")).is_ok());

    let done = app
        .create_task_from(
            &alice,
            json!({ "title": "Filed taxes", "description": "2025", "priority": 1,
                "dueAt": "2026-04-15T23:59:00+02:00", "completed": true }),
        )
        .await;
    assert_eq!(
        done["dueAt"], "2026-04-15T21:59:00.000000Z",
        "stored and answered in UTC"
    );
    assert!(
        done["completedAt"].is_string(),
        "a task created completed has a completion time"
    );
}

#[tokio::test]
async fn create_task_validates_every_field_and_writes_nothing_when_invalid() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let cases = [
        (json!({ "title": "" }), "input.title"),
        (json!({ "title": " \n\t " }), "input.title"),
        (json!({ "title": "x".repeat(201) }), "input.title"),
        (
            json!({ "title": "ok", "description": "d".repeat(1001) }),
            "input.description",
        ),
        (json!({ "title": "ok", "priority": 0 }), "input.priority"),
        (json!({ "title": "ok", "priority": 6 }), "input.priority"),
        (
            json!({ "title": "ok", "idempotencyKey": "" }),
            "input.idempotencyKey",
        ),
    ];
    for (input, field) in cases {
        app.try_create_task(&alice, input)
            .await
            .assert_bad_input(field);
    }
    let reply = app
        .try_create_task(&alice, json!({ "title": "ok", "dueAt": "tomorrow" }))
        .await;
    assert_eq!(
        reply.code(),
        Some("BAD_USER_INPUT"),
        "a date that does not parse: {:#}",
        reply.body
    );
    assert_eq!(app.rows("tasks").await, 0);

    // The limits are in characters: 200 four-byte characters are a valid title.
    app.create_task_from(
        &alice,
        json!({ "title": "🦀".repeat(200), "description": "é".repeat(1000) }),
    )
    .await;
    assert_eq!(app.rows("tasks").await, 1);
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_returns_the_same_task() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let input = json!({ "title": "Pay rent", "idempotencyKey": "req-123" });
    let first = app.create_task_from(&alice, input.clone()).await;
    let retry = app.create_task_from(&alice, input.clone()).await;
    assert_eq!(first, retry);
    assert_eq!(app.rows("tasks").await, 1);

    // Keys are per user.
    let bobs = app.create_task_from(&bob, input).await;
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(bobs["owner"]["id"], "bob");

    // The same key for a different task is a client bug, not a silent duplicate.
    let reply = app
        .try_create_task(
            &alice,
            json!({ "title": "Something else", "idempotencyKey": "req-123" }),
        )
        .await;
    assert_eq!(reply.code(), Some("CONFLICT"));
    assert_eq!(app.rows("tasks").await, 2);
}

#[tokio::test]
async fn concurrent_creates_with_one_idempotency_key_make_one_task() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let input = json!({ "title": "Once", "idempotencyKey": "double-click" });
    let replies =
        futures_util::future::join_all((0..8).map(|_| app.create_task_from(&alice, input.clone())))
            .await;
    for reply in &replies {
        assert_eq!(reply["id"], replies[0]["id"]);
    }
    assert_eq!(app.rows("tasks").await, 1);
}

#[tokio::test]
async fn task_by_id_is_null_for_missing_and_foreign_tasks_alike() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let task = app
        .create_task_from(&alice, json!({ "title": "Secret" }))
        .await;
    let id = task["id"].as_str().expect("id");

    assert_eq!(app.task(&alice, id).await.ok()["task"]["title"], "Secret");
    let foreign = app.task(&bob, id).await;
    let missing = app.task(&bob, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(foreign.ok(), &json!({ "task": null }));
    assert_eq!(
        foreign.body, missing.body,
        "a foreign task is indistinguishable from a missing one"
    );

    let reply = app.task(&alice, "not-a-uuid").await;
    reply.assert_bad_input("id");
}

#[tokio::test]
async fn update_task_changes_only_the_fields_given_and_null_clears() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = app.create_task_from(&alice,
        json!({ "title": "Plan trip", "description": "Lisbon", "priority": 2, "dueAt": "2027-01-10T00:00:00Z" }))
    .await;
    let id = task["id"].as_str().expect("id");

    let renamed = app
        .update_task(&alice, id, json!({ "title": " Plan holiday " }))
        .await;
    let renamed = &renamed.ok()["updateTask"];
    assert_eq!(renamed["title"], "Plan holiday");
    assert_eq!(
        renamed["description"], "Lisbon",
        "absent fields are left alone"
    );
    assert_eq!(renamed["priority"], 2);
    assert_eq!(renamed["dueAt"], task["dueAt"]);
    assert!(renamed["updatedAt"].as_str() > task["updatedAt"].as_str());

    let cleared = app
        .update_task(
            &alice,
            id,
            json!({ "description": null, "dueAt": null, "priority": 5 }),
        )
        .await;
    let cleared = &cleared.ok()["updateTask"];
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["dueAt"], Value::Null);
    assert_eq!(cleared["priority"], 5);
    assert_eq!(cleared["title"], "Plan holiday");

    for (input, field) in [
        (json!({ "title": null }), "input.title"),
        (json!({ "priority": null }), "input.priority"),
        (json!({ "completed": null }), "input.completed"),
        (json!({ "title": "" }), "input.title"),
        (json!({ "priority": 9 }), "input.priority"),
        (
            json!({ "description": "d".repeat(1001) }),
            "input.description",
        ),
    ] {
        let before = stored(&app, id).await;
        app.update_task(&alice, id, input)
            .await
            .assert_bad_input(field);
        assert_eq!(
            stored(&app, id).await,
            before,
            "a refused update wrote nothing"
        );
    }
}

#[tokio::test]
async fn completing_stamps_completed_at_and_reopening_clears_it() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let id = app
        .create_task_from(&alice, json!({ "title": "Laundry" }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = app
        .update_task(&alice, &id, json!({ "completed": true }))
        .await;
    let done = &done.ok()["updateTask"];
    assert_eq!(done["completed"], true);
    assert!(done["completedAt"].is_string());
    let open = app
        .update_task(&alice, &id, json!({ "completed": false }))
        .await;
    assert_eq!(open.ok()["updateTask"]["completedAt"], Value::Null);
}

#[tokio::test]
async fn a_stale_expected_updated_at_is_a_conflict_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = app
        .create_task_from(&alice, json!({ "title": "Draft" }))
        .await;
    let id = task["id"].as_str().expect("id");
    let read_at = task["updatedAt"].clone();

    // Another tab changes the task...
    let other = app
        .update_task(&alice, id, json!({ "title": "Draft 2" }))
        .await;
    let current = other.ok()["updateTask"]["updatedAt"].clone();

    // ...so this tab's write, based on what it read, must not clobber it.
    let before = stored(&app, id).await;
    let stale = app
        .update_task(
            &alice,
            id,
            json!({ "title": "Mine", "expectedUpdatedAt": read_at }),
        )
        .await;
    assert_eq!(stale.code(), Some("CONFLICT"), "{:#}", stale.body);
    assert_eq!(
        stale.body["errors"][0]["extensions"]["currentUpdatedAt"],
        current
    );
    assert_eq!(stored(&app, id).await, before);

    let fresh = app
        .update_task(
            &alice,
            id,
            json!({ "title": "Mine", "expectedUpdatedAt": current }),
        )
        .await;
    assert_eq!(fresh.ok()["updateTask"]["title"], "Mine");
}

#[tokio::test]
async fn updating_or_deleting_another_users_task_is_not_found_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let id = app
        .create_task_from(&alice, json!({ "title": "Alice's" }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let before = stored(&app, &id).await;

    for target in [&id, &missing] {
        let reply = app
            .update_task(&bob, target, json!({ "title": "Bob was here" }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"));
        let reply = app
            .gql(
                Some(&bob),
                "mutation($id: ID!) { deleteTask(id: $id) }",
                json!({ "id": target }),
            )
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"));
    }
    let stale = app
        .update_task(
            &bob,
            &id,
            json!({ "title": "x", "expectedUpdatedAt": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        stale.code(),
        Some("NOT_FOUND"),
        "a stale write to a foreign task still reveals nothing"
    );
    assert_eq!(stored(&app, &id).await, before);
}

#[tokio::test]
async fn delete_task_returns_the_id_once() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let id = app
        .create_task_from(&alice, json!({ "title": "Temp" }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let delete = || {
        app.gql(
            Some(&alice),
            "mutation($id: ID!) { deleteTask(id: $id) }",
            json!({ "id": id }),
        )
    };
    assert_eq!(delete().await.ok()["deleteTask"], id.as_str());
    assert_eq!(delete().await.code(), Some("NOT_FOUND"));
    assert_eq!(app.rows("tasks").await, 0);
}

#[tokio::test]
async fn bulk_completion_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let mine = app.create_tasks(&alice, 3).await;
    let theirs = app.create_tasks(&bob, 1).await;
    let set = |ids: Vec<String>, completed: bool| {
        app.gql(
            Some(&alice),
            "mutation($ids: [ID!]!, $completed: Boolean!) { setTasksCompleted(ids: $ids, completed: $completed) { id completed } }",
            json!({ "ids": ids, "completed": completed }),
        )
    };

    // One foreign id: nothing changes, and the error names only that id.
    let mut mixed = mine.clone();
    mixed.push(theirs[0].clone());
    let reply = set(mixed, true).await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    assert_eq!(
        reply.body["errors"][0]["extensions"]["ids"],
        json!([theirs[0]])
    );
    let completed: i64 = sqlx::query_scalar("select count(*) from tasks where completed")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(completed, 0);

    // A repeated id has no single answer position: refused, naming the repeat, and nothing
    // changes.
    let repeated = vec![mine[0].clone(), mine[1].clone(), mine[0].clone()];
    set(repeated, true).await.assert_bad_input("ids.2");
    let completed: i64 = sqlx::query_scalar("select count(*) from tasks where completed")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(completed, 0);

    // All mine: all change, returned in the order asked.
    let order = vec![mine[2].clone(), mine[0].clone(), mine[1].clone()];
    let reply = set(order, true).await;
    let done = reply.ok()["setTasksCompleted"]
        .as_array()
        .expect("list")
        .clone();
    let returned: Vec<&str> = done.iter().map(|t| t["id"].as_str().expect("id")).collect();
    assert_eq!(returned, [&mine[2], &mine[0], &mine[1]]);
    assert!(done.iter().all(|t| t["completed"] == true));

    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    set(too_many, false).await.assert_bad_input("ids");
    set(vec!["nope".into()], false)
        .await
        .assert_bad_input("ids.0");
}

#[tokio::test]
async fn bulk_deletion_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let mine = app.create_tasks(&alice, 3).await;
    let theirs = app.create_tasks(&bob, 1).await;
    let delete = |ids: Vec<String>| {
        app.gql(
            Some(&alice),
            "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }",
            json!({ "ids": ids }),
        )
    };
    let reply = delete(vec![mine[0].clone(), theirs[0].clone()]).await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    assert_eq!(app.rows("tasks").await, 4, "nothing was deleted");

    let reply = delete(mine.clone()).await;
    assert_eq!(reply.ok()["deleteTasks"], json!(mine));
    assert_eq!(app.rows("tasks").await, 1, "only Bob's task is left");
}

#[tokio::test]
async fn task_stats_count_what_the_filter_selects() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    for (title, priority, due, completed) in [
        ("a", 1, Some("2020-01-01T00:00:00Z"), false),
        ("b", 1, Some("2020-01-01T00:00:00Z"), true),
        ("c", 5, Some("2999-01-01T00:00:00Z"), false),
        ("d", 5, None, false),
        ("e", 3, None, true),
    ] {
        app.create_task_from(
            &alice,
            json!({ "title": title, "priority": priority, "dueAt": due, "completed": completed }),
        )
        .await;
    }
    app.create_task_from(
        &bob,
        json!({ "title": "bob's", "priority": 1, "dueAt": "2020-01-01T00:00:00Z" }),
    )
    .await;

    let query = "query($f: TaskFilter) { taskStats(filter: $f) { total completed open overdue byPriority { priority count } } me { taskStats { total } } }";
    let reply = app.gql(Some(&alice), query, json!({})).await;
    let stats = &reply.ok()["taskStats"];
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["completed"], 2);
    assert_eq!(stats["open"], 3);
    assert_eq!(
        stats["overdue"], 1,
        "open and past due; completed past-due tasks are not overdue"
    );
    let counts: Vec<i64> = stats["byPriority"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["count"].as_i64().expect("n"))
        .collect();
    assert_eq!(counts, [2, 0, 1, 0, 2]);
    assert_eq!(reply.ok()["me"]["taskStats"]["total"], 5);

    let reply = app
        .gql(
            Some(&alice),
            query,
            json!({ "f": { "priority": { "eq": 5 } } }),
        )
        .await;
    assert_eq!(reply.ok()["taskStats"]["total"], 2);
}
