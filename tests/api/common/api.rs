//! The API's everyday operations as typed calls, each document written once: a test reads as
//! what a client does (`app.create_task(&alice, "milk")`), and spells a document out only
//! where its exact text is what the test is about.
//!
//! [`Client`] is implemented by everything a test can send GraphQL to: the in-process
//! [`TestApp`], a [`Sibling`] instance, and the address of a real `taskql` process.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Reply, Sibling, TestApp};

/// Every field of a task, as the task tests read it back.
pub const TASK_FIELDS: &str =
    "id title description completed priority dueAt completedAt createdAt updatedAt owner { id }";

/// A `tasks` page with every paging argument a variable, returning cursors and `pageInfo`.
pub const PAGE_QUERY: &str = "query($order: [TaskOrder!], $filter: TaskFilter, $first: Int, $after: String, $last: Int, $before: String) {
  tasks(orderBy: $order, filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

/// One page of `tasks`: its ids in order and its `pageInfo`.
#[derive(Debug)]
pub struct Page {
    pub ids: Vec<Uuid>,
    pub info: Value,
}

/// Something that answers GraphQL; the operations below come with it.
// Tests call these on concrete types only, so the futures' Send-ness is never in question.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// POSTs one operation with its variables.
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply;

    /// Creates a task titled `title`, failing the test if that fails; its id.
    async fn create_task(&self, token: &str, title: &str) -> String {
        let task = self
            .create_task_from(token, json!({ "title": title }))
            .await;
        task["id"].as_str().expect("an id").to_owned()
    }

    /// Creates `n` tasks titled `task 0`, `task 1`, …; their ids in that order.
    async fn create_tasks(&self, token: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(self.create_task(token, &format!("task {i}")).await);
        }
        ids
    }

    /// Creates a task from a whole `CreateTaskInput`, failing the test if that fails; the
    /// task with every field.
    async fn create_task_from(&self, token: &str, input: Value) -> Value {
        self.try_create_task(token, input).await.ok()["createTask"].clone()
    }

    /// `createTask` with `input`, whatever the answer: for tests of what it refuses.
    async fn try_create_task(&self, token: &str, input: Value) -> Reply {
        self.gql(
            Some(token),
            &format!(
                "mutation($input: CreateTaskInput!) {{ createTask(input: $input) {{ {TASK_FIELDS} }} }}"
            ),
            json!({ "input": input }),
        )
        .await
    }

    /// `task(id:)` with every field.
    async fn task(&self, token: &str, id: &str) -> Reply {
        self.gql(
            Some(token),
            &format!("query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await
    }

    /// `updateTask` with `input`, returning every field.
    async fn update_task(&self, token: &str, id: &str, input: Value) -> Reply {
        self.gql(
            Some(token),
            &format!(
                "mutation($id: ID!, $input: UpdateTaskInput!) {{ updateTask(id: $id, input: $input) {{ {TASK_FIELDS} }} }}"
            ),
            json!({ "id": id, "input": input }),
        )
        .await
    }

    /// `deleteTask`, whatever the answer.
    async fn delete_task(&self, token: &str, id: &str) -> Reply {
        self.gql(
            Some(token),
            "mutation($id: ID!) { deleteTask(id: $id) }",
            json!({ "id": id }),
        )
        .await
    }

    /// `me`, with the profile's fields.
    async fn me(&self, token: &str) -> Reply {
        self.gql(Some(token), "{ me { id email name } }", json!({}))
            .await
    }

    /// One page of `tasks`; `variables` may hold `order`, `filter`, `first`, `after`,
    /// `last` and `before`. Fails the test on any error.
    async fn page(&self, token: &str, variables: Value) -> Page {
        let reply = self.gql(Some(token), PAGE_QUERY, variables).await;
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

    /// The caller's change-feed version now, as a `tasks` page reports it.
    async fn version(&self, token: &str) -> String {
        let reply = self
            .gql(Some(token), "{ tasks(first: 1) { version } }", json!({}))
            .await;
        reply.ok()["tasks"]["version"]
            .as_str()
            .expect("a version")
            .to_owned()
    }
}

impl Client for TestApp {
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        TestApp::gql(self, token, query, variables).await
    }
}

impl Client for Sibling {
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        Sibling::gql(self, token, query, variables).await
    }
}

/// A `taskql` process listening here (see [`super::Process::serve`]).
impl Client for SocketAddr {
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        let mut request = reqwest::Client::new()
            .post(format!("http://{self}/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        TestApp::reply(request).await
    }
}

impl Reply {
    /// Fails the test unless this is the error `code` with HTTP `status`.
    #[track_caller]
    pub fn assert_code(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.code(), Some(code), "{:#}", self.body);
    }

    /// Fails the test unless this is `BAD_USER_INPUT` naming `field`, with 200 as
    /// GraphQL over HTTP answers an execution error.
    #[track_caller]
    pub fn assert_bad_input(&self, field: &str) {
        self.assert_code(StatusCode::OK, "BAD_USER_INPUT");
        assert_eq!(
            self.body["errors"][0]["extensions"]["field"], field,
            "{:#}",
            self.body
        );
    }
}

impl Reply {
    /// Fails the test unless this is a request error: 400, `code`, and no `data` at all.
    #[track_caller]
    pub fn assert_request_error(&self, code: &str) {
        self.assert_code(StatusCode::BAD_REQUEST, code);
        assert!(self.body.get("data").is_none(), "{:#}", self.body);
    }
}

impl TestApp {
    /// The server still answers: every test that sends something hostile ends with this.
    pub async fn assert_alive(&self) {
        self.gql(None, "{ apiVersion }", json!({})).await.ok();
    }

    /// POSTs `body` to /graphql exactly as given, as JSON: for bodies no JSON encoder makes.
    pub async fn post_text(&self, body: &str) -> Reply {
        Self::reply(
            self.client
                .post(self.url("/graphql"))
                .header("content-type", "application/json")
                .header("accept", "application/graphql-response+json")
                .body(body.to_owned()),
        )
        .await
    }

    /// How many of the server's statements on this test's database are waiting for a lock:
    /// PostgreSQL's own report, so tests wait for that event instead of sleeping.
    pub async fn statements_waiting_on_locks(&self) -> i64 {
        sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and application_name = 'taskql'
               and wait_event_type = 'Lock'",
        )
        .fetch_one(&self.db)
        .await
        .expect("pg_stat_activity")
    }

    /// Returns once a statement of the server waits for a lock; fails the test after 10 s.
    pub async fn until_a_statement_waits_on_a_lock(&self) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.statements_waiting_on_locks().await == 0 {
            assert!(
                std::time::Instant::now() < give_up,
                "no statement started waiting"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Rows in `table` (`tasks` or `users`), read straight from the database, not through
    /// the API under test.
    pub async fn rows(&self, table: &str) -> i64 {
        let count = match table {
            "tasks" => "select count(*) from tasks",
            "users" => "select count(*) from users",
            other => panic!("no count for {other}"),
        };
        sqlx::query_scalar(count)
            .fetch_one(&self.db)
            .await
            .expect("count")
    }
}
