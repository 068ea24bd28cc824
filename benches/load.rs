//! Load harness (not a test): throughput, latency and memory of the release binary serving a
//! typical page query over loopback, with the protection limits on and off.
//!
//!     cargo bench --bench load                  # 2 rounds of 10 s per configuration
//!     LOAD_SECONDS=30 LOAD_CLIENTS=64 cargo bench --bench load
//!
//! It creates a throwaway database on TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432), seeds one user with 1 000 tasks, starts `taskql serve`
//! once per configuration and round, and hammers it from `LOAD_CLIENTS` concurrent clients in
//! this process for `LOAD_SECONDS`. Traffic only goes to 127.0.0.1 and the loop ends by itself.
//! The configurations alternate (A B A B) so drift on a shared machine hits both alike.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use sqlx::{Connection as _, PgConnection};

const QUERY: &str = "query Page($after: String) {
  tasks(first: 20, after: $after, orderBy: [{ field: DUE_AT }], filter: { completed: false }) {
    edges { cursor node { id title priority dueAt completed owner { id email } } }
    pageInfo { hasNextPage endCursor }
  }
}";

struct Config {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const CONFIGS: [Config; 2] = [
    Config {
        name: "limits on (defaults; rate limit high enough not to trip)",
        env: &[
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_BURST", "1000000"),
        ],
    },
    Config {
        name: "limits off (depth, complexity, aliases, rate limit = 0)",
        env: &[
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("GRAPHQL_MAX_DEPTH", "0"),
            ("GRAPHQL_MAX_COMPLEXITY", "0"),
            ("GRAPHQL_MAX_ALIASES", "0"),
        ],
    },
];

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(database_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_taskql"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,taskql::app=info")
            .env("AUTH_JWT_SECRET", SECRET)
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start taskql");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let mut seen = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("taskql exited before listening:\n{}", seen.join("\n"));
            };
            seen.push(line.clone());
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                && log["fields"]["message"] == "listening"
            {
                break log["fields"]["addr"].as_str().expect("addr").to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: format!("http://{addr}/graphql"),
        }
    }

    /// Peak resident memory of the server process, in MiB (Linux).
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HS256 token for the bench user, signed as secret mode expects.
fn token() -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let now = taskql::auth::claims::now();
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "typ": "JWT" }).to_string());
    let claims =
        json!({ "sub": "bench-user", "email": "bench@example.com", "iat": now, "exp": now + 3600 });
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signature = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

struct Run {
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    peak_rss_mib: Option<f64>,
}

async fn load(server: &Server, token: &str, clients: usize, seconds: u64) -> Run {
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (client, url, token, stop) = (
            client.clone(),
            server.url.clone(),
            token.to_owned(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut after) =
                (Vec::new(), 0usize, serde_json::Value::Null);
            while !stop.load(Ordering::Relaxed) {
                let begun = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "query": QUERY, "variables": { "after": after } }))
                    .send()
                    .await;
                let body = match response {
                    Ok(response) if response.status().is_success() => {
                        response.json::<serde_json::Value>().await.ok()
                    }
                    _ => None,
                };
                latencies.push(begun.elapsed());
                match body.filter(|b| b.get("errors").is_none()) {
                    // Walk the pages, starting over at the end, like a scrolling client.
                    Some(body) => {
                        let info = &body["data"]["tasks"]["pageInfo"];
                        after = if info["hasNextPage"] == true {
                            info["endCursor"].clone()
                        } else {
                            serde_json::Value::Null
                        };
                    }
                    None => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies: Vec::new(),
        peak_rss_mib: None,
    };
    for worker in workers {
        let (latencies, errors) = worker.await.expect("worker");
        run.requests += latencies.len();
        run.errors += errors;
        run.latencies.extend(latencies);
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.peak_rss_mib = server.peak_rss_mib();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let seconds = env_number("LOAD_SECONDS", 10);
    let clients = env_number("LOAD_CLIENTS", 32) as usize;
    let rounds = env_number("LOAD_ROUNDS", 2);
    let server_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("taskql_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&format!("{server_url}/postgres"))
        .await
        .expect("PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut admin)
        .await
        .expect("create db");
    let database_url = format!("{server_url}/{name}");

    let token = token();
    {
        // Migrate and create the user through the server itself, then seed tasks in bulk.
        let server = Server::start(&database_url, &[]);
        reqwest::Client::new()
            .post(&server.url)
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .expect("first request");
        let mut db = PgConnection::connect(&database_url).await.expect("db");
        sqlx::raw_sql(
            "insert into tasks (id, user_id, title, priority, completed, due_at)
             select gen_random_uuid(), 'bench-user', 'task ' || i, 1 + i % 5, i % 4 = 0,
                    case when i % 3 = 0 then null else now() + i * interval '1 hour' end
             from generate_series(1, 1000) i;
             analyze tasks;",
        )
        .execute(&mut db)
        .await
        .expect("seed");
    }

    println!(
        "{clients} clients, {seconds} s per run, {rounds} rounds; query: a 20-task page with owners\n"
    );
    println!(
        "| configuration | round | requests/s | p50 ms | p99 ms | errors | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut totals = vec![(0.0, 0.0); CONFIGS.len()];
    for round in 1..=rounds {
        for (i, config) in CONFIGS.iter().enumerate() {
            let server = Server::start(&database_url, config.env);
            // Warm up connections and caches before measuring.
            load(&server, &token, clients, 1).await;
            let mut run = load(&server, &token, clients, seconds).await;
            run.latencies.sort();
            let rate = run.requests as f64 / run.seconds;
            totals[i].0 += rate;
            totals[i].1 += 1.0;
            println!(
                "| {} | {round} | {rate:.0} | {:.1} | {:.1} | {} | {} |",
                config.name,
                percentile(&run.latencies, 0.5),
                percentile(&run.latencies, 0.99),
                run.errors,
                run.peak_rss_mib
                    .map_or_else(|| "n/a".to_owned(), |m| format!("{m:.1}")),
            );
        }
    }
    let on = totals[0].0 / totals[0].1;
    let off = totals[1].0 / totals[1].1;
    println!(
        "\nmean requests/s: limits on {on:.0}, limits off {off:.0} ({:+.1}% with limits)",
        (on / off - 1.0) * 100.0
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database {name} with (force)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop db");
}
