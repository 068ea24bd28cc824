//! Cursors: opaque, sealed to the user, order and filter they were made for; tampering,
//! forgery and out-of-range positions refused by name; keys that rotate with a grace period.

use serde_json::json;
use taskql::{
    auth::Verifier,
    domain::query::{Filter, Order, Position, SortValue},
    graphql::schema::cursor::{CursorKeys, Scope},
};

use crate::common::{
    TestApp, TestConfig,
    api::{Client as _, PAGE_QUERY},
    seeds::{Key, insert, order_arg, seeds},
};

#[tokio::test]
async fn cursors_only_work_in_the_list_they_came_from() {
    let app = TestApp::spawn().await;
    insert(&app, &seeds("alice", 12)).await;
    insert(&app, &seeds("bob", 12)).await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let by_priority = order_arg(&[(Key::Priority, false)]);
    let first = app
        .page(&alice, json!({ "order": by_priority, "first": 3 }))
        .await;
    let cursor = first.info["endCursor"].as_str().expect("cursor").to_owned();

    let refused = |reply: &crate::common::Reply, field: &str| {
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{:#}", reply.body);
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field);
    };
    // Same list: fine.
    app.gql(
        Some(&alice),
        PAGE_QUERY,
        json!({ "order": by_priority, "first": 3, "after": cursor }),
    )
    .await
    .ok();
    // Another order, another filter, another user.
    let by_title = order_arg(&[(Key::Title, false)]);
    refused(
        &app.gql(
            Some(&alice),
            PAGE_QUERY,
            json!({ "order": by_title, "after": cursor }),
        )
        .await,
        "after",
    );
    refused(
        &app.gql(
            Some(&alice),
            PAGE_QUERY,
            json!({ "order": by_priority, "filter": { "completed": true }, "after": cursor }),
        )
        .await,
        "after",
    );
    refused(
        &app.gql(
            Some(&bob),
            PAGE_QUERY,
            json!({ "order": by_priority, "after": cursor }),
        )
        .await,
        "after",
    );
    // Tampered: every single-character change is caught.
    for i in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut bytes = cursor.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        refused(
            &app.gql(
                Some(&alice),
                PAGE_QUERY,
                json!({ "order": by_priority, "after": tampered }),
            )
            .await,
            "after",
        );
    }
    for garbage in ["", "not base64!", "W10", "e30", &"A".repeat(5000)] {
        refused(
            &app.gql(
                Some(&alice),
                PAGE_QUERY,
                json!({ "order": by_priority, "before": garbage }),
            )
            .await,
            "before",
        );
    }
}

/// Cursors are sealed: they reveal nothing, and a changed one is refused. One made with the
/// server's own key (a leaked key) but holding a time PostgreSQL cannot store is refused too.
#[tokio::test]
async fn cursors_are_opaque_and_tampering_is_refused() {
    const SECRET: &str = "cursor-secret-0123456789-abcdefghijklmnop";
    let app = TestApp::spawn_with(TestConfig::new().set("CURSOR_SECRET", SECRET)).await;
    let token = app.token_for("alice");
    for title in ["secret plan one", "secret plan two"] {
        app.create_task(&token, title).await;
    }
    let page = |after: Option<&str>| {
        app.gql(
            Some(&token),
            "query($after: String) { tasks(first: 1, after: $after, orderBy: [{field: TITLE}]) { edges { cursor } } }",
            json!({ "after": after }),
        )
    };
    let reply = page(None).await;
    let cursor = reply.ok()["tasks"]["edges"][0]["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cursor)
        .expect("base64url");
    assert!(!String::from_utf8_lossy(&raw).contains("secret plan"));
    page(Some(&cursor)).await.ok();

    let mut tampered = raw.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tampered);
    page(Some(&tampered)).await.assert_bad_input("after");

    // The caller's id, as only verification mints it.
    let verifier = Verifier::from_config(&app.config.auth)
        .await
        .expect("verifier");
    let alice = verifier.verify(&token).await.expect("valid").user_id;
    let keys = CursorKeys::from_secrets([SECRET.as_bytes()]).expect("keys");
    let order = Order::parse(vec![taskql::domain::query::SortKey {
        field: taskql::domain::query::SortField::CreatedAt,
        descending: true,
    }])
    .expect("order");
    let far_future = chrono::DateTime::from_timestamp(300_000_000_000, 0).expect("year 11476");
    let forged = keys
        .seal(
            &Position {
                values: vec![SortValue::Time(Some(far_future))],
                id: uuid::Uuid::now_v7(),
            },
            &Scope {
                user: &alice,
                order: &order,
                filter: &Filter::all(),
            },
        )
        .expect("sealed");
    let reply = app
        .gql(
            Some(&token),
            "query($after: String) { tasks(first: 1, after: $after) { totalCount edges { cursor } } }",
            json!({ "after": forged }),
        )
        .await;
    reply.assert_bad_input("after");
    assert!(
        reply.message().contains("out of range"),
        "{}",
        reply.message()
    );
}

/// Rotation: a server that lists the new key first and the old one after opens cursors made
/// with either; once the old key is dropped, its cursors are refused.
#[tokio::test]
async fn cursor_keys_rotate_with_a_grace_period() {
    const OLD: &str = "old-cursor-secret-0123456789-abcdefghijk";
    const NEW: &str = "new-cursor-secret-0123456789-abcdefghijk";
    let old = TestApp::spawn_with(TestConfig::new().set("CURSOR_SECRET", OLD)).await;
    let token = old.token_for("alice");
    for title in ["a", "b"] {
        old.create_task(&token, title).await;
    }
    let first = old
        .gql(
            Some(&token),
            "{ tasks(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = first.ok()["tasks"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let next = "query($c: String) { tasks(first: 1, after: $c) { nodes { id } } }";
    // Both servers read the same database, as two instances of one deployment would.
    let url = old.test_db.url.clone();
    let rotated = TestApp::spawn_with(
        TestConfig::new()
            .set("CURSOR_SECRET", format!("{NEW},{OLD}"))
            .set("DATABASE_URL", url.clone()),
    )
    .await;
    rotated
        .gql(Some(&token), next, json!({ "c": cursor }))
        .await
        .ok();
    let dropped = TestApp::spawn_with(
        TestConfig::new()
            .set("CURSOR_SECRET", NEW)
            .set("DATABASE_URL", url),
    )
    .await;
    dropped
        .gql(Some(&token), next, json!({ "c": cursor }))
        .await
        .assert_bad_input("after");
}
