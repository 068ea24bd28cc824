//! Keys and tokens for tests: a key pair for each algorithm taskql accepts (made fresh by
//! aws-lc-rs in every test run), tokens signed with them by hand, and a JWKS server that
//! counts its requests and whose key set a test can change.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair},
};
use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The claims of a valid token for `sub`, shaped like Better Auth's.
pub fn claims(sub: &str) -> Value {
    let now = taskql::auth::claims::now();
    json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "name": sub,
        "iat": now,
        "exp": now + 900,
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An HS256 token, as secret-mode issuers make them.
pub fn hs256_token(secret: &str, claims: &Value) -> String {
    let input = signing_input(&json!({ "alg": "HS256", "typ": "JWT" }), claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// A token with an arbitrary header and signature bytes, for forgeries.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(signature))
}

/// The algorithms Better Auth can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    ES512,
    RS256,
    PS256,
}

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES512 => "ES512",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
        }
    }
}

enum Pair {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A signing key with its `kid`, publishable as a JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pair: Pair,
}

impl SigningKey {
    pub fn generate(alg: Alg) -> Self {
        let rng = SystemRandom::new();
        let pair = match alg {
            Alg::EdDSA => Pair::Ed(Ed25519KeyPair::generate().expect("ed25519")),
            Alg::ES256 => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .expect("p256");
                Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        pkcs8.as_ref(),
                    )
                    .expect("p256"),
                )
            }
            Alg::ES512 => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &rng)
                        .expect("p521");
                Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                        pkcs8.as_ref(),
                    )
                    .expect("p521"),
                )
            }
            Alg::RS256 | Alg::PS256 => {
                Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"))
            }
        };
        Self {
            kid: uuid::Uuid::new_v4().simple().to_string(),
            alg,
            pair,
        }
    }

    /// The public JWK, as Better Auth publishes it (with `alg` and `kid`, without `use`).
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Ed(pair) => json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": self.kid,
                "x": b64(pair.public_key().as_ref()),
            }),
            Pair::Ec(pair) => {
                // An uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if self.alg == Alg::ES256 {
                    "P-256"
                } else {
                    "P-521"
                };
                json!({
                    "kty": "EC", "crv": crv, "alg": self.alg.name(), "kid": self.kid,
                    "x": b64(&point[1..=half]), "y": b64(&point[1 + half..]),
                })
            }
            Pair::Rsa(pair) => json!({
                "kty": "RSA", "alg": self.alg.name(), "kid": self.kid,
                "n": b64(pair.public_key().modulus().big_endian_without_leading_zero()),
                "e": b64(pair.public_key().exponent().big_endian_without_leading_zero()),
            }),
        }
    }

    /// A token over `claims` with a header naming this key, signed with `alg` (normally
    /// this key's own).
    pub fn sign_as(&self, alg: &str, claims: &Value) -> String {
        let header = json!({ "alg": alg, "kid": self.kid });
        let input = signing_input(&header, claims);
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::Ec(pair) => pair
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = if self.alg == Alg::PS256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut out)
                    .expect("sign");
                out
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg.name(), claims)
    }
}

/// An issuer's JWKS endpoint: serves the current key set at `/api/auth/jwks` and counts
/// requests.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    notify: Arc<tokio::sync::Notify>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let state = Self {
            url: String::new(),
            keys: Arc::new(Mutex::new(Value::Null)),
            hits: Arc::new(AtomicUsize::new(0)),
            notify: Arc::new(tokio::sync::Notify::new()),
        };
        state.publish(keys);
        let router = Router::new()
            .route("/api/auth/jwks", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url: format!("http://{addr}/api/auth/jwks"),
            ..state
        }
    }

    /// Replaces the published key set (a rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        let jwks = json!({ "keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>() });
        *self.keys.lock().expect("lock") = jwks;
    }

    /// Publishes a raw JWKS document (for malformed or odd keys).
    pub fn publish_raw(&self, jwks: Value) {
        *self.keys.lock().expect("lock") = jwks;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until the server has been asked for its keys `count` times in all; gives up
    /// (failing the test) after 30 seconds.
    pub async fn wait_for_hits(&self, count: usize) {
        let watched = async {
            loop {
                if self.hits() >= count {
                    return;
                }
                self.notify.notified().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), watched)
            .await
            .expect("the JWKS was fetched in time");
    }
}

async fn serve_jwks(State(server): State<JwksServer>) -> Json<Value> {
    let keys = server.keys.lock().expect("lock").clone();
    server.hits.fetch_add(1, Ordering::SeqCst);
    server.notify.notify_waiters();
    Json(keys)
}

/// Better Auth's issuer in these tests: its base URL, which is also the audience it names.
pub const ISSUER: &str = "http://127.0.0.1:3999";

/// Better Auth's claims for `sub`: `iss` and `aud` are its base URL.
pub fn better_auth_claims(sub: &str) -> Value {
    let mut claims = claims(sub);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(ISSUER);
    claims
}

/// A JSON value as one base64url part of a token, for tokens put together by hand.
pub fn base64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// A JWKS-mode server trusting `keys`, with Better Auth's issuer and audience, and the JWKS
/// server it fetches them from.
pub async fn jwks_app(keys: &[&SigningKey]) -> (super::TestApp, JwksServer) {
    let jwks = JwksServer::start(keys).await;
    let app = super::TestApp::spawn_with(
        super::TestConfig::new()
            .unset("AUTH_JWT_SECRET")
            .set("AUTH_JWKS_URL", &jwks.url)
            .set("AUTH_ISSUER", ISSUER)
            .set("AUTH_AUDIENCE", ISSUER)
            .set("AUTH_JWKS_MIN_REFETCH", "60s"),
    )
    .await;
    (app, jwks)
}

/// The refusal contract: 401, the Bearer challenge, `UNAUTHENTICATED`, a message that says
/// `reason` and does not repeat the token.
#[track_caller]
pub fn assert_refused(reply: &super::Reply, token: &str, reason: &str) {
    assert_eq!(reply.status, 401, "{reason}: {:#}", reply.body);
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
