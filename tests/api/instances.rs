//! Two taskql processes on one PostgreSQL, as behind a load balancer: a change made through
//! one reaches subscribers held by the other, and after a database restart under both, every
//! subscriber carries on from where it was (its feed reads what it missed by version), with
//! no resync. The restart runs on a private cluster, so no other test loses its database.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{
    Process, TEST_SECRET,
    api::Client as _,
    cluster::Cluster,
    keys, skip,
    ws::{Socket, TASK_CHANGED, task_changed},
};

/// Creates a task through `addr` once the instance serves again after a restart: requests
/// fail fast with 503 until it has seen the database come back (a bounded wait, not a delay).
async fn create_when_back(addr: std::net::SocketAddr, token: &str, title: &str) -> String {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = addr.try_create_task(token, json!({ "title": title })).await;
        if reply.status == 200 && reply.body.get("errors").is_none() {
            return reply.body["data"]["createTask"]["id"]
                .as_str()
                .expect("an id")
                .to_owned();
        }
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(Instant::now() < give_up, "the instance did not come back");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn changes_cross_instances_and_survive_a_database_restart() {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            skip(
                "the two-instance restart test needs a private cluster",
                reason,
            );
            return;
        }
    };
    let url = cluster.create_database("taskql").await;

    let (_a, addr_a) = Process::serve_url(&url, &[]);
    let (_b, addr_b) = Process::serve_url(&url, &[]);
    let token = keys::hs256_token(TEST_SECRET, &keys::claims("kim"));
    let other = keys::hs256_token(TEST_SECRET, &keys::claims("lee"));

    let mut on_a = Socket::open(addr_a, Some(&token)).await;
    on_a.subscribe("a", TASK_CHANGED, json!({})).await;
    let mut on_b = Socket::open(addr_b, Some(&token)).await;
    on_b.subscribe("b", TASK_CHANGED, json!({})).await;
    let mut lee_on_a = Socket::open(addr_a, Some(&other)).await;
    lee_on_a.subscribe("lee", TASK_CHANGED, json!({})).await;

    // A change through B reaches the subscriber on A, and the other way round.
    let via_b = addr_b.create_task(&token, "made on B").await;
    assert_eq!(
        task_changed(&on_a.next("a").await)["taskId"],
        via_b.as_str()
    );
    assert_eq!(
        task_changed(&on_b.next("b").await)["taskId"],
        via_b.as_str()
    );
    let via_a = addr_a.create_task(&token, "made on A").await;
    assert_eq!(
        task_changed(&on_b.next("b").await)["taskId"],
        via_a.as_str()
    );
    assert_eq!(
        task_changed(&on_a.next("a").await)["taskId"],
        via_a.as_str()
    );

    // PostgreSQL restarts under both instances. A change made as soon as it is back may be
    // announced before A listens again; A's subscriber gets it all the same, and nobody is
    // told to resync: the first event after the restart is the change itself.
    cluster.stop().expect("stop PostgreSQL");
    cluster.start_again().expect("start PostgreSQL");
    let after = create_when_back(addr_b, &token, "after the restart").await;
    for (socket, id) in [(&mut on_a, "a"), (&mut on_b, "b")] {
        let next = socket.next(id).await;
        assert_eq!(task_changed(&next)["kind"], "CREATED", "{id}: {next}");
        assert_eq!(task_changed(&next)["taskId"], after.as_str(), "{id}");
    }
    let lees = create_when_back(addr_a, &other, "lee's").await;
    assert_eq!(
        task_changed(&lee_on_a.next("lee").await)["taskId"],
        lees.as_str(),
        "lee saw nothing of kim's"
    );
}
