//! The one connection per instance that listens for announcements, and the periodic check
//! that makes up for the ones it never hears.
//!
//! Notifications sent while no connection listens are gone for good. Nothing is lost with
//! them: the feeds read by version, so once the connection is back every feed reads on from
//! its head ([`Hub::heal_all`]) and its subscribers get exactly what they missed. The check
//! every `SYNC_POLL` ([`Hub::check`]) compares the feeds' heads with their users' versions in
//! the database, which heals an announcement lost with the process that was to send it and
//! picks up writes made outside taskql.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::db;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Listens until `shutdown`, handing every announcement to `hub`, and checks the feeds every
/// `check_every` (never, if zero).
pub async fn run(
    options: PgConnectOptions,
    hub: Arc<Hub>,
    check_every: Duration,
    shutdown: CancellationToken,
) {
    let mut check = (!check_every.is_zero()).then(|| {
        let mut interval = tokio::time::interval(check_every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut missed = false;
    let mut retry = FIRST_RETRY;
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = db::changes::listen(&options) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, retry_ms = retry.as_millis(), "could not listen for task changes");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(LAST_RETRY);
                missed = true;
                continue;
            }
        };
        retry = FIRST_RETRY;
        if missed {
            tracing::info!(
                "listening for task changes again; subscribers catch up from where they were"
            );
            hub.heal_all();
        } else {
            tracing::debug!("listening for task changes");
        }
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tick(&mut check) => {
                    if let Err(err) = hub.check().await {
                        tracing::warn!(error = %err, "could not check the feeds' versions");
                    }
                    continue;
                }
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => hub.heard(notification.payload()),
                // `Ok(None)`: the connection was lost; an error: it failed some other way.
                // Either way notifications may have been lost with it.
                Ok(None) => {
                    tracing::warn!("lost the connection listening for task changes");
                    missed = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the connection listening for task changes failed");
                    missed = true;
                    break;
                }
            }
        }
    }
}

/// The next tick of `interval`, or never.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
