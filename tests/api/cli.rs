//! The `taskql` command line: exit codes, messages, and development mode end to end.

use std::time::Duration;

use serde_json::json;

use crate::common::{Process, TestApp, TestDb, env, run};

#[test]
fn a_bad_port_stops_start_up_with_one_line_naming_it() {
    let (code, lines) = run(&["serve"], &[("PORT", "eighty")]);
    assert_eq!(code, Some(78));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("PORT") && lines[0].contains("not a number"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_database_url_stops_start_up_without_echoing_the_password() {
    let (code, lines) = run(
        &["serve"],
        &[("DATABASE_URL", "postgres://me:hunter2@[::1")],
    );
    assert_eq!(code, Some(78));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("DATABASE_URL"), "{lines:?}");
    assert!(
        !lines[0].contains("hunter2"),
        "the password leaked: {lines:?}"
    );
}

#[test]
fn an_unreachable_database_stops_start_up_with_a_clear_error() {
    let (code, lines) = run(
        &["migrate"],
        &[
            (
                "DATABASE_URL",
                "postgres://postgres:sekrit@127.0.0.1:1/taskql",
            ),
            ("LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(code, Some(1));
    let all = lines.join("\n");
    assert!(all.contains("could not connect to PostgreSQL"), "{all}");
    assert!(!all.contains("sekrit"), "the password leaked: {all}");
}

#[test]
fn development_mode_refuses_a_non_loopback_address() {
    let (code, lines) = run(&["serve"], &[("HOST", "0.0.0.0")]);
    assert_eq!(code, Some(78));
    assert!(lines[0].contains("not a loopback address"), "{lines:?}");
}

#[test]
fn help_explains_each_command() {
    let (code, lines) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    let help = lines.join("\n");
    for command in ["serve", "migrate", "schema", "token"] {
        assert!(
            help.contains(command),
            "--help does not mention {command}:\n{help}"
        );
    }
}

#[test]
fn the_schema_command_prints_the_checked_in_sdl() {
    let mut process = Process::spawn(&["schema"], &env(&[]));
    assert_eq!(process.wait_exit(Duration::from_secs(30)), Some(0));
    let printed = process.seen.join("\n");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("file");
    assert_eq!(printed.trim_end(), checked_in.trim_end());
}

#[tokio::test]
async fn migrate_creates_a_missing_database_and_is_repeatable() {
    let db = TestDb::create().await;
    // A database name nobody created: `migrate` must create it.
    let fresh = format!("{}_fresh", db.name);
    let url = format!("{}/{fresh}", crate::common::server_url());
    for _ in 0..2 {
        let (code, lines) = run(
            &["migrate"],
            &[("DATABASE_URL", &url), ("LOG_FORMAT", "json")],
        );
        assert_eq!(code, Some(0), "{lines:?}");
    }
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("the database exists now");
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(applied as usize, taskql::db::MIGRATOR.iter().count());
    pool.close().await;
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", crate::common::server_url()))
        .await
        .expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database {fresh} with (force)"
    )))
    .execute(&admin)
    .await
    .expect("cleanup");
}

#[tokio::test]
async fn a_token_from_the_token_command_is_accepted_in_development_mode() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("taskql-dev-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret_file = dir.join("secret");
    let secret_file = secret_file.to_str().expect("utf-8 path");
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("PORT", "0"),
        ("LOG_FORMAT", "json"),
        ("AUTH_DEV_SECRET_FILE", secret_file),
    ];
    let mut server = Process::spawn(&["serve"], &env(&vars));
    let addr = server.wait_until_listening();
    assert!(
        server
            .seen
            .iter()
            .any(|line| line.contains("DEVELOPMENT MODE")),
        "development mode is announced loudly"
    );

    let (code, lines) = run(
        &["token", "--sub", "alice", "--email", "alice@example.com"],
        &vars,
    );
    assert_eq!(code, Some(0), "{lines:?}");
    let token = lines.last().expect("a token").trim().to_owned();

    let reply = TestApp::reply(
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { id email } }" })),
    )
    .await;
    assert_eq!(
        reply.ok()["me"],
        json!({ "id": "alice", "email": "alice@example.com" })
    );

    // The playground page carries a working token of its own.
    let page = reqwest::Client::new()
        .get(format!("http://{addr}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let marker = "Bearer ";
    let start = page.find(marker).expect("the page has a bearer token") + marker.len();
    let page_token: String = page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let reply = TestApp::reply(
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&page_token)
            .json(&json!({ "query": "{ me { id } }" })),
    )
    .await;
    assert_eq!(reply.ok()["me"]["id"], "dev-user");

    let metadata = std::fs::metadata(secret_file).expect("the secret file exists");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            metadata.permissions().mode() & 0o777,
            0o600,
            "only the owner may read the secret"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
