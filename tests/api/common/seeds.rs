//! A seeded task set mirrored in memory, written straight into the database, and the orders
//! it should come back in, computed here in Rust, independently of the SQL under test.

use std::cmp::Ordering;

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::TestApp;

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

/// An order as the API takes it, and the same order as a Rust comparator.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    CreatedAt,
    UpdatedAt,
    DueAt,
    Priority,
    Title,
    Completed,
}

impl Key {
    pub const ALL: [Key; 6] = [
        Key::CreatedAt,
        Key::UpdatedAt,
        Key::DueAt,
        Key::Priority,
        Key::Title,
        Key::Completed,
    ];

    pub fn name(self) -> &'static str {
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
    pub fn compare(self, a: &Seed, b: &Seed, descending: bool) -> Ordering {
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

pub fn expected_order(seeds: &[Seed], keys: &[(Key, bool)]) -> Vec<Uuid> {
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

pub fn order_arg(keys: &[(Key, bool)]) -> Value {
    keys.iter()
        .map(|(key, desc)| json!({ "field": key.name(), "direction": if *desc { "DESC" } else { "ASC" } }))
        .collect()
}
