//! The registered-claim checks (RFC 7519 §4.1) applied after a signature verifies, and the
//! identity claims Better Auth adds (`email`, `name`, `image`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::AuthConfig;
use super::AuthError;

/// What a token must satisfy besides its signature.
#[derive(Debug)]
pub struct Rules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

/// The claims of a token that passed every rule.
#[derive(Debug)]
pub struct Checked {
    /// When the token expires (seconds since the epoch).
    pub exp: f64,
    pub sub: String,
    pub email: String,
    pub name: Option<String>,
    pub image: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(aud) => aud == wanted,
            Self::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The furthest in the future a time claim may lie. Better Auth's tokens live 15 minutes;
/// nothing legitimate is valid for longer than this, and numbers beyond it (up to 10^308 in
/// JSON) must never reach the clock arithmetic of the transports.
pub const MAX_YEARS_AHEAD: u64 = 10;

/// The longest user id we accept: Better Auth's are 32 characters; the column allows 255.
const MAX_SUB_CHARS: usize = 255;

impl Rules {
    pub fn from_config(config: &AuthConfig) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.clock_skew.as_secs(),
        }
    }

    /// Checks the decoded payload at time `now` (seconds since the epoch).
    pub fn check(&self, payload: &[u8], now: u64) -> Result<Checked, AuthError> {
        let claims: Claims = serde_json::from_slice(payload).map_err(|_| AuthError::Malformed)?;
        // Compared in f64 so fractional timestamps (some issuers send them) keep working.
        let latest = now.saturating_add(MAX_YEARS_AHEAD * 365 * 24 * 3600) as f64;
        for (claim, value) in [
            ("exp", claims.exp),
            ("nbf", claims.nbf),
            ("iat", claims.iat),
        ] {
            if value.is_some_and(|time| !(0.0..=latest).contains(&time)) {
                return Err(AuthError::TimeOutOfRange(claim));
            }
        }
        let now = now as f64;
        let leeway = self.leeway as f64;

        // Short-lived tokens are the only revocation JWTs have, so a token without an expiry
        // is refused rather than trusted forever.
        let exp = claims.exp.ok_or(AuthError::MissingClaim("exp"))?;
        if now > exp + leeway {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(AuthError::NotYetValid);
        }
        // A token "issued" in the future comes from a broken clock or a forger.
        if claims.iat.is_some_and(|iat| now + leeway < iat) {
            return Err(AuthError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if let Some(audience) = &self.audience
            && !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains(audience))
        {
            return Err(AuthError::WrongAudience);
        }

        let sub = claims
            .sub
            .filter(|sub| {
                !sub.trim().is_empty() && sub.chars().count() <= MAX_SUB_CHARS && storable(sub)
            })
            .ok_or(AuthError::MissingClaim("sub"))?;
        // Every user row has an email (Better Auth always puts one in its tokens).
        let email = claims
            .email
            .map(|email| email.trim().to_owned())
            .filter(|email| !email.is_empty() && email.chars().count() <= 320 && storable(email))
            .ok_or(AuthError::MissingClaim("email"))?;
        // A profile claim that cannot be stored would fail the user sync on every request,
        // locking the user out with a server error; refusing the token says why at once.
        for (claim, value) in [("name", &claims.name), ("image", &claims.image)] {
            if value.as_deref().is_some_and(|value| !storable(value)) {
                return Err(AuthError::MissingClaim(claim));
            }
        }
        Ok(Checked {
            exp,
            sub,
            email,
            name: bounded(claims.name, 200),
            image: bounded(claims.image, 2048),
        })
    }
}

/// Whether PostgreSQL can store the text: its `text` type cannot hold U+0000.
fn storable(value: &str) -> bool {
    !value.contains('\0')
}

/// Keeps an optional profile claim only when it fits its column; a too-long display name is
/// not worth refusing the user over.
fn bounded(value: Option<String>, max_chars: usize) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.chars().count() <= max_chars)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules(issuer: Option<&str>, audience: Option<&str>) -> Rules {
        Rules {
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            leeway: 60,
        }
    }

    fn check(rules: &Rules, claims: &serde_json::Value) -> Result<Checked, AuthError> {
        rules.check(claims.to_string().as_bytes(), NOW)
    }

    fn valid() -> serde_json::Value {
        json!({"sub": "u1", "email": "a@example.com", "exp": NOW + 900, "iat": NOW,
               "iss": "https://app.example.com", "aud": "https://app.example.com"})
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut claims = valid();
        claims[key] = value;
        claims
    }

    #[test]
    fn times_outside_any_sane_range_are_refused() {
        let rules = rules(None, None);
        for (claim, value) in [
            ("exp", json!(9_999_999_999_999_999_999_u64)),
            ("exp", json!(1e300)),
            ("exp", json!(NOW + 11 * 365 * 24 * 3600)),
            ("nbf", json!(-1)),
            ("iat", json!(1e19)),
        ] {
            assert!(
                matches!(check(&rules, &with(claim, value.clone())), Err(AuthError::TimeOutOfRange(c)) if c == claim),
                "{claim} = {value}"
            );
        }
        assert!(check(&rules, &with("exp", json!(NOW + 9 * 365 * 24 * 3600))).is_ok());
    }

    #[test]
    fn a_valid_token_passes() {
        let rules = rules(
            Some("https://app.example.com"),
            Some("https://app.example.com"),
        );
        let checked = check(&rules, &valid()).expect("valid");
        assert_eq!(checked.sub, "u1");
    }

    #[test]
    fn time_claims_respect_the_leeway() {
        let rules = rules(None, None);
        assert!(
            check(&rules, &with("exp", json!(NOW - 30))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            check(&rules, &with("exp", json!(NOW - 61))).err(),
            Some(AuthError::Expired)
        );
        assert_eq!(
            check(&rules, &with("nbf", json!(NOW + 61))).err(),
            Some(AuthError::NotYetValid)
        );
        assert!(check(&rules, &with("nbf", json!(NOW + 30))).is_ok());
        assert_eq!(
            check(&rules, &with("iat", json!(NOW + 3600))).err(),
            Some(AuthError::NotYetValid)
        );
        let mut no_exp = valid();
        no_exp.as_object_mut().map(|c| c.remove("exp"));
        assert_eq!(
            check(&rules, &no_exp).err(),
            Some(AuthError::MissingClaim("exp"))
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let rules = rules(
            Some("https://app.example.com"),
            Some("https://app.example.com"),
        );
        assert_eq!(
            check(&rules, &with("iss", json!("https://evil.example"))).err(),
            Some(AuthError::WrongIssuer)
        );
        assert_eq!(
            check(&rules, &with("aud", json!("https://other.example"))).err(),
            Some(AuthError::WrongAudience)
        );
        assert!(
            check(
                &rules,
                &with(
                    "aud",
                    json!(["https://other.example", "https://app.example.com"])
                )
            )
            .is_ok()
        );
        assert_eq!(
            check(&rules, &with("aud", json!([]))).err(),
            Some(AuthError::WrongAudience)
        );
    }

    #[test]
    fn a_missing_or_blank_subject_is_refused() {
        let rules = rules(None, None);
        assert_eq!(
            check(&rules, &with("sub", json!(""))).err(),
            Some(AuthError::MissingClaim("sub"))
        );
        assert_eq!(
            check(&rules, &with("sub", json!(null))).err(),
            Some(AuthError::MissingClaim("sub"))
        );
        assert_eq!(
            check(&rules, &with("sub", json!(42))).err(),
            Some(AuthError::Malformed)
        );
        assert_eq!(
            check(&rules, &with("sub", json!("x".repeat(256)))).err(),
            Some(AuthError::MissingClaim("sub"))
        );
    }

    #[test]
    fn claims_postgresql_cannot_store_are_refused() {
        let rules = rules(None, None);
        for claim in ["sub", "email", "name", "image"] {
            assert_eq!(
                check(&rules, &with(claim, json!("a\u{0}b"))).err(),
                Some(AuthError::MissingClaim(claim)),
                "{claim}"
            );
        }
    }
}
