//! Automatic persisted queries (APQ), as Apollo Client's `PersistedQueryLink` and urql's
//! `persistedExchange` speak them: a client sends `extensions.persistedQuery.sha256Hash`
//! without the query; on a miss it retries with the query, which is then remembered.
//!
//! The store is behind [`PersistedQueryStore`] so that a store shared by several instances
//! (PostgreSQL, Redis) can replace the in-process one without touching the pipeline.

use std::{num::NonZeroUsize, sync::Mutex};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

/// Where persisted query texts live, keyed by the lowercase hex SHA-256 of the text.
pub trait PersistedQueryStore: Send + Sync + 'static {
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Option<String>>;
    fn put<'a>(&'a self, hash: String, query: String) -> BoxFuture<'a, ()>;
}

/// An in-process LRU store: the least recently used query is forgotten first, so the memory
/// held is bounded by `capacity` whatever clients send. A miss only costs the client one
/// round trip, which is why forgetting is safe.
#[derive(Debug)]
pub struct MemoryStore {
    queries: Option<Mutex<lru::LruCache<String, String>>>,
}

impl MemoryStore {
    /// A store remembering at most `capacity` queries; 0 remembers none.
    pub fn new(capacity: usize) -> Self {
        Self {
            queries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(lru::LruCache::new(cap))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut lru::LruCache<String, String>) -> T) -> Option<T> {
        let queries = self.queries.as_ref()?;
        // A panic while holding the lock cannot leave the cache inconsistent (every
        // operation on it is a single call), so a poisoned lock is still usable.
        let mut guard = queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut guard))
    }
}

impl PersistedQueryStore for MemoryStore {
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Option<String>> {
        let found = self.with(|cache| cache.get(hash).cloned()).flatten();
        Box::pin(async move { found })
    }

    fn put<'a>(&'a self, hash: String, query: String) -> BoxFuture<'a, ()> {
        self.with(|cache| cache.put(hash, query));
        Box::pin(async {})
    }
}

/// The lowercase hex SHA-256 of a query text, as APQ clients compute it.
pub fn sha256_hex(query: &str) -> String {
    let digest = Sha256::digest(query.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_apollo_reference_value() {
        // The hash Apollo's docs use for `{__typename}`.
        assert_eq!(
            sha256_hex("{__typename}"),
            "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"
        );
    }

    #[tokio::test]
    async fn the_store_forgets_the_least_recently_used_query() {
        let store = MemoryStore::new(2);
        store.put("a".into(), "{a}".into()).await;
        store.put("b".into(), "{b}".into()).await;
        assert!(store.get("a").await.is_some());
        store.put("c".into(), "{c}".into()).await;
        assert_eq!(store.get("b").await, None, "b was least recently used");
        assert_eq!(store.get("a").await.as_deref(), Some("{a}"));
    }
}
