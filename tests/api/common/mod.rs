//! The test harness: a fresh database per test, the real server on a random port, and a
//! client with helpers that read like the API's users.
//!
//! - [`TestDb`]: creates `taskql_test_<uuid>` and drops it when the test ends (also when it
//!   panics), so tests run in parallel and never see each other's rows.
//! - [`TestApp`]: the in-process server built by `taskql::app::App`, exactly as `taskql serve`
//!   builds it, with `gql()`/`token_for()` helpers.
//! - [`Process`]: the real `taskql` binary, for what only a process shows (exit codes,
//!   signals, log lines).
//! - [`keys`]: signing keys of every accepted algorithm, and a JWKS server.
//! - [`cluster`]: a private PostgreSQL cluster, for tests that stop the database.

#![allow(dead_code)]

pub mod api;
pub mod bouncer;
pub mod cluster;
pub mod keys;
pub mod prometheus;
pub mod seeds;
pub mod ws;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Stdio},
    sync::{Mutex, mpsc},
    time::Duration,
};

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, PgPool};
use taskql::{app::App, settings::Config};
use tokio::{sync::oneshot, task::JoinHandle};

/// A test whose prerequisite (`what`) is missing on this machine, for `reason`: skipped with
/// the reason printed, but failed under `CI=true`, where a green run must mean every test
/// ran. Returning after this is the caller's.
#[track_caller]
pub fn skip(what: &str, reason: impl std::fmt::Display) {
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1");
    assert!(!ci, "{what}, and CI=true: {reason}");
    println!("SKIPPED: {what}: {reason}");
}

/// The HS256 secret test servers use unless a test configures another mode.
pub const TEST_SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = taskql::telemetry::init(&taskql::telemetry::TelemetryConfig {
                log_format: taskql::telemetry::LogFormat::Pretty,
                otlp_endpoint: None,
                service_name: "taskql".to_owned(),
            });
        }
    });
}

/// The role that owns every test database and applies its migrations.
pub const OWNER_ROLE: &str = "taskql_test_owner";
/// The role test servers run as: it may read and write the owner's tables, nothing more (the
/// README's two-role setup), so every API test also proves the service needs no more.
pub const APP_ROLE: &str = "taskql_test_app";

/// `server_url()` with another role in it.
pub fn role_url(role: &str, database: &str) -> String {
    let server = server_url();
    let (scheme, rest) = server.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}@{host}/{database}")
}

/// A database of its own for one test, owned by [`OWNER_ROLE`], whose tables [`APP_ROLE`]
/// may only query and modify.
pub struct TestDb {
    pub name: String,
    /// As the superuser, for arranging and checking rows behind the server's back.
    pub url: String,
    /// As the owner: what migrations run as (`DATABASE_MIGRATION_URL`).
    pub owner_url: String,
    /// As the least-privilege service role (`DATABASE_URL`).
    pub app_url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("taskql_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("PostgreSQL is reachable at TEST_DATABASE_URL (default 127.0.0.1:5432)");
        // Roles are global to the cluster and test processes start at once: whoever comes
        // second finds the role there (either error, depending on the race).
        for role in [OWNER_ROLE, APP_ROLE] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "do $$ begin create role {role} login; \
                 exception when duplicate_object or unique_violation then null; end $$"
            )))
            .execute(&mut admin)
            .await
            .expect("create the test roles");
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create database {name} owner {OWNER_ROLE}"
        )))
        .execute(&mut admin)
        .await
        .expect("create the test database");
        admin.close().await.ok();
        let url = format!("{}/{name}", server_url());
        // The README's grants, made before the owner creates anything.
        let mut db = PgConnection::connect(&url)
            .await
            .expect("the test database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "revoke all on database {name} from public; \
             grant connect on database {name} to {APP_ROLE}; \
             grant usage on schema public to {APP_ROLE}; \
             alter default privileges for role {OWNER_ROLE} in schema public \
               grant select, insert, update, delete on tables to {APP_ROLE}; \
             alter default privileges for role {OWNER_ROLE} in schema public \
               grant usage, select on sequences to {APP_ROLE}"
        )))
        .execute(&mut db)
        .await
        .expect("grant the service role its privileges");
        db.close().await.ok();
        Self {
            owner_url: role_url(OWNER_ROLE, &name),
            app_url: role_url(APP_ROLE, &name),
            name,
            url,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs in async tests too, where blocking the runtime is not allowed: do the
        // cleanup on a thread of its own with its own small runtime.
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
                    .await
                    .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        });
        let _ = cleanup.join();
    }
}

/// Configuration for a test server: the defaults below, overridden per test.
pub struct TestConfig {
    vars: HashMap<String, String>,
}

impl TestConfig {
    pub fn new() -> Self {
        let vars = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("AUTH_JWT_SECRET", TEST_SECRET),
            // Tests share one PostgreSQL with every other test running at the same time.
            ("DATABASE_POOL_SIZE", "4"),
            // Tests send bursts; the rate-limit tests configure their own budget.
            ("RATE_LIMIT_PER_MINUTE", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self { vars }
    }

    pub fn set(mut self, var: &str, value: impl Into<String>) -> Self {
        self.vars.insert(var.to_owned(), value.into());
        self
    }

    pub fn unset(mut self, var: &str) -> Self {
        self.vars.remove(var);
        self
    }

    pub fn build(&self, db: &TestDb) -> Config {
        let mut vars = self.vars.clone();
        if !vars.contains_key("DATABASE_URL") {
            vars.insert("DATABASE_URL".to_owned(), db.app_url.clone());
            vars.entry("DATABASE_MIGRATION_URL".to_owned())
                .or_insert_with(|| db.owner_url.clone());
        }
        Config::from_vars(&vars).expect("valid test configuration")
    }

    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    /// A pool on the test database, for arranging and asserting rows directly.
    pub db: PgPool,
    pub config: Config,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
    // Declared last: dropped after the pools above, so the database can be dropped.
    pub test_db: TestDb,
}

/// What a GraphQL request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `extensions.code` of the first error.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Fails the test unless the request executed without errors.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:#}", self.body);
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {:#}",
            self.body
        );
        &self.body["data"]
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestConfig::new()).await
    }

    pub async fn spawn_with(config: TestConfig) -> Self {
        init_logging();
        let test_db = TestDb::create().await;
        let config = config.build(&test_db);
        let app = App::build(config.clone()).await.expect("the app starts");
        let addr = app.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        let db = test_db.pool().await;
        Self {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            db,
            config,
            shutdown: Mutex::new(Some(tx)),
            server: Mutex::new(Some(server)),
            test_db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token for `sub`, signed as the test server expects (HS256 secret mode).
    pub fn token_for(&self, sub: &str) -> String {
        keys::hs256_token(TEST_SECRET, &keys::claims(sub))
    }

    /// POSTs one GraphQL operation as Apollo Client does.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        self.post_json(token, &json!({ "query": query, "variables": variables }))
            .await
    }

    /// POSTs any JSON body to /graphql with Apollo Client's headers.
    pub async fn post_json(&self, token: Option<&str>, body: &Value) -> Reply {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .header(
                "accept",
                "application/graphql-response+json,application/json;q=0.9",
            )
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::reply(request).await
    }

    pub async fn reply(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&self) {
        if let Some(tx) = self.shutdown.lock().expect("lock").take() {
            let _ = tx.send(());
        }
        let server = self.server.lock().expect("lock").take();
        if let Some(server) = server {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

/// A second server on a test app's database, as a second instance behind a load balancer.
/// Stopped when dropped.
pub struct Sibling {
    pub addr: SocketAddr,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Sibling {
    /// POSTs one GraphQL operation to this instance.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        let mut request = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        TestApp::reply(request).await
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.abort();
    }
}

impl TestApp {
    /// Another instance of this server, on the same database and configuration.
    pub async fn sibling(&self) -> Sibling {
        let app = App::build(self.config.clone())
            .await
            .expect("the second instance starts");
        let addr = app.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Sibling {
            addr,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            server,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.lock().ok().and_then(|mut tx| tx.take()) {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.lock().ok().and_then(|mut s| s.take()) {
            server.abort();
        }
    }
}

/// The real `taskql` binary, with its log lines (JSON, one per line) collected as they come.
pub struct Process {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Process {
    pub fn spawn(args: &[&str], env: &HashMap<String, String>) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_taskql"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn taskql");
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// `taskql serve` on `db` in secret mode (the test secret), on a random port, with
    /// `extra` variables; returns once it is listening.
    pub fn serve(db: &TestDb, extra: &[(&str, &str)]) -> (Self, SocketAddr) {
        let migration = [("DATABASE_MIGRATION_URL", db.owner_url.as_str())];
        let extra: Vec<(&str, &str)> = migration
            .into_iter()
            .filter(|(var, _)| extra.iter().all(|(set, _)| set != var))
            .chain(extra.iter().copied())
            .collect();
        Self::serve_url(&db.app_url, &extra)
    }

    /// [`Process::serve`] on any database URL.
    pub fn serve_url(database_url: &str, extra: &[(&str, &str)]) -> (Self, SocketAddr) {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", database_url),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("AUTH_JWT_SECRET", TEST_SECRET),
            ("RATE_LIMIT_PER_MINUTE", "0"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.retain(|_, v| !v.is_empty());
        let mut process = Self::spawn(&["serve"], &env);
        let addr = process.wait_until_listening();
        (process, addr)
    }

    /// Reads output lines until one satisfies `pred`; panics after `limit` (a hang guard, not
    /// a synchronisation: the line is an event the process reports).
    pub fn wait_for_line(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no matching output line; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The address from the server's "listening" log line.
    pub fn wait_until_listening(&mut self) -> SocketAddr {
        let line = self.wait_for_line(Duration::from_secs(60), |line| {
            line.contains("\"listening\"")
        });
        let json: Value = serde_json::from_str(&line).expect("JSON log line");
        json["fields"]["addr"]
            .as_str()
            .and_then(|addr| addr.parse().ok())
            .expect("the listening line names the address")
    }

    /// Waits for the process to exit (bounded by `limit`) and returns its exit code. The
    /// output readers end at EOF, i.e. when the process has closed its output by exiting.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().expect("wait").code();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("taskql did not exit; saw:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// Drops a database a test made outside [`TestDb`].
pub async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("PostgreSQL is reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the database");
    admin.close().await.ok();
}

/// Variables for [`Process::spawn`] from pairs.
pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `taskql args…` to completion; returns the exit code and every output line.
pub fn run(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let mut process = Process::spawn(args, &env(vars));
    let code = process.wait_exit(Duration::from_secs(60));
    (code, process.seen.clone())
}

/// A program the tests start: the path in `var` when set, else `name` on `PATH`.
pub fn find_program(var: &str, name: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = std::path::PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|bin| bin.is_file())
    })
}

/// POSTs one GraphQL operation to a server started with [`Process::serve`].
pub async fn post(addr: SocketAddr, token: Option<&str>, query: &str) -> Reply {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    TestApp::reply(request).await
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
