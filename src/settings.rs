//! Every setting of a taskql process, gathered from the rooms that own them (each declares its
//! own, with its variable, default and help), and the rules that span rooms, in one place.
//!
//! `taskql serve --help` lists them all (secrets' values are never shown). The README's
//! configuration table must name exactly these variables; a test below holds the two
//! together.

use std::collections::HashMap;

use clap::Args;

use crate::{
    auth::{AuthConfig, AuthMode, AuthSettings},
    config::{self, ConfigError},
    db::{DatabaseConfig, DatabaseSettings},
    graphql::{GraphQLConfig, settings::GraphQLSettings},
    http::settings::{HttpConfig, HttpSettings},
    live::settings::{LiveConfig, LiveSettings},
    metrics::{MetricsConfig, MetricsSettings},
    telemetry::{TelemetryConfig, TelemetrySettings},
};

/// Every setting, as read from the environment (or a `.env` file).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub live: LiveSettings,
    #[command(flatten)]
    pub graphql: GraphQLSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
}

/// The whole configuration of a taskql process, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub live: LiveConfig,
    pub graphql: GraphQLConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    pub metrics: MetricsConfig,
}

impl Settings {
    /// The configuration these settings describe, after the rules that span rooms.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let http = self.http.into_config();
        let auth = self.auth.into_config()?;
        // A development secret on a reachable address would let anyone who reads the file,
        // or guesses that it exists, mint tokens: refuse instead of warning.
        if matches!(auth.mode, AuthMode::Development { .. }) && !http.addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "AUTH_JWKS_URL",
                format!(
                    "no token verification is configured and HOST={} is not a loopback \
                     address; set AUTH_JWKS_URL (Better Auth) or AUTH_JWT_SECRET",
                    http.addr.ip()
                ),
            ));
        }
        Ok(Config {
            database: self.database.into_config()?,
            http,
            live: self.live.into(),
            graphql: self.graphql.into(),
            auth,
            telemetry: self.telemetry.into(),
            metrics: self.metrics.into(),
        })
    }
}

impl Config {
    /// The configuration of the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        config::from_env::<Settings>()?.into_config()
    }

    /// The configuration `vars` describe, the process environment aside (tests run many
    /// servers in one process).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        config::from_vars::<Settings>(vars)?.into_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(&vars)
    }

    fn config_err(vars: &[(&str, &str)]) -> String {
        config(vars).expect_err("invalid").var
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database.connect_options.get_database(),
            Some("taskql")
        );
        assert!(config.database.url_is_default);
        assert!(matches!(config.auth.mode, AuthMode::Development { .. }));
        assert_eq!(config.live.sync_retention.as_secs(), 30 * 86_400);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("PORT", "eighty", "not a number"),
            ("PORT", "70000", "out of range"),
            ("HOST", "example.com", "IP address"),
            ("DATABASE_URL", "mysql://x", "not a PostgreSQL URL"),
            (
                "DATABASE_MIGRATION_URL",
                "mysql://x",
                "not a PostgreSQL URL",
            ),
            ("DATABASE_POOLER", "statement", "none or transaction"),
            ("MIGRATE_ON_START", "later", "not a boolean"),
            ("LOCAL_POSTGRES", "sometimes", "auto, always or never"),
            ("METRICS_ADDR", "9100", "address and port"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "http(s) URL",
            ),
            ("DATABASE_POOL_SIZE", "0", "out of range"),
            ("REQUEST_TIMEOUT", "soon", "duration"),
            ("REQUEST_TIMEOUT", "0s", "greater than zero"),
            ("CORS_ALLOWED_ORIGINS", "*", "not allowed"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example/path", "no path"),
            ("GRAPHQL_INTROSPECTION", "maybe", "not a boolean"),
            ("LOG_FORMAT", "xml", "auto, pretty, json"),
            ("AUTH_JWT_SECRET", "short", "at least 32 bytes"),
            (
                "CURSOR_SECRET",
                "0123456789abcdef0123456789abcdef,short",
                "secret 2",
            ),
            (
                "TRUSTED_PROXIES",
                "10.0.0.0/33",
                "not an address or network",
            ),
            ("WS_KEEPALIVE", "often", "duration"),
        ];
        for (var, value, expected) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{var}={value} blamed {}", err.var);
            assert!(
                err.problem.contains(expected),
                "{var}={value}: {:?} does not mention {expected:?}",
                err.problem
            );
        }
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let config = config(&[("PORT", ""), ("DATABASE_URL", "  ")]).expect("valid");
        assert_eq!(config.http.addr.port(), 8080);
        assert!(config.database.url_is_default);
    }

    #[test]
    fn a_transaction_pooler_needs_a_direct_url_to_listen_on() {
        let pooled = ("DATABASE_POOLER", "transaction");
        assert_eq!(config_err(&[pooled]), "DATABASE_LISTEN_URL");
        let config = config(&[
            pooled,
            ("DATABASE_URL", "postgres://app@pooler.example:6432/taskql"),
            (
                "DATABASE_LISTEN_URL",
                "postgres://app@db.example:5432/taskql",
            ),
        ])
        .expect("valid");
        assert_eq!(config.database.listen_options.get_host(), "db.example");
        // Migrations default to the service's URL; an owner's direct URL is set apart.
        assert_eq!(
            config.database.migration_options.get_host(),
            "pooler.example"
        );
    }

    #[test]
    fn database_url_errors_do_not_echo_the_password() {
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@[bad")]).expect_err("bad url");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn both_auth_modes_at_once_is_refused() {
        let err = config(&[
            ("AUTH_JWKS_URL", "https://auth.example.com/api/auth/jwks"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect_err("two modes");
        assert!(err.problem.contains("both set"), "{err}");
    }

    #[test]
    fn jwks_mode_needs_issuer_audience_and_tls() {
        let jwks = ("AUTH_JWKS_URL", "https://auth.example.com/api/auth/jwks");
        let issuer = ("AUTH_ISSUER", "https://auth.example.com");
        let audience = ("AUTH_AUDIENCE", "https://auth.example.com");
        assert_eq!(config_err(&[jwks, audience]), "AUTH_ISSUER");
        assert_eq!(config_err(&[jwks, issuer]), "AUTH_AUDIENCE");
        config(&[jwks, issuer, audience]).expect("complete");
        assert_eq!(
            config_err(&[
                ("AUTH_JWKS_URL", "http://auth.example.com/jwks"),
                issuer,
                audience
            ]),
            "AUTH_JWKS_URL"
        );
    }

    #[test]
    fn development_mode_refuses_a_public_address() {
        let err = config(&[("HOST", "0.0.0.0")]).expect_err("dev mode on 0.0.0.0");
        assert!(err.problem.contains("not a loopback"), "{err}");
        config(&[
            ("HOST", "0.0.0.0"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("an explicit secret may listen anywhere");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = config(&[
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef-secret"),
            ("CURSOR_SECRET", "fedcba9876543210fedcba9876543210-cursor"),
        ])
        .expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(!printed.contains("fedcba"), "{printed}");
    }

    /// The variables of the README's configuration table, in order.
    fn readme_variables() -> Vec<String> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|section| section.split("\n## ").next())
            .expect("a Configuration section");
        table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|line| line.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_readme_table_names_every_setting_and_nothing_else() {
        let command = <Settings as Args>::augment_args(clap::Command::new("taskql"));
        let mut declared = config::variables(&command);
        // Read by the logging library itself, not a setting of ours; the table lists it.
        declared.push("RUST_LOG".to_owned());
        declared.sort();
        let mut documented = readme_variables();
        documented.sort();
        let missing: Vec<&String> = declared
            .iter()
            .filter(|v| !documented.contains(v))
            .collect();
        let unknown: Vec<&String> = documented
            .iter()
            .filter(|v| !declared.contains(v))
            .collect();
        assert!(
            missing.is_empty(),
            "settings missing from the README: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "the README names no such setting: {unknown:?}"
        );
    }
}
