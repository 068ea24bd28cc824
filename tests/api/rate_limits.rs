//! Who a request is charged to, and for how much: each user; each operation of a batch and
//! each `subscribe`; an invalid token to its client address; the client behind a trusted
//! proxy however the proxy writes `X-Forwarded-For`; an IPv6 client as its whole /64
//! (`RATE_LIMIT_IPV6_PREFIX`).

use reqwest::{StatusCode, header::HeaderValue};
use serde_json::json;

use crate::common::{
    Reply, TestApp, TestConfig,
    keys::{self},
    ws::Socket,
};

async fn anonymous_from(app: &TestApp, forwarded_for: &str) -> Reply {
    TestApp::reply(
        app.client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "query": "{ apiVersion }" })),
    )
    .await
}

fn behind_a_proxy(burst: &str) -> TestConfig {
    TestConfig::new()
        .set("TRUSTED_PROXIES", "127.0.0.1")
        .set("RATE_LIMIT_PER_MINUTE", "60")
        .set("RATE_LIMIT_BURST", burst)
}

/// An anonymous request forwarded for `client`; its status.
async fn from(app: &TestApp, client: HeaderValue) -> u16 {
    let reply = TestApp::reply(
        app.client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", client)
            .json(&json!({ "query": "{ apiVersion }" })),
    )
    .await;
    reply.status.as_u16()
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a header value")
}

#[tokio::test]
async fn the_rate_limit_is_per_user_and_says_when_to_retry() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "3"),
    )
    .await;
    let alice = app.token_for("alice");
    let bob = app.token_for("bob");
    for _ in 0..3 {
        app.gql(Some(&alice), "{ apiVersion }", json!({}))
            .await
            .ok();
    }
    let limited = app.gql(Some(&alice), "{ apiVersion }", json!({})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), Some("RATE_LIMITED"));
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Alice's flood costs Bob nothing, and anonymous callers have their own budget.
    for _ in 0..3 {
        app.gql(Some(&bob), "{ apiVersion }", json!({})).await.ok();
    }
    app.gql(None, "{ apiVersion }", json!({})).await.ok();
}

#[tokio::test]
async fn every_operation_of_a_batch_is_charged() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "5"),
    )
    .await;
    let token = app.token_for("alice");
    let op = json!({ "query": "{ apiVersion }" });
    let reply = app
        .post_json(Some(&token), &json!([op, op, op, op, op]))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "five operations fit a burst of five"
    );
    let reply = app.gql(Some(&token), "{ apiVersion }", json!({})).await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");

    let bob = app.token_for("bob");
    let reply = app
        .post_json(Some(&bob), &json!([op, op, op, op, op, op]))
        .await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[tokio::test]
async fn subscribe_requests_count_against_the_rate_limit() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "3"),
    )
    .await;
    let token = app.token_for("ivy");
    // The upgrade is charged to the address, init's token check too; subscriptions to the user.
    let mut socket = Socket::open(app.addr, Some(&token)).await;
    let mut refused = None;
    for i in 0..5 {
        socket
            .send(&json!({ "type": "subscribe", "id": format!("{i}"),
                           "payload": { "query": "{ apiVersion }" } }))
            .await;
        loop {
            let message = socket.recv().await.expect("an answer");
            if message["type"] == "error" {
                refused = Some(message);
                break;
            }
            if message["type"] == "complete" {
                break;
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("the budget runs out");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
}

/// A token that has not been verified yet costs a signature check; its requests are charged
/// to the client address first, so a flood of forged tokens is limited like anonymous calls.
#[tokio::test]
async fn invalid_tokens_are_charged_to_the_client_address() {
    let app = TestApp::spawn_with(
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "3"),
    )
    .await;
    for i in 0..3 {
        let forged = keys::hs256_token(
            "not-the-secret-0123456789-abcdefghijkl",
            &keys::claims(&format!("mallory{i}")),
        );
        let reply = app.gql(Some(&forged), "{ apiVersion }", json!({})).await;
        reply.assert_code(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
    let forged = keys::hs256_token("not-the-secret-0123456789-abcdefghijkl", &keys::claims("m"));
    let reply = app.gql(Some(&forged), "{ apiVersion }", json!({})).await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let reply = app.gql(None, "{ apiVersion }", json!({})).await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limited = || {
        TestConfig::new()
            .set("RATE_LIMIT_PER_MINUTE", "1")
            .set("RATE_LIMIT_BURST", "2")
    };
    // Untrusted: the header is the client's to invent, so it changes nothing.
    let app = TestApp::spawn_with(limited()).await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(anonymous_from(&app, forwarded).await.status, StatusCode::OK);
    }
    let reply = anonymous_from(&app, "198.51.100.3").await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");

    // Behind a trusted proxy (the test client on loopback), each client has its own budget.
    let app = TestApp::spawn_with(limited().set("TRUSTED_PROXIES", "127.0.0.0/8, ::1")).await;
    for _ in 0..2 {
        assert_eq!(
            anonymous_from(&app, "198.51.100.1").await.status,
            StatusCode::OK
        );
    }
    let reply = anonymous_from(&app, "198.51.100.1").await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert_eq!(
        anonymous_from(&app, "198.51.100.2").await.status,
        StatusCode::OK
    );
    // A client-written entry left of the last hop is not believed.
    let reply = anonymous_from(&app, "203.0.113.50, 198.51.100.1").await;
    reply.assert_code(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
}

#[tokio::test]
async fn every_shape_of_a_forwarded_hop_charges_the_client_not_the_proxy() {
    let app = TestApp::spawn_with(behind_a_proxy("2")).await;
    // One client written three ways: one budget of two.
    assert_eq!(from(&app, header("198.51.100.7:4711")).await, 200);
    assert_eq!(from(&app, header(" 198.51.100.7 ")).await, 200);
    assert_eq!(from(&app, header("unknown, 198.51.100.7")).await, 429);
    // The same for IPv6 in brackets with a port.
    assert_eq!(from(&app, header("[2001:db8:5::1]:443")).await, 200);
    assert_eq!(from(&app, header("2001:db8:5::2")).await, 200);
    assert_eq!(from(&app, header("[2001:db8:5::3]")).await, 429);
    // A header that is not text still names its readable hop; the proxy's own bucket (what
    // an unreadable header used to charge) is untouched.
    let opaque = HeaderValue::from_bytes(b"203.0.113.9, \xff\xfe").expect("opaque bytes");
    assert_eq!(from(&app, opaque.clone()).await, 200);
    assert_eq!(from(&app, opaque.clone()).await, 200);
    assert_eq!(from(&app, opaque).await, 429);
    assert_eq!(
        from(&app, header("garbage")).await,
        200,
        "the proxy's own budget"
    );
}

#[tokio::test]
async fn an_ipv6_client_is_charged_as_its_whole_64() {
    // The reproduction: 60 addresses of one /64, a burst of 10.
    let app = TestApp::spawn_with(behind_a_proxy("10")).await;
    let mut limited = 0;
    for i in 1..=60 {
        if from(&app, header(&format!("2001:db8:1:2::{i:x}"))).await == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 45, "{limited} of 60 refused");
    // Another /64 has its own budget.
    assert_eq!(from(&app, header("2001:db8:1:3::1")).await, 200);

    // Keyed on whole addresses (prefix 128), the same 60 pass: the setting is honoured.
    let whole =
        TestApp::spawn_with(behind_a_proxy("10").set("RATE_LIMIT_IPV6_PREFIX", "128")).await;
    for i in 1..=60 {
        assert_eq!(
            from(&whole, header(&format!("2001:db8:1:2::{i:x}"))).await,
            200
        );
    }
}
