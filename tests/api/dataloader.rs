//! The number of SQL statements a page costs does not grow with the page size: task owners
//! are fetched in one batched query, whatever the number of tasks.
//!
//! Counted in the real binary's own logs: sqlx logs every statement it runs (target
//! `sqlx::query`, debug level), inside the span of the request that ran it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Process, TEST_SECRET, TestDb, keys, post};

/// Runs `query` and returns how many SQL statements the server logged for it.
async fn statements_for(
    server: &mut Process,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> usize {
    let reply = post(addr, Some(token), query).await;
    reply.ok();
    let request_id = reply
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    // The access log line is written when the response is done, after every statement.
    server.wait_for_line(Duration::from_secs(30), |line| {
        line.contains("finished processing request") && line.contains(&request_id)
    });
    server
        .seen
        .iter()
        .filter(|line| line.contains("\"sqlx::query\"") && line.contains(&request_id))
        .count()
}

#[tokio::test]
async fn a_page_with_owners_costs_the_same_statements_at_any_size() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "info,sqlx::query=debug")]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));

    let client = reqwest::Client::new();
    for i in 0..60 {
        client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": format!("mutation {{ createTask(input: {{ title: \"t{i}\" }}) {{ id }} }}") }))
            .send()
            .await
            .expect("create");
    }

    let page = |n: usize| {
        format!("{{ tasks(first: {n}) {{ nodes {{ id title owner {{ id email }} }} }} }}")
    };
    let small = statements_for(&mut server, addr, &token, &page(2)).await;
    let large = statements_for(&mut server, addr, &token, &page(50)).await;
    assert!(
        small >= 3,
        "user sync, the page and the owners: saw {small}"
    );
    assert_eq!(
        small, large,
        "2 tasks cost {small} statements, 50 cost {large}"
    );

    // The owner query is one batched statement with a bound array.
    let batched: Vec<&String> = server
        .seen
        .iter()
        .filter(|line| line.contains("\"sqlx::query\"") && line.contains("id = any($1)"))
        .collect();
    assert!(!batched.is_empty());
    let last: Value = serde_json::from_str(batched[batched.len() - 1]).expect("json");
    assert!(
        last["fields"]["db.statement"]
            .as_str()
            .unwrap_or_default()
            .contains("from users")
    );
}
