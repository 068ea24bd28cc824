//! Tombstones live for `SYNC_RETENTION`: long enough for a client that was away to learn of
//! every deletion, short enough that they do not pile up. This background task removes older
//! ones in small batches (each a short transaction, so writers of the same users wait for
//! it at most briefly), and advances each user's `sync_floor` past what it removed, so that a
//! client asking from before it is told to resync instead of missing a deletion.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db;

/// Tombstones one statement removes at most.
const BATCH: i64 = 500;
/// The longest pause between purges.
const MOST_EVERY: Duration = Duration::from_secs(60);
/// The shortest: a small retention (as in tests) is kept to within about this.
const LEAST_EVERY: Duration = Duration::from_millis(100);

/// How often the purge runs for a retention: a tenth of it, within the bounds above.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(LEAST_EVERY, MOST_EVERY)
}

/// Purges expired tombstones until `shutdown`.
pub async fn run(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    let every = interval(retention);
    loop {
        // Batch after batch while there is a backlog; then rest.
        loop {
            match db::changes::purge(&pool, retention, BATCH).await {
                Ok(purged) if purged >= u64::try_from(BATCH).unwrap_or(u64::MAX) => {
                    tracing::debug!(purged, "purged expired tombstones; more remain");
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                Ok(purged) => {
                    if purged > 0 {
                        tracing::debug!(purged, "purged expired tombstones");
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not purge expired tombstones");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_runs_often_enough_for_its_retention() {
        assert_eq!(interval(Duration::from_secs(30 * 24 * 3600)), MOST_EVERY);
        assert_eq!(interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_millis(1)), LEAST_EVERY);
    }
}
