//! The two-role deployment the README describes: `taskql migrate` as the schema's owner is the
//! release step, and `serve` runs as a role that may only read and write rows. (Every other
//! API test runs its server that way too: see `common::TestDb`.)

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::common::{Process, TEST_SECRET, TestDb, api::Client as _, keys, post, run, server_url};

async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}/readyz"))
        .await
        .expect("readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn serve_runs_as_a_role_that_may_only_read_and_write_rows() {
    let db = TestDb::create().await;

    // The service role cannot migrate, and start-up says so rather than serving half a schema.
    let (code, lines) = run(
        &["serve"],
        &[
            ("DATABASE_URL", &db.app_url),
            ("PORT", "0"),
            ("AUTH_JWT_SECRET", TEST_SECRET),
        ],
    );
    assert_ne!(code, Some(0), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("could not apply the database migrations")),
        "{lines:?}"
    );

    // Without migrations at start it serves, and is not ready until the release step ran.
    let (server, addr) = Process::serve_url(&db.app_url, &[("MIGRATE_ON_START", "false")]);
    let (status, body) = readyz(addr).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("database migrations pending"))
    );

    let (code, lines) = run(&["migrate"], &[("DATABASE_URL", &db.owner_url)]);
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(readyz(addr).await.0, 200);

    // The API works end to end as the service role.
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));
    let created = addr
        .create_task_from(&token, json!({ "title": "least privilege", "priority": 2 }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let updated = post(
        addr,
        Some(&token),
        &format!(
            r#"mutation {{ updateTask(id: "{id}", input: {{ completed: true }}) {{ completed }} }}"#
        ),
    )
    .await;
    assert_eq!(updated.ok()["updateTask"]["completed"], true);
    let listed = post(addr, Some(&token), "{ tasks { totalCount nodes { id } } }").await;
    assert_eq!(
        listed.ok()["tasks"],
        json!({ "totalCount": 1, "nodes": [{ "id": id }] })
    );
    let deleted = post(addr, Some(&token), "mutation { deleteMe }").await;
    assert!(deleted.body.get("errors").is_none(), "{}", deleted.body);
    drop(server);

    // And that role really holds no more than row access.
    let mut app = sqlx::PgConnection::connect(&db.app_url)
        .await
        .expect("connect as the app");
    for ddl in [
        "create table intruder (id int)",
        "drop table tasks",
        "alter table tasks add column x int",
        "truncate tasks",
        "create database intruder",
    ] {
        let err = sqlx::raw_sql(ddl).execute(&mut app).await.expect_err(ddl);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{ddl}: {err}");
    }
    app.close().await.ok();
}

#[tokio::test]
async fn a_missing_database_is_created_only_when_allowed() {
    let db = TestDb::create().await;
    let fresh = format!("{}_created", db.name);
    let url = format!("{}/{fresh}", server_url());

    let (code, lines) = run(
        &["migrate"],
        &[("DATABASE_URL", &url), ("DATABASE_CREATE", "false")],
    );
    assert_ne!(code, Some(0), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("does not exist")),
        "{lines:?}"
    );

    let (code, lines) = run(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("created the database")),
        "{lines:?}"
    );
    // Open to its owner (and service role) alone: a role that could connect could listen to
    // the change announcements.
    let public_may_connect: bool =
        sqlx::query_scalar("select has_database_privilege('public', $1, 'connect')")
            .bind(&fresh)
            .fetch_one(&db.pool().await)
            .await
            .expect("privileges");
    assert!(!public_may_connect);
    // The second time PostgreSQL says it exists, and nothing asks for `postgres` at all.
    let (code, lines) = run(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("created the database")),
        "{lines:?}"
    );

    crate::common::drop_database(&fresh).await;
}
