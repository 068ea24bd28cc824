//! The caller's own user: the row its first token creates, kept in step with the token's
//! claims; the profile it edits; the account it deletes with everything in it.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    TEST_SECRET, TestApp,
    api::Client as _,
    keys::{self, claims},
};

#[tokio::test]
async fn update_me_changes_the_profile_and_survives_the_next_request() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let reply = app
        .gql(
            Some(&alice),
            "mutation($input: UpdateMeInput!) { updateMe(input: $input) { id name image } }",
            json!({ "input": { "name": "Alice L.", "image": "https://img.example/a.png" } }),
        )
        .await;
    assert_eq!(
        reply.ok()["updateMe"],
        json!({ "id": "alice", "name": "Alice L.", "image": "https://img.example/a.png" })
    );

    // The same token again: its claims did not change, so the edit stands.
    let me = app
        .gql(Some(&alice), "{ me { name image } }", json!({}))
        .await;
    assert_eq!(
        me.ok()["me"],
        json!({ "name": "Alice L.", "image": "https://img.example/a.png" })
    );

    let cleared = app
        .gql(
            Some(&alice),
            "mutation { updateMe(input: { image: null }) { name image } }",
            json!({}),
        )
        .await;
    assert_eq!(
        cleared.ok()["updateMe"],
        json!({ "name": "Alice L.", "image": null })
    );

    let bad = app
        .gql(
            Some(&alice),
            "mutation { updateMe(input: { image: \"javascript:alert(1)\" }) { id } }",
            json!({}),
        )
        .await;
    bad.assert_bad_input("input.image");
}

#[tokio::test]
async fn delete_me_removes_the_user_and_all_their_tasks_but_no_one_elses() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    app.create_tasks(&alice, 3).await;
    app.create_tasks(&bob, 2).await;
    let reply = app
        .gql(Some(&alice), "mutation { deleteMe }", json!({}))
        .await;
    assert_eq!(reply.ok()["deleteMe"], true);
    let owners: Vec<String> = sqlx::query_scalar("select user_id from tasks")
        .fetch_all(&app.db)
        .await
        .expect("read");
    assert_eq!(owners, ["bob", "bob"]);
    let users: Vec<String> = sqlx::query_scalar("select id from users")
        .fetch_all(&app.db)
        .await
        .expect("read");
    assert_eq!(users, ["bob"]);
    // The token is still valid (the account lives in Better Auth): Alice starts afresh.
    let me = app
        .gql(
            Some(&alice),
            "{ me { id } tasks { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(me.ok()["tasks"]["totalCount"], 0);
}

#[tokio::test]
async fn concurrent_first_requests_of_a_new_user_create_one_row() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let replies = futures_util::future::join_all((0..12).map(|_| app.me(&token))).await;
    for reply in &replies {
        assert_eq!(reply.ok()["me"]["id"], "alice");
    }
    assert_eq!(app.rows("users").await, 1);
}

#[tokio::test]
async fn changed_claims_update_the_user_and_unchanged_claims_write_nothing() {
    let app = TestApp::spawn().await;
    let row = || async {
        sqlx::query_as::<
            _,
            (
                String,
                Option<String>,
                chrono::DateTime<chrono::Utc>,
                String,
            ),
        >("select email, name, updated_at, xmin::text from users where id = 'alice'")
        .fetch_one(&app.db)
        .await
        .expect("row")
    };
    app.me(&app.token_for("alice")).await.ok();
    let first = row().await;

    app.me(&app.token_for("alice")).await.ok();
    assert_eq!(
        row().await,
        first,
        "same claims: same row version, no write at all"
    );

    let mut renamed = claims("alice");
    renamed["name"] = json!("Alice Liddell");
    let reply = app.me(&keys::hs256_token(TEST_SECRET, &renamed)).await;
    assert_eq!(reply.ok()["me"]["name"], "Alice Liddell");
    let after = row().await;
    assert_eq!(after.1.as_deref(), Some("Alice Liddell"));
    assert!(after.2 > first.2, "updated_at moved");
}

/// Better Auth owns email uniqueness. A person who deleted their account and signed up again
/// with the same address arrives with a new `sub`: they are served as the new user, and the
/// stale row keeps its tasks, which neither account can see from the other.
#[tokio::test]
async fn a_returning_user_with_a_new_id_and_a_known_email_is_served() {
    let app = TestApp::spawn().await;
    let old = app.token_for("alice-old");
    app.create_task(&old, "old account").await;

    let mut returning = claims("alice-new");
    returning["email"] = json!("ALICE-OLD@example.com");
    let new = keys::hs256_token(TEST_SECRET, &returning);
    let reply = app
        .gql(
            Some(&new),
            "{ me { id email } tasks { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply.ok(),
        &json!({ "me": { "id": "alice-new", "email": "ALICE-OLD@example.com" },
                 "tasks": { "totalCount": 0 } })
    );
    app.create_task(&new, "new account").await;

    // The stale row is untouched and still its own account's alone.
    let reply = app
        .gql(Some(&old), "{ tasks { nodes { title } } }", json!({}))
        .await;
    assert_eq!(
        reply.ok()["tasks"]["nodes"],
        json!([{ "title": "old account" }])
    );
    assert_eq!(app.rows("users").await, 2);
}

/// `deleteMe` and then `createTask` in one batch: the second operation starts the user
/// afresh, as a later request would, instead of failing on the deleted row.
#[tokio::test]
async fn a_batch_that_deletes_the_user_and_then_writes_starts_afresh() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    app.create_task(&token, "old").await;
    let reply = app
        .post_json(
            Some(&token),
            &json!([
                { "query": "mutation { deleteMe }" },
                { "query": "mutation { createTask(input: {title: \"new\"}) { title owner { id } } }" },
                { "query": "{ tasks { totalCount } }" },
            ]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body[0], json!({ "data": { "deleteMe": true } }));
    assert_eq!(
        reply.body[1],
        json!({ "data": { "createTask": { "title": "new", "owner": { "id": "alice" } } } })
    );
    assert_eq!(
        reply.body[2],
        json!({ "data": { "tasks": { "totalCount": 1 } } })
    );
}
