//! PostgreSQL stopped and started under steady mixed load, on a private cluster of its own:
//! the server must not crash, must answer fast with `SERVICE_UNAVAILABLE` and `Retry-After`
//! while the database is away (and `/readyz` 503), must serve again within 5 s of the
//! database, and must not lose a write it acknowledged.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

use tokio::sync::Notify;

use crate::common::{Process, TEST_SECRET, cluster::Cluster, keys, skip};

const WRITERS: usize = 12;
const READERS: usize = 4;

/// What the clients saw, for the assertions at the end.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<uuid::Uuid>,
    /// Requests answered with anything but 200 or a proper 503.
    wrong: Vec<String>,
    /// The slowest 503.
    slowest_unavailable: Duration,
    unavailable: usize,
}

async fn client_loop(
    addr: std::net::SocketAddr,
    token: String,
    write: bool,
    stop: Arc<AtomicBool>,
    acks: Arc<Acks>,
    seen: Arc<Mutex<Seen>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let query = if write {
            json!({ "query": format!("mutation {{ createTask(input: {{title: \"w{n}\"}}) {{ id }} }}") })
        } else {
            json!({ "query": "{ tasks(first: 5) { totalCount nodes { id title } } }" })
        };
        let started = Instant::now();
        let Ok(response) = client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&query)
            .send()
            .await
        else {
            seen.lock().expect("lock").wrong.push("no answer".into());
            continue;
        };
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let elapsed = started.elapsed();
        let mut seen = seen.lock().expect("lock");
        let code = body["errors"][0]["extensions"]["code"].as_str();
        match (status, code) {
            (StatusCode::OK, None) => {
                if let Some(id) = body["data"]["createTask"]["id"].as_str() {
                    seen.acknowledged.push(id.parse().expect("uuid"));
                    acks.count.fetch_add(1, Ordering::Relaxed);
                    acks.changed.notify_waiters();
                }
            }
            (StatusCode::SERVICE_UNAVAILABLE, Some("SERVICE_UNAVAILABLE")) if retry_after => {
                seen.unavailable += 1;
                seen.slowest_unavailable = seen.slowest_unavailable.max(elapsed);
            }
            _ => seen.wrong.push(format!("{status}: {body}")),
        }
    }
}

/// Acknowledged writes, counted, with a wake-up for whoever waits for more.
#[derive(Default)]
struct Acks {
    count: AtomicUsize,
    changed: Notify,
}

impl Acks {
    fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    async fn wait_for(&self, at_least: usize) {
        let waiting = async {
            loop {
                let changed = self.changed.notified();
                if self.get() >= at_least {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the load makes progress");
    }
}

#[tokio::test]
async fn a_database_restart_under_load_loses_nothing_and_fails_fast() {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            skip("the database restart test needs a private cluster", reason);
            return;
        }
    };
    let url = cluster.create_database("taskql").await;

    let (mut server, addr) = Process::serve_url(&url, &[("DATABASE_POOL_SIZE", "8")]);

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Acks::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut clients = Vec::new();
    for i in 0..WRITERS + READERS {
        let token = keys::hs256_token(TEST_SECRET, &keys::claims(&format!("user{}", i % 6)));
        clients.push(tokio::spawn(client_loop(
            addr,
            token,
            i < WRITERS,
            stop.clone(),
            acks.clone(),
            seen.clone(),
        )));
    }
    acks.wait_for(200).await;

    cluster.stop().expect("stop PostgreSQL");
    let outage = Instant::now();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "/readyz took {:?}",
        started.elapsed()
    );
    // The outage lasts four seconds: the scenario, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(outage.elapsed())).await;
    let unavailable_during_outage = seen.lock().expect("lock").unavailable;

    cluster.start_again().expect("start PostgreSQL");
    let back = Instant::now();
    let at_restart = acks.get();
    acks.wait_for(at_restart + 1).await;
    let recovery = back.elapsed();
    acks.wait_for(at_restart + 200).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }

    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "the server is still running"
    );
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("clients done")
        .into_inner()
        .expect("lock");
    assert!(
        seen.wrong.is_empty(),
        "only 200s and 503s with Retry-After: {:#?}",
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    assert!(
        unavailable_during_outage > 0,
        "requests were refused while PostgreSQL was down"
    );
    assert!(
        seen.slowest_unavailable < Duration::from_millis(2500),
        "503s came fast; the slowest took {:?}",
        seen.slowest_unavailable
    );
    assert!(
        recovery < Duration::from_secs(5),
        "served again after {recovery:?}"
    );

    // Every write acknowledged to a client is in the database.
    let mut check = PgConnection::connect(&url).await.expect("connect");
    let found: Vec<uuid::Uuid> = sqlx::query_scalar("select id from tasks where id = any($1)")
        .bind(&seen.acknowledged)
        .fetch_all(&mut check)
        .await
        .expect("acknowledged ids");
    let found: HashMap<uuid::Uuid, ()> = found.into_iter().map(|id| (id, ())).collect();
    let lost: Vec<&uuid::Uuid> = seen
        .acknowledged
        .iter()
        .filter(|id| !found.contains_key(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!(
        "database restart: {} writes acknowledged and all present, {} requests answered 503 \
         (slowest {:?}), service back {:?} after PostgreSQL",
        seen.acknowledged.len(),
        seen.unavailable,
        seen.slowest_unavailable,
        recovery
    );

    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        !server.seen.iter().any(|line| line.contains("panicked")),
        "no panic in the log"
    );
    assert!(
        !server.seen.iter().any(|line| line.contains("\"ERROR\"")),
        "no error-level log line: {:?}",
        server.seen.iter().find(|line| line.contains("\"ERROR\""))
    );
}
