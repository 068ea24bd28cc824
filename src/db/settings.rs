//! The database's settings: where PostgreSQL is (for the service, for migrations, for the
//! listener), how many connections to keep, and what start-up may do to it.

use std::{path::PathBuf, str::FromStr, time::Duration};

use clap::Args;
use sqlx::postgres::PgConnectOptions;

use crate::config::{ConfigError, boolean, parse_duration, whole};

/// The default database, chosen so `cargo run` works against a local PostgreSQL with no setup.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/taskql";

/// The database's settings, as read (see [`DatabaseConfig`] for what they become).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// PostgreSQL the service uses (may be a pooled endpoint); add ?sslmode=require for TLS.
    /// Default: postgres://postgres@127.0.0.1:5432/taskql, or a private cluster (LOCAL_POSTGRES).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Direct connection, as the schema's owner, for migrations and for creating a missing
    /// database (default: DATABASE_URL).
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    pub database_migration_url: Option<String>,
    /// Direct (session) connection the subscription listener uses (default: DATABASE_URL);
    /// required with DATABASE_POOLER=transaction.
    #[arg(long, env = "DATABASE_LISTEN_URL", hide_env_values = true)]
    pub database_listen_url: Option<String>,
    /// What DATABASE_URL goes through: none, or transaction (PgBouncer, Neon's -pooler host).
    #[arg(long, env = "DATABASE_POOLER", default_value = "none", value_parser = pooler)]
    pub database_pooler: Pooler,
    /// Whether serve applies pending migrations before listening (false when `taskql migrate`
    /// is the release step).
    #[arg(long, env = "MIGRATE_ON_START", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Whether a database PostgreSQL reports missing is created (through the postgres
    /// database, with the migration URL's role).
    #[arg(long, env = "DATABASE_CREATE", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub database_create: bool,
    /// With DATABASE_URL unset: auto starts a private cluster only when nothing usable answers
    /// at the default address, always always does, never never.
    #[arg(long, env = "LOCAL_POSTGRES", default_value = "auto", value_parser = local)]
    pub local_postgres: LocalPostgres,
    /// The private cluster's data directory (default: ~/.local/share/taskql/postgres, or
    /// /var/lib/taskql/postgres as root).
    #[arg(long, env = "LOCAL_POSTGRES_DIR")]
    pub local_postgres_dir: Option<PathBuf>,
    /// Most connections this process opens.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value = "10", value_parser = whole::<u32, 1, 1000>)]
    pub database_pool_size: u32,
    /// How long a request waits for a free connection before it is answered 503.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub database_acquire_timeout: Duration,
}

/// How to reach PostgreSQL and how many connections to keep.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Parsed from `DATABASE_URL`; `PgConnectOptions`'s `Debug` never prints the password.
    /// The service's own connections: a least-privilege role, possibly through a pooler.
    pub connect_options: PgConnectOptions,
    /// `DATABASE_MIGRATION_URL` (default: `DATABASE_URL`): the direct connection, as the
    /// schema's owner, that migrations (and creating a missing database) use.
    pub migration_options: PgConnectOptions,
    /// `DATABASE_LISTEN_URL` (default: `DATABASE_URL`): the session connection that listens
    /// for task changes; `LISTEN` needs a direct connection, not a transaction pooler.
    pub listen_options: PgConnectOptions,
    /// Whether `DATABASE_URL` was left unset, so that a private cluster may stand in for a
    /// PostgreSQL that is not running (see `db::local`).
    pub url_is_default: bool,
    /// `LOCAL_POSTGRES`: when a private cluster is started instead of the default database.
    pub local: LocalPostgres,
    /// `LOCAL_POSTGRES_DIR`: where the private cluster keeps its data between runs.
    pub local_dir: PathBuf,
    /// `MIGRATE_ON_START`: whether `serve` applies pending migrations before it listens.
    pub migrate_on_start: bool,
    /// `DATABASE_CREATE`: whether a database PostgreSQL reports missing is created.
    pub create_missing: bool,
    /// `DATABASE_POOLER`: what sits between taskql and PostgreSQL on `DATABASE_URL`.
    pub pooler: Pooler,
    /// `DATABASE_POOL_SIZE`: the most connections this process opens.
    pub pool_size: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT`: how long a request waits for a free connection.
    pub acquire_timeout: Duration,
}

/// What `DATABASE_URL` connects through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// PostgreSQL itself, or a session-mode pooler: settings travel in the startup packet.
    None,
    /// A transaction-mode pooler (PgBouncer, Neon's `-pooler` endpoint): each transaction may
    /// run on another server connection, and startup `options` are refused.
    Transaction,
}

/// When `serve` runs a private PostgreSQL cluster of its own (`db::local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPostgres {
    /// Only when `DATABASE_URL` is unset and nothing usable answers at the default address.
    Auto,
    /// Whenever `DATABASE_URL` is unset (what the zero-setup test forces).
    Always,
    /// Never: a missing database is an error.
    Never,
}

fn pooler(raw: &str) -> Result<Pooler, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "none" | "session" => Ok(Pooler::None),
        "transaction" | "pgbouncer" => Ok(Pooler::Transaction),
        _ => Err("expected none or transaction".to_owned()),
    }
}

fn local(raw: &str) -> Result<LocalPostgres, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(LocalPostgres::Auto),
        "always" => Ok(LocalPostgres::Always),
        "never" => Ok(LocalPostgres::Never),
        _ => Err("expected auto, always or never".to_owned()),
    }
}

impl DatabaseSettings {
    /// The database configuration these settings describe.
    pub fn into_config(self) -> Result<DatabaseConfig, ConfigError> {
        let url_is_default = self.database_url.is_none();
        let connect_options = parse_url(
            "DATABASE_URL",
            self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL),
        )?;
        let other = |var: &str, url: Option<&str>| match url {
            Some(url) => parse_url(var, url),
            None => Ok(connect_options.clone()),
        };
        let migration_options = other(
            "DATABASE_MIGRATION_URL",
            self.database_migration_url.as_deref(),
        )?;
        let listen_options = other("DATABASE_LISTEN_URL", self.database_listen_url.as_deref())?;
        if self.database_pooler == Pooler::Transaction && self.database_listen_url.is_none() {
            // LISTEN through a transaction pooler registers on a server connection that is
            // handed to someone else at once: subscriptions would hear nothing, silently.
            return Err(ConfigError::new(
                "DATABASE_LISTEN_URL",
                "must be set with DATABASE_POOLER=transaction: subscriptions listen on a \
                 session of their own, so give the direct (not pooled) URL",
            ));
        }
        Ok(DatabaseConfig {
            connect_options,
            migration_options,
            listen_options,
            url_is_default,
            local: self.local_postgres,
            local_dir: self
                .local_postgres_dir
                .unwrap_or_else(super::local::default_dir),
            migrate_on_start: self.migrate_on_start,
            create_missing: self.database_create,
            pooler: self.database_pooler,
            pool_size: self.database_pool_size,
            acquire_timeout: self.database_acquire_timeout,
        })
    }
}

/// A PostgreSQL URL. The URL may carry a password, so no message repeats it.
fn parse_url(var: &str, url: &str) -> Result<PgConnectOptions, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::new(
            var,
            format!("{why} (expected postgres://user:password@host:port/database)"),
        )
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("not a PostgreSQL URL"));
    }
    PgConnectOptions::from_str(url).map_err(|_| invalid("could not be parsed"))
}
