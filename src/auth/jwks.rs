//! The JWKS key cache: the issuer's public keys, kept fresh without hammering the issuer.
//!
//! - Keys are fetched in the background at start-up; start-up never waits for the issuer.
//! - A background task refetches every `refresh` interval, so rotated keys appear and
//!   retired ones disappear without a restart.
//! - A token naming a `kid` we do not hold triggers a refetch at once (that is how a new key
//!   is first seen), but at most once per `min_refetch`: a flood of forged kids costs the
//!   issuer one request per interval, however many requests carry them. Scheduled refreshes
//!   do not use up that allowance.
//! - Concurrent lookups share one fetch: fetches are serialised by a mutex, and a waiter
//!   re-checks the keys after the fetch it waited for before deciding to fetch itself.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context as _;
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};

use super::{
    AuthError,
    keys::{Alg, Jwk, VerifyKey},
};

/// The most JWKS bytes read; a JWKS is a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The keys of the last successful fetch, by `kid`.
type KeySet = HashMap<String, Arc<VerifyKey>>;

pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching (so concurrent lookups share one fetch); records when the last
    /// fetch *caused by an unknown kid* started. Scheduled refreshes do not count against
    /// that budget: a rotation just after one must not be refused for a whole interval.
    last_on_demand: Mutex<Option<Instant>>,
    min_refetch: Duration,
    /// Counts changes of the key set (a key added or retired), so that tokens verified
    /// earlier are checked again against the keys as they now are.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

impl JwksCache {
    /// Creates the cache and starts its background refresh (which also does the first fetch).
    pub fn start(
        url: String,
        refresh: Duration,
        min_refetch: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("taskql/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("could not build the HTTP client for the JWKS")?;
        let cache = Arc::new(Self {
            url,
            http,
            keys: RwLock::new(None),
            last_on_demand: Mutex::new(None),
            min_refetch,
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        // The task holds a weak reference so that dropping the verifier (in tests, or at
        // shutdown) ends it instead of keeping the cache alive forever.
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let Some(cache) = weak.upgrade() else { return };
                let wait = match cache.refetch(None).await {
                    Ok(()) => refresh,
                    // Retry sooner while we have no keys or stale ones, but not in a tight loop.
                    Err(()) => refresh.min(Duration::from_secs(30)),
                };
                drop(cache);
                tokio::time::sleep(wait).await;
            }
        });
        Ok(cache)
    }

    /// Which key set is current; changes whenever a key is added or retired.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The key a token names, refetching the JWKS once if it is not known yet.
    pub async fn key_for(&self, kid: Option<&str>, alg: Alg) -> Result<Arc<VerifyKey>, AuthError> {
        if let Some(found) = self.lookup(kid, alg)? {
            return Ok(found);
        }
        // Unknown kid (or no keys yet): a rotation may have happened. Refetch, rate-limited.
        let _ = self.refetch(Some(self.min_refetch)).await;
        match self.lookup(kid, alg)? {
            Some(found) => Ok(found),
            None if self.current().is_none() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::UnknownKey),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lookup(&self, kid: Option<&str>, alg: Alg) -> Result<Option<Arc<VerifyKey>>, AuthError> {
        let Some(keys) = self.current() else {
            return Ok(None);
        };
        Ok(match kid {
            Some(kid) => keys.get(kid).cloned(),
            // Better Auth always sends a kid; for issuers that don't, a key is only chosen when
            // exactly one key can verify this algorithm.
            None => {
                let mut candidates = keys.values().filter(|key| key.accepts(alg));
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Some(key.clone()),
                    _ => None,
                }
            }
        })
    }

    /// Fetches the JWKS. An on-demand fetch (`min_interval` set) is skipped when the previous
    /// on-demand fetch started less than `min_interval` ago.
    async fn refetch(&self, min_interval: Option<Duration>) -> Result<(), ()> {
        let started_with = self.current();
        let mut last_on_demand = self.last_on_demand.lock().await;
        // While we waited for the lock another task may have fetched: its result is as fresh
        // as ours would be.
        let unchanged = match (&started_with, self.current()) {
            (Some(before), Some(now)) => Arc::ptr_eq(before, &now),
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            return Ok(());
        }
        if let Some(min_interval) = min_interval {
            if last_on_demand.is_some_and(|last| last.elapsed() < min_interval) {
                return Err(());
            }
            *last_on_demand = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                let changed = started_with.as_deref().is_none_or(|before| {
                    before.len() != keys.len() || keys.keys().any(|kid| !before.contains_key(kid))
                });
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(keys));
                if changed {
                    self.generation
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                Ok(())
            }
            Err(err) => {
                // Keep serving with the keys we have: a brief issuer outage must not log
                // everyone out.
                tracing::warn!(url = %self.url, error = %format!("{err:#}"), "could not fetch the JWKS");
                Err(())
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let fetched = self.fetch_once().await;
        crate::metrics::get().jwks_fetch(fetched.is_ok());
        fetched
    }

    async fn fetch_once(&self) -> anyhow::Result<KeySet> {
        let mut request = self
            .http
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json");
        // The fetch a request waited for continues that request's trace at the issuer.
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let mut response = request
            .send()
            .await
            .context("request failed")?
            .error_for_status()
            .context("the issuer answered with an error")?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.context("reading the body failed")? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(
                body.len() <= MAX_JWKS_BYTES,
                "the JWKS is larger than 1 MiB"
            );
        }
        let set: JwkSet = serde_json::from_slice(&body).context("the body is not a JWKS")?;
        let mut keys = KeySet::new();
        for raw in set.keys {
            let jwk: Jwk = match serde_json::from_value(raw) {
                Ok(jwk) => jwk,
                Err(err) => {
                    tracing::warn!(error = %err, "skipping an unreadable JWK");
                    continue;
                }
            };
            let Some(kid) = jwk.kid.clone() else {
                tracing::warn!("skipping a JWK without kid");
                continue;
            };
            match VerifyKey::from_jwk(&jwk) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(err) => tracing::warn!(kid = %kid, error = %err, "skipping a JWK"),
            }
        }
        Ok(keys)
    }
}
