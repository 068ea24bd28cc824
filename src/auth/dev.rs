//! Development mode's secret, and minting HS256 tokens for `taskql token` and the GraphiQL
//! page.
//!
//! With no auth variable set on a loopback address, taskql verifies HS256 tokens signed with
//! a random secret kept in a local file (created on first start, readable by its owner only),
//! so a newcomer can use the playground without running Better Auth. The configuration
//! refuses this mode on any other address.

use std::{io::ErrorKind, path::Path, time::Duration};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::Secret;
use super::claims;

/// Reads the development secret, creating the file with a fresh random one if missing.
pub async fn load_or_create_secret(path: &Path) -> anyhow::Result<Secret> {
    match tokio::fs::read_to_string(path).await {
        Ok(contents) => {
            let secret = contents.trim();
            anyhow::ensure!(
                secret.len() >= 32,
                "the development secret in {} is shorter than 32 bytes; delete the file to get a new one",
                path.display()
            );
            Ok(Secret::new(secret))
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(path, &secret).await.with_context(|| {
                format!(
                    "could not write the development secret to {}",
                    path.display()
                )
            })?;
            Ok(Secret::new(secret))
        }
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Writes a file only its owner can read: the secret mints tokens for any user.
async fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    use tokio::io::AsyncWriteExt as _;
    let mut file = options.open(path).await?;
    file.write_all(contents.as_bytes()).await?;
    file.write_all(b"\n").await?;
    file.sync_all().await
}

/// What a minted token says about its user.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub sub: String,
    pub email: String,
    pub name: Option<String>,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs an HS256 token shaped like Better Auth's (sub, email, name, iat, exp, iss, aud).
pub fn mint(secret: &Secret, request: &TokenRequest) -> anyhow::Result<String> {
    let now = claims::now();
    let claims = MintedClaims {
        sub: &request.sub,
        email: &request.email,
        name: request.name.as_deref(),
        iat: now,
        exp: now + request.ttl.as_secs(),
        iss: request.issuer.as_deref(),
        aud: request.audience.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("could not sign the token")
}
