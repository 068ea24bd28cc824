//! Announcements: how the instance that committed a change tells the others, after the
//! commit and outside the writing transaction.
//!
//! A write hands its user and new version here and returns; nothing in the write waits for
//! the announcement. A task of its own sends what has gathered as one `NOTIFY` (several when
//! over PostgreSQL's 8000-byte limit), each in a transaction of its own, then waits at least
//! [`INTERVAL`] before the next, so a busy instance sends a few hundred small notifications a
//! second at most, however many writes it commits. Entries of one user coalesce to the latest
//! version: a reader fetches everything up to it anyway.
//!
//! An announcement may still be lost (the process dies between a commit and its send, or the
//! database is unreachable and the retries give up). That costs latency, not events: the
//! user's next announcement, or the listeners' periodic check of their users' versions, makes
//! the readers fetch from where they stand, which includes what was missed.
//!
//! Users are named by a digest of their id ([`feed_key`]), not the id: payloads stay small,
//! and a role that may `LISTEN` learns only that some user changed something.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{self, changes::Stamp};

/// The least time between two sends of one instance.
pub const INTERVAL: Duration = Duration::from_millis(5);
/// The largest payload sent: NOTIFY refuses 8000 bytes and more.
const MAX_PAYLOAD: usize = 7900;
/// How long a failed send waits before the next try, at first and at most.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// The name of a user's feed in announcements: 12 bytes of a SHA-256 of the id, in base64url.
pub fn feed_key(user: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"taskql feed\0");
    hasher.update(user.as_bytes());
    URL_SAFE_NO_PAD.encode(&hasher.finalize()[..12])
}

/// One notification's text: the feeds that advanced, and the users deleted.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// `[feed key, epoch, version]` per user whose feed advanced.
    #[serde(default, rename = "c", skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<(String, i64, i64)>,
    /// Users deleted (`deleteMe`).
    #[serde(default, rename = "g", skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<Gone>,
}

/// A user's deletion: where their feed ended, and the tasks that went with them (`None`
/// when there were too many to name: subscribers resync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gone {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "e")]
    pub epoch: i64,
    #[serde(rename = "v")]
    pub version: i64,
    #[serde(rename = "t")]
    pub tasks: Option<Vec<Uuid>>,
}

impl Payload {
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The payloads that carry `self`, each under [`MAX_PAYLOAD`] bytes.
    fn split(self) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = Payload::default();
        let mut size = 2;
        let mut push = |current: &mut Payload, size: &mut usize, entry: usize| {
            if *size + entry > MAX_PAYLOAD && *current != Payload::default() {
                out.push(std::mem::take(current).text());
                *size = 2;
            }
            *size += entry;
        };
        for gone in self.gone {
            let entry = serde_json::to_string(&gone).map_or(MAX_PAYLOAD, |text| text.len() + 8);
            push(&mut current, &mut size, entry);
            current.gone.push(gone);
        }
        for changed in self.changed {
            let entry = changed.0.len() + 48;
            push(&mut current, &mut size, entry);
            current.changed.push(changed);
        }
        if current != Payload::default() {
            out.push(current.text());
        }
        out
    }

    fn text(&self) -> String {
        // Plain data of strings and numbers: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What waits to be announced.
#[derive(Debug, Default)]
struct Pending {
    changed: HashMap<String, Stamp>,
    gone: Vec<Gone>,
}

/// The instance's announcer: writes hand it their stamps; [`Announcer::run`] sends them.
#[derive(Debug, Default)]
pub struct Announcer {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Announcer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every change under this lock is one insert or take: a panic leaves it consistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The feed `key` advanced to `stamp` (committed).
    pub fn changed(&self, key: String, stamp: Stamp) {
        {
            let mut pending = self.lock();
            let entry = pending.changed.entry(key).or_insert(stamp);
            // A newer epoch replaces an older one's entry; within one, the higher version.
            if entry.epoch != stamp.epoch || entry.version < stamp.version {
                *entry = stamp;
            }
        }
        self.wake.notify_one();
    }

    /// A user was deleted (committed).
    pub fn gone(&self, gone: Gone) {
        self.lock().gone.push(gone);
        self.wake.notify_one();
    }

    /// Everything pending, as payloads, leaving nothing pending.
    fn take(&self) -> Vec<String> {
        let Pending { changed, gone } = std::mem::take(&mut *self.lock());
        Payload {
            changed: changed
                .into_iter()
                .map(|(key, stamp)| (key, stamp.epoch, stamp.version))
                .collect(),
            gone,
        }
        .split()
    }

    /// Sends what writes hand over until `shutdown`, then once more what is left.
    pub async fn run(&self, pool: PgPool, shutdown: CancellationToken) {
        let mut retry = FIRST_RETRY;
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                () = self.wake.notified() => false,
            };
            let payloads = self.take();
            let mut failed = None;
            for (i, payload) in payloads.iter().enumerate() {
                if let Err(err) = db::changes::notify(&pool, payload).await {
                    failed = Some((i, err));
                    break;
                }
            }
            if stopping {
                return;
            }
            match failed {
                None => {
                    retry = FIRST_RETRY;
                    tokio::time::sleep(INTERVAL).await;
                }
                Some((unsent, err)) => {
                    // Kept for the next try; listeners that never hear them heal by polling.
                    tracing::warn!(error = %err, retry_ms = retry.as_millis(), "could not announce committed changes");
                    for payload in &payloads[unsent..] {
                        self.restore(payload);
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Puts an unsent payload back, newer entries winning.
    fn restore(&self, payload: &str) {
        let Ok(payload) = Payload::parse(payload) else {
            return;
        };
        for (key, epoch, version) in payload.changed {
            self.changed(key, Stamp { epoch, version });
        }
        for gone in payload.gone {
            self.gone(gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_stable_and_distinct() {
        let alice = feed_key("alice");
        assert_eq!(alice.len(), 16);
        assert_eq!(alice, feed_key("alice"));
        assert_ne!(alice, feed_key("alicf"));
        assert!(!alice.contains("alice"));
    }

    #[test]
    fn entries_of_one_user_coalesce_to_the_latest() {
        let announcer = Announcer::default();
        announcer.changed(
            "k".to_owned(),
            Stamp {
                epoch: 1,
                version: 5,
            },
        );
        announcer.changed(
            "k".to_owned(),
            Stamp {
                epoch: 1,
                version: 3,
            },
        );
        announcer.changed(
            "k".to_owned(),
            Stamp {
                epoch: 1,
                version: 9,
            },
        );
        announcer.changed(
            "j".to_owned(),
            Stamp {
                epoch: 1,
                version: 2,
            },
        );
        let payloads = announcer.take();
        assert_eq!(payloads.len(), 1);
        let mut payload = Payload::parse(&payloads[0]).expect("parses");
        payload.changed.sort();
        assert_eq!(
            payload.changed,
            vec![("j".to_owned(), 1, 2), ("k".to_owned(), 1, 9)]
        );
        assert!(announcer.take().is_empty(), "nothing left pending");

        // A new epoch (the user was deleted and came back) replaces the old entry.
        announcer.changed(
            "k".to_owned(),
            Stamp {
                epoch: 1,
                version: 9,
            },
        );
        announcer.changed(
            "k".to_owned(),
            Stamp {
                epoch: 2,
                version: 1,
            },
        );
        let payload = Payload::parse(&announcer.take()[0]).expect("parses");
        assert_eq!(payload.changed, vec![("k".to_owned(), 2, 1)]);
    }

    #[test]
    fn large_batches_are_split_under_the_notify_limit() {
        let announcer = Announcer::default();
        for i in 0..1000 {
            announcer.changed(
                feed_key(&format!("user{i}")),
                Stamp {
                    epoch: i64::MAX,
                    version: i64::MAX - i,
                },
            );
        }
        announcer.gone(Gone {
            key: feed_key("gone"),
            epoch: 7,
            version: 100,
            tasks: Some((0..100).map(|_| Uuid::now_v7()).collect()),
        });
        let payloads = announcer.take();
        assert!(payloads.len() > 1);
        let mut changed = 0;
        let mut gone = 0;
        for text in &payloads {
            assert!(text.len() <= MAX_PAYLOAD, "{} bytes", text.len());
            let payload = Payload::parse(text).expect("parses");
            changed += payload.changed.len();
            gone += payload.gone.len();
        }
        assert_eq!((changed, gone), (1000, 1));
    }
}
