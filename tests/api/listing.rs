//! Filtering, ordering and cursor pagination of `tasks`, against a seeded set whose expected
//! answers are computed here in Rust, independently of the SQL under test.

use std::cmp::Ordering;

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::TestApp;

/// A seeded task, mirrored in memory.
#[derive(Debug, Clone)]
pub struct Seed {
    pub id: Uuid,
    pub user: &'static str,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: i16,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0)
        .single()
        .expect("valid date")
}

const TITLES: [&str; 7] = [
    "alpha", "bravo", "charlie", "alpha", "delta", "echo", "bravo",
];
const DESCRIPTIONS: [Option<&str>; 5] = [
    None,
    Some("walk in the park"),
    Some("buy MILK and eggs"),
    Some("Park the car near the milk shop"),
    Some(""),
];

/// `n` tasks for `user`, with many ties (titles, priorities, days, hours) and missing due dates.
pub fn seeds(user: &'static str, n: usize) -> Vec<Seed> {
    (0..n)
        .map(|i| {
            let created_at = base() + Duration::hours((i % 10) as i64);
            let completed = i % 3 == 0;
            Seed {
                id: Uuid::now_v7(),
                user,
                title: TITLES[i % TITLES.len()].to_owned(),
                description: DESCRIPTIONS[i % DESCRIPTIONS.len()]
                    .map(str::to_owned)
                    .filter(|d| !d.is_empty()),
                completed,
                priority: (1 + i % 5) as i16,
                due_at: (i % 4 != 0).then(|| base() + Duration::days((i % 7) as i64)),
                completed_at: completed.then(|| base() + Duration::hours(i as i64)),
                created_at,
                updated_at: created_at + Duration::minutes(i as i64),
            }
        })
        .collect()
}

pub async fn insert(app: &TestApp, seeds: &[Seed]) {
    for user in seeds
        .iter()
        .map(|s| s.user)
        .collect::<std::collections::BTreeSet<_>>()
    {
        sqlx::query("insert into users (id, email) values ($1, $1 || '@example.com') on conflict do nothing")
            .bind(user)
            .execute(&app.db)
            .await
            .expect("user");
    }
    for seed in seeds {
        sqlx::query(
            "insert into tasks (id, user_id, title, description, completed, priority, due_at, completed_at, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(seed.id)
        .bind(seed.user)
        .bind(&seed.title)
        .bind(&seed.description)
        .bind(seed.completed)
        .bind(seed.priority)
        .bind(seed.due_at)
        .bind(seed.completed_at)
        .bind(seed.created_at)
        .bind(seed.updated_at)
        .execute(&app.db)
        .await
        .expect("seed");
    }
}

fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339()
}

async fn matching(app: &TestApp, token: &str, filter: &Value) -> Vec<Uuid> {
    let reply = app
        .gql(
            Some(token),
            "query($f: TaskFilter) { tasks(filter: $f, first: 100) { nodes { id } totalCount } }",
            json!({ "f": filter }),
        )
        .await;
    let data = reply.ok();
    let mut ids: Vec<Uuid> = data["tasks"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| Uuid::parse_str(node["id"].as_str().expect("id")).expect("uuid"))
        .collect();
    assert_eq!(
        data["tasks"]["totalCount"],
        ids.len(),
        "totalCount agrees with the rows"
    );
    ids.sort();
    ids
}

#[tokio::test]
async fn each_filter_operator_selects_exactly_the_expected_tasks() {
    let app = TestApp::spawn().await;
    let mut seeded = seeds("alice", 60);
    let mut special = seeds("alice", 2);
    special[0].title = "50% off_sale".into();
    special[1].title = "5005 offXsale".into();
    seeded.extend(special);
    // Bob has the same kinds of tasks: none may ever show up in Alice's results.
    let bobs = seeds("bob", 30);
    insert(&app, &seeded).await;
    insert(&app, &bobs).await;
    let alice = app.token_for("alice");

    let t = |days: i64| base() + Duration::days(days);
    let word = |s: &Seed, w: &str| {
        let text = format!(
            "{} {}",
            s.title,
            s.description.as_deref().unwrap_or_default()
        )
        .to_lowercase();
        text.split(|c: char| !c.is_alphanumeric())
            .any(|token| token == w)
    };
    type Check = Box<dyn Fn(&Seed) -> bool>;
    let cases: Vec<(Value, Check)> = vec![
        (
            json!({ "completed": true }),
            Box::new(|s: &Seed| s.completed),
        ),
        (
            json!({ "completed": false }),
            Box::new(|s: &Seed| !s.completed),
        ),
        (
            json!({ "priority": { "eq": 3 } }),
            Box::new(|s: &Seed| s.priority == 3),
        ),
        (
            json!({ "priority": { "ne": 3 } }),
            Box::new(|s: &Seed| s.priority != 3),
        ),
        (
            json!({ "priority": { "gt": 3 } }),
            Box::new(|s: &Seed| s.priority > 3),
        ),
        (
            json!({ "priority": { "gte": 3 } }),
            Box::new(|s: &Seed| s.priority >= 3),
        ),
        (
            json!({ "priority": { "lt": 3 } }),
            Box::new(|s: &Seed| s.priority < 3),
        ),
        (
            json!({ "priority": { "lte": 3 } }),
            Box::new(|s: &Seed| s.priority <= 3),
        ),
        (
            json!({ "priority": { "in": [1, 5] } }),
            Box::new(|s: &Seed| [1, 5].contains(&s.priority)),
        ),
        (
            json!({ "priority": { "gte": 2, "lt": 4 } }),
            Box::new(|s: &Seed| (2..4).contains(&s.priority)),
        ),
        (
            json!({ "dueAt": { "lt": iso(t(3)) } }),
            Box::new(move |s: &Seed| s.due_at.is_some_and(|d| d < t(3))),
        ),
        (
            json!({ "dueAt": { "lte": iso(t(3)) } }),
            Box::new(move |s: &Seed| s.due_at.is_some_and(|d| d <= t(3))),
        ),
        (
            json!({ "dueAt": { "gt": iso(t(3)) } }),
            Box::new(move |s: &Seed| s.due_at.is_some_and(|d| d > t(3))),
        ),
        (
            json!({ "dueAt": { "gte": iso(t(3)) } }),
            Box::new(move |s: &Seed| s.due_at.is_some_and(|d| d >= t(3))),
        ),
        (
            json!({ "dueAt": { "eq": iso(t(3)) } }),
            Box::new(move |s: &Seed| s.due_at == Some(t(3))),
        ),
        (
            json!({ "dueAt": { "isNull": true } }),
            Box::new(|s: &Seed| s.due_at.is_none()),
        ),
        (
            json!({ "dueAt": { "isNull": false } }),
            Box::new(|s: &Seed| s.due_at.is_some()),
        ),
        (
            json!({ "createdAt": { "gte": iso(base() + Duration::hours(4)) } }),
            Box::new(|s: &Seed| s.created_at >= base() + Duration::hours(4)),
        ),
        (
            json!({ "updatedAt": { "lt": iso(base() + Duration::hours(2)) } }),
            Box::new(|s: &Seed| s.updated_at < base() + Duration::hours(2)),
        ),
        (
            json!({ "completedAt": { "isNull": true } }),
            Box::new(|s: &Seed| s.completed_at.is_none()),
        ),
        (
            json!({ "completedAt": { "gt": iso(base() + Duration::hours(20)) } }),
            Box::new(|s: &Seed| {
                s.completed_at
                    .is_some_and(|c| c > base() + Duration::hours(20))
            }),
        ),
        (
            json!({ "title": { "eq": "alpha" } }),
            Box::new(|s: &Seed| s.title == "alpha"),
        ),
        (
            json!({ "title": { "eq": "ALPHA" } }),
            Box::new(|_: &Seed| false),
        ),
        (
            json!({ "title": { "contains": "RAV" } }),
            Box::new(|s: &Seed| s.title.contains("rav")),
        ),
        (
            json!({ "title": { "startsWith": "Ch" } }),
            Box::new(|s: &Seed| s.title.starts_with("ch")),
        ),
        // LIKE wildcards in the text are literal characters.
        (
            json!({ "title": { "contains": "0% off_" } }),
            Box::new(|s: &Seed| s.title.contains("0% off_")),
        ),
        (
            json!({ "title": { "contains": "_" } }),
            Box::new(|s: &Seed| s.title.contains('_')),
        ),
        (
            json!({ "title": { "startsWith": "50%" } }),
            Box::new(|s: &Seed| s.title.starts_with("50%")),
        ),
        (
            json!({ "search": "PARK" }),
            Box::new(move |s: &Seed| word(s, "park")),
        ),
        (
            json!({ "search": "milk park" }),
            Box::new(move |s: &Seed| word(s, "milk") && word(s, "park")),
        ),
        (
            json!({ "search": "milk -car" }),
            Box::new(move |s: &Seed| word(s, "milk") && !word(s, "car")),
        ),
        (
            json!({ "search": "bravo" }),
            Box::new(move |s: &Seed| word(s, "bravo")),
        ),
        // Fields combine with AND.
        (
            json!({ "completed": false, "priority": { "gte": 4 } }),
            Box::new(|s: &Seed| !s.completed && s.priority >= 4),
        ),
        (
            json!({ "and": [{ "priority": { "gte": 2 } }, { "priority": { "lte": 4 } }] }),
            Box::new(|s: &Seed| (2..=4).contains(&s.priority)),
        ),
        (
            json!({ "or": [{ "completed": true }, { "priority": { "eq": 5 } }] }),
            Box::new(|s: &Seed| s.completed || s.priority == 5),
        ),
        // "Not due before day 3" keeps the tasks that have no due date at all.
        (
            json!({ "not": { "dueAt": { "lt": iso(t(3)) } } }),
            Box::new(move |s: &Seed| s.due_at.is_none_or(|d| d >= t(3))),
        ),
        (
            json!({ "or": [
                { "and": [{ "title": { "eq": "alpha" } }, { "completed": false }] },
                { "not": { "or": [{ "priority": { "lte": 4 } }, { "dueAt": { "isNull": true } }] } }
            ] }),
            Box::new(|s: &Seed| {
                (s.title == "alpha" && !s.completed) || !(s.priority <= 4 || s.due_at.is_none())
            }),
        ),
        (json!({ "or": [] }), Box::new(|_: &Seed| false)),
        (json!({ "and": [] }), Box::new(|_: &Seed| true)),
        (json!({}), Box::new(|_: &Seed| true)),
    ];
    for (filter, check) in cases {
        let mut expected: Vec<Uuid> = seeded.iter().filter(|s| check(s)).map(|s| s.id).collect();
        expected.sort();
        let got = matching(&app, &alice, &filter).await;
        assert_eq!(got, expected, "filter {filter}");
    }
}

#[tokio::test]
async fn hostile_filters_are_refused_with_their_field() {
    let app = TestApp::spawn().await;
    let alice = app.token_for("alice");
    let mut deep = json!({ "completed": true });
    for _ in 0..9 {
        deep = json!({ "not": deep });
    }
    let cases = [
        (deep, "filter.not.not.not.not.not.not.not.not"),
        (json!({ "search": "   " }), "filter.search"),
        (
            json!({ "title": { "contains": "x".repeat(201) } }),
            "filter.title.contains",
        ),
        (
            json!({ "priority": { "in": (0..101).collect::<Vec<_>>() } }),
            "filter.priority.in",
        ),
        (
            json!({ "or": vec![json!({ "completed": true }); 101] }),
            "filter.or",
        ),
    ];
    for (filter, field) in cases {
        let reply = app
            .gql(
                Some(&alice),
                "query($f: TaskFilter) { tasks(filter: $f) { totalCount } }",
                json!({ "f": filter }),
            )
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{:#}", reply.body);
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field);
    }
}

/// An order as the API takes it, and the same order as a Rust comparator.
#[derive(Debug, Clone, Copy)]
enum Key {
    CreatedAt,
    UpdatedAt,
    DueAt,
    Priority,
    Title,
    Completed,
}

impl Key {
    const ALL: [Key; 6] = [
        Key::CreatedAt,
        Key::UpdatedAt,
        Key::DueAt,
        Key::Priority,
        Key::Title,
        Key::Completed,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::CreatedAt => "CREATED_AT",
            Key::UpdatedAt => "UPDATED_AT",
            Key::DueAt => "DUE_AT",
            Key::Priority => "PRIORITY",
            Key::Title => "TITLE",
            Key::Completed => "COMPLETED",
        }
    }

    /// Compares in this key's direction; a missing due date is last either way.
    fn compare(self, a: &Seed, b: &Seed, descending: bool) -> Ordering {
        let flip = |o: Ordering| if descending { o.reverse() } else { o };
        match self {
            Key::CreatedAt => flip(a.created_at.cmp(&b.created_at)),
            Key::UpdatedAt => flip(a.updated_at.cmp(&b.updated_at)),
            Key::Priority => flip(a.priority.cmp(&b.priority)),
            Key::Title => flip(a.title.cmp(&b.title)),
            Key::Completed => flip(a.completed.cmp(&b.completed)),
            Key::DueAt => match (a.due_at, b.due_at) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => flip(x.cmp(&y)),
            },
        }
    }
}

fn expected_order(seeds: &[Seed], keys: &[(Key, bool)]) -> Vec<Uuid> {
    let mut sorted = seeds.to_vec();
    let id_descending = keys.last().is_some_and(|(_, desc)| *desc);
    sorted.sort_by(|a, b| {
        keys.iter()
            .map(|(key, desc)| key.compare(a, b, *desc))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| {
                if id_descending {
                    b.id.cmp(&a.id)
                } else {
                    a.id.cmp(&b.id)
                }
            })
    });
    sorted.into_iter().map(|s| s.id).collect()
}

fn order_arg(keys: &[(Key, bool)]) -> Value {
    keys.iter()
        .map(|(key, desc)| json!({ "field": key.name(), "direction": if *desc { "DESC" } else { "ASC" } }))
        .collect()
}

const PAGE_QUERY: &str = "query($order: [TaskOrder!], $filter: TaskFilter, $first: Int, $after: String, $last: Int, $before: String) {
  tasks(orderBy: $order, filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

struct Page {
    ids: Vec<Uuid>,
    info: Value,
}

async fn page(app: &TestApp, token: &str, variables: Value) -> Page {
    let reply = app.gql(Some(token), PAGE_QUERY, variables).await;
    let tasks = &reply.ok()["tasks"];
    let ids = tasks["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| Uuid::parse_str(edge["node"]["id"].as_str().expect("id")).expect("uuid"))
        .collect();
    Page {
        ids,
        info: tasks["pageInfo"].clone(),
    }
}

/// Walks every page forward, `size` at a time; checks pageInfo on the way.
async fn walk_forward(app: &TestApp, token: &str, order: &Value, size: usize) -> Vec<Uuid> {
    let mut all = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = page(
            app,
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
        let page = page(
            app,
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
        let whole = page(&app, &alice, json!({ "order": order, "first": 100 })).await;
        assert_eq!(whole.ids, expected, "single page {order}");
    }
}

#[tokio::test]
async fn the_default_order_is_newest_first() {
    let app = TestApp::spawn().await;
    let mine = seeds("alice", 15);
    insert(&app, &mine).await;
    let alice = app.token_for("alice");
    let got = page(&app, &alice, json!({})).await.ids;
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

    let first = page(&app, &alice, json!({ "order": order, "first": 6 })).await;
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
        let task = crate::tasks::create(
            &app,
            &alice,
            json!({ "title": "late", "priority": priority }),
        )
        .await;
        added.push((
            Uuid::parse_str(task["id"].as_str().expect("id")).expect("uuid"),
            priority,
        ));
    }

    let mut seen = first.ids.clone();
    let mut after = first.info["endCursor"].clone();
    loop {
        let next = page(
            &app,
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
async fn cursors_only_work_in_the_list_they_came_from() {
    let app = TestApp::spawn().await;
    insert(&app, &seeds("alice", 12)).await;
    insert(&app, &seeds("bob", 12)).await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    let by_priority = order_arg(&[(Key::Priority, false)]);
    let first = page(&app, &alice, json!({ "order": by_priority, "first": 3 })).await;
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
    let first = page(&app, &alice, json!({})).await;
    assert_eq!(first.ids.len(), 20);
    assert_eq!(first.info["hasNextPage"], true);
}
