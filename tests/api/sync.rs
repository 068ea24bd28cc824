//! The change feed as clients use it: versions, `taskChanges`, tombstones, retention, and
//! subscriptions that resume from a version (through the real server and a real WebSocket).
//!
//! Completeness is shown by convergence: a client that applies what the feed gives it ends
//! with exactly the tasks the server has, field for field, nothing missing and nothing twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use crate::common::{TestApp, TestConfig, api::Client as _, ws::Socket};

const CHANGES: &str = "query($since: String!, $first: Int) {
  taskChanges(since: $since, first: $first) {
    version hasMore
    changes { kind taskId version at task { id title completed priority updatedAt } }
  }
}";

/// One page of `taskChanges`.
async fn changes(app: &TestApp, token: &str, since: &str, first: i64) -> Value {
    let reply = app
        .gql(
            Some(token),
            CHANGES,
            json!({ "since": since, "first": first }),
        )
        .await;
    reply.ok()["taskChanges"].clone()
}

/// What a client keeps: tasks by id, as the feed last gave them.
#[derive(Debug, Default, PartialEq)]
struct Replica {
    tasks: BTreeMap<String, Value>,
}

impl Replica {
    /// Applies one change event; false for a RESYNC.
    fn apply(&mut self, event: &Value) -> bool {
        let id = event["taskId"].as_str().map(str::to_owned);
        match (event["kind"].as_str(), id) {
            (Some("RESYNC"), _) => return false,
            (Some("DELETED"), Some(id)) => {
                self.tasks.remove(&id);
            }
            (Some(_), Some(id)) => {
                self.tasks.insert(id, event["task"].clone());
            }
            other => panic!("an event without a task id: {other:?} {event}"),
        }
        true
    }
}

/// Every task of the caller as the server has it, as the replica keeps them.
async fn server_state(app: &TestApp, token: &str) -> Replica {
    let mut replica = Replica::default();
    let mut after: Option<String> = None;
    loop {
        let reply = app
            .gql(
                Some(token),
                "query($after: String) { tasks(first: 100, after: $after) {
                   pageInfo { hasNextPage endCursor }
                   nodes { id title completed priority updatedAt } } }",
                json!({ "after": after }),
            )
            .await;
        let page = &reply.ok()["tasks"];
        for node in page["nodes"].as_array().expect("nodes") {
            replica
                .tasks
                .insert(node["id"].as_str().expect("id").to_owned(), node.clone());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            return replica;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

/// Follows `taskChanges` from `since` until no more, applying to `replica`; returns the new
/// version and the events' versions in order.
async fn catch_up(
    app: &TestApp,
    token: &str,
    since: &str,
    replica: &mut Replica,
) -> (String, Vec<String>) {
    let mut since = since.to_owned();
    let mut seen = Vec::new();
    loop {
        let page = changes(app, token, &since, 50).await;
        let mut ids = HashSet::new();
        for event in page["changes"].as_array().expect("changes") {
            assert!(replica.apply(event), "no resync expected: {event}");
            let id = event["taskId"].as_str().expect("an id");
            assert!(ids.insert(id.to_owned()), "a task twice in one page: {id}");
            seen.push(event["version"].as_str().expect("a version").to_owned());
        }
        since = page["version"].as_str().expect("a version").to_owned();
        if page["hasMore"] != true {
            return (since, seen);
        }
    }
}

#[tokio::test]
async fn a_client_catches_up_with_every_kind_of_change_including_deletions() {
    let app = TestApp::spawn().await;
    let token = app.token_for("sam");
    let start = app.version(&token).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_task(&token, &format!("task {i}")).await);
    }
    let after_creations = app.version(&token).await;
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { title: \"renamed\", priority: 5 }) { id } }",
        json!({ "id": ids[0] }),
    )
    .await
    .ok();
    app.gql(
        Some(&token),
        "mutation($ids: [ID!]!) { setTasksCompleted(ids: $ids, completed: true) { id } }",
        json!({ "ids": [ids[1], ids[2]] }),
    )
    .await
    .ok();
    app.delete_task(&token, &ids[3]).await.ok();
    app.gql(
        Some(&token),
        "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }",
        json!({ "ids": [ids[4], ids[5]] }),
    )
    .await
    .ok();

    // Paged three at a time: every change, in commit order, each task once.
    let mut replica = Replica::default();
    let mut since = start.clone();
    let mut pages = 0;
    loop {
        let page = changes(&app, &token, &since, 3).await;
        pages += 1;
        for event in page["changes"].as_array().expect("changes") {
            replica.apply(event);
        }
        since = page["version"].as_str().expect("version").to_owned();
        if page["hasMore"] != true {
            break;
        }
    }
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(replica, server_state(&app, &token).await);
    assert_eq!(replica.tasks.len(), 4);

    // From the start in one page: kinds relative to the client's version. Deleted tasks are
    // DELETED; the others are new to this client, whatever happened to them since.
    let page = changes(&app, &token, &start, 100).await;
    let kinds: HashMap<String, String> = page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().expect("id").to_owned(),
                e["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 7, "each task once: {page}");
    for (i, id) in ids.iter().enumerate() {
        let expected = if (3..=5).contains(&i) {
            "DELETED"
        } else {
            "CREATED"
        };
        assert_eq!(kinds[id], expected, "task {i}");
    }

    // From after the creations: the edits show as what they were.
    let page = changes(&app, &token, &after_creations, 100).await;
    let kinds: Vec<(&str, &str)> = page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().expect("id"),
                e["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ids[0].as_str(), "UPDATED"),
            (ids[1].as_str(), "COMPLETED"),
            (ids[2].as_str(), "COMPLETED"),
            (ids[3].as_str(), "DELETED"),
            (ids[4].as_str(), "DELETED"),
            (ids[5].as_str(), "DELETED"),
        ]
    );
    // Caught up: nothing more, the same version back.
    let last = page["version"].as_str().expect("version");
    let empty = changes(&app, &token, last, 100).await;
    assert_eq!(empty["changes"], json!([]));
    assert_eq!(empty["version"], last);
    assert_eq!(empty["hasMore"], false);
}

#[tokio::test]
async fn versions_increase_per_user_under_concurrent_writers_and_users_are_independent() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let alice_start = app.version(&alice).await;
    let bob_start = app.version(&bob).await;

    // 40 creates of alice's and 10 of bob's, all at once.
    let mut writes = Vec::new();
    for i in 0..50 {
        let app = &app;
        let token = if i % 5 == 0 {
            bob.clone()
        } else {
            alice.clone()
        };
        writes.push(async move { app.create_task(&token, &format!("t{i}")).await });
    }
    futures_util::future::join_all(writes).await;

    let mut replica = Replica::default();
    let (_, versions) = catch_up(&app, &alice, &alice_start, &mut replica).await;
    assert_eq!(versions.len(), 40);
    assert_eq!(replica, server_state(&app, &alice).await);
    let mut bobs = Replica::default();
    let (_, bob_versions) = catch_up(&app, &bob, &bob_start, &mut bobs).await;
    assert_eq!(bob_versions.len(), 10);

    // In the database: one version per change, strictly increasing per user; bob's count
    // from 1 whatever alice did.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select user_id, version from tasks order by user_id, version")
            .fetch_all(&app.db)
            .await
            .expect("versions");
    let of = |user: &str| -> Vec<i64> {
        rows.iter()
            .filter(|(u, _)| u == user)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(of("alice"), (1..=40).collect::<Vec<_>>());
    assert_eq!(of("bob"), (1..=10).collect::<Vec<_>>());

    // A version of alice's is no use to bob.
    let reply = app
        .gql(
            Some(&bob),
            CHANGES,
            json!({ "since": alice_start, "first": 10 }),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
    assert!(
        reply.message().contains("another user"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn a_reader_following_concurrent_writers_misses_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token_for("carl");
    let start = app.version(&token).await;
    let ids: Vec<String> = futures_util::future::join_all((0..10).map(|i| {
        let (app, token) = (&app, &token);
        async move { app.create_task(token, &format!("seed {i}")).await }
    }))
    .await;

    // Four writers edit, complete and delete while a reader follows the feed page by page.
    let writers = async {
        futures_util::future::join_all((0..4).map(|w| {
            let (app, token, ids) = (&app, &token, &ids);
            async move {
                for round in 0..15 {
                    let id = &ids[(w * 3 + round) % ids.len()];
                    let title = format!("w{w} r{round}");
                    app.gql(
                        Some(token),
                        "mutation($id: ID!, $t: String!, $c: Boolean!) {
                           updateTask(id: $id, input: { title: $t, completed: $c }) { id } }",
                        json!({ "id": id, "t": title, "c": round % 2 == 0 }),
                    )
                    .await;
                    if round % 5 == 4 {
                        app.create_task(token, &title).await;
                    }
                }
            }
        }))
        .await;
    };
    // A change visible at a version below one the reader was already given would be
    // skipped by it for good: the reader then could not end equal to the server.
    let reader = async {
        let mut replica = Replica::default();
        let mut since = start.clone();
        for _ in 0..40 {
            (since, _) = catch_up(&app, &token, &since, &mut replica).await;
            tokio::task::yield_now().await;
        }
        (replica, since)
    };
    let ((), (mut replica, since)) = tokio::join!(writers, reader);
    let (_, _) = catch_up(&app, &token, &since, &mut replica).await;
    assert_eq!(replica, server_state(&app, &token).await);

    // In the database: each task's version is distinct, and the user's is past all of them.
    let versions: Vec<i64> =
        sqlx::query_scalar("select version from tasks where user_id = 'carl' order by version")
            .fetch_all(&app.db)
            .await
            .expect("versions");
    let distinct: HashSet<i64> = versions.iter().copied().collect();
    assert_eq!(distinct.len(), versions.len());
    let head: i64 = sqlx::query_scalar("select version from users where id = 'carl'")
        .fetch_one(&app.db)
        .await
        .expect("head");
    assert!(versions.iter().all(|v| *v <= head));
}

#[tokio::test]
async fn a_page_and_its_version_miss_nothing_that_follows() {
    let app = TestApp::spawn().await;
    let token = app.token_for("dora");
    for i in 0..3 {
        app.create_task(&token, &format!("before {i}")).await;
    }
    let reply = app
        .gql(
            Some(&token),
            "{ tasks(first: 100) { version nodes { id title completed priority updatedAt } } }",
            json!({}),
        )
        .await;
    let page = &reply.ok()["tasks"];
    let mut replica = Replica::default();
    for node in page["nodes"].as_array().expect("nodes") {
        replica
            .tasks
            .insert(node["id"].as_str().expect("id").to_owned(), node.clone());
    }
    let since = page["version"].as_str().expect("version").to_owned();
    let later = app.create_task(&token, "after").await;
    let first = replica.tasks.keys().next().cloned().expect("a task");
    app.delete_task(&token, &first).await.ok();

    let page = changes(&app, &token, &since, 100).await;
    let kinds: Vec<(&str, &str)> = page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().expect("id"),
                e["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![(later.as_str(), "CREATED"), (first.as_str(), "DELETED")]
    );
    for event in page["changes"].as_array().expect("changes") {
        replica.apply(event);
    }
    assert_eq!(replica, server_state(&app, &token).await);
}

#[tokio::test]
async fn malformed_forged_and_out_of_range_requests_are_bad_input() {
    let app = TestApp::spawn().await;
    let token = app.token_for("eve");
    let good = app.version(&token).await;
    let mut forged = good.clone().into_bytes();
    // One character of the digest changed.
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    for (since, first, field) in [
        ("not a version", 10, "since"),
        ("", 10, "since"),
        (forged.as_str(), 10, "since"),
        (good.as_str(), 0, "first"),
        (good.as_str(), 1001, "first"),
    ] {
        let reply = app
            .gql(
                Some(&token),
                "query($since: String!, $first: Int) { taskChanges(since: $since, first: $first) { version } }",
                json!({ "since": since, "first": first }),
            )
            .await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "{since:?} {first}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["errors"][0]["extensions"]["field"], field,
            "{}",
            reply.body
        );
    }
    // Without a token there is no feed.
    let reply = app
        .gql(None, CHANGES, json!({ "since": good, "first": 1 }))
        .await;
    assert_eq!(reply.code(), Some("UNAUTHENTICATED"));

    // A subscription refuses them the same way.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "s", "payload": {
            "query": RESUME, "variables": { "since": forged } } }))
        .await;
    let error = socket.recv().await.expect("an answer");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

/// `taskChanged` with `since`, and the version of every event.
const RESUME: &str = "subscription Resume($since: String, $filter: TaskFilter) {
  taskChanged(since: $since, filter: $filter) {
    kind taskId version task { id title completed priority updatedAt }
  }
}";

/// Starts `RESUME` under `id`. Unlike `Socket::subscribe`, it waits for no `pong`: a replay
/// may send events before the server reads the next message.
async fn resume(socket: &mut Socket, id: &str, variables: Value) {
    socket
        .send(&json!({ "type": "subscribe", "id": id,
                       "payload": { "query": RESUME, "variables": variables } }))
        .await;
}

/// Reads `socket`'s events for `id` into `replica` until `done` says so; returns them.
async fn follow(
    socket: &mut Socket,
    id: &str,
    replica: &mut Replica,
    mut done: impl FnMut(&Replica, &Value) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let payload = socket.next(id).await;
        assert!(payload.get("errors").is_none(), "{payload}");
        let event = payload["data"]["taskChanged"].clone();
        replica.apply(&event);
        events.push(event.clone());
        if done(replica, &event) {
            return events;
        }
    }
}

#[tokio::test]
async fn a_resumed_subscription_replays_then_goes_live_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    let token = app.token_for("fay");
    let start = app.version(&token).await;
    // 250 changes before the client comes back: several replay pages.
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(app.create_task(&token, &format!("while away {i}")).await);
    }
    let gone = created[10].clone();
    app.delete_task(&token, &gone).await.ok();

    let mut socket = Socket::open(app.addr, Some(&token)).await;
    resume(&mut socket, "r", json!({ "since": start })).await;
    // More writes while the replay runs: each must come exactly once, replayed or live.
    let writer = {
        let token = token.clone();
        let app = &app;
        async move {
            let mut made = Vec::new();
            for i in 0..60 {
                made.push(app.create_task(&token, &format!("during {i}")).await);
            }
            made
        }
    };
    let marker_title = "the last one";
    let reader = async {
        let mut replica = Replica::default();
        let events = follow(&mut socket, "r", &mut replica, |_, event| {
            event["task"]["title"] == marker_title
        })
        .await;
        (replica, events)
    };
    let writes = async {
        let made = writer.await;
        app.create_task(&token, marker_title).await;
        made
    };
    let (made, (replica, events)) = tokio::join!(writes, reader);

    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["taskId"].as_str().expect("id"))
        .collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "no event twice");
    assert_eq!(ids.len(), 250 + 60 + 1, "every change once");
    assert!(events.iter().all(|e| e["kind"] != "RESYNC"));
    let deleted: Vec<&Value> = events.iter().filter(|e| e["kind"] == "DELETED").collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["taskId"], gone.as_str());
    for id in &made {
        assert!(distinct.contains(id.as_str()), "{id} arrived");
    }
    assert_eq!(replica, server_state(&app, &token).await);
}

#[tokio::test]
async fn a_resumed_filtered_subscription_hears_of_what_may_concern_its_list() {
    let app = TestApp::spawn().await;
    let token = app.token_for("gus");
    let open_before = app.create_task(&token, "open before").await;
    let closed_before = app.create_task(&token, "closed before").await;
    let start = app.version(&token).await;
    // While away: a task left the filter, one entered it, one was made outside it, one
    // matching was made, and one was deleted.
    app.gql(
        Some(&token),
        "mutation($id: ID!) { updateTask(id: $id, input: { completed: true }) { id } }",
        json!({ "id": open_before }),
    )
    .await
    .ok();
    let made_closed = app
        .create_task_from(&token, json!({ "title": "made done", "completed": true }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let made_open = app.create_task(&token, "made open").await;
    app.delete_task(&token, &closed_before).await.ok();

    let mut socket = Socket::open(app.addr, Some(&token)).await;
    resume(
        &mut socket,
        "open",
        json!({ "since": start, "filter": { "completed": false } }),
    )
    .await;
    let marker = app.create_task(&token, "marker").await;
    let mut replica = Replica::default();
    let events = follow(&mut socket, "open", &mut replica, |_, event| {
        event["taskId"] == marker.as_str()
    })
    .await;
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().expect("id"),
                e["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // It was open when the client left: the client learns it left the list.
            (open_before.as_str(), "COMPLETED"),
            (made_open.as_str(), "CREATED"),
            // A deletion is always told: the client may have had it.
            (closed_before.as_str(), "DELETED"),
            (marker.as_str(), "CREATED"),
        ],
        "{made_closed} (created done, never in the list) is not among them"
    );
}

#[tokio::test]
async fn deletions_leave_tombstones_seen_on_every_instance() {
    let app = TestApp::spawn().await;
    let other = app.sibling().await;
    let token = app.token_for("hal");
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(app.create_task(&token, &format!("t{i}")).await);
        }
        ids
    };
    let since = app.version(&token).await;
    // Subscribed on this instance; the deletions go through the other.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("s", RESUME, json!({})).await;
    other
        .gql(
            Some(&token),
            "mutation($id: ID!) { deleteTask(id: $id) }",
            json!({ "id": ids[0] }),
        )
        .await
        .ok();
    other
        .gql(
            Some(&token),
            "mutation($ids: [ID!]!) { deleteTasks(ids: $ids) }",
            json!({ "ids": [ids[1], ids[2]] }),
        )
        .await
        .ok();
    let mut heard = Vec::new();
    for _ in 0..3 {
        let payload = socket.next("s").await;
        let event = &payload["data"]["taskChanged"];
        assert_eq!(event["kind"], "DELETED", "{payload}");
        heard.push(event["taskId"].as_str().expect("id").to_owned());
    }
    assert_eq!(heard, ids[..3].to_vec());

    let rows: i64 =
        sqlx::query_scalar("select count(*) from task_tombstones where user_id = 'hal'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(rows, 3);
    let page = changes(&app, &token, &since, 10).await;
    let deleted: Vec<&str> = page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|e| e["taskId"].as_str().expect("id"))
        .collect();
    assert_eq!(
        deleted,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );

    // deleteMe takes everything, tombstones included; a version from before it resyncs.
    app.gql(Some(&token), "mutation { deleteMe }", json!({}))
        .await
        .ok();
    let rows: i64 =
        sqlx::query_scalar("select count(*) from task_tombstones where user_id = 'hal'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(rows, 0);
    let page = changes(&app, &token, &since, 10).await;
    assert_eq!(page["changes"][0]["kind"], "RESYNC", "{page}");
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_version_older_than_a_purged_deletion_is_told_to_resync() {
    let app = TestApp::spawn_with(TestConfig::new().set("SYNC_RETENTION", "1s")).await;
    let token = app.token_for("ida");
    let doomed = app.create_task(&token, "doomed").await;
    let before = app.version(&token).await;
    app.delete_task(&token, &doomed).await.ok();
    let after = app.version(&token).await;
    let later = app.create_task(&token, "later").await;

    // The purge removes the tombstone once it is a second old (observed, within a bound).
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: i64 =
            sqlx::query_scalar("select count(*) from task_tombstones where user_id = 'ida'")
                .fetch_one(&app.db)
                .await
                .expect("count");
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the tombstone was never purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // From before the deletion: the deletion cannot be told any more.
    let page = changes(&app, &token, &before, 10).await;
    let events = page["changes"].as_array().expect("changes");
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["kind"], "RESYNC");
    assert_eq!(events[0]["taskId"], Value::Null);
    assert_eq!(page["version"], events[0]["version"]);
    // From after it: exact, however old.
    let page = changes(&app, &token, &after, 10).await;
    assert_eq!(page["changes"][0]["taskId"], later.as_str(), "{page}");
    assert_eq!(page["changes"][0]["kind"], "CREATED");

    // A subscription resuming from before it starts with RESYNC, then goes on live.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    resume(&mut socket, "s", json!({ "since": before })).await;
    let first = socket.next("s").await;
    assert_eq!(first["data"]["taskChanged"]["kind"], "RESYNC", "{first}");
    let next = app.create_task(&token, "next").await;
    let live = socket.next("s").await;
    assert_eq!(
        live["data"]["taskChanged"]["taskId"],
        next.as_str(),
        "{live}"
    );
}

#[tokio::test]
async fn a_change_no_one_announced_still_arrives() {
    // The check that heals lost announcements, every 200 ms here.
    let app = TestApp::spawn_with(TestConfig::new().set("SYNC_POLL", "200ms")).await;
    let token = app.token_for("jon");
    app.create_task(&token, "known").await;
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket.subscribe("s", RESUME, json!({})).await;

    // A write behind taskql's back (as a psql session or a lost announcement leaves it): the
    // triggers stamp it, nobody announces it. The next announced change brings it along, in
    // order.
    sqlx::query(
        "insert into tasks (id, user_id, title) values (gen_random_uuid(), 'jon', 'by hand')",
    )
    .execute(&app.db)
    .await
    .expect("insert by hand");
    let announced = app.create_task(&token, "announced").await;
    let by_hand = socket.next("s").await;
    assert_eq!(by_hand["data"]["taskChanged"]["task"]["title"], "by hand");
    assert_eq!(by_hand["data"]["taskChanged"]["kind"], "CREATED");
    let next = socket.next("s").await;
    assert_eq!(next["data"]["taskChanged"]["taskId"], announced.as_str());

    // Alone, it arrives within the check's interval; so does a deletion by hand, as a
    // deletion.
    sqlx::query(
        "update tasks set title = 'edited by hand' where user_id = 'jon' and title = 'known'",
    )
    .execute(&app.db)
    .await
    .expect("update by hand");
    let edited = socket.next("s").await;
    assert_eq!(edited["data"]["taskChanged"]["kind"], "UPDATED", "{edited}");
    assert_eq!(
        edited["data"]["taskChanged"]["task"]["title"],
        "edited by hand"
    );
    sqlx::query("delete from tasks where id = $1::uuid")
        .bind(&announced)
        .execute(&app.db)
        .await
        .expect("delete by hand");
    let deleted = socket.next("s").await;
    assert_eq!(
        deleted["data"]["taskChanged"]["kind"], "DELETED",
        "{deleted}"
    );
    assert_eq!(deleted["data"]["taskChanged"]["taskId"], announced.as_str());
}

#[tokio::test]
async fn a_forged_announcement_delivers_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let mut socket = Socket::open(app.addr, Some(&alice)).await;
    socket.subscribe("s", RESUME, json!({})).await;
    let bobs = app.create_task(&bob, "bob's").await;
    // Any role that may connect may NOTIFY: a claim that alice's feed moved far ahead, and
    // that alice was deleted with bob's task, in the channel's format.
    let key = taskql::live::announce::feed_key("alice");
    let epoch: i64 = sqlx::query_scalar("select sync_epoch from users where id = 'alice'")
        .fetch_one(&app.db)
        .await
        .expect("alice's epoch");
    let forged = json!({ "c": [[key, epoch, 1_000_000]],
                         "g": [{ "k": key, "e": epoch, "v": 5, "t": [bobs] }] });
    sqlx::query("select pg_notify('taskql_sync', $1)")
        .bind(forged.to_string())
        .execute(&app.db)
        .await
        .expect("notify");
    // Alice's next event is her own next change: nothing of the forgery got through.
    let hers = app.create_task(&alice, "alice's").await;
    let next = socket.next("s").await;
    assert_eq!(
        next["data"]["taskChanged"]["taskId"],
        hers.as_str(),
        "{next}"
    );
    assert_eq!(next["data"]["taskChanged"]["kind"], "CREATED");
}

#[tokio::test]
async fn a_resumed_subscription_replays_by_itself_more_than_its_queue_holds() {
    // No periodic check and no later write: the replay alone must bring every change, and
    // more of them than a subscriber's queue holds (it is read a page at a time).
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("SYNC_POLL", "0")
            .set("WS_EVENT_BUFFER", "16"),
    )
    .await;
    let token = app.token_for("rae");
    let start = app.version(&token).await;
    for i in 0..300 {
        app.create_task(&token, &format!("made while away {i}"))
            .await;
    }
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    resume(&mut socket, "r", json!({ "since": start })).await;
    let mut replica = Replica::default();
    let events = follow(&mut socket, "r", &mut replica, |replica, _| {
        replica.tasks.len() == 300
    })
    .await;
    assert_eq!(events.len(), 300);
    assert_eq!(replica, server_state(&app, &token).await);
}
