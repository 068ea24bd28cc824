//! Token verification: who is calling, proven by a signed JWT, or nobody.
//!
//! Better Auth (the TypeScript framework that owns sign-up and sessions) issues the tokens;
//! this module verifies them and turns their claims into an [`Identity`]. It knows nothing of
//! HTTP or GraphQL: the HTTP layer hands it the bearer string, the WebSocket transport the
//! `connection_init` payload's token, and both get the same answer.
//!
//! - [`jwks`]: the JWKS key cache (asymmetric algorithms, rotation, rate-limited refetch).
//! - [`cache`]: tokens already verified, until they expire or the keys change.
//! - [`claims`]: the registered-claim checks (`exp`, `nbf`, `iat`, `iss`, `aud`, `sub`).
//! - [`keys`]: JWK → verification key, and signature checks for each accepted algorithm.
//! - [`dev`]: the development secret and token minting for `taskql token`.
//! - [`settings`]: the verification mode and its settings (`AUTH_*`), and [`Secret`].
//!
//! [`UserId`] can only be made here, from a verified `sub`, so any function that asks for a
//! `&UserId` is known to run on behalf of a verified caller.

pub mod cache;
pub mod claims;
pub mod dev;
pub mod jwks;
pub mod keys;
pub mod settings;

use std::{fmt, sync::Arc};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

use keys::Alg;
pub use settings::{AuthConfig, AuthMode, AuthSettings, Secret};

/// The verified id of the calling user: Better Auth's user id, the token's `sub`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A user id for unit tests of code that takes one.
    #[cfg(test)]
    pub(crate) fn for_tests(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// The token's `exp`, in seconds since the epoch: a WebSocket connection authenticated
    /// with it ends then.
    pub expires_at: u64,
}

/// Why a token was refused. `Display` is safe to show the client: it says what is wrong in
/// general terms and never repeats the token or its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Malformed,
    UnsupportedAlgorithm,
    AlgorithmKeyMismatch,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim(&'static str),
    /// A time claim (`exp`, `nbf`, `iat`) outside any sane range: before 1970, or more than
    /// [`claims::MAX_YEARS_AHEAD`] years from now.
    TimeOutOfRange(&'static str),
    /// The issuer's keys could not be fetched yet: not the token's fault.
    KeysUnavailable,
}

impl AuthError {
    /// Whether this is the server's problem (no keys yet) rather than the token's.
    pub fn is_unavailable(self) -> bool {
        self == Self::KeysUnavailable
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("The token is malformed."),
            Self::UnsupportedAlgorithm => {
                f.write_str("The token's signing algorithm is not accepted.")
            }
            Self::AlgorithmKeyMismatch => {
                f.write_str("The token's signing algorithm does not match its key.")
            }
            Self::UnknownKey => f.write_str("The token was signed with an unknown key."),
            Self::BadSignature => f.write_str("The token's signature is invalid."),
            Self::Expired => f.write_str("The token has expired."),
            Self::NotYetValid => f.write_str("The token is not valid yet."),
            Self::WrongIssuer => f.write_str("The token was issued by an unexpected issuer."),
            Self::WrongAudience => f.write_str("The token is meant for another audience."),
            Self::MissingClaim(claim) => write!(f, "The token has no usable \"{claim}\" claim."),
            Self::TimeOutOfRange(claim) => {
                write!(f, "The token's \"{claim}\" claim is not a plausible time.")
            }
            Self::KeysUnavailable => f.write_str(
                "The token issuer's signing keys are not available yet; try again shortly.",
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// The JOSE header fields we read. Parsed by hand (not with `jsonwebtoken::decode_header`)
/// because that rejects algorithms it does not implement, ES512 among them.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The three parts of a compact JWS, with the header decoded.
struct Parts<'a> {
    header: Header,
    /// `base64(header).base64(payload)`: the bytes the signature covers.
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

/// How many verified tokens are remembered (a few hundred bytes each).
const TOKEN_CACHE_SIZE: usize = 10_000;

/// Bounds the work a hostile token can cause before its signature is even checked.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn split(token: &str) -> Result<Parts<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(AuthError::Malformed)?;
    if payload.contains('.') {
        return Err(AuthError::Malformed);
    }
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| AuthError::Malformed)?;
    Ok(Parts {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// Verifies tokens according to the configured mode.
#[derive(Clone)]
pub struct Verifier {
    keys: KeySource,
    rules: Arc<claims::Rules>,
    /// Development mode only: the secret, so the playground can be given a working token.
    development_secret: Option<Secret>,
    /// Tokens verified recently, so a client's every request does not pay for a signature
    /// check (see [`cache`]).
    cache: Arc<cache::TokenCache>,
}

#[derive(Clone)]
enum KeySource {
    /// Asymmetric keys from the issuer's JWKS.
    Jwks(Arc<jwks::JwksCache>),
    /// One HS256 secret (explicit secret mode, or development mode).
    Hs256(Arc<keys::VerifyKey>),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.keys {
            KeySource::Jwks(_) => "jwks",
            KeySource::Hs256(_) => "hs256",
        };
        f.debug_struct("Verifier")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds the verifier for `config`. In JWKS mode this starts the background refresh;
    /// it does not wait for the first fetch, so start-up survives an issuer that is down.
    pub async fn from_config(config: &AuthConfig) -> anyhow::Result<Self> {
        let rules = Arc::new(claims::Rules::from_config(config));
        let mut development_secret = None;
        let keys = match &config.mode {
            AuthMode::Jwks { url } => KeySource::Jwks(jwks::JwksCache::start(
                url.clone(),
                config.jwks_refresh,
                config.jwks_min_refetch,
            )?),
            AuthMode::Secret { secret } => {
                KeySource::Hs256(Arc::new(keys::VerifyKey::hs256(secret.expose().as_bytes())))
            }
            AuthMode::Development { secret_file } => {
                let secret = dev::load_or_create_secret(secret_file).await?;
                let key = keys::VerifyKey::hs256(secret.expose().as_bytes());
                development_secret = Some(secret);
                KeySource::Hs256(Arc::new(key))
            }
        };
        Ok(Self {
            keys,
            rules,
            development_secret,
            cache: Arc::new(cache::TokenCache::new(TOKEN_CACHE_SIZE)),
        })
    }

    /// The identity of a token verified earlier, if it is still valid: before its `exp`, and
    /// verified against the key set as it is now. Costs a hash, no signature check.
    pub fn cached(&self, token: &str) -> Option<Identity> {
        self.cache.get(token, claims::now(), self.key_generation())
    }

    fn key_generation(&self) -> u64 {
        match &self.keys {
            KeySource::Jwks(cache) => cache.generation(),
            KeySource::Hs256(_) => 0,
        }
    }

    /// The secret tokens are signed with, in development mode only.
    pub fn development_secret(&self) -> Option<&Secret> {
        self.development_secret.as_ref()
    }

    /// Checks `token` completely: algorithm against the mode and the key, signature, then
    /// claims. The order matters: nothing in an unverified payload is trusted or even parsed.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(identity) = self.cached(token) {
            return Ok(identity);
        }
        // Read before verifying: a rotation during the check makes the entry stale at once.
        let generation = self.key_generation();
        let parts = split(token)?;
        let alg = Alg::parse(&parts.header.alg).ok_or(AuthError::UnsupportedAlgorithm)?;
        match &self.keys {
            KeySource::Hs256(key) => {
                // Only HS256 here: an asymmetric token cannot be checked against a secret, and
                // accepting `none` would accept anything.
                if alg != Alg::HS256 {
                    return Err(AuthError::UnsupportedAlgorithm);
                }
                key.verify(alg, parts.signing_input.as_bytes(), parts.signature)?;
            }
            KeySource::Jwks(cache) => {
                // Only asymmetric algorithms here: an HS256 token "signed" with a public key
                // (which anyone can read from the JWKS) is the classic algorithm confusion.
                if !alg.is_asymmetric() {
                    return Err(AuthError::UnsupportedAlgorithm);
                }
                let key = cache.key_for(parts.header.kid.as_deref(), alg).await?;
                key.verify(alg, parts.signing_input.as_bytes(), parts.signature)?;
            }
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| AuthError::Malformed)?;
        let claims = self.rules.check(&payload, claims::now())?;
        let identity = Identity {
            user_id: UserId(claims.sub),
            email: claims.email,
            name: claims.name,
            image: claims.image,
            // `exp` is checked finite and in range by the claim rules; `as` saturates anyway.
            expires_at: claims.exp as u64,
        };
        self.cache
            .insert(token, identity.clone(), claims.exp, generation);
        Ok(identity)
    }
}
