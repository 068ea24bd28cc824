//! Liveness and readiness probes.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{TestApp, server_url};

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.client.get(app.url(path)).send().await.expect("answer");
    (response.status(), response.json().await.expect("json"))
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_a_migrated_database() {
    let app = TestApp::spawn().await;
    assert_eq!(
        get(&app, "/healthz").await,
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        get(&app, "/readyz").await,
        (StatusCode::OK, serde_json::json!({"status": "ready"}))
    );
}

#[tokio::test]
async fn readyz_goes_503_while_the_database_is_unreachable_and_recovers() {
    let app = TestApp::spawn().await;
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);

    // Make the database refuse connections and cut the ones the server holds.
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("admin");
    let name = &app.test_db.name;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections false;
         select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}';"
    )))
    .execute(&admin)
    .await
    .expect("cut the database off");

    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "database unreachable");
    assert_eq!(
        get(&app, "/healthz").await.0,
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections true"
    )))
    .execute(&admin)
    .await
    .expect("reconnect the database");
    assert_eq!(
        get(&app, "/readyz").await.0,
        StatusCode::OK,
        "the pool reconnects by itself"
    );
}

#[tokio::test]
async fn readyz_reports_pending_migrations() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .execute(&app.db)
    .await
    .expect("forget the last migration");
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "database migrations pending");
}
