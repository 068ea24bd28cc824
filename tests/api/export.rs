//! `GET /export`: a user downloads all of their own data and nothing else, within the
//! server's limits: one download per user at a time, a place in flight for as long as the body
//! streams, and an end by `EXPORT_TIMEOUT` however slowly the client reads.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    Process, TEST_SECRET, TestApp, TestConfig, TestDb, api::Client as _, keys, post,
};

/// Gives `user` (synced through the API first) `n` tasks, written straight into the table
/// with their feed versions, as taskql would number them.
async fn seed_tasks(app: &TestApp, token: &str, user: &str, n: i64) {
    app.gql(Some(token), "{ me { id } }", json!({})).await.ok();
    sqlx::query(
        "insert into tasks (id, user_id, title, description, version, created_version, completed_version)
         select gen_random_uuid(), $1, 'task ' || i, repeat('d', 100), i, i, i
         from generate_series(1, $2) i",
    )
    .bind(user)
    .bind(n)
    .execute(&app.db)
    .await
    .expect("seed tasks");
    sqlx::query("update users set version = $2 where id = $1")
        .bind(user)
        .bind(n)
        .execute(&app.db)
        .await
        .expect("their version");
}

#[tokio::test]
async fn a_user_downloads_all_of_their_own_data() {
    let db = TestDb::create().await;
    let (_server, addr) = Process::serve(&db, &[]);
    let ann = keys::hs256_token(TEST_SECRET, &keys::claims("ann"));
    let bob = keys::hs256_token(TEST_SECRET, &keys::claims("bob"));
    // More than one batch of 500.
    let client = reqwest::Client::new();
    for chunk in 0..12 {
        // One create per request keeps within the statement budget: 600, 50 at a time.
        let requests = (0..50).map(|i| {
            let client = client.clone();
            let ann = ann.clone();
            async move {
                client
                    .post(format!("http://{addr}/graphql"))
                    .bearer_auth(&ann)
                    .json(&json!({ "query": format!(r#"mutation {{ createTask(input: {{ title: "ann {chunk}-{i}" }}) {{ id }} }}"#) }))
                    .send()
                    .await
                    .expect("create")
            }
        });
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.status(), 200);
        }
    }
    addr.create_task(&bob, "bob's secret").await;

    let response = client
        .get(format!("http://{addr}/export"))
        .bearer_auth(&ann)
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    let disposition = response
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"taskql-export-"),
        "{disposition}"
    );
    let export: Value = response.json().await.expect("one JSON document");
    assert_eq!(export["user"]["id"], "ann");
    let tasks = export["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 600);
    let mut ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 600, "each task once");
    assert!(
        tasks
            .iter()
            .all(|t| t["title"].as_str().is_some_and(|t| t.starts_with("ann ")))
    );
    // Exactly what the API says of the same task.
    let one = post(
        addr,
        Some(&ann),
        &format!(r#"{{ task(id: "{}") {{ id title description completed priority dueAt completedAt createdAt updatedAt }} }}"#, tasks[0]["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(one.ok()["task"], tasks[0]);

    let anonymous = client
        .get(format!("http://{addr}/export"))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
    let forged = client
        .get(format!("http://{addr}/export"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn forty_parallel_downloads_of_one_user_do_not_starve_another_user() {
    // The reproduction's settings: a small in-flight cap and a small pool.
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("MAX_IN_FLIGHT", "8")
            .set("DATABASE_POOL_SIZE", "4"),
    )
    .await;
    let attacker = app.token_for("mallory");
    seed_tasks(&app, &attacker, "mallory", 30_000).await;
    let other = app.token_for("olivia");
    app.create_task(&other, "mine").await;

    let downloads: Vec<_> = (0..40)
        .map(|_| {
            let request = app.client.get(app.url("/export")).bearer_auth(&attacker);
            tokio::spawn(async move {
                let response = request.send().await.expect("an answer");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.bytes().await.map(|b| b.len()).unwrap_or(0);
                (status, retry_after, body)
            })
        })
        .collect();
    // Meanwhile another user pages through their tasks.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = app
            .gql(
                Some(&other),
                "{ tasks(first: 20) { nodes { id title } } }",
                json!({}),
            )
            .await;
        latencies.push(started.elapsed());
        reply.ok();
    }
    let mut served = 0;
    let mut refused = 0;
    for download in downloads {
        let (status, retry_after, body) = download.await.expect("the download task");
        match status {
            200 => {
                served += 1;
                assert!(body > 30_000 * 100, "the whole export: {body} bytes");
            }
            429 => {
                refused += 1;
                assert!(retry_after, "429 says when to retry");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(served >= 1, "the first download ran");
    assert!(
        refused >= 35,
        "one download at a time: {refused} refused, {served} served"
    );
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "the other user's pages took {latencies:?}"
    );
}

#[tokio::test]
async fn a_stalled_download_ends_by_the_timeout_and_gives_its_places_back() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("EXPORT_TIMEOUT", "1s")
            .set("MAX_IN_FLIGHT", "2"),
    )
    .await;
    let token = app.token_for("stan");
    // About 15 MB: more than the sockets' buffers hold, so an unread body stalls.
    seed_tasks(&app, &token, "stan", 60_000).await;
    let stalled = app
        .client
        .get(app.url("/export"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(stalled.status(), 200);
    // Nothing of it is read. A second download of the same user waits its turn.
    let second = app
        .client
        .get(app.url("/export"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(second.status(), 429);
    // Once EXPORT_TIMEOUT has passed, the stalled download gives back its places (the
    // user's one download, and its place in flight) though its client never read it.
    let started = Instant::now();
    let give_up = started + Duration::from_secs(20);
    loop {
        let next = app
            .client
            .get(app.url("/export"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("an answer");
        if next.status() == 200 {
            break;
        }
        assert_eq!(next.status(), 429);
        assert!(
            Instant::now() < give_up,
            "the stalled download never gave its place back"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the place came back by the timeout, not before"
    );
    // The stalled body was cut off, not ended as if whole.
    let cut = stalled.bytes().await;
    assert!(
        cut.is_err() || !cut.as_ref().is_ok_and(|body| body.ends_with(b"]}\n")),
        "the stalled export is incomplete"
    );
}
