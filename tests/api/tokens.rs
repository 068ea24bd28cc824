//! Token verification end to end: keys of every algorithm Better Auth offers, served as a
//! JWKS by a server inside the test; every way a token can be wrong, as one table against one
//! server; secret mode; anonymous callers; tokens kept out of logs.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    TEST_SECRET, TestApp,
    api::Client as _,
    keys::{
        self, Alg, ISSUER, SigningKey, assert_refused, base64_json, better_auth_claims, claims,
        jwks_app,
    },
    ws::Socket,
};

/// Every way a token can be wrong, each refused by one JWKS-mode server with the reason it
/// gives, and none of them writing a user row.
#[tokio::test]
async fn every_wrong_token_is_refused_with_its_reason_and_writes_nothing() {
    let eddsa = SigningKey::generate(Alg::EdDSA);
    let es256 = SigningKey::generate(Alg::ES256);
    let es512 = SigningKey::generate(Alg::ES512);
    let rs256 = SigningKey::generate(Alg::RS256);
    let stranger = SigningKey::generate(Alg::EdDSA);
    let (app, _jwks) = jwks_app(&[&eddsa, &es256, &es512, &rs256]).await;
    let now = taskql::auth::claims::now();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = better_auth_claims("eve");
        change(&mut claims);
        eddsa.sign(&claims)
    };

    // The classic confusion attack: "sign" HS256 with the public key anyone can download,
    // naming the real key's kid as an attacker would.
    let public_key = rs256.jwk()["n"].as_str().expect("modulus").to_owned();
    let confused = keys::hs256_token(&public_key, &better_auth_claims("eve"));
    let confused = format!(
        "{}.{}",
        base64_json(&json!({ "alg": "HS256", "kid": rs256.kid })),
        confused.split_once('.').expect("jwt").1
    );
    // A genuine signature over a payload swapped for someone else's.
    let genuine = es512.sign(&better_auth_claims("alice"));
    let forged_payload = base64_json(&better_auth_claims("mallory"));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[1] = &forged_payload;
    let tampered = parts.join(".");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unsigned",
            keys::raw_token(
                &json!({ "alg": "none", "kid": eddsa.kid }),
                &better_auth_claims("eve"),
                b"",
            ),
            "algorithm is not accepted",
        ),
        (
            "HS256 with the public key",
            confused,
            "algorithm is not accepted",
        ),
        (
            "HS256 with a shared secret, in JWKS mode",
            keys::hs256_token(TEST_SECRET, &better_auth_claims("eve")),
            "algorithm is not accepted",
        ),
        (
            "an ES256 key named in an EdDSA header",
            es256.sign_as("EdDSA", &better_auth_claims("eve")),
            "does not match its key",
        ),
        (
            "an RS256 key used for PS256",
            rs256.sign_as("PS256", &better_auth_claims("eve")),
            "does not match its key",
        ),
        (
            "an unknown kid",
            stranger.sign(&better_auth_claims("eve")),
            "unknown key",
        ),
        ("tampered", tampered, "signature is invalid"),
        (
            "no subject",
            with(&|c| {
                c.as_object_mut().expect("object").remove("sub");
            }),
            "\"sub\"",
        ),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(now - 3600);
                c["exp"] = json!(now - 120);
            }),
            "expired",
        ),
        (
            "not valid yet",
            with(&|c| c["nbf"] = json!(now + 600)),
            "not valid yet",
        ),
        (
            "issued in the future",
            with(&|c| c["iat"] = json!(now + 600)),
            "not valid yet",
        ),
        (
            "an expiry no clock can hold",
            with(&|c| c["exp"] = json!(9_999_999_999_999_999_999_u64)),
            "\"exp\"",
        ),
        (
            "an issue time no clock can hold",
            with(&|c| c["iat"] = json!(1e300)),
            "\"iat\"",
        ),
        (
            "a not-before no clock can hold",
            with(&|c| c["nbf"] = json!(1e300)),
            "\"nbf\"",
        ),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
            "unexpected issuer",
        ),
        (
            "another audience",
            with(&|c| c["aud"] = json!("https://other.example")),
            "another audience",
        ),
        // Claims PostgreSQL cannot store would fail every request of their user with a
        // server error.
        (
            "a NUL in the subject",
            with(&|c| c["sub"] = json!("ev\u{0}e")),
            "\"sub\"",
        ),
        (
            "a NUL in the name",
            with(&|c| c["name"] = json!("ev\u{0}e")),
            "\"name\"",
        ),
        (
            "a NUL in the email",
            with(&|c| c["email"] = json!("ev\u{0}e@example.com")),
            "\"email\"",
        ),
    ];
    for (case, token, reason) in &cases {
        let reply = app.me(token).await;
        assert!(reply.status == 401, "{case}: {:#}", reply.body);
        assert_refused(&reply, token, reason);
    }
    assert_eq!(app.rows("users").await, 0, "a refused token wrote nothing");

    // An audience list may include ours among others.
    app.me(&with(&|c| {
        c["aud"] = json!(["https://other.example", ISSUER]);
    }))
    .await
    .ok();
}

/// The refusal contract in secret mode, after `rows` users were made by valid tokens.
async fn assert_refused_and_nothing_written_after(
    app: &TestApp,
    token: &str,
    reason: &str,
    rows: i64,
) {
    assert_refused(&app.me(token).await, token, reason);
    assert_eq!(app.rows("users").await, rows);
}

#[tokio::test]
async fn tokens_of_every_better_auth_algorithm_are_accepted() {
    let keys: Vec<SigningKey> = Alg::ALL.into_iter().map(SigningKey::generate).collect();
    let (app, _jwks) = jwks_app(&keys.iter().collect::<Vec<_>>()).await;
    for key in &keys {
        let sub = format!("user-{}", key.alg.name());
        let reply = app.me(&key.sign(&better_auth_claims(&sub))).await;
        assert_eq!(reply.ok()["me"]["id"], sub.as_str(), "{}", key.alg.name());
    }
}

#[tokio::test]
async fn garbage_in_the_authorization_header_is_refused_not_ignored() {
    let app = TestApp::spawn().await;
    for token in ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "a.b.c.d.e"] {
        let reply = app.me(token).await;
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
    assert_eq!(app.rows("users").await, 0);
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
async fn every_operation_needs_a_token() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7().to_string();
    let operations = [
        "{ me { id } }".to_owned(),
        format!("{{ task(id: \"{id}\") {{ id }} }}"),
        "{ tasks { totalCount } }".to_owned(),
        "{ taskStats { total } }".to_owned(),
        "mutation { createTask(input: { title: \"x\" }) { id } }".to_owned(),
        format!("mutation {{ updateTask(id: \"{id}\", input: {{ title: \"x\" }}) {{ id }} }}"),
        format!("mutation {{ deleteTask(id: \"{id}\") }}"),
        format!("mutation {{ setTasksCompleted(ids: [\"{id}\"], completed: true) {{ id }} }}"),
        format!("mutation {{ deleteTasks(ids: [\"{id}\"]) }}"),
        "mutation { updateMe(input: { name: \"x\" }) { id } }".to_owned(),
        "mutation { deleteMe }".to_owned(),
    ];
    for operation in operations {
        let reply = app.gql(None, &operation, json!({})).await;
        assert_eq!(reply.code(), Some("UNAUTHENTICATED"), "{operation}");
    }
    assert_eq!(app.rows("tasks").await, 0);
}

#[tokio::test]
async fn secret_mode_accepts_hs256_and_refuses_asymmetric_tokens() {
    let app = TestApp::spawn().await;
    app.me(&app.token_for("alice")).await.ok();
    let wrong_secret = keys::hs256_token("another-secret-0123456789-abcdefghijkl", &claims("eve"));
    assert_refused_and_nothing_written_after(&app, &wrong_secret, "signature is invalid", 1).await;
    let eddsa = SigningKey::generate(Alg::EdDSA).sign(&claims("eve"));
    assert_refused_and_nothing_written_after(&app, &eddsa, "algorithm is not accepted", 1).await;
}

#[tokio::test]
async fn a_token_whose_times_no_clock_can_hold_is_refused_not_a_panic() {
    let app = TestApp::spawn().await;
    let mut claims = keys::claims("zed");
    claims["exp"] = json!(9_999_999_999_999_999_999_u64);
    let token = keys::hs256_token(crate::common::TEST_SECRET, &claims);
    let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.message().contains("\"exp\""), "{}", reply.message());

    // The reproduction: over the socket it panicked a worker and dropped the connection.
    let mut socket = Socket::connect(app.addr).await;
    socket
        .send(&json!({ "type": "connection_init",
            "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(socket.recv().await, None);
    let (code, reason) = socket.closed().await.expect("a close frame");
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.starts_with("UNAUTHENTICATED:"), "{reason}");
    for claim in ["iat", "nbf"] {
        let mut claims = keys::claims("zed");
        claims[claim] = json!(1e300);
        let token = keys::hs256_token(crate::common::TEST_SECRET, &claims);
        let reply = app.gql(Some(&token), "{ me { id } }", json!({})).await;
        assert_eq!(reply.status, 401, "{claim}: {}", reply.body);
    }
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
