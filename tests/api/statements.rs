//! The number of SQL statements a page costs does not grow with the page size: every task's
//! owner is the caller, answered from the caller's own row, read once per request.
//!
//! Counted in the real binary's own logs: sqlx logs every statement it runs (target
//! `sqlx::query`, debug level), inside the span of the request that ran it.

use std::time::Duration;

use serde_json::json;

use crate::common::{Process, TEST_SECRET, TestDb, keys, post};

/// Runs `query` and returns how many SQL statements the server logged for it, and how many
/// of them read the caller's row.
async fn statements_for(
    server: &mut Process,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> (usize, usize) {
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
    let statements: Vec<&String> = server
        .seen
        .iter()
        .filter(|line| line.contains("\"sqlx::query\"") && line.contains(&request_id))
        .collect();
    let row_reads = statements
        .iter()
        .filter(|line| {
            line.contains("select id, email, name, image, created_at, updated_at from users")
        })
        .count();
    (statements.len(), row_reads)
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
    let (small, small_reads) = statements_for(&mut server, addr, &token, &page(2)).await;
    let (large, large_reads) = statements_for(&mut server, addr, &token, &page(50)).await;
    assert_eq!(
        small, large,
        "2 tasks cost {small} statements, 50 cost {large}"
    );
    assert!(
        small <= 3,
        "user sync, the page and the caller's row: saw {small}"
    );

    // The owner comes from one read of the caller's row, not a lookup per task.
    assert_eq!(
        (small_reads, large_reads),
        (1, 1),
        "one read of the caller's row"
    );
}

/// The statement budget is an upper bound that holds: documents priced at the limit run no
/// more statements than their price, plus the two every request may pay (the user sync and
/// the caller's row); one statement more is refused before anything runs.
#[tokio::test]
async fn a_document_at_the_statement_limit_runs_at_most_that_many() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(
        &db,
        &[
            ("RUST_LOG", "info,sqlx::query=debug"),
            ("GRAPHQL_MAX_STATEMENTS", "30"),
        ],
    );
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));
    for i in 0..30 {
        post(
            addr,
            Some(&token),
            &format!(
                "mutation {{ createTask(input: {{ title: \"t{i}\", priority: {} }}) {{ id }} }}",
                i % 5 + 1
            ),
        )
        .await
        .ok();
    }
    // 30 statements each, by the price list: 30 different counts; a page of 29 rows, each
    // asking for statistics (counted once, however many rows ask); 15 pages read with their
    // probe.
    let counts: Vec<String> = (0..30)
        .map(|i| format!("c{i}: taskStats(filter: {{ createdAt: {{ gt: \"2000-01-{:02}T00:00:00Z\" }} }}) {{ total }}", i + 1))
        .collect();
    let cursor = post(
        addr,
        Some(&token),
        "{ tasks(first: 1) { pageInfo { endCursor } } }",
    )
    .await
    .ok()["tasks"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let pages: Vec<String> = (0..15)
        .map(|i| {
            format!("p{i}: tasks(first: {}, after: \"{cursor}\") {{ pageInfo {{ hasPreviousPage }} nodes {{ id }} }}", i + 1)
        })
        .collect();
    for document in [
        format!("{{ {} }}", counts.join(" ")),
        "{ tasks(first: 29) { nodes { owner { taskStats { total } } } } }".to_owned(),
        format!("{{ {} }}", pages.join(" ")),
    ] {
        let (statements, _) = statements_for(&mut server, addr, &token, &document).await;
        assert!(
            statements <= 30 + 2,
            "{statements} statements for {document}"
        );
    }
    let over = post(
        addr,
        Some(&token),
        "{ tasks(first: 30) { nodes { owner { taskStats { total } } } } }",
    )
    .await;
    // (Legacy `application/json`: a refused document is still a 200, with no data.)
    assert!(over.body.get("data").is_none());
    assert_eq!(over.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(
        over.message().contains("31 database statements"),
        "{}",
        over.message()
    );
}
