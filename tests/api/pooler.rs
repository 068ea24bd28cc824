//! taskql behind PgBouncer in transaction mode (Neon's pooled endpoint): requests from many
//! users at once, sharing three server connections, with sqlx's named prepared statements;
//! the statement timeout enforced on pooled connections; migrations and the subscription
//! listener on the direct URL.

use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::common::{
    APP_ROLE, Process, TEST_SECRET, TestDb,
    api::Client as _,
    bouncer::Bouncer,
    keys, post, skip,
    ws::{Socket, TASK_CHANGED},
};

#[tokio::test]
async fn the_api_works_through_pgbouncer_in_transaction_mode() {
    let bouncer = match Bouncer::start() {
        Ok(bouncer) => bouncer,
        Err(reason) => {
            skip("the PgBouncer test needs PgBouncer 1.21+", reason);
            return;
        }
    };
    let db = TestDb::create().await;
    let pooled = bouncer.url(APP_ROLE, &db.name);
    let (_server, addr) = Process::serve_url(
        &pooled,
        &[
            ("DATABASE_POOLER", "transaction"),
            ("DATABASE_MIGRATION_URL", &db.owner_url),
            ("DATABASE_LISTEN_URL", &db.app_url),
            ("DATABASE_POOL_SIZE", "8"),
            ("REQUEST_TIMEOUT", "2s"),
        ],
    );

    let users: Vec<String> = (0..4).map(|i| format!("pooled-{i}")).collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|user| keys::hs256_token(TEST_SECRET, &keys::claims(user)))
        .collect();
    let mut socket = Socket::open(addr, Some(&tokens[0])).await;
    socket.subscribe("s", TASK_CHANGED, json!({})).await;

    // Every user writes at once, more requests in flight than server connections.
    let writes = tokens.iter().flat_map(|token| {
        (0..25).map(move |i| async move {
            let task = addr
                .create_task_from(
                    token,
                    json!({ "title": format!("t{i}"), "priority": i % 5 + 1 }),
                )
                .await;
            task["id"].as_str().expect("id").to_owned()
        })
    });
    let created = join_all(writes).await;
    assert_eq!(created.len(), 100);

    // The subscriber (through the direct listen URL) heard each of its own 25, nothing else.
    for _ in 0..25 {
        let event = socket.next("s").await;
        assert_eq!(event["data"]["taskChanged"]["kind"], "CREATED", "{event}");
    }

    // Reads at once: every user walks their pages with cursors, filters and counts.
    let reads = tokens.iter().map(|token| async move {
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let reply = crate::common::TestApp::reply(
                reqwest::Client::new()
                    .post(format!("http://{addr}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({
                        "query": "query($after: String) { tasks(first: 7, after: $after, filter: { priority: { gte: 1 } }) {
                            totalCount pageInfo { hasNextPage endCursor } nodes { id } } }",
                        "variables": { "after": after },
                    })),
            )
            .await;
            let page = &reply.ok()["tasks"];
            assert_eq!(page["totalCount"], 25);
            seen.extend(page["nodes"].as_array().expect("nodes").iter().map(|n| n["id"].clone()));
            if page["pageInfo"]["hasNextPage"] != true {
                return seen;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
    });
    for seen in join_all(reads).await {
        assert_eq!(
            seen.len(),
            25,
            "each user sees exactly their own tasks, once"
        );
    }

    // Bulk and single writes, all or nothing, through the pooler.
    let mine: Vec<&String> = created.iter().take(25).collect();
    let bulk = post(
        addr,
        Some(&tokens[0]),
        &format!(
            "mutation {{ setTasksCompleted(ids: {:?}, completed: true) {{ id }} }}",
            &mine[..10]
        ),
    )
    .await;
    assert_eq!(
        bulk.ok()["setTasksCompleted"].as_array().map(Vec::len),
        Some(10)
    );
    let foreign = post(
        addr,
        Some(&tokens[0]),
        &format!(
            "mutation {{ deleteTasks(ids: [{:?}, {:?}]) }}",
            mine[0], created[30]
        ),
    )
    .await;
    assert_eq!(foreign.code(), Some("NOT_FOUND"), "{}", foreign.body);
    let stats = post(addr, Some(&tokens[0]), "{ taskStats { total completed } }").await;
    assert_eq!(
        stats.ok()["taskStats"],
        json!({ "total": 25, "completed": 10 })
    );

    // The statement timeout holds on pooled server connections too, not sent as a startup
    // option (which PgBouncer refuses) but as the service role's default in this database.
    let options: sqlx::postgres::PgConnectOptions = pooled.parse().expect("url");
    let options = options.extra_float_digits(None);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("through the pooler");
        let shown: String = sqlx::query_scalar("show statement_timeout")
            .fetch_one(&mut conn)
            .await
            .expect("show");
        assert_eq!(shown, "3s");
        sessions.push(conn);
    }
    let slow = sqlx::query("select pg_sleep(4)")
        .execute(&mut sessions[0])
        .await
        .expect_err("cancelled by statement_timeout");
    assert_eq!(
        slow.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("57014"),
        "{slow}"
    );
}
