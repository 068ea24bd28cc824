//! One user can never read, change or even detect another user's data, whatever they send.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::common::{Reply, TestApp, api::Client as _};

/// Every task id anywhere in a response.
fn task_ids(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get("__typename").and_then(Value::as_str) == Some("Task")
                && let Some(id) = map.get("id").and_then(Value::as_str)
            {
                into.push(id.to_owned());
            }
            map.values().for_each(|v| task_ids(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| task_ids(v, into)),
        _ => {}
    }
}

/// Every user id anywhere in a response.
fn user_ids(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get("__typename").and_then(Value::as_str) == Some("User")
                && let Some(id) = map.get("id").and_then(Value::as_str)
            {
                into.push(id.to_owned());
            }
            map.values().for_each(|v| user_ids(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| user_ids(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn another_users_tasks_are_invisible_to_every_read() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let secret = app
        .create_task_from(
            &alice,
            json!({ "title": "zanzibar plans", "description": "surprise party", "priority": 5 }),
        )
        .await;
    let id = secret["id"].as_str().expect("id");
    app.create_task_from(&bob, json!({ "title": "bob's own" }))
        .await;

    let reads = [
        format!("{{ task(id: \"{id}\") {{ __typename id }} }}"),
        "{ tasks(first: 100) { totalCount nodes { __typename id owner { __typename id } } } }".to_owned(),
        "{ tasks(filter: { search: \"zanzibar\" }) { totalCount nodes { __typename id } } }".to_owned(),
        "{ tasks(filter: { title: { contains: \"zanz\" } }) { totalCount nodes { __typename id } } }".to_owned(),
        "{ tasks(filter: { priority: { eq: 5 } }) { totalCount } }".to_owned(),
        "{ taskStats { total byPriority { priority count } } }".to_owned(),
        "{ me { __typename id tasks(first: 100) { totalCount nodes { __typename id } } taskStats { total } } }".to_owned(),
    ];
    for query in reads {
        let reply = app.gql(Some(&bob), &query, json!({})).await;
        let data = reply.ok();
        let mut tasks = Vec::new();
        task_ids(data, &mut tasks);
        assert!(!tasks.contains(&id.to_owned()), "{query} leaked the task");
        let mut users = Vec::new();
        user_ids(data, &mut users);
        assert!(
            users.iter().all(|user| user == "bob"),
            "{query} showed another user: {users:?}"
        );
        let text = data.to_string();
        assert!(
            !text.contains("zanzibar") && !text.contains("surprise"),
            "{query} leaked content"
        );
    }
    let stats = app.gql(Some(&bob), "{ taskStats { total byPriority { count } } tasks(filter: { search: \"zanzibar\" }) { totalCount } }", json!({})).await;
    assert_eq!(
        stats.ok()["taskStats"]["total"],
        1,
        "counts include only Bob's task"
    );
    assert_eq!(stats.ok()["tasks"]["totalCount"], 0);
}

/// A small deterministic generator (xorshift), so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random operations from three users, aimed at their own tasks and at each other's. After
/// every operation: no response holds a task or user of someone else, every attempt on a
/// foreign task fails exactly as for a missing one, and the database still shows each task
/// with the user who created it.
#[tokio::test]
async fn random_operations_from_several_users_never_cross_users() {
    let app = TestApp::spawn().await;
    let users = ["alice", "bob", "carol"];
    let tokens: HashMap<&str, String> = users.iter().map(|u| (*u, app.token_for(u))).collect();
    let mut owner_of: HashMap<String, &str> = HashMap::new();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);

    for step in 0..150 {
        let user = users[rng.below(users.len())];
        let token = &tokens[user];
        let known: Vec<String> = owner_of.keys().cloned().collect();
        let target = (!known.is_empty()).then(|| known[rng.below(known.len())].clone());
        let query = "query($f: TaskFilter, $o: [TaskOrder!]) { tasks(filter: $f, orderBy: $o, first: 50) { nodes { __typename id owner { __typename id } } } me { __typename id } }";
        let (reply, foreign): (Reply, bool) = match (rng.below(7), &target) {
            (0, _) | (_, None) => {
                let task = app.create_task_from(token, json!({ "title": format!("step {step}"), "priority": 1 + rng.below(5) })).await;
                owner_of.insert(task["id"].as_str().expect("id").to_owned(), user);
                continue;
            }
            (1, Some(id)) => (
                app.gql(Some(token), "query($id: ID!) { task(id: $id) { __typename id owner { __typename id } } }", json!({ "id": id }))
                    .await,
                owner_of[id] != user,
            ),
            (2, Some(id)) => (
                app.gql(
                    Some(token),
                    "mutation($id: ID!) { updateTask(id: $id, input: { title: \"changed\" }) { __typename id } }",
                    json!({ "id": id }),
                )
                .await,
                owner_of[id] != user,
            ),
            (3, Some(id)) => {
                let reply = app.gql(Some(token), "mutation($id: ID!) { deleteTask(id: $id) }", json!({ "id": id })).await;
                let foreign = owner_of[id] != user;
                if !foreign {
                    owner_of.remove(id);
                }
                (reply, foreign)
            }
            (4, Some(id)) => {
                let reply = app
                    .gql(
                        Some(token),
                        "mutation($ids: [ID!]!) { setTasksCompleted(ids: $ids, completed: true) { __typename id } }",
                        json!({ "ids": [id] }),
                    )
                    .await;
                (reply, owner_of[id] != user)
            }
            (5, _) => {
                let filters = [json!({}), json!({ "completed": true }), json!({ "priority": { "gte": 3 } }), json!({ "title": { "startsWith": "step" } })];
                let orders = [json!(null), json!([{ "field": "PRIORITY", "direction": "DESC" }]), json!([{ "field": "DUE_AT" }])];
                let variables = json!({ "f": filters[rng.below(filters.len())], "o": orders[rng.below(orders.len())] });
                (app.gql(Some(token), query, variables).await, false)
            }
            (_, Some(_)) => (app.gql(Some(token), query, json!({})).await, false),
        };

        let mut tasks = Vec::new();
        task_ids(&reply.body, &mut tasks);
        for id in &tasks {
            assert_eq!(
                owner_of.get(id.as_str()).copied(),
                Some(user),
                "step {step}: {user} saw task {id}"
            );
        }
        let mut seen_users = Vec::new();
        user_ids(&reply.body, &mut seen_users);
        assert!(
            seen_users.iter().all(|u| u == user),
            "step {step}: {user} saw users {seen_users:?}"
        );
        if foreign {
            let data = &reply.body["data"];
            let refused =
                reply.code() == Some("NOT_FOUND") || data.get("task").is_some_and(Value::is_null);
            assert!(
                refused,
                "step {step}: {user} reached a foreign task: {:#}",
                reply.body
            );
        }
    }

    let stored: Vec<(uuid::Uuid, String)> = sqlx::query_as("select id, user_id from tasks")
        .fetch_all(&app.db)
        .await
        .expect("read");
    assert_eq!(stored.len(), owner_of.len());
    for (id, owner) in stored {
        assert_eq!(
            owner_of.get(&id.to_string()).copied(),
            Some(owner.as_str()),
            "task {id} changed hands"
        );
    }
}
