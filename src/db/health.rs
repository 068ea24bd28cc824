//! Whether PostgreSQL is reachable, as last observed, so that requests fail fast during an
//! outage instead of each waiting out the pool's acquire timeout.
//!
//! Nothing polls while all is well (a constant ping would keep a serverless database such as
//! Neon from ever suspending). When a request sees its connection fail, the database is
//! marked down and one background probe tries a direct connection every 200 ms; requests that
//! need the database are refused at once with `SERVICE_UNAVAILABLE` meanwhile, and the first
//! probe that connects marks it up again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{ConnectOptions as _, Connection as _, postgres::PgConnectOptions};

/// How often the probe retries while the database is down: service resumes within this of
/// PostgreSQL answering again.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The most one probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Health {
    options: PgConnectOptions,
    down: AtomicBool,
    probing: AtomicBool,
    /// When a connection was last seen lost: connections opened before it are suspect.
    last_loss: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(options: PgConnectOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            last_loss: std::sync::Mutex::new(None),
        })
    }

    /// Whether the database was last seen unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Whether a connection was lost after `opened` (`None`: opened longer ago than the
    /// clock can tell), so that one opened then should be checked before use.
    pub fn lost_since(&self, opened: Option<Instant>) -> bool {
        let last = *self
            .last_loss
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (last, opened) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(lost), Some(opened)) => opened <= lost,
        }
    }

    /// A connection failed: mark the database down and start the probe.
    pub fn connection_lost(self: &Arc<Self>) {
        *self
            .last_loss
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.mark_down();
        self.start_probe(PROBE_INTERVAL);
    }

    /// Requests could not get a connection in time, which is either load or an outage: probe
    /// at once, and mark the database down only if the probe cannot connect.
    pub fn suspect(self: &Arc<Self>) {
        self.start_probe(Duration::ZERO);
    }

    fn mark_down(&self) {
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!("lost the database; failing requests fast until it answers");
        }
    }

    /// Runs the probe loop unless one is running: until a connection succeeds, the database
    /// is down.
    fn start_probe(self: &Arc<Self>, first_wait: Duration) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = Arc::clone(self);
        tokio::spawn(async move {
            let mut wait = first_wait;
            loop {
                tokio::time::sleep(wait).await;
                if health.probe().await {
                    health.reachable();
                    health.probing.store(false, Ordering::Release);
                    return;
                }
                health.mark_down();
                wait = PROBE_INTERVAL;
            }
        });
    }

    /// The database answered (a probe, or a readiness check).
    pub fn reachable(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("the database answers again");
        }
    }

    async fn probe(&self) -> bool {
        match tokio::time::timeout(PROBE_TIMEOUT, self.options.connect()).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                true
            }
            _ => false,
        }
    }
}
