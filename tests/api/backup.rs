//! Backups and recovery: `taskql backup` (as the service role: reading is enough) and
//! `taskql restore` into a fresh database, which must then serve the very same answers; a
//! tampered or truncated backup is refused with nothing written. And a user's own download
//! of their data (`GET /export`).

use serde_json::{Value, json};

use crate::common::{Process, TEST_SECRET, TestApp, TestDb, api::Client as _, keys, post, run};

/// Everything a user can read, in a form to compare: the profile, every task in each order
/// (walked page by page), one task by id, and the statistics.
async fn answers(addr: std::net::SocketAddr, token: &str) -> Value {
    let me = post(
        addr,
        Some(token),
        "{ me { id email name createdAt updatedAt } }",
    )
    .await;
    let stats = post(
        addr,
        Some(token),
        "{ taskStats { total completed open overdue byPriority { priority count } } }",
    )
    .await;
    let mut orders = serde_json::Map::new();
    for order in [
        "{ field: CREATED_AT, direction: DESC }",
        "{ field: DUE_AT, direction: ASC }",
        "{ field: TITLE, direction: ASC }",
    ] {
        let mut nodes = Vec::new();
        let mut after = Value::Null;
        loop {
            let reply = TestApp::reply(
                reqwest::Client::new()
                    .post(format!("http://{addr}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({
                        "query": format!("query($after: String) {{ tasks(first: 3, after: $after, orderBy: {order}) {{
                            totalCount pageInfo {{ hasNextPage endCursor }}
                            nodes {{ id title description completed priority dueAt completedAt createdAt updatedAt }} }} }}"),
                        "variables": { "after": after },
                    })),
            )
            .await;
            let page = reply.ok()["tasks"].clone();
            nodes.extend(page["nodes"].as_array().expect("nodes").iter().cloned());
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
        orders.insert(order.to_owned(), Value::Array(nodes));
    }
    json!({ "me": me.ok()["me"], "stats": stats.ok()["taskStats"], "orders": orders })
}

async fn seed(addr: std::net::SocketAddr, tokens: &[String]) {
    let titles = [
        r#"plain"#,
        r#"quote \" and backslash \\ and tab \t"#,
        r#"four-byte 𝄞 emoji 🎉 and é"#,
        r#"line\nbreak"#,
    ];
    for (u, token) in tokens.iter().enumerate() {
        for (i, title) in titles.iter().enumerate() {
            let due = if i % 2 == 0 {
                format!(r#", dueAt: "2030-0{}-15T10:00:00Z""#, i + 1)
            } else {
                String::new()
            };
            let reply = post(
                addr,
                Some(token),
                &format!(
                    r#"mutation {{ createTask(input: {{ title: "{title} {u}", description: "d\\{i}\n😀", priority: {}{due}, idempotencyKey: "key-{i}" }}) {{ id }} }}"#,
                    i % 5 + 1
                ),
            )
            .await;
            let id = reply.ok()["createTask"]["id"]
                .as_str()
                .expect("id")
                .to_owned();
            if i % 2 == 1 {
                post(addr, Some(token), &format!(r#"mutation {{ updateTask(id: "{id}", input: {{ completed: true }}) {{ id }} }}"#))
                    .await
                    .ok();
            }
        }
    }
}

#[tokio::test]
async fn a_restored_backup_serves_the_same_answers() {
    let source = TestDb::create().await;
    let (server, addr) = Process::serve(&source, &[]);
    let tokens: Vec<String> = ["ann", "bob", "cy"]
        .iter()
        .map(|sub| keys::hs256_token(TEST_SECRET, &keys::claims(sub)))
        .collect();
    seed(addr, &tokens).await;
    let mut before = Vec::new();
    for token in &tokens {
        before.push(answers(addr, token).await);
    }
    // A task created and deleted (a tombstone in the backup), and the version a client of
    // ann's holds from before the backup.
    let doomed = addr.create_task(&tokens[0], "doomed").await;
    post(
        addr,
        Some(&tokens[0]),
        &format!(r#"mutation {{ deleteTask(id: "{doomed}") }}"#),
    )
    .await
    .ok();
    let held = post(addr, Some(&tokens[0]), "{ tasks(first: 1) { version } }").await;
    let held = held.ok()["tasks"]["version"]
        .as_str()
        .expect("a version")
        .to_owned();

    let dir = std::env::temp_dir().join(format!("taskql-backup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("taskql.backup");
    let file_arg = file.to_str().expect("utf-8");
    // The service role can take it: a backup only reads.
    let (code, lines) = run(
        &["backup", "--output", file_arg],
        &[("DATABASE_URL", &source.app_url)],
    );
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backup written") && l.contains("tasks: 12 rows")),
        "{lines:?}"
    );
    assert!(
        !dir.join("taskql.partial").exists(),
        "no partial file is left"
    );
    drop(server);

    // Restore into a fresh database (as its owner) and serve from it.
    let target = TestDb::create().await;
    let (code, lines) = run(
        &["restore", "--input", file_arg],
        &[("DATABASE_URL", &target.owner_url)],
    );
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("restored and verified")),
        "{lines:?}"
    );
    let (_restored, addr) = Process::serve(&target, &[]);
    for (token, before) in tokens.iter().zip(&before) {
        assert_eq!(
            &answers(addr, token).await,
            before,
            "the restored database answers alike"
        );
    }
    // The tombstone came along; a client's version from before the restore is told to
    // resync (the restored history may differ from the one it followed).
    let tombstones: i64 = sqlx::query_scalar("select count(*) from task_tombstones")
        .fetch_one(&target.pool().await)
        .await
        .expect("count");
    assert_eq!(tombstones, 1);
    let resumed = post(
        addr,
        Some(&tokens[0]),
        &format!(r#"{{ taskChanges(since: "{held}") {{ changes {{ kind }} }} }}"#),
    )
    .await;
    assert_eq!(
        resumed.ok()["taskChanges"]["changes"],
        json!([{ "kind": "RESYNC" }])
    );
    // Idempotency keys came along: a retried create returns the original task.
    let retried = post(
        addr,
        Some(&tokens[0]),
        r#"mutation { createTask(input: { title: "plain 0", description: "d\\0\n😀", priority: 1, dueAt: "2030-01-15T10:00:00Z", idempotencyKey: "key-0" }) { id } }"#,
    )
    .await;
    let original = &before[0]["orders"]["{ field: TITLE, direction: ASC }"];
    let original_id = original
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["title"] == "plain 0"))
        .map(|n| n["id"].clone())
        .expect("plain 0");
    assert_eq!(retried.ok()["createTask"]["id"], original_id);
    // Restoring again into a database that has rows is refused.
    let (code, lines) = run(
        &["restore", "--input", file_arg],
        &[("DATABASE_URL", &target.owner_url)],
    );
    assert_ne!(code, Some(0));
    assert!(
        lines.iter().any(|l| l.contains("fresh database")),
        "{lines:?}"
    );

    // A tampered row, or a cut-off file, is refused and leaves the database empty.
    let text = std::fs::read_to_string(&file).expect("the backup");
    let tampered = dir.join("tampered.backup");
    std::fs::write(&tampered, text.replacen("plain 1", "PLAIN 1", 1)).expect("write");
    let truncated = dir.join("truncated.backup");
    std::fs::write(&truncated, &text[..text.len() * 2 / 3]).expect("write");
    for (bad, why) in [
        (&tampered, "differ from the backup"),
        (&truncated, "ends early"),
    ] {
        let fresh = TestDb::create().await;
        let (code, lines) = run(
            &["restore", "--input", bad.to_str().expect("utf-8")],
            &[("DATABASE_URL", &fresh.owner_url)],
        );
        assert_ne!(code, Some(0), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains(why)), "{why}: {lines:?}");
        let pool = fresh.pool().await;
        let rows: i64 = sqlx::query_scalar(
            "select (select count(*) from users) + (select count(*) from tasks)",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        assert_eq!(rows, 0, "nothing half-written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_backup_is_written_for_its_owner_alone_and_never_through_a_planted_link() {
    let db = TestDb::create().await;
    let (_server, addr) = Process::serve(&db, &[]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("pia"));
    addr.create_task(&token, "private").await;
    let dir = std::env::temp_dir().join(format!("taskql-backup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Under the umask most systems have (022), as a cron job runs it.
    let backup = |output: &std::path::Path| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"umask 022 && exec "$0" backup --output "$1""#)
            .arg(env!("CARGO_BIN_EXE_taskql"))
            .arg(output)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.app_url)
            .env("LOG_FORMAT", "json")
            .output()
            .expect("run taskql backup")
    };
    let file = dir.join("taskql.backup");
    let done = backup(&file);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("the backup").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);

    // A link planted where the partial file goes is not followed, and nothing is written.
    let victim = dir.join("victim");
    std::fs::write(&victim, "untouched").expect("victim");
    let planted = dir.join("second.backup");
    std::os::unix::fs::symlink(&victim, dir.join("second.partial")).expect("plant a link");
    let refused = backup(&planted);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("could not create"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "untouched"
    );
    assert!(!planted.exists());
    // So is a partial file left by another backup.
    std::fs::remove_file(dir.join("second.partial")).expect("remove the link");
    std::fs::write(dir.join("second.partial"), "another backup's").expect("partial");
    assert!(!backup(&planted).status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("second.partial")).expect("partial"),
        "another backup's"
    );
    std::fs::remove_dir_all(&dir).ok();
}
