//! Query plans on a seeded database: every common order (each field alone, both directions,
//! with and without the `completed` filter, first page and a page after a cursor) is an index
//! scan over the caller's rows, never a scan of the table.

use serde_json::Value;
use sqlx::{PgPool, QueryBuilder};
use taskql::{
    auth::{AuthConfig, AuthMode, Secret},
    auth::{UserId, Verifier},
    db,
    domain::query::{Direction, Filter, Order, PageRequest, SortField, SortKey},
};

use crate::common::{TEST_SECRET, TestDb, keys};

/// A `UserId` made the only way there is: by verifying a token.
async fn verified(sub: &str) -> UserId {
    let config = AuthConfig {
        mode: AuthMode::Secret {
            secret: Secret::new(TEST_SECRET),
        },
        issuer: None,
        audience: None,
        clock_skew: std::time::Duration::from_secs(60),
        jwks_refresh: std::time::Duration::from_secs(300),
        jwks_min_refetch: std::time::Duration::from_secs(10),
    };
    let verifier = Verifier::from_config(&config).await.expect("verifier");
    let token = keys::hs256_token(TEST_SECRET, &keys::claims(sub));
    verifier.verify(&token).await.expect("valid token").user_id
}

/// 60 users with 500 tasks each: enough rows that a wrong plan shows.
async fn seed(pool: &PgPool) {
    sqlx::raw_sql(
        "insert into users (id, email) select 'user-' || u, 'user-' || u || '@example.com' from generate_series(1, 60) u;
         insert into tasks (id, user_id, title, description, completed, priority, due_at, created_at, updated_at)
         select gen_random_uuid(),
                'user-' || (1 + i % 60),
                'task ' || md5(i::text),
                case when i % 5 = 0 then 'buy milk' end,
                i % 3 = 0,
                1 + i % 5,
                case when i % 4 = 0 then null else now() + (i % 97) * interval '1 hour' end,
                now() - (i % 1000) * interval '1 minute',
                now() - (i % 777) * interval '1 minute'
         from generate_series(1, 30000) i;
         analyze users; analyze tasks;",
    )
    .execute(pool)
    .await
    .expect("seed");
}

async fn plan(
    pool: &PgPool,
    user: &UserId,
    filter: &Filter,
    order: &Order,
    page: &PageRequest,
    with_owner: bool,
) -> Value {
    let mut query = QueryBuilder::new("explain (format json) ");
    let columns = db::tasks::Columns {
        owner: with_owner,
        ..db::tasks::Columns::TASK
    };
    db::tasks::push_list_query(&mut query, user, filter, order, page, columns);
    let plan: Value = query
        .build_query_scalar()
        .fetch_one(pool)
        .await
        .expect("explain");
    plan[0]["Plan"].clone()
}

/// Every node of a plan, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut all = vec![plan];
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            all.extend(nodes(child));
        }
    }
    all
}

fn index_for(field: SortField, descending: bool) -> &'static str {
    match field {
        SortField::CreatedAt => "tasks_user_created_idx",
        SortField::UpdatedAt => "tasks_user_updated_idx",
        SortField::DueAt if descending => "tasks_user_due_desc_idx",
        SortField::DueAt => "tasks_user_due_idx",
        SortField::Priority => "tasks_user_priority_idx",
        SortField::Title => "tasks_user_title_idx",
        SortField::Completed => "tasks_user_completed_idx",
    }
}

#[tokio::test]
async fn every_common_order_is_an_index_scan_of_the_callers_rows() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    db::MIGRATOR.run(&pool).await.expect("migrate");
    seed(&pool).await;
    let user = verified("user-7").await;

    let fields = [
        SortField::CreatedAt,
        SortField::UpdatedAt,
        SortField::DueAt,
        SortField::Priority,
        SortField::Title,
        SortField::Completed,
    ];
    for field in fields {
        for descending in [false, true] {
            let order = Order::parse(vec![SortKey { field, descending }]).expect("order");
            // A real row of this user, to page from.
            let first = PageRequest {
                direction: Direction::Forward,
                size: 20,
                cursor: None,
            };
            let rows = db::tasks::list(
                &pool,
                &user,
                &Filter::all(),
                &order,
                &first,
                db::tasks::Columns::TASK,
            )
            .await
            .expect("list")
            .rows;
            let cursor = db::tasks::position(&rows[10], &order);

            for filter in [Filter::all(), Filter::Completed(false)] {
                for direction in [Direction::Forward, Direction::Backward] {
                    for (cursor, with_owner) in [
                        (None, false),
                        (Some(cursor.clone()), false),
                        (None, true),
                        (Some(cursor.clone()), true),
                    ] {
                        let page = PageRequest {
                            direction,
                            size: 20,
                            cursor: cursor.clone(),
                        };
                        let plan = plan(&pool, &user, &filter, &order, &page, with_owner).await;
                        let what = format!(
                            "{} {} {filter:?} {direction:?} cursor={} owner={with_owner}:\n{plan:#}",
                            field.name(),
                            if descending { "DESC" } else { "ASC" },
                            cursor.is_some()
                        );
                        let all = nodes(&plan);
                        // (The owner's row comes from a one-off lookup in `users`, which this
                        // seed keeps small enough for PostgreSQL to scan instead of using
                        // the primary key; it runs once per statement either way.)
                        assert!(
                            all.iter()
                                .all(|n| n["Node Type"] != "Seq Scan"
                                    || n["Relation Name"] == "users"),
                            "a table scan in {what}"
                        );
                        let owner_lookups =
                            all.iter().filter(|n| n["Relation Name"] == "users").count();
                        assert_eq!(owner_lookups, if with_owner { 5 } else { 0 }, "{what}");
                        assert!(
                            all.iter()
                                .filter(|n| n["Relation Name"] == "users")
                                .all(|n| n["Parent Relationship"] == "InitPlan"),
                            "the owner is read once per statement, not per row, in {what}"
                        );
                        if cursor.is_none() {
                            // A first page streams from the index in order; a page after a cursor
                            // may instead sort the few rows a seek returns, when few lie beyond it.
                            assert!(
                                all.iter().all(|n| n["Node Type"] != "Sort"),
                                "a sort in {what}"
                            );
                        }
                        // (With the owner, the caller's row is a primary-key lookup beside it.)
                        let scan = all
                            .iter()
                            .find(|n| {
                                n["Node Type"].as_str().is_some_and(|t| t.contains("Index"))
                                    && n["Index Name"]
                                        .as_str()
                                        .is_some_and(|name| name.starts_with("tasks_"))
                            })
                            .unwrap_or_else(|| panic!("no index scan in {what}"));
                        assert_eq!(scan["Index Name"], index_for(field, descending), "{what}");
                        let condition = scan["Index Cond"].as_str().unwrap_or_default();
                        assert!(
                            condition.contains("user_id ="),
                            "the scan is not limited to the user in {what}"
                        );
                        if cursor.is_some() {
                            assert!(
                                condition.contains('>') || condition.contains('<'),
                                "the cursor is not a seek (index condition) in {what}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn search_and_counts_use_indexes_too() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    db::MIGRATOR.run(&pool).await.expect("migrate");
    seed(&pool).await;
    let user = verified("user-7").await;
    let page = PageRequest {
        direction: Direction::Forward,
        size: 20,
        cursor: None,
    };
    let plan = plan(
        &pool,
        &user,
        &Filter::Search("milk".into()),
        &Order::newest_first(),
        &page,
        false,
    )
    .await;
    let all = nodes(&plan);
    assert!(all.iter().all(|n| n["Node Type"] != "Seq Scan"), "{plan:#}");
}
