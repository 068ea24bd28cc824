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

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("answer");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let response = app
        .client
        .get(app.url("/graphql?query={apiVersion}"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn large_responses_are_compressed_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let introspection = "{ __schema { types { name description fields { name description } } } }";
    let request = |encoding: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/graphql"))
            .json(&serde_json::json!({ "query": introspection }));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send()
    };
    let plain = request(None).await.expect("answer");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.expect("body").len();
    let gzipped = request(Some("gzip")).await.expect("answer");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped_len = gzipped.bytes().await.expect("body").len();
    assert!(
        gzipped_len * 3 < plain_len,
        "{gzipped_len} bytes gzipped vs {plain_len} plain"
    );
}
