//! PostgreSQL: the connection pool, the embedded migrations, and (in the submodules) every
//! SQL statement the application runs, one file per table; also [`backup`] (logical backups
//! and their verified restore), [`local`] (the private cluster of a zero-setup first run) and
//! [`settings`] (where PostgreSQL is, and the pool's size).
//!
//! Nothing outside this module writes SQL. Functions here take the caller's `UserId` as a
//! required argument wherever user data is touched, and take `impl PgExecutor` so that the
//! caller decides whether they run alone or inside its transaction.

pub mod backup;
pub mod changes;
pub mod health;
pub mod local;
pub mod settings;
pub mod tasks;
pub mod users;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{
    ConnectOptions as _, Connection as _, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};

pub use settings::{DatabaseConfig, DatabaseSettings, LocalPostgres, Pooler};

/// What the request path needs of the database: the pool, what is known of its health, and
/// the users this process has already synced. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: PgPool,
    pub health: std::sync::Arc<health::Health>,
    pub synced: std::sync::Arc<users::SyncedUsers>,
}

/// The migrations in `migrations/`, embedded in the binary at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// A connection idle this long is pinged before use: long enough that a busy server never
/// pays for it, short enough that no managed PostgreSQL has closed it in silence.
const IDLE_PING: Duration = Duration::from_secs(30);

/// The service's connection settings: `DATABASE_URL` with the statement timeout, in the way
/// the configured pooler accepts. The pool and the health probe both connect with these.
pub fn service_options(config: &DatabaseConfig, statement_timeout: Duration) -> PgConnectOptions {
    let options = config.connect_options.clone().application_name("taskql");
    match config.pooler {
        // The server enforces the request time limit too: a statement still running after it
        // (the client has already been answered) is cancelled by PostgreSQL, not left to
        // finish. Sent in the startup packet, so it costs no round trip.
        Pooler::None => options.options([(
            "statement_timeout",
            statement_timeout_ms(statement_timeout).to_string(),
        )]),
        // A stock PgBouncer refuses startup parameters it does not know (`options` among
        // them): the timeout comes from `pooled_statement_timeout` instead, and
        // `extra_float_digits` is dropped (taskql stores no floating-point values).
        Pooler::Transaction => options.extra_float_digits(None),
    }
}

/// Opens the pool on [`service_options`]. Connections are made lazily, so this succeeds
/// while the database is down and `/readyz` reports it; the first query then waits at most
/// `acquire_timeout`.
pub fn connect(
    config: &DatabaseConfig,
    options: PgConnectOptions,
    health: std::sync::Arc<health::Health>,
) -> PgPool {
    PgPoolOptions::new()
        .max_connections(config.pool_size)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        // Serverless PostgreSQL (Neon) closes idle connections and suspends compute. A ping
        // before every checkout would catch that, at the price of a round trip per request;
        // instead only connections that could have been dropped are pinged: those idle long
        // enough for a server to close them, and those opened before the last time a
        // connection was seen lost (a restart kills them all). Idle ones are retired early.
        .test_before_acquire(false)
        .before_acquire(move |connection, meta| {
            let health = std::sync::Arc::clone(&health);
            Box::pin(async move {
                let opened = std::time::Instant::now().checked_sub(meta.age);
                if meta.idle_for < IDLE_PING && !health.lost_since(opened) {
                    return Ok(true);
                }
                Ok(connection.ping().await.is_ok())
            })
        })
        .idle_timeout(Some(Duration::from_secs(60)))
        .max_lifetime(Some(Duration::from_secs(30 * 60)))
        // sqlx reports how long each checkout waited, at debug level; the metrics turn it
        // into `taskql_db_pool_acquire_duration_seconds` (the log filter hides it).
        .acquire_time_level(log::LevelFilter::Debug)
        .connect_lazy_with(options)
}

/// PostgreSQL's `statement_timeout`: a second later than the request's own deadline, so that
/// the deadline (which answers the client properly) fires first.
fn statement_timeout_ms(request_timeout: Duration) -> u128 {
    (request_timeout + Duration::from_secs(1)).as_millis()
}

/// Behind a transaction pooler, the statement timeout becomes the service role's default in
/// its database, which PostgreSQL applies to every server connection the pooler opens from
/// then on. It is set over the direct connection (`DATABASE_LISTEN_URL`, the same role),
/// before this process sends anything through the pooler, and only when it is not already
/// right; a role may change its own defaults, so no privilege beyond logging in is needed.
/// Then one pooled read checks it: a server connection the pooler opened before the change
/// keeps its old setting until the pooler recycles it, which is worth a warning.
pub async fn pooled_statement_timeout(
    config: &DatabaseConfig,
    pool: &PgPool,
    request_timeout: Duration,
) -> anyhow::Result<()> {
    let wanted = i64::try_from(statement_timeout_ms(request_timeout)).unwrap_or(i64::MAX);
    let role = config.connect_options.get_username().to_owned();
    let mut direct = config
        .listen_options
        .connect()
        .await
        .context("could not connect to DATABASE_LISTEN_URL to set the statement timeout")?;
    let current: Option<String> = sqlx::query_scalar(
        "select split_part(setting, '=', 2)
         from pg_db_role_setting, unnest(setconfig) as setting
         where setdatabase = (select oid from pg_database where datname = current_database())
           and setrole = (select oid from pg_roles where rolname = $1)
           and setting like 'statement_timeout=%'",
    )
    .bind(&role)
    .fetch_optional(&mut direct)
    .await
    .context("could not read the service role's settings")?;
    if current.as_deref() != Some(wanted.to_string().as_str()) {
        // The number is ours; the names are quoted by format's %I on the server.
        let statement = format!(
            "do $$ begin execute format('alter role %I in database %I set statement_timeout = {wanted}', \
             {}, current_database()); end $$",
            quote_literal(&role)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut direct)
            .await
            .context(
                "could not set the service role's statement_timeout (DATABASE_POOLER=transaction; \
                 DATABASE_LISTEN_URL must use the same role as DATABASE_URL)",
            )?;
        tracing::info!(
            statement_timeout_ms = wanted,
            role = %role,
            "set the service role's statement_timeout for pooled connections"
        );
    }
    direct.close().await.ok();
    let pooled: Option<i64> = sqlx::query_scalar(
        "select setting::bigint from pg_settings where name = 'statement_timeout'",
    )
    .fetch_one(pool)
    .await
    .context("could not read statement_timeout through the pooler")?;
    if pooled != Some(wanted) {
        tracing::warn!(
            statement_timeout_ms = ?pooled,
            wanted_ms = wanted,
            "a pooled server connection from before the setting has another statement_timeout; \
             it applies once the pooler reconnects (PgBouncer: RECONNECT, or server_lifetime)"
        );
    }
    Ok(())
}

/// A SQL string literal, the way PostgreSQL's quote_literal makes one.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Makes sure the target database exists: connects to it directly, and only when PostgreSQL
/// answers that it does not exist (and `DATABASE_CREATE` allows it) connects to the `postgres`
/// maintenance database with the migration role's credentials to create it. A role that may
/// not create databases, or see `postgres`, is never asked to while its database is there.
///
/// A database taskql creates is open to its owner and the service role alone: PostgreSQL
/// grants `CONNECT` to every role by default, and a role that can connect can `LISTEN` to the
/// change announcements.
pub async fn ensure_database(database: &DatabaseConfig) -> anyhow::Result<()> {
    let options = &database.migration_options;
    let create = database.create_missing;
    let name = options
        .get_database()
        .or_else(|| options.get_username().into())
        .unwrap_or("postgres")
        .to_owned();
    match options.connect().await {
        Ok(connection) => {
            connection.close().await.ok();
            return Ok(());
        }
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(UNDEFINED_DATABASE) => {}
        Err(err) => {
            return Err(err).context("could not connect to PostgreSQL");
        }
    }
    if !create {
        anyhow::bail!(
            "the database {name:?} does not exist; create it (or run taskql migrate with an \
             owner's DATABASE_MIGRATION_URL and DATABASE_CREATE=true)"
        );
    }
    let mut admin: PgConnection = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| {
            format!(
                "the database {name:?} does not exist, and the postgres database could not be \
                 reached to create it"
            )
        })?;
    // Identifiers cannot be bound as parameters; quote it the way PostgreSQL's quote_ident
    // does, doubling any embedded quote.
    let quoted = quote_identifier(&name);
    let statement = format!("create database {quoted}");
    match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            let mut grants = format!("revoke all on database {quoted} from public");
            let service = database.connect_options.get_username();
            if service != options.get_username() {
                grants.push_str(&format!(
                    "; grant connect on database {quoted} to {}",
                    quote_identifier(service)
                ));
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
                .execute(&mut admin)
                .await
                .with_context(|| {
                    format!("created the database {name:?} but could not restrict who may connect")
                })?;
        }
        // Two processes starting at once may both try; the loser's error is harmless.
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P04") => {}
        Err(err) => {
            return Err(err).with_context(|| {
                format!("the database {name:?} does not exist and could not be created")
            });
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLSTATE 3D000: the database named in the connection does not exist.
const UNDEFINED_DATABASE: &str = "3D000";

/// Applies pending migrations over a direct connection of their own (the owner's, from
/// `DATABASE_MIGRATION_URL`): sqlx takes a session advisory lock, which a transaction pooler
/// would lose between statements. Concurrent starts are safe, and applying an
/// already-applied set is a no-op.
pub async fn migrate(options: &PgConnectOptions) -> anyhow::Result<()> {
    let mut connection = options
        .clone()
        .application_name("taskql-migrate")
        .connect()
        .await
        .context("could not connect to PostgreSQL to apply migrations")?;
    MIGRATOR
        .run(&mut connection)
        .await
        .context("could not apply the database migrations")?;
    connection.close().await.ok();
    Ok(())
}

/// Why the database is not ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Unreachable,
    MigrationsPending,
}

/// Checks that the database answers and that every embedded migration has been applied.
pub async fn readiness(pool: &PgPool) -> Result<(), NotReady> {
    let latest_embedded = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    // A runtime query on purpose: the table may not exist yet, which is one of the answers.
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await
            .map_err(|err| match err {
                // The table is missing: reachable, but never migrated.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                    NotReady::MigrationsPending
                }
                _ => NotReady::Unreachable,
            })?;
    if applied.unwrap_or(0) < latest_embedded {
        return Err(NotReady::MigrationsPending);
    }
    Ok(())
}
