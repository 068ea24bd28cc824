//! How many SQL statements requests cost, exactly: a page is one round trip in steady state,
//! whatever its size and whether it asks for the tasks' owner (always the caller, read with
//! the page); and a document at the statement limit runs no more than it was priced at.
//!
//! Counted in the real binary's own logs: sqlx logs every statement it runs (target
//! `sqlx::query`, debug level), inside the span of the request that ran it.

use std::time::Duration;

use serde_json::json;

use crate::common::{Process, TEST_SECRET, TestDb, api::Client as _, keys, post};

/// Runs `query` and returns how many SQL statements the server logged for it, and how many
/// of them read the caller's row.
async fn statements_for(
    server: &mut Process,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> (usize, usize) {
    let statements = statement_lines(server, addr, token, query).await;
    let row_reads = statements
        .iter()
        .filter(|line| {
            line.contains("select id, email, name, image, created_at, updated_at from users")
        })
        .count();
    (statements.len(), row_reads)
}

/// Runs `query` and returns the log lines of the SQL statements the server ran for it.
async fn statement_lines(
    server: &mut Process,
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> Vec<String> {
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
        .cloned()
        .collect()
}

/// A page reads a task's description and completion time only when the selection shows
/// them, through `nodes` or `edges`, by alias or fragment; and shows them right when it does.
#[tokio::test]
async fn a_page_reads_only_the_columns_its_selection_shows() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "info,sqlx::query=debug")]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));
    let created = addr
        .create_task_from(
            &token,
            json!({ "title": "with notes", "description": "the notes" }),
        )
        .await;
    let id = created["id"].as_str().expect("id");
    let done = post(
        addr,
        Some(&token),
        &format!("mutation {{ setTasksCompleted(ids: [\"{id}\"], completed: true) {{ id completedAt }} }}"),
    )
    .await;
    let completed_at = done.ok()["setTasksCompleted"][0]["completedAt"].clone();
    assert!(completed_at.is_string(), "{completed_at}");

    let lean = statement_lines(
        &mut server,
        addr,
        &token,
        "{ tasks { nodes { id title } } }",
    )
    .await;
    let page = lean
        .iter()
        .find(|line| line.contains("from tasks"))
        .expect("the page");
    assert!(page.contains("null::text as description"), "{page}");
    assert!(page.contains("null::timestamptz as completed_at"), "{page}");

    for document in [
        "{ tasks { nodes { description completedAt } } }",
        "{ tasks { edges { node { ...Notes } } } } fragment Notes on Task { description completedAt }",
        "{ tasks { nodes { ... on Task { notes: description, done: completedAt } } } }",
    ] {
        let lines = statement_lines(&mut server, addr, &token, document).await;
        let page = lines
            .iter()
            .find(|line| line.contains("from tasks"))
            .expect("the page");
        assert!(
            !page.contains("as description") && !page.contains("as completed_at"),
            "{document}: {page}"
        );
        let reply = post(addr, Some(&token), document).await;
        let tasks = &reply.ok()["tasks"];
        let task = if tasks["nodes"].is_array() {
            &tasks["nodes"][0]
        } else {
            &tasks["edges"][0]["node"]
        };
        let (description, at) = if task.get("notes").is_some() {
            (&task["notes"], &task["done"])
        } else {
            (&task["description"], &task["completedAt"])
        };
        assert_eq!(
            (description, at),
            (&json!("the notes"), &completed_at),
            "{document}"
        );
    }
}

#[tokio::test]
async fn a_page_with_owners_costs_the_same_statements_at_any_size() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "info,sqlx::query=debug")]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));

    for i in 0..60 {
        addr.create_task(&token, &format!("t{i}")).await;
    }

    let page = |n: usize| {
        format!("{{ tasks(first: {n}) {{ nodes {{ id title owner {{ id email }} }} }} }}")
    };
    let (small, small_reads) = statements_for(&mut server, addr, &token, &page(2)).await;
    let (large, large_reads) = statements_for(&mut server, addr, &token, &page(50)).await;
    // The user is in sync (the creates synced it), and the owner is read with the page.
    assert_eq!(
        (small, large),
        (1, 1),
        "2 tasks and 50 cost one statement each"
    );
    assert_eq!(
        (small_reads, large_reads),
        (0, 0),
        "no separate read of the caller's row"
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
        addr.create_task_from(
            &token,
            json!({ "title": format!("t{i}"), "priority": i % 5 + 1 }),
        )
        .await;
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

/// The benchmark's workloads, statement by statement. A change that adds a round trip to any
/// of them fails here.
#[tokio::test]
async fn each_workload_costs_exactly_its_statements() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "info,sqlx::query=debug")]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("alice"));

    const Q1: &str = "{ tasks(first: 20, orderBy: [{field: CREATED_AT, direction: DESC}]) { nodes { id title completed priority dueAt createdAt } } }";
    // A new user's first request: the user sync, then the page.
    let (first, _) = statements_for(&mut server, addr, &token, Q1).await;
    assert_eq!(first, 2, "a new user's first page");

    // M1: one insert, nothing else (the user is in sync now).
    let create = "mutation { createTask(input: {title: \"bench\", description: \"a task\", priority: 4}) { id title description priority completed createdAt } }";
    for _ in 0..45 {
        let (writes, _) = statements_for(&mut server, addr, &token, create).await;
        assert_eq!(writes, 1, "M1 create");
    }

    let (q1, _) = statements_for(&mut server, addr, &token, Q1).await;
    assert_eq!(q1, 1, "Q1 page");

    let q2 = "{ tasks(first: 20, filter: {completed: false, priority: {gte: 4}}, orderBy: [{field: DUE_AT, direction: ASC}]) { totalCount nodes { id title priority dueAt } } }";
    let (q2, _) = statements_for(&mut server, addr, &token, q2).await;
    assert_eq!(q2, 2, "Q2 page and count");

    let q3 = "{ tasks(first: 20, orderBy: [{field: CREATED_AT, direction: DESC}]) { nodes { id title completed priority dueAt createdAt owner { name email } } } }";
    let (q3, own_reads) = statements_for(&mut server, addr, &token, q3).await;
    assert_eq!((q3, own_reads), (1, 0), "Q3 page with owners");

    let q4 = "{ tasks(first: 50, filter: {completed: false}, orderBy: [{field: PRIORITY, direction: DESC}, {field: CREATED_AT, direction: DESC}]) { totalCount nodes { id title priority createdAt } } }";
    let (q4, _) = statements_for(&mut server, addr, &token, q4).await;
    assert_eq!(q4, 2, "Q4 page and count");

    // Q5: walking on with `after` is one statement a page; the probe for hasPreviousPage
    // runs only when that flag is asked for.
    let walk = |after: &str, extra: &str| {
        format!(
            "{{ tasks(first: 20, after: \"{after}\", orderBy: [{{field: CREATED_AT, direction: DESC}}]) {{ pageInfo {{ endCursor {extra} }} nodes {{ id title }} }} }}"
        )
    };
    let mut cursor = post(
        addr,
        Some(&token),
        "{ tasks(first: 20) { pageInfo { endCursor } } }",
    )
    .await
    .ok()["tasks"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    for _ in 2..=3 {
        let (q5, _) = statements_for(&mut server, addr, &token, &walk(&cursor, "")).await;
        assert_eq!(q5, 1, "Q5 page after a cursor");
        cursor = post(addr, Some(&token), &walk(&cursor, "")).await.ok()["tasks"]["pageInfo"]
            ["endCursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
    }
    let (probed, _) =
        statements_for(&mut server, addr, &token, &walk(&cursor, "hasPreviousPage")).await;
    assert_eq!(probed, 2, "the page and the probe");
}
