//! Token verification end to end: keys of every algorithm Better Auth offers, served as a
//! JWKS by a server inside the test; every way a token can be wrong; rotation; the refetch
//! rate limit; and the user row made on first sight.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    Reply, TEST_SECRET, TestApp, TestConfig,
    keys::{self, Alg, JwksServer, SigningKey, claims},
};

const ISSUER: &str = "http://127.0.0.1:3999";

/// A JWKS-mode server trusting `keys`, with Better Auth's issuer and audience.
async fn jwks_app(keys: &[&SigningKey]) -> (TestApp, JwksServer) {
    let jwks = JwksServer::start(keys).await;
    let app = TestApp::spawn_with(
        TestConfig::new()
            .unset("AUTH_JWT_SECRET")
            .set("AUTH_JWKS_URL", &jwks.url)
            .set("AUTH_ISSUER", ISSUER)
            .set("AUTH_AUDIENCE", ISSUER)
            .set("AUTH_JWKS_MIN_REFETCH", "60s"),
    )
    .await;
    (app, jwks)
}

/// Better Auth's claims for `sub`: iss and aud are its base URL.
fn better_auth_claims(sub: &str) -> Value {
    let mut claims = claims(sub);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(ISSUER);
    claims
}

async fn me(app: &TestApp, token: &str) -> Reply {
    app.gql(Some(token), "{ me { id email name } }", json!({}))
        .await
}

async fn user_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .expect("count")
}

/// The refusal contract: 401, the Bearer challenge, `UNAUTHENTICATED`, a message that does
/// not repeat the token, and no user row written.
#[track_caller]
fn assert_refused(reply: &Reply, token: &str, reason: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:#}", reply.body);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(reply.code(), Some("UNAUTHENTICATED"));
    assert!(
        reply.message().contains(reason),
        "{:?} does not say {reason:?}",
        reply.message()
    );
    assert!(reply.body.get("data").is_none());
    let text = reply.body.to_string();
    let signature = token.rsplit('.').next().unwrap_or(token);
    assert!(
        signature.len() < 8 || !text.contains(signature),
        "the response echoes the token"
    );
}

async fn assert_refused_and_nothing_written(app: &TestApp, token: &str, reason: &str) {
    let reply = me(app, token).await;
    assert_refused(&reply, token, reason);
    assert_eq!(user_rows(app).await, 0, "a refused token wrote nothing");
}

#[tokio::test]
async fn tokens_of_every_better_auth_algorithm_are_accepted() {
    let keys: Vec<SigningKey> = Alg::ALL.into_iter().map(SigningKey::generate).collect();
    let (app, _jwks) = jwks_app(&keys.iter().collect::<Vec<_>>()).await;
    for key in &keys {
        let sub = format!("user-{}", key.alg.name());
        let reply = me(&app, &key.sign(&better_auth_claims(&sub))).await;
        assert_eq!(reply.ok()["me"]["id"], sub.as_str(), "{}", key.alg.name());
    }
}

#[tokio::test]
async fn an_unsigned_token_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let token = keys::raw_token(
        &json!({ "alg": "none", "kid": key.kid }),
        &better_auth_claims("eve"),
        b"",
    );
    assert_refused_and_nothing_written(&app, &token, "algorithm is not accepted").await;
}

#[tokio::test]
async fn an_hs256_token_made_with_the_public_key_is_refused_in_jwks_mode() {
    // The classic confusion attack: "sign" HS256 with the public key anyone can download.
    let key = SigningKey::generate(Alg::RS256);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let public_key = key.jwk()["n"].as_str().expect("modulus").to_owned();
    let mut token = keys::hs256_token(&public_key, &better_auth_claims("eve"));
    // Name the real key's kid, as an attacker would.
    let header = base64_json(&json!({ "alg": "HS256", "kid": key.kid }));
    token = format!("{header}.{}", token.split_once('.').expect("jwt").1);
    assert_refused_and_nothing_written(&app, &token, "algorithm is not accepted").await;
}

#[tokio::test]
async fn a_key_used_with_an_algorithm_that_does_not_match_its_type_is_refused() {
    let key = SigningKey::generate(Alg::ES256);
    let (app, _jwks) = jwks_app(&[&key]).await;
    // An ES256 key's kid with an EdDSA header (whatever the signature bytes).
    let token = key.sign_as("EdDSA", &better_auth_claims("eve"));
    assert_refused_and_nothing_written(&app, &token, "does not match its key").await;
}

#[tokio::test]
async fn an_rsa_key_declared_rs256_does_not_verify_ps256() {
    let key = SigningKey::generate(Alg::RS256);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let token = key.sign_as("PS256", &better_auth_claims("eve"));
    assert_refused_and_nothing_written(&app, &token, "does not match its key").await;
}

#[tokio::test]
async fn a_token_with_an_unknown_kid_is_refused() {
    let trusted = SigningKey::generate(Alg::EdDSA);
    let stranger = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&trusted]).await;
    let token = stranger.sign(&better_auth_claims("eve"));
    assert_refused_and_nothing_written(&app, &token, "unknown key").await;
}

#[tokio::test]
async fn a_token_without_a_subject_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    claims.as_object_mut().expect("object").remove("sub");
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "\"sub\"").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    let now = taskql::auth::claims::now();
    claims["iat"] = json!(now - 3600);
    claims["exp"] = json!(now - 120);
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "expired").await;
}

#[tokio::test]
async fn a_token_that_is_not_valid_yet_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    claims["nbf"] = json!(taskql::auth::claims::now() + 600);
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "not valid yet").await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    claims["iat"] = json!(taskql::auth::claims::now() + 600);
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "not valid yet").await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    claims["iss"] = json!("https://evil.example");
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "unexpected issuer").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_but_an_audience_list_may_include_ours() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let mut claims = better_auth_claims("eve");
    claims["aud"] = json!("https://other.example");
    assert_refused_and_nothing_written(&app, &key.sign(&claims), "another audience").await;
    claims["aud"] = json!(["https://other.example", ISSUER]);
    me(&app, &key.sign(&claims)).await.ok();
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let key = SigningKey::generate(Alg::ES512);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let genuine = key.sign(&better_auth_claims("alice"));
    // Swap in a payload naming someone else, keeping the genuine signature.
    let forged_payload = base64_json(&better_auth_claims("mallory"));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[1] = &forged_payload;
    assert_refused_and_nothing_written(&app, &parts.join("."), "signature is invalid").await;
}

#[tokio::test]
async fn garbage_in_the_authorization_header_is_refused_not_ignored() {
    let app = TestApp::spawn().await;
    for token in ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "a.b.c.d.e"] {
        let reply = me(&app, token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(reply.code(), Some("UNAUTHENTICATED"));
    }
    let basic = TestApp::reply(
        app.client
            .post(app.url("/graphql"))
            .header("authorization", "Basic YWxpY2U6c2VjcmV0")
            .json(&json!({ "query": "{ apiVersion }" })),
    )
    .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert!(
        basic
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_request")
    );
    assert_eq!(user_rows(&app).await, 0);
}

#[tokio::test]
async fn no_token_means_anonymous_user_data_is_unauthenticated_and_introspection_works() {
    let app = TestApp::spawn().await;
    let reply = app.gql(None, "{ me { id } }", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.code(), Some("UNAUTHENTICATED"));
    assert_eq!(reply.body["errors"][0]["path"], json!(["me"]));
    app.gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await
        .ok();
}

#[tokio::test]
async fn secret_mode_accepts_hs256_and_refuses_asymmetric_tokens() {
    let app = TestApp::spawn().await;
    me(&app, &app.token_for("alice")).await.ok();
    let wrong_secret = keys::hs256_token("another-secret-0123456789-abcdefghijkl", &claims("eve"));
    assert_refused_and_nothing_written_after(&app, &wrong_secret, "signature is invalid", 1).await;
    let eddsa = SigningKey::generate(Alg::EdDSA).sign(&claims("eve"));
    assert_refused_and_nothing_written_after(&app, &eddsa, "algorithm is not accepted", 1).await;
}

async fn assert_refused_and_nothing_written_after(
    app: &TestApp,
    token: &str,
    reason: &str,
    rows: i64,
) {
    assert_refused(&me(app, token).await, token, reason);
    assert_eq!(user_rows(app).await, rows);
}

#[tokio::test]
async fn jwks_mode_refuses_hs256_tokens_signed_with_a_shared_secret() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&key]).await;
    let token = keys::hs256_token(TEST_SECRET, &better_auth_claims("eve"));
    assert_refused_and_nothing_written(&app, &token, "algorithm is not accepted").await;
}

#[tokio::test]
async fn a_rotated_key_is_accepted_without_a_restart() {
    let old = SigningKey::generate(Alg::EdDSA);
    let (app, jwks) = jwks_app(&[&old]).await;
    me(&app, &old.sign(&better_auth_claims("alice"))).await.ok();

    // The issuer rotates: a new key appears and new tokens name it.
    let new = SigningKey::generate(Alg::ES256);
    jwks.publish(&[&old, &new]);
    me(&app, &new.sign(&better_auth_claims("alice"))).await.ok();

    assert_eq!(
        user_rows(&app).await,
        1,
        "one user, whichever key signed the token"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_issuer_one_fetch_per_interval() {
    let key = SigningKey::generate(Alg::EdDSA);
    let (app, jwks) = jwks_app(&[&key]).await;
    // The start-up fetch has happened once a valid token verifies.
    me(&app, &key.sign(&better_auth_claims("alice"))).await.ok();
    let before = jwks.hits();

    let forgers: Vec<SigningKey> = (0..25).map(|_| SigningKey::generate(Alg::EdDSA)).collect();
    let tokens: Vec<String> = forgers
        .iter()
        .map(|forger| forger.sign(&better_auth_claims("eve")))
        .collect();
    let requests = tokens
        .iter()
        .map(|token| me(&app, token))
        .collect::<Vec<_>>();
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
    me(&app, &old.sign(&better_auth_claims("warmup")))
        .await
        .ok();
    let before = jwks.hits();

    let new = SigningKey::generate(Alg::EdDSA);
    jwks.publish(&[&old, &new]);
    let token = new.sign(&better_auth_claims("alice"));
    let replies = futures_util::future::join_all((0..20).map(|_| me(&app, &token))).await;
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
    let reply = me(&app, &token).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:#}",
        reply.body
    );
    assert_eq!(reply.code(), Some("SERVICE_UNAVAILABLE"));
    assert!(reply.header("retry-after").is_some());

    jwks.publish(&[&key]);
    me(&app, &token).await.ok();
}

#[tokio::test]
async fn concurrent_first_requests_of_a_new_user_create_one_row() {
    let app = TestApp::spawn().await;
    let token = app.token_for("alice");
    let replies = futures_util::future::join_all((0..12).map(|_| me(&app, &token))).await;
    for reply in &replies {
        assert_eq!(reply.ok()["me"]["id"], "alice");
    }
    assert_eq!(user_rows(&app).await, 1);
}

#[tokio::test]
async fn changed_claims_update_the_user_and_unchanged_claims_write_nothing() {
    let app = TestApp::spawn().await;
    let row = || async {
        sqlx::query_as::<
            _,
            (
                String,
                Option<String>,
                chrono::DateTime<chrono::Utc>,
                String,
            ),
        >("select email, name, updated_at, xmin::text from users where id = 'alice'")
        .fetch_one(&app.db)
        .await
        .expect("row")
    };
    me(&app, &app.token_for("alice")).await.ok();
    let first = row().await;

    me(&app, &app.token_for("alice")).await.ok();
    assert_eq!(
        row().await,
        first,
        "same claims: same row version, no write at all"
    );

    let mut renamed = claims("alice");
    renamed["name"] = json!("Alice Liddell");
    let reply = me(&app, &keys::hs256_token(TEST_SECRET, &renamed)).await;
    assert_eq!(reply.ok()["me"]["name"], "Alice Liddell");
    let after = row().await;
    assert_eq!(after.1.as_deref(), Some("Alice Liddell"));
    assert!(after.2 > first.2, "updated_at moved");
}

/// Better Auth owns email uniqueness. A person who deleted their account and signed up again
/// with the same address arrives with a new `sub`: they are served as the new user, and the
/// stale row keeps its tasks, which neither account can see from the other.
#[tokio::test]
async fn a_returning_user_with_a_new_id_and_a_known_email_is_served() {
    let app = TestApp::spawn().await;
    let old = app.token_for("alice-old");
    app.gql(
        Some(&old),
        "mutation { createTask(input: {title: \"old account\"}) { id } }",
        json!({}),
    )
    .await
    .ok();

    let mut returning = claims("alice-new");
    returning["email"] = json!("ALICE-OLD@example.com");
    let new = keys::hs256_token(TEST_SECRET, &returning);
    let reply = app
        .gql(
            Some(&new),
            "{ me { id email } tasks { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply.ok(),
        &json!({ "me": { "id": "alice-new", "email": "ALICE-OLD@example.com" },
                 "tasks": { "totalCount": 0 } })
    );
    let created = app
        .gql(
            Some(&new),
            "mutation { createTask(input: {title: \"new account\"}) { id } }",
            json!({}),
        )
        .await;
    created.ok();

    // The stale row is untouched and still its own account's alone.
    let reply = app
        .gql(Some(&old), "{ tasks { nodes { title } } }", json!({}))
        .await;
    assert_eq!(
        reply.ok()["tasks"]["nodes"],
        json!([{ "title": "old account" }])
    );
    assert_eq!(user_rows(&app).await, 2);
}

fn base64_json(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Verbose logging of valid, forged and expired tokens never writes a token (or any of its
/// parts) to the log.
#[tokio::test]
async fn tokens_never_appear_in_logs() {
    use std::time::Duration;

    use crate::common::{Process, TestDb};

    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "trace")]);

    let valid = keys::hs256_token(TEST_SECRET, &claims("alice"));
    let forged = keys::hs256_token("not-the-secret-0123456789-abcdefghijkl", &claims("alice"));
    let mut old = claims("alice");
    old["exp"] = json!(taskql::auth::claims::now() - 3600);
    let expired = keys::hs256_token(TEST_SECRET, &old);
    let client = reqwest::Client::new();
    for token in [&valid, &forged, &expired] {
        client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { id } }" }))
            .send()
            .await
            .expect("answer");
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));

    let log = server.seen.join("\n");
    assert!(
        log.contains("refused a token"),
        "the refusals are logged (without the token)"
    );
    for token in [&valid, &forged, &expired] {
        for part in token.split('.') {
            assert!(!log.contains(part), "a token part reached the log");
        }
    }
    assert!(!log.contains(TEST_SECRET), "the secret reached the log");
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
    me(&app, &token).await.ok();

    jwks.publish(&[&current]);
    // Wait for the issuer to see the next scheduled fetch after the change (an event the
    // JWKS server counts), then one more so the fetch that saw it has surely completed.
    let seen = jwks.hits();
    jwks.wait_for_hits(seen + 2).await;
    let reply = me(&app, &token).await;
    assert_refused(&reply, &token, "unknown key");
    me(&app, &current.sign(&better_auth_claims("alice")))
        .await
        .ok();
}
