//! Start-up and shutdown: everything `taskql serve` does, packaged so that tests start the
//! very same server (on port 0, against their own database).

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    auth::AuthMode,
    auth::Verifier,
    db::{self, Database, Pooler, health::Health, users::SyncedUsers},
    graphql::{
        self,
        pipeline::{Executor, apq::MemoryStore},
        schema::cursor::CursorKeys,
    },
    http::{
        self, AppState, Shared,
        admission::{Holdings, InFlight},
        rate_limit::RateLimit,
        ws::Sockets,
    },
    live::{self, Hub},
    settings::Config,
};

/// How many users' sync state one process remembers (a few dozen bytes each).
const SYNCED_USERS: usize = 100_000;

/// A migrated, bound, ready-to-run server.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    /// Cancelled at shutdown: WebSocket connections close, the change listener stops.
    shutdown: tokio_util::sync::CancellationToken,
    sockets: Sockets,
    /// The change feed's background tasks: the listener and the tombstone purge.
    changes: Vec<tokio::task::JoinHandle<()>>,
    /// The announcer, stopped last: requests still finishing at shutdown commit writes that
    /// other instances must hear of.
    announcer: (
        tokio::task::JoinHandle<()>,
        tokio_util::sync::CancellationToken,
    ),
    /// How long open WebSocket connections get to finish their in-flight operations.
    drain: std::time::Duration,
    /// `METRICS_ADDR`'s listener, when `/metrics` is served apart.
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Creates the database if needed and applies migrations (unless `MIGRATE_ON_START` is
    /// off, both as the migration role), prepares token verification and binds the
    /// listener. Fails with a message an operator can act on.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let database = &config.database;
        if database.migrate_on_start {
            db::ensure_database(database).await?;
            db::migrate(&database.migration_options).await?;
        } else {
            tracing::info!(
                "MIGRATE_ON_START=false: not applying migrations (run `taskql migrate` as the \
                 release step); /readyz answers 503 while any are pending"
            );
        }
        let options = db::service_options(database, config.http.request_timeout);
        let health = Health::new(options.clone());
        let pool = db::connect(database, options, Arc::clone(&health));
        if database.pooler == Pooler::Transaction {
            db::pooled_statement_timeout(database, &pool, config.http.request_timeout).await?;
        }

        let verifier = Verifier::from_config(&config.auth)
            .await
            .context("could not set up token verification")?;
        if verifier.development_secret().is_some() {
            tracing::warn!(
                "DEVELOPMENT MODE: tokens are checked against a local secret file, not Better \
                 Auth. Set AUTH_JWKS_URL (or AUTH_JWT_SECRET) before exposing this server."
            );
        }
        let cursor_keys = cursor_keys(&config, &verifier)?;
        let hub = Hub::new(pool.clone(), config.live.per_user, config.live.event_buffer);
        let shutdown = tokio_util::sync::CancellationToken::new();
        // Listening starts before the port opens, so no announcement of a commit made after
        // a subscription was acknowledged can be missed (a missed one would only be late).
        let changes = vec![
            tokio::spawn(live::listener::run(
                config.database.listen_options.clone(),
                Arc::clone(&hub),
                config.live.sync_poll,
                shutdown.clone(),
            )),
            tokio::spawn(live::retention::run(
                pool.clone(),
                config.live.sync_retention,
                shutdown.clone(),
            )),
        ];
        let stop_announcing = tokio_util::sync::CancellationToken::new();
        let announcer = (
            tokio::spawn(Arc::clone(&hub).announce(stop_announcing.clone())),
            stop_announcing,
        );
        let schema = graphql::build_schema(pool.clone(), cursor_keys, hub, &config.graphql);
        let mut executor = Executor::new(
            schema,
            config.graphql.clone(),
            Arc::new(MemoryStore::new(config.graphql.apq_cache_size)),
            Arc::clone(&health),
        )?;
        let trusted = executor.trust_configured().await?;
        if trusted > 0 {
            tracing::info!(
                documents = trusted,
                only = config.graphql.trusted_only,
                "trusted documents planned and validated"
            );
        }
        let executor = Arc::new(executor);
        let listener = TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("could not listen on {}", config.http.addr))?;
        let metrics = crate::metrics::get();
        metrics.set_operation_names(&config.metrics.operation_names);
        metrics.watch_pool(&pool, config.database.pool_size);
        let metrics_listener = match config.metrics.addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("could not listen on METRICS_ADDR {addr}"))?,
            ),
            None => None,
        };
        let sockets = Sockets::new(&config.http.websocket, shutdown.clone());
        let drain = config.http.request_timeout + std::time::Duration::from_secs(2);
        let state = AppState::new(Shared {
            rate_limit: RateLimit::new(&config.http.rate_limit),
            in_flight: InFlight::new(config.http.rate_limit.max_in_flight),
            downloads: Holdings::new(1),
            sockets: sockets.clone(),
            metrics_here: config.metrics.addr.is_none(),
            auth: config.auth.clone(),
            config: config.http,
            db: Database {
                pool: pool.clone(),
                health,
                synced: Arc::new(SyncedUsers::new(SYNCED_USERS)),
            },
            executor,
            verifier,
        });
        Ok(Self {
            listener,
            router: http::router(state),
            pool,
            shutdown,
            sockets,
            changes,
            announcer,
            drain,
            metrics_listener,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets in-flight
    /// requests finish (each is bounded by the request timeout), closes WebSocket connections
    /// with 1001 once their in-flight operations are answered, and closes the pool.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "listening");
        let metrics_server = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics");
            }
            let stop = self.shutdown.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, http::metrics_router())
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "the metrics server failed");
                }
            })
        });
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Responses are small and written in pieces; without TCP_NODELAY, Nagle's algorithm
        // holds the last piece until the client's delayed ACK (up to 40 ms on Linux).
        let listener = self.listener.tap_io(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let token = self.shutdown.clone();
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutdown signal received; finishing in-flight requests");
                token.cancel();
            })
            .await
            .context("the HTTP server failed")?;
        // Upgraded connections are no longer the HTTP server's: wait for them here.
        self.shutdown.cancel();
        self.sockets.tracker.close();
        if tokio::time::timeout(self.drain, self.sockets.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "WebSocket connections still open after the drain period; dropping them"
            );
        }
        for task in self.changes {
            let _ = task.await;
        }
        let (announcer, stop_announcing) = self.announcer;
        stop_announcing.cancel();
        let _ = announcer.await;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        self.pool.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The keys pagination cursors are sealed with: `CURSOR_SECRET` when set; otherwise derived
/// from the token secret every instance already shares (secret and development mode); in
/// JWKS mode without it, a key of this process alone, which a multi-instance deployment must
/// not rely on.
fn cursor_keys(config: &Config, verifier: &Verifier) -> anyhow::Result<CursorKeys> {
    let secrets = &config.graphql.cursor_secrets;
    if !secrets.is_empty() {
        return CursorKeys::from_secrets(secrets.iter().map(|s| s.expose().as_bytes()));
    }
    let shared = match &config.auth.mode {
        AuthMode::Secret { secret } => Some(secret),
        AuthMode::Development { .. } => verifier.development_secret(),
        AuthMode::Jwks { .. } => None,
    };
    match shared {
        Some(secret) => CursorKeys::from_secrets([secret.expose().as_bytes()]),
        None => {
            tracing::warn!(
                "CURSOR_SECRET is not set: pagination cursors are sealed with a key of this \
                 process and stop working after a restart or on another instance. Set \
                 CURSOR_SECRET (32+ random bytes, the same on every instance)."
            );
            CursorKeys::random()
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
