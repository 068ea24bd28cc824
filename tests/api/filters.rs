//! Filtering `tasks`: each operator against a seeded set whose expected answers are computed
//! here in Rust, independently of the SQL under test; every hostile filter refused by name.

use chrono::{DateTime, Duration, Utc};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    TestApp,
    seeds::{Seed, base, insert, seeds},
};

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
