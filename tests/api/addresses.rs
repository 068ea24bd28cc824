//! Who a request is charged to: the client behind a trusted proxy however the proxy writes
//! `X-Forwarded-For`, and an IPv6 client as its whole /64 (`RATE_LIMIT_IPV6_PREFIX`).

use reqwest::header::HeaderValue;
use serde_json::json;

use crate::common::{TestApp, TestConfig};

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
