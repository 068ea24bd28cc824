//! The one connection per instance that listens for change announcements, and what happens
//! when it is lost.
//!
//! Notifications sent while no connection listens are gone for good, so a lost connection
//! means events may have been missed. The loop reconnects (backing off while PostgreSQL is
//! down) and, once listening again, tells every subscriber to resync: a client then reads
//! afresh instead of trusting a view with holes in it.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::db;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Listens until `shutdown`, dispatching every announcement to `hub`.
pub async fn run(options: PgConnectOptions, hub: Arc<Hub>, shutdown: CancellationToken) {
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
            tracing::info!("listening for task changes again; telling subscribers to resync");
            hub.resync_all();
        } else {
            tracing::debug!("listening for task changes");
        }
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => hub.dispatch(notification.payload()).await,
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
