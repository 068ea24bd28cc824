//! How tokens are verified: the three modes (JWKS, shared secret, development), the claims
//! required, and the timing of the key set's refresh. Also [`Secret`], a value never printed.

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;

use crate::config::{ConfigError, parse_duration};

/// The token verification settings, as read (see [`AuthConfig`] for what they become).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct AuthSettings {
    /// JWKS mode: Better Auth's key set, <better-auth base URL>/api/auth/jwks. Must be
    /// https:// (plain http:// only on loopback).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// Secret mode: the shared HS256 secret (32 bytes or more).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<Secret>,
    /// Required iss; required setting in JWKS mode (Better Auth: its base URL).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Required aud; required setting in JWKS mode (Better Auth: its base URL).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Leeway for exp, nbf, iat.
    #[arg(long, env = "AUTH_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    pub auth_clock_skew: Duration,
    /// How often the JWKS is refetched in the background.
    #[arg(long, env = "AUTH_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub auth_jwks_refresh: Duration,
    /// Least time between refetches caused by unknown kids.
    #[arg(long, env = "AUTH_JWKS_MIN_REFETCH", default_value = "10s", value_parser = parse_duration)]
    pub auth_jwks_min_refetch: Duration,
    /// Development mode's secret file.
    #[arg(
        long,
        env = "AUTH_DEV_SECRET_FILE",
        default_value = ".taskql-dev-secret"
    )]
    pub auth_dev_secret_file: PathBuf,
}

/// Where tokens are verified against.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `AUTH_ISSUER`: the required `iss` claim, when set.
    pub issuer: Option<String>,
    /// `AUTH_AUDIENCE`: the required `aud` claim (one of them, when the token has several).
    pub audience: Option<String>,
    /// `AUTH_CLOCK_SKEW`: leeway for `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// `AUTH_JWKS_REFRESH`: how often the JWKS is fetched again in the background.
    pub jwks_refresh: Duration,
    /// `AUTH_JWKS_MIN_REFETCH`: the least time between two fetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
}

/// The three ways taskql can verify tokens.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// `AUTH_JWKS_URL`: asymmetric tokens checked against a JWKS (Better Auth's `jwt` plugin).
    Jwks { url: String },
    /// `AUTH_JWT_SECRET`: HS256 tokens signed with a shared secret.
    Secret { secret: Secret },
    /// Neither set: HS256 with a secret kept in a local file (on a loopback address only,
    /// which `settings` checks).
    Development { secret_file: PathBuf },
}

/// A value that must never be printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(raw))
    }
}

impl AuthSettings {
    /// The verification configuration these settings describe.
    pub fn into_config(self) -> Result<AuthConfig, ConfigError> {
        let mode = match (self.auth_jwks_url, self.auth_jwt_secret) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "AUTH_JWKS_URL",
                    "AUTH_JWKS_URL and AUTH_JWT_SECRET are both set; choose one way to verify \
                     tokens",
                ));
            }
            (Some(url), None) => {
                check_jwks_url(&url)
                    .map_err(|problem| ConfigError::new("AUTH_JWKS_URL", problem))?;
                // Without these, any token the auth server's keys ever signed (one minted for
                // another application, say) would be accepted here.
                for (var, value) in [
                    ("AUTH_ISSUER", &self.auth_issuer),
                    ("AUTH_AUDIENCE", &self.auth_audience),
                ] {
                    if value.is_none() {
                        return Err(ConfigError::new(
                            var,
                            "must be set with AUTH_JWKS_URL (Better Auth: its base URL, e.g. \
                             https://auth.example.com), so tokens issued for other applications \
                             are refused",
                        ));
                    }
                }
                AuthMode::Jwks { url }
            }
            (None, Some(secret)) => {
                // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
                let length = secret.expose().len();
                if length < 32 {
                    return Err(ConfigError::new(
                        "AUTH_JWT_SECRET",
                        format!("is {length} bytes long; HS256 needs at least 32 bytes"),
                    ));
                }
                AuthMode::Secret { secret }
            }
            (None, None) => AuthMode::Development {
                secret_file: self.auth_dev_secret_file,
            },
        };
        Ok(AuthConfig {
            mode,
            issuer: self.auth_issuer,
            audience: self.auth_audience,
            clock_skew: self.auth_clock_skew,
            jwks_refresh: self.auth_jwks_refresh,
            jwks_min_refetch: self.auth_jwks_min_refetch,
        })
    }
}

/// The JWKS decides which tokens are genuine, so it must come over TLS: anyone on the network
/// path of a plain-HTTP fetch could add their own key. Loopback (an auth server on the same
/// host, or a test) is the one exception.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let example = "expected an https URL such as https://auth.example.com/api/auth/jwks";
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(example.to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The host, without userinfo and port; an IPv6 literal keeps its brackets until here.
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{example}; plain http is accepted only on loopback (127.0.0.1, ::1, localhost)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_url_comes_over_tls_unless_on_loopback() {
        for plain in [
            "http://auth.example.com/api/auth/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://localhost@evil.example/jwks",
            "ftp://auth.example.com/jwks",
        ] {
            assert!(check_jwks_url(plain).is_err(), "{plain}");
        }
        for fine in [
            "https://auth.example.com/api/auth/jwks",
            "http://127.0.0.1:3000/api/auth/jwks",
            "http://localhost:3000/api/auth/jwks",
            "http://[::1]:3000/api/auth/jwks",
        ] {
            assert!(check_jwks_url(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::new("0123456789abcdef0123456789abcdef-secret");
        assert!(!format!("{secret:?}").contains("0123"));
    }
}
