//! Trusted documents (`TRUSTED_DOCUMENTS`): a manifest in either format is planned and
//! validated at start-up, its documents run by id (`documentId`, by POST and GET, and
//! `extensions.persistedQuery`), and with `TRUSTED_DOCUMENTS_ONLY` nothing else runs.
//! (`tests/interop` runs Apollo Client and urql against the manifest the real codegen
//! writes.)

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use taskql::app::App;

use crate::common::{
    TestApp, TestConfig, TestDb,
    ws::{Socket, TASK_CHANGED, task_changed},
};

const MINE: &str = "query Mine($n: Int) { tasks(first: $n) { totalCount } }";
const ADD: &str = "mutation Add($title: String!) { createTask(input: {title: $title}) { title } }";
const SCHEMA: &str = "query Schema { __schema { queryType { name } } }";

fn id(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `manifest` to a file of its own; the file is removed when the guard drops.
struct Manifest(PathBuf);

impl Manifest {
    fn write(manifest: &Value) -> Self {
        let path = std::env::temp_dir().join(format!(
            "taskql-trusted-{}.json",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, manifest.to_string()).expect("the manifest is written");
        Self(path)
    }

    /// graphql-codegen's client preset format: id → text.
    fn codegen(texts: &[&str]) -> Self {
        let map: serde_json::Map<String, Value> =
            texts.iter().map(|text| (id(text), json!(text))).collect();
        Self::write(&Value::Object(map))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for Manifest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn spawn(manifest: &Manifest, only: bool, introspection: bool) -> TestApp {
    TestApp::spawn_with(
        TestConfig::new()
            .set("TRUSTED_DOCUMENTS", manifest.path())
            .set(
                "TRUSTED_DOCUMENTS_ONLY",
                if only { "true" } else { "false" },
            )
            .set(
                "TRUSTED_DOCUMENTS_ALLOW_INTROSPECTION",
                if introspection { "true" } else { "false" },
            ),
    )
    .await
}

#[tokio::test]
async fn a_trusted_document_runs_by_its_id_every_way_a_client_names_it() {
    let manifest = Manifest::codegen(&[MINE, ADD]);
    let app = spawn(&manifest, false, false).await;
    let token = app.token_for("alice");

    let added = app
        .post_json(
            Some(&token),
            &json!({ "documentId": id(ADD), "variables": { "title": "milk" } }),
        )
        .await;
    assert_eq!(added.ok(), &json!({ "createTask": { "title": "milk" } }));

    let by_post = app
        .post_json(
            Some(&token),
            &json!({ "documentId": format!("sha256:{}", id(MINE)) }),
        )
        .await;
    assert_eq!(by_post.ok(), &json!({ "tasks": { "totalCount": 1 } }));

    let by_get = TestApp::reply(
        app.client
            .get(app.url("/graphql"))
            .query(&[
                ("documentId", id(MINE).as_str()),
                ("variables", "{\"n\":5}"),
            ])
            .header("accept", "application/graphql-response+json")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(by_get.ok(), &json!({ "tasks": { "totalCount": 1 } }));

    let by_apq_hash = app
        .post_json(
            Some(&token),
            &json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": id(MINE) } } }),
        )
        .await;
    assert_eq!(by_apq_hash.ok(), &json!({ "tasks": { "totalCount": 1 } }));

    // Variables are still each request's to check.
    let bad = app
        .post_json(
            Some(&token),
            &json!({ "documentId": id(MINE), "variables": { "n": "five" } }),
        )
        .await;
    bad.assert_request_error("BAD_USER_INPUT");

    // Without TRUSTED_DOCUMENTS_ONLY, any other document runs as before.
    let free = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(free.ok(), &json!({ "me": { "id": "alice" } }));
}

#[tokio::test]
async fn an_unknown_or_malformed_id_or_a_text_that_is_not_its_id_is_refused() {
    let manifest = Manifest::codegen(&[MINE]);
    let app = spawn(&manifest, false, false).await;
    let token = app.token_for("alice");
    let unknown = app
        .post_json(Some(&token), &json!({ "documentId": id("{ apiVersion }") }))
        .await;
    unknown.assert_request_error("PERSISTED_QUERY_NOT_FOUND");
    let malformed = app
        .post_json(Some(&token), &json!({ "documentId": "Mine" }))
        .await;
    malformed.assert_request_error("BAD_REQUEST");
    let mismatched = app
        .post_json(
            Some(&token),
            &json!({ "documentId": id(MINE), "query": "{ me { email } }" }),
        )
        .await;
    mismatched.assert_request_error("BAD_REQUEST");
    let not_a_string = app
        .post_json(Some(&token), &json!({ "documentId": 7 }))
        .await;
    not_a_string.assert_request_error("BAD_REQUEST");
}

#[tokio::test]
async fn with_only_trusted_documents_nothing_else_runs() {
    let manifest = Manifest::codegen(&[MINE]);
    let app = spawn(&manifest, true, false).await;
    let token = app.token_for("alice");

    let free = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    free.assert_request_error("DOCUMENT_NOT_TRUSTED");
    assert!(
        free.message().contains("TRUSTED_DOCUMENTS"),
        "{}",
        free.message()
    );

    // The text of a trusted document, sent in full, is that document.
    let in_full = app.gql(Some(&token), MINE, json!({})).await;
    assert_eq!(in_full.ok(), &json!({ "tasks": { "totalCount": 0 } }));

    // APQ can neither register nor find anything else.
    let other = "{ apiVersion }";
    let register = app
        .post_json(
            Some(&token),
            &json!({ "query": other, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": id(other) } } }),
        )
        .await;
    register.assert_request_error("DOCUMENT_NOT_TRUSTED");
    let lookup = app
        .post_json(
            Some(&token),
            &json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": id(other) } } }),
        )
        .await;
    lookup.assert_request_error("PERSISTED_QUERY_NOT_FOUND");

    let introspection = app.gql(Some(&token), SCHEMA, json!({})).await;
    introspection.assert_request_error("DOCUMENT_NOT_TRUSTED");
    app.assert_alive_by_id(&id(MINE)).await;
}

#[tokio::test]
async fn introspection_may_be_let_through_alone() {
    let manifest = Manifest::codegen(&[MINE]);
    let app = spawn(&manifest, true, true).await;
    let token = app.token_for("alice");
    let schema = app.gql(None, SCHEMA, json!({})).await;
    assert_eq!(
        schema.ok(),
        &json!({ "__schema": { "queryType": { "name": "Query" } } })
    );
    let mixed = app
        .gql(
            Some(&token),
            "{ __schema { queryType { name } } me { id } }",
            json!({}),
        )
        .await;
    mixed.assert_request_error("DOCUMENT_NOT_TRUSTED");
}

#[tokio::test]
async fn apollos_manifest_is_read_too() {
    let manifest = Manifest::write(&json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            { "id": id(MINE), "name": "Mine", "type": "query", "body": MINE },
            { "id": id(ADD), "name": "Add", "type": "mutation", "body": ADD },
        ],
    }));
    let app = spawn(&manifest, true, false).await;
    app.assert_alive_by_id(&id(MINE)).await;
}

/// What start-up says of each manifest it refuses.
#[tokio::test]
async fn a_manifest_that_cannot_be_served_stops_start_up_naming_why() {
    let broken = "query Broken { tasks { nodes { titl } } }";
    let cases = [
        (Manifest::codegen(&[MINE, broken]), "Broken"),
        (
            Manifest::write(&json!({ "0".repeat(64): MINE })),
            "is not the SHA-256 of its text",
        ),
        (Manifest::write(&json!([MINE])), "neither graphql-codegen"),
    ];
    let db = TestDb::create().await;
    for (manifest, expected) in &cases {
        let config = TestConfig::new()
            .set("TRUSTED_DOCUMENTS", manifest.path())
            .build(&db);
        let Err(error) = App::build(config).await else {
            panic!("{expected}: start-up went on");
        };
        let text = format!("{error:#}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let config = TestConfig::new()
        .set("TRUSTED_DOCUMENTS_ONLY", "true")
        .build(&db);
    let Err(error) = App::build(config).await else {
        panic!("TRUSTED_DOCUMENTS_ONLY alone: start-up went on");
    };
    assert!(
        format!("{error:#}").contains("needs TRUSTED_DOCUMENTS"),
        "{error:#}"
    );
}

/// A subscription is a trusted document like any other: `subscribe` over the WebSocket
/// names it by `documentId`, and anything else is refused on the socket too.
#[tokio::test]
async fn a_trusted_subscription_runs_over_the_websocket_by_id() {
    let manifest = Manifest::codegen(&[TASK_CHANGED, ADD]);
    let app = spawn(&manifest, true, false).await;
    let token = app.token_for("alice");
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    socket
        .send(&json!({ "type": "subscribe", "id": "live",
                       "payload": { "documentId": id(TASK_CHANGED) } }))
        .await;
    socket.send(&json!({ "type": "ping" })).await;
    let settled = socket.recv().await.expect("the socket stays open");
    assert_eq!(settled["type"], "pong", "{settled}");

    app.post_json(
        Some(&token),
        &json!({ "documentId": id(ADD), "variables": { "title": "seen live" } }),
    )
    .await
    .ok();
    let event = socket.next("live").await;
    assert_eq!(task_changed(&event)["task"]["title"], "seen live");

    socket
        .send(&json!({ "type": "subscribe", "id": "free",
                       "payload": { "query": "subscription { taskChanged { kind } }" } }))
        .await;
    let refused = socket.recv().await.expect("the socket stays open");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "DOCUMENT_NOT_TRUSTED"
    );
}

impl TestApp {
    /// The trusted document `MINE` runs by `id`.
    async fn assert_alive_by_id(&self, id: &str) {
        let reply = self
            .post_json(Some(&self.token_for("alice")), &json!({ "documentId": id }))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        assert_eq!(reply.ok(), &json!({ "tasks": { "totalCount": 0 } }));
    }
}
