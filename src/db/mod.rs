//! PostgreSQL: the connection pool, the embedded migrations, and (in the submodules) every
//! SQL statement the application runs, one file per table.
//!
//! Nothing outside this module writes SQL. Functions here take the caller's `UserId` as a
//! required argument wherever user data is touched, and take `impl PgExecutor` so that the
//! caller decides whether they run alone or inside its transaction.

pub mod changes;
pub mod health;
pub mod tasks;
pub mod users;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{
    ConnectOptions as _, Connection as _, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
};

use crate::config::DatabaseConfig;

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

/// Opens the pool. Connections are made lazily, so this succeeds while the database is down
/// and `/readyz` reports it; the first query then waits at most `acquire_timeout`.
pub fn connect(
    config: &DatabaseConfig,
    statement_timeout: Duration,
    health: std::sync::Arc<health::Health>,
) -> PgPool {
    let options = config
        .connect_options
        .clone()
        // The server enforces the request time limit too: a statement still running after it
        // (the client has already been answered) is cancelled by PostgreSQL, not left to
        // finish. A second later than the request's own deadline, so that the deadline (which
        // answers the client properly) fires first.
        .options([(
            "statement_timeout",
            (statement_timeout + Duration::from_secs(1))
                .as_millis()
                .to_string(),
        )])
        .application_name("taskql");
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
        .connect_lazy_with(options)
}

/// Creates the target database when it does not exist yet, connecting to the `postgres`
/// maintenance database with the same credentials.
pub async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options
        .get_database()
        .or_else(|| options.get_username().into())
        .unwrap_or("postgres")
        .to_owned();
    let mut admin: PgConnection = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("could not connect to PostgreSQL to check that the database exists")?;
    let exists = sqlx::query_scalar!(
        r#"select exists (select from pg_database where datname = $1) as "exists!""#,
        name
    )
    .fetch_one(&mut admin)
    .await
    .context("could not check whether the database exists")?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote it the way PostgreSQL's
        // quote_ident does, doubling any embedded quote.
        let statement = format!("create database \"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            // Two processes starting at once may both try; the loser's error is harmless.
            Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P04") => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("the database {name:?} does not exist and could not be created")
                });
            }
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// Applies pending migrations. sqlx takes an advisory lock, so concurrent starts are safe,
/// and applying an already-applied set is a no-op.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("could not apply the database migrations")
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
