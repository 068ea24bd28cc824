//! Ordering and paging `tasks`: every order walked forward and backward over a seeded set whose
//! expected order is computed here in Rust; walks that survive writes between pages; the
//! defaults; page arguments.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    TestApp,
    api::{Client as _, PAGE_QUERY},
    seeds::{Key, expected_order, insert, order_arg, seeds},
};

/// Walks every page forward, `size` at a time; checks pageInfo on the way.
async fn walk_forward(app: &TestApp, token: &str, order: &Value, size: usize) -> Vec<Uuid> {
    let mut all = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .page(
                token,
                json!({ "order": order, "first": size, "after": after }),
            )
            .await;
        assert_eq!(
            page.info["hasPreviousPage"],
            !after.is_null(),
            "hasPreviousPage after {} rows",
            all.len()
        );
        all.extend(&page.ids);
        if page.info["hasNextPage"] == false {
            return all;
        }
        assert_eq!(page.ids.len(), size, "a page with more after it is full");
        after = page.info["endCursor"].clone();
        assert!(all.len() < 10_000, "the walk does not end");
    }
}

/// Walks every page backward from the end, `size` at a time.
async fn walk_backward(app: &TestApp, token: &str, order: &Value, size: usize) -> Vec<Uuid> {
    let mut all: Vec<Uuid> = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = app
            .page(
                token,
                json!({ "order": order, "last": size, "before": before }),
            )
            .await;
        assert_eq!(page.info["hasNextPage"], !before.is_null());
        let mut ids = page.ids;
        ids.extend(all);
        all = ids;
        if page.info["hasPreviousPage"] == false {
            return all;
        }
        before = page.info["startCursor"].clone();
        assert!(all.len() < 10_000, "the walk does not end");
    }
}

#[tokio::test]
async fn every_order_walks_forward_and_backward_over_every_task_exactly_once() {
    let app = TestApp::spawn().await;
    let mine = seeds("alice", 37);
    insert(&app, &mine).await;
    insert(&app, &seeds("bob", 11)).await;
    let alice = app.token_for("alice");

    let mut orders: Vec<Vec<(Key, bool)>> = Vec::new();
    for key in Key::ALL {
        orders.push(vec![(key, false)]);
        orders.push(vec![(key, true)]);
    }
    orders.push(vec![(Key::Priority, true), (Key::DueAt, false)]);
    orders.push(vec![
        (Key::Completed, false),
        (Key::Title, true),
        (Key::CreatedAt, false),
    ]);
    orders.push(vec![(Key::DueAt, true), (Key::Priority, false)]);
    orders.push(vec![(Key::Title, false), (Key::DueAt, true)]);

    for keys in orders {
        let expected = expected_order(&mine, &keys);
        let order = order_arg(&keys);
        assert_eq!(
            walk_forward(&app, &alice, &order, 7).await,
            expected,
            "forward {order}"
        );
        assert_eq!(
            walk_backward(&app, &alice, &order, 7).await,
            expected,
            "backward {order}"
        );
        // One page with everything agrees too.
        let whole = app
            .page(&alice, json!({ "order": order, "first": 100 }))
            .await;
        assert_eq!(whole.ids, expected, "single page {order}");
    }
}

#[tokio::test]
async fn the_default_order_is_newest_first() {
    let app = TestApp::spawn().await;
    let mine = seeds("alice", 15);
    insert(&app, &mine).await;
    let alice = app.token_for("alice");
    let got = app.page(&alice, json!({})).await.ids;
    assert_eq!(got, expected_order(&mine, &[(Key::CreatedAt, true)]));
}

#[tokio::test]
async fn a_walk_survives_inserts_and_deletes_between_pages() {
    let app = TestApp::spawn().await;
    let mine = seeds("alice", 25);
    insert(&app, &mine).await;
    let alice = app.token_for("alice");
    let keys = [(Key::Priority, false)];
    let order = order_arg(&keys);
    let expected = expected_order(&mine, &keys);

    let first = app
        .page(&alice, json!({ "order": order, "first": 6 }))
        .await;
    assert_eq!(first.ids, expected[..6]);

    // Between pages: a task is deleted ahead of the cursor, and new tasks appear both
    // behind the cursor (priority 1) and ahead of it (priority 5).
    let deleted = expected[10];
    sqlx::query("delete from tasks where id = $1")
        .bind(deleted)
        .execute(&app.db)
        .await
        .expect("delete");
    let mut added = Vec::new();
    for priority in [1, 1, 5, 5] {
        let task = app
            .create_task_from(&alice, json!({ "title": "late", "priority": priority }))
            .await;
        added.push((
            Uuid::parse_str(task["id"].as_str().expect("id")).expect("uuid"),
            priority,
        ));
    }

    let mut seen = first.ids.clone();
    let mut after = first.info["endCursor"].clone();
    loop {
        let next = app
            .page(
                &alice,
                json!({ "order": order, "first": 6, "after": after }),
            )
            .await;
        seen.extend(&next.ids);
        if next.info["hasNextPage"] == false {
            break;
        }
        after = next.info["endCursor"].clone();
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no task was returned twice");
    for id in &expected {
        let count = seen.iter().filter(|s| *s == id).count();
        assert_eq!(count, usize::from(*id != deleted), "task {id}");
    }
    for (id, priority) in added {
        assert_eq!(
            seen.contains(&id),
            priority == 5,
            "a task added ahead of the cursor shows up; behind it does not"
        );
    }
}

#[tokio::test]
async fn page_arguments_are_validated() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let cases = [
        (json!({ "first": 0 }), "first"),
        (json!({ "first": 101 }), "first"),
        (json!({ "first": -5 }), "first"),
        (json!({ "last": 0 }), "last"),
        (json!({ "last": 101 }), "last"),
        (json!({ "first": 5, "last": 5 }), "last"),
    ];
    for (variables, field) in cases {
        let reply = app.gql(Some(&alice), PAGE_QUERY, variables.clone()).await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{variables}");
        assert_eq!(
            reply.body["errors"][0]["extensions"]["field"], field,
            "{variables}"
        );
    }
    let duplicate =
        json!({ "order": [{ "field": "TITLE" }, { "field": "TITLE", "direction": "DESC" }] });
    let reply = app.gql(Some(&alice), PAGE_QUERY, duplicate).await;
    assert_eq!(reply.body["errors"][0]["extensions"]["field"], "orderBy");
    for size in [1, 100] {
        app.gql(Some(&alice), PAGE_QUERY, json!({ "first": size }))
            .await
            .ok();
    }
}

#[tokio::test]
async fn the_default_page_holds_twenty_tasks() {
    let app = TestApp::spawn().await;
    insert(&app, &seeds("alice", 25)).await;
    let alice = app.token_for("alice");
    let first = app.page(&alice, json!({})).await;
    assert_eq!(first.ids.len(), 20);
    assert_eq!(first.info["hasNextPage"], true);
}
