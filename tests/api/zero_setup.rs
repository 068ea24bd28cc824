//! The first run with nothing set up: no `DATABASE_URL`, no PostgreSQL running, only its
//! server binaries installed. `serve` starts a private cluster in a directory of its own, uses
//! it, keeps its data between runs, and stops it on shutdown. The default address answers on
//! this machine, so the test forces the mode (`LOCAL_POSTGRES=always`), as the README says.

use std::{collections::HashMap, path::Path, time::Duration};

use serde_json::json;

use crate::common::{Process, TEST_SECRET, api::Client as _, cluster, keys, post, skip};

fn postmaster_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn serve(dir: &Path) -> (Process, std::net::SocketAddr) {
    let vars: HashMap<String, String> = [
        ("LOCAL_POSTGRES", "always"),
        ("LOCAL_POSTGRES_DIR", dir.to_str().expect("utf-8 path")),
        ("PORT", "0"),
        ("LOG_FORMAT", "json"),
        ("AUTH_JWT_SECRET", TEST_SECRET),
        ("RATE_LIMIT_PER_MINUTE", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut process = Process::spawn(&["serve"], &vars);
    let addr = process.wait_until_listening();
    (process, addr)
}

/// Whether process `pid` still runs. A zombie has ended: it only waits for a reaper, which in
/// a container may be a PID 1 that never reaps (pg_ctl's server is reparented to it).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|rest| rest.starts_with('Z'))
    })
}

/// Stops the server as an operator would and checks that it took its cluster with it.
fn stop(mut server: Process, dir: &Path) {
    let pid = postmaster_pid(dir).expect("the cluster runs while the server does");
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{:#?}",
        server.seen
    );
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("stopped the private PostgreSQL cluster")),
        "{:#?}",
        server.seen
    );
    assert!(
        !dir.join("postmaster.pid").exists(),
        "the cluster is shut down"
    );
    assert!(
        !running(pid),
        "no PostgreSQL process is left behind (pid {pid})"
    );
}

#[tokio::test]
async fn with_nothing_configured_serve_runs_a_private_cluster_and_stops_it() {
    if let Err(reason) = cluster::server_binaries().ok_or("no PostgreSQL server binaries") {
        skip(
            "the zero-setup test needs the PostgreSQL server binaries",
            reason,
        );
        return;
    }
    // Short: the Unix socket lives in this directory, and socket paths are short.
    let dir = std::env::temp_dir().join(format!(
        "tq-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("newcomer"));

    let (server, addr) = serve(&dir);
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("using a private cluster")
                && l.contains(dir.to_str().expect("utf-8"))),
        "the log says where the data lives: {:#?}",
        server.seen
    );
    let id = addr.create_task(&token, "first run").await;
    let page = reqwest::Client::new()
        .get(format!("http://{addr}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GraphiQL");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("graphiql"));
    stop(server, &dir);

    // The next run finds the same cluster and the same data.
    let (server, addr) = serve(&dir);
    let listed = post(addr, Some(&token), "{ tasks { nodes { id title } } }").await;
    assert_eq!(
        listed.ok()["tasks"]["nodes"],
        json!([{ "id": id, "title": "first run" }])
    );
    stop(server, &dir);

    let _ = std::fs::remove_dir_all(&dir);
}
