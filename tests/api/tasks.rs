//! Every task and profile operation: its happy path and its failures, with two users wherever
//! one could touch the other's data.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Reply, TestApp, TestConfig};

const TASK_FIELDS: &str =
    "id title description completed priority dueAt completedAt createdAt updatedAt owner { id }";

pub async fn create(app: &TestApp, token: &str, input: Value) -> Value {
    let reply = app
        .gql(
            Some(token),
            &format!("mutation($input: CreateTaskInput!) {{ createTask(input: $input) {{ {TASK_FIELDS} }} }}"),
            json!({ "input": input }),
        )
        .await;
    reply.ok()["createTask"].clone()
}

async fn get(app: &TestApp, token: &str, id: &str) -> Reply {
    app.gql(
        Some(token),
        &format!("query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"),
        json!({ "id": id }),
    )
    .await
}

async fn update(app: &TestApp, token: &str, id: &str, input: Value) -> Reply {
    app.gql(
        Some(token),
        &format!("mutation($id: ID!, $input: UpdateTaskInput!) {{ updateTask(id: $id, input: $input) {{ {TASK_FIELDS} }} }}"),
        json!({ "id": id, "input": input }),
    )
    .await
}

async fn task_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from tasks")
        .fetch_one(&app.db)
        .await
        .expect("count")
}

/// The row as stored, for "nothing changed" assertions.
async fn stored(app: &TestApp, id: &str) -> Option<Value> {
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    sqlx::query_scalar::<_, Value>("select to_jsonb(t) - 'search' from tasks t where id = $1")
        .bind(id)
        .fetch_optional(&app.db)
        .await
        .expect("read")
}

#[track_caller]
fn assert_bad_input(reply: &Reply, field: &str) {
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{:#}", reply.body);
    assert_eq!(
        reply.body["errors"][0]["extensions"]["field"], field,
        "{:#}",
        reply.body
    );
}

#[tokio::test]
async fn create_task_fills_in_defaults_and_trims_the_title() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = create(&app, &alice, json!({ "title": "  Buy milk  " })).await;
    assert_eq!(task["title"], "Buy milk");
    assert_eq!(task["priority"], 3);
    assert_eq!(task["completed"], false);
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["dueAt"], Value::Null);
    assert_eq!(task["completedAt"], Value::Null);
    assert_eq!(task["owner"]["id"], "alice");
    assert_eq!(task["createdAt"], task["updatedAt"]);
    assert!(uuid::Uuid::parse_str(task["id"].as_str().expect("id")).is_ok());

    let done = create(
        &app,
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
        let reply = app
            .gql(
                Some(&alice),
                "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        assert_bad_input(&reply, field);
    }
    let reply = app
        .gql(
            Some(&alice),
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
            json!({ "input": { "title": "ok", "dueAt": "tomorrow" } }),
        )
        .await;
    assert_eq!(
        reply.code(),
        Some("BAD_USER_INPUT"),
        "a date that does not parse: {:#}",
        reply.body
    );
    assert_eq!(task_count(&app).await, 0);

    // The limits are in characters: 200 four-byte characters are a valid title.
    create(
        &app,
        &alice,
        json!({ "title": "🦀".repeat(200), "description": "é".repeat(1000) }),
    )
    .await;
    assert_eq!(task_count(&app).await, 1);
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_returns_the_same_task() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let input = json!({ "title": "Pay rent", "idempotencyKey": "req-123" });
    let first = create(&app, &alice, input.clone()).await;
    let retry = create(&app, &alice, input.clone()).await;
    assert_eq!(first, retry);
    assert_eq!(task_count(&app).await, 1);

    // Keys are per user.
    let bobs = create(&app, &bob, input).await;
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(bobs["owner"]["id"], "bob");

    // The same key for a different task is a client bug, not a silent duplicate.
    let reply = app
        .gql(
            Some(&alice),
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }",
            json!({ "input": { "title": "Something else", "idempotencyKey": "req-123" } }),
        )
        .await;
    assert_eq!(reply.code(), Some("CONFLICT"));
    assert_eq!(task_count(&app).await, 2);
}

#[tokio::test]
async fn concurrent_creates_with_one_idempotency_key_make_one_task() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let input = json!({ "title": "Once", "idempotencyKey": "double-click" });
    let replies =
        futures_util::future::join_all((0..8).map(|_| create(&app, &alice, input.clone()))).await;
    for reply in &replies {
        assert_eq!(reply["id"], replies[0]["id"]);
    }
    assert_eq!(task_count(&app).await, 1);
}

#[tokio::test]
async fn task_by_id_is_null_for_missing_and_foreign_tasks_alike() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let task = create(&app, &alice, json!({ "title": "Secret" })).await;
    let id = task["id"].as_str().expect("id");

    assert_eq!(get(&app, &alice, id).await.ok()["task"]["title"], "Secret");
    let foreign = get(&app, &bob, id).await;
    let missing = get(&app, &bob, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(foreign.ok(), &json!({ "task": null }));
    assert_eq!(
        foreign.body, missing.body,
        "a foreign task is indistinguishable from a missing one"
    );

    let reply = get(&app, &alice, "not-a-uuid").await;
    assert_bad_input(&reply, "id");
}

#[tokio::test]
async fn update_task_changes_only_the_fields_given_and_null_clears() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = create(
        &app,
        &alice,
        json!({ "title": "Plan trip", "description": "Lisbon", "priority": 2, "dueAt": "2027-01-10T00:00:00Z" }),
    )
    .await;
    let id = task["id"].as_str().expect("id");

    let renamed = update(&app, &alice, id, json!({ "title": " Plan holiday " })).await;
    let renamed = &renamed.ok()["updateTask"];
    assert_eq!(renamed["title"], "Plan holiday");
    assert_eq!(
        renamed["description"], "Lisbon",
        "absent fields are left alone"
    );
    assert_eq!(renamed["priority"], 2);
    assert_eq!(renamed["dueAt"], task["dueAt"]);
    assert!(renamed["updatedAt"].as_str() > task["updatedAt"].as_str());

    let cleared = update(
        &app,
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
        assert_bad_input(&update(&app, &alice, id, input).await, field);
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
    let id = create(&app, &alice, json!({ "title": "Laundry" })).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = update(&app, &alice, &id, json!({ "completed": true })).await;
    let done = &done.ok()["updateTask"];
    assert_eq!(done["completed"], true);
    assert!(done["completedAt"].is_string());
    let open = update(&app, &alice, &id, json!({ "completed": false })).await;
    assert_eq!(open.ok()["updateTask"]["completedAt"], Value::Null);
}

#[tokio::test]
async fn a_stale_expected_updated_at_is_a_conflict_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = create(&app, &alice, json!({ "title": "Draft" })).await;
    let id = task["id"].as_str().expect("id");
    let read_at = task["updatedAt"].clone();

    // Another tab changes the task...
    let other = update(&app, &alice, id, json!({ "title": "Draft 2" })).await;
    let current = other.ok()["updateTask"]["updatedAt"].clone();

    // ...so this tab's write, based on what it read, must not clobber it.
    let before = stored(&app, id).await;
    let stale = update(
        &app,
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

    let fresh = update(
        &app,
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
    let id = create(&app, &alice, json!({ "title": "Alice's" })).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let before = stored(&app, &id).await;

    for target in [&id, &missing] {
        let reply = update(&app, &bob, target, json!({ "title": "Bob was here" })).await;
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
    let stale = update(
        &app,
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
    let id = create(&app, &alice, json!({ "title": "Temp" })).await["id"]
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
    assert_eq!(task_count(&app).await, 0);
}

async fn ids_of(app: &TestApp, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            create(app, token, json!({ "title": format!("task {i}") })).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    ids
}

#[tokio::test]
async fn bulk_completion_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let mine = ids_of(&app, &alice, 3).await;
    let theirs = ids_of(&app, &bob, 1).await;
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
    assert_bad_input(&set(repeated, true).await, "ids.2");
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
    assert_bad_input(&set(too_many, false).await, "ids");
    assert_bad_input(&set(vec!["nope".into()], false).await, "ids.0");
}

#[tokio::test]
async fn bulk_deletion_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let mine = ids_of(&app, &alice, 3).await;
    let theirs = ids_of(&app, &bob, 1).await;
    let delete = |ids: Vec<String>| {
        app.gql(
            Some(&alice),
            "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }",
            json!({ "ids": ids }),
        )
    };
    let reply = delete(vec![mine[0].clone(), theirs[0].clone()]).await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    assert_eq!(task_count(&app).await, 4, "nothing was deleted");

    let reply = delete(mine.clone()).await;
    assert_eq!(reply.ok()["deleteTasks"], json!(mine));
    assert_eq!(task_count(&app).await, 1, "only Bob's task is left");
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
        create(
            &app,
            &alice,
            json!({ "title": title, "priority": priority, "dueAt": due, "completed": completed }),
        )
        .await;
    }
    create(
        &app,
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

#[tokio::test]
async fn update_me_changes_the_profile_and_survives_the_next_request() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let reply = app
        .gql(
            Some(&alice),
            "mutation($input: UpdateMeInput!) { updateMe(input: $input) { id name image } }",
            json!({ "input": { "name": "Alice L.", "image": "https://img.example/a.png" } }),
        )
        .await;
    assert_eq!(
        reply.ok()["updateMe"],
        json!({ "id": "alice", "name": "Alice L.", "image": "https://img.example/a.png" })
    );

    // The same token again: its claims did not change, so the edit stands.
    let me = app
        .gql(Some(&alice), "{ me { name image } }", json!({}))
        .await;
    assert_eq!(
        me.ok()["me"],
        json!({ "name": "Alice L.", "image": "https://img.example/a.png" })
    );

    let cleared = app
        .gql(
            Some(&alice),
            "mutation { updateMe(input: { image: null }) { name image } }",
            json!({}),
        )
        .await;
    assert_eq!(
        cleared.ok()["updateMe"],
        json!({ "name": "Alice L.", "image": null })
    );

    let bad = app
        .gql(
            Some(&alice),
            "mutation { updateMe(input: { image: \"javascript:alert(1)\" }) { id } }",
            json!({}),
        )
        .await;
    assert_bad_input(&bad, "input.image");
}

#[tokio::test]
async fn delete_me_removes_the_user_and_all_their_tasks_but_no_one_elses() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    ids_of(&app, &alice, 3).await;
    ids_of(&app, &bob, 2).await;
    let reply = app
        .gql(Some(&alice), "mutation { deleteMe }", json!({}))
        .await;
    assert_eq!(reply.ok()["deleteMe"], true);
    let owners: Vec<String> = sqlx::query_scalar("select user_id from tasks")
        .fetch_all(&app.db)
        .await
        .expect("read");
    assert_eq!(owners, ["bob", "bob"]);
    let users: Vec<String> = sqlx::query_scalar("select id from users")
        .fetch_all(&app.db)
        .await
        .expect("read");
    assert_eq!(users, ["bob"]);
    // The token is still valid (the account lives in Better Auth): Alice starts afresh.
    let me = app
        .gql(
            Some(&alice),
            "{ me { id } tasks { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(me.ok()["tasks"]["totalCount"], 0);
}

#[tokio::test]
async fn every_operation_needs_a_token() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7().to_string();
    let operations = [
        "{ me { id } }".to_owned(),
        format!("{{ task(id: \"{id}\") {{ id }} }}"),
        "{ tasks { totalCount } }".to_owned(),
        "{ taskStats { total } }".to_owned(),
        "mutation { createTask(input: { title: \"x\" }) { id } }".to_owned(),
        format!("mutation {{ updateTask(id: \"{id}\", input: {{ title: \"x\" }}) {{ id }} }}"),
        format!("mutation {{ deleteTask(id: \"{id}\") }}"),
        format!("mutation {{ setTasksCompleted(ids: [\"{id}\"], completed: true) {{ id }} }}"),
        format!("mutation {{ deleteTasks(ids: [\"{id}\"]) }}"),
        "mutation { updateMe(input: { name: \"x\" }) { id } }".to_owned(),
        "mutation { deleteMe }".to_owned(),
    ];
    for operation in operations {
        let reply = app.gql(None, &operation, json!({})).await;
        assert_eq!(reply.code(), Some("UNAUTHENTICATED"), "{operation}");
    }
    assert_eq!(task_count(&app).await, 0);
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
    assert_eq!(task_count(&app).await, 0);
}

#[tokio::test]
async fn a_batch_over_the_limit_runs_none_of_its_mutations() {
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_BATCH", "3")).await;
    let alice = app.token_for("alice");
    let op = json!({ "query": "mutation { createTask(input: { title: \"batched\" }) { id } }" });
    let reply = app.post_json(Some(&alice), &json!([op, op, op, op])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(task_count(&app).await, 0);
    let reply = app.post_json(Some(&alice), &json!([op, op, op])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(task_count(&app).await, 3);
}

#[tokio::test]
async fn nested_lists_are_priced_by_their_page_sizes() {
    // The statement budget would refuse the nested document first; this is about the
    // complexity limit alone.
    let app = TestApp::spawn_with(TestConfig::new().set("GRAPHQL_MAX_STATEMENTS", "0")).await;
    let alice = app.token_for("alice");
    // 100 tasks with a handful of fields each: within the default budget.
    app.gql(
        Some(&alice),
        "{ tasks(first: 100) { nodes { id title priority dueAt owner { id } } } }",
        json!({}),
    )
    .await
    .ok();
    // A page of 100 tasks, each with its owner's page of 100: refused before anything runs.
    let reply = app
        .gql(
            Some(&alice),
            "{ tasks(first: 100) { nodes { owner { tasks(first: 100) { nodes { id title } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(reply.message().contains("too complex"));
}

/// A variable that is declared but not sent leaves the input field it feeds absent (GraphQL
/// spec, input object coercion), so it keeps its value; `null` sent explicitly clears it.
#[tokio::test]
async fn an_omitted_variable_leaves_its_input_field_alone() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let task = create(
        &app,
        &alice,
        json!({ "title": "keep", "description": "notes", "dueAt": "2027-01-01T00:00:00Z" }),
    )
    .await;
    let id = task["id"].as_str().expect("id");
    let mutation = "mutation($id: ID!, $title: String, $description: String, $due: DateTime) {
        updateTask(id: $id, input: { title: $title, description: $description, dueAt: $due, priority: 4 }) {
          title description dueAt priority
        }
      }";
    let reply = app.gql(Some(&alice), mutation, json!({ "id": id })).await;
    assert_eq!(
        reply.ok()["updateTask"],
        json!({ "title": "keep", "description": "notes", "dueAt": task["dueAt"], "priority": 4 }),
        "omitted variables changed nothing"
    );
    let reply = app
        .gql(
            Some(&alice),
            mutation,
            json!({ "id": id, "description": null }),
        )
        .await;
    assert_eq!(
        reply.ok()["updateTask"]["description"],
        Value::Null,
        "an explicit null clears"
    );
    assert_eq!(reply.ok()["updateTask"]["title"], "keep");
}
