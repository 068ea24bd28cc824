//! The issuer's key set over time: rotation without a restart, one fetch for many requests
//! naming a new key, a flood of unknown kids that costs the issuer one fetch per interval, a
//! clear 503 until the keys first arrive, and retired keys dropped by the background refresh.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{
    TestApp, TestConfig,
    api::Client as _,
    keys::{Alg, ISSUER, JwksServer, SigningKey, assert_refused, better_auth_claims, jwks_app},
};

#[tokio::test]
async fn a_rotated_key_is_accepted_without_a_restart() {
    let old = SigningKey::generate(Alg::EdDSA);
    let (app, jwks) = jwks_app(&[&old]).await;
    app.me(&old.sign(&better_auth_claims("alice"))).await.ok();

    // The issuer rotates: a new key appears and new tokens name it.
    let new = SigningKey::generate(Alg::ES256);
    jwks.publish(&[&old, &new]);
    app.me(&new.sign(&better_auth_claims("alice"))).await.ok();

    assert_eq!(
        app.rows("users").await,
        1,
        "one user, whichever key signed the token"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_issuer_one_fetch_per_interval() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, jwks) = jwks_app(&[&key]).await;
    // The start-up fetch has happened once a valid token verifies.
    app.me(&key.sign(&better_auth_claims("alice"))).await.ok();
    let before = jwks.hits();

    let forgers: Vec<SigningKey> = (0..25).map(|_| SigningKey::generate(Alg::EdDSA)).collect();
    let tokens: Vec<String> = forgers
        .iter()
        .map(|forger| forger.sign(&better_auth_claims("eve")))
        .collect();
    let requests = tokens.iter().map(|token| app.me(token)).collect::<Vec<_>>();
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let fetched = jwks.hits() - before;
    assert!(
        fetched <= 1,
        "25 forged kids caused {fetched} JWKS fetches; the limit is one per interval"
    );
}

#[tokio::test]
async fn concurrent_requests_with_a_new_key_share_one_fetch() {
    let old = SigningKey::generate(Alg::EdDSA);
    let (app, jwks) = jwks_app(&[&old]).await;
    app.me(&old.sign(&better_auth_claims("warmup"))).await.ok();
    let before = jwks.hits();

    let new = SigningKey::generate(Alg::EdDSA);
    jwks.publish(&[&old, &new]);
    let token = new.sign(&better_auth_claims("alice"));
    let replies = futures_util::future::join_all((0..20).map(|_| app.me(&token))).await;
    for reply in &replies {
        reply.ok();
    }
    assert_eq!(jwks.hits() - before, 1, "twenty requests, one fetch");
}

#[tokio::test]
async fn requests_get_a_clear_error_until_the_issuer_keys_arrive() {
    let key = SigningKey::generate(Alg::EdDSA);
    let jwks = JwksServer::start(&[]).await;
    jwks.publish_raw(json!({ "error": "starting up" }));
    let app = TestApp::spawn_with(
        TestConfig::new()
            .unset("AUTH_JWT_SECRET")
            .set("AUTH_JWKS_URL", &jwks.url)
            .set("AUTH_ISSUER", ISSUER)
            .set("AUTH_AUDIENCE", ISSUER)
            .set("AUTH_JWKS_MIN_REFETCH", "1ms"),
    )
    .await;
    let token = key.sign(&better_auth_claims("alice"));
    let reply = app.me(&token).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:#}",
        reply.body
    );
    assert_eq!(reply.code(), Some("SERVICE_UNAVAILABLE"));
    assert!(reply.header("retry-after").is_some());

    jwks.publish(&[&key]);
    app.me(&token).await.ok();
}

/// The background refresh keeps the key set current without any token prompting it: a key
/// the issuer retires stops being accepted.
#[tokio::test]
async fn the_background_refresh_drops_a_retired_key() {
    let retired = SigningKey::generate(Alg::EdDSA);
    let current = SigningKey::generate(Alg::EdDSA);
    let jwks = JwksServer::start(&[&retired, &current]).await;
    let app = TestApp::spawn_with(
        TestConfig::new()
            .unset("AUTH_JWT_SECRET")
            .set("AUTH_JWKS_URL", &jwks.url)
            .set("AUTH_ISSUER", ISSUER)
            .set("AUTH_AUDIENCE", ISSUER)
            .set("AUTH_JWKS_REFRESH", "100ms"),
    )
    .await;
    let token = retired.sign(&better_auth_claims("alice"));
    app.me(&token).await.ok();

    jwks.publish(&[&current]);
    // Wait for the issuer to see the next scheduled fetch after the change (an event the
    // JWKS server counts), then one more so the fetch that saw it has surely completed.
    let seen = jwks.hits();
    jwks.wait_for_hits(seen + 2).await;
    let reply = app.me(&token).await;
    assert_refused(&reply, &token, "unknown key");
    app.me(&current.sign(&better_auth_claims("alice")))
        .await
        .ok();
}
