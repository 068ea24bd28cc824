//! Tokens already verified, remembered by their SHA-256 until they expire.
//!
//! A client sends the same token with every request for its whole lifetime (15 minutes with
//! Better Auth); checking its signature each time costs more CPU than serving a page. An
//! entry is used only while the token has not reached its `exp` (without the leeway the
//! full check allows) and only under the key set it was verified with: a rotation that
//! retires a key makes every token verified with the old set go through the full check again.
//! Only successes are remembered; a forged token costs a full check every time, which is why
//! the HTTP layer charges uncached tokens to the client's address first.

use std::{num::NonZeroUsize, sync::Mutex};

use sha2::{Digest as _, Sha256};

use super::Identity;

struct Entry {
    identity: Identity,
    exp: f64,
    generation: u64,
}

pub struct TokenCache {
    entries: Option<Mutex<lru::LruCache<[u8; 32], Entry>>>,
}

impl TokenCache {
    /// A cache of `capacity` tokens; 0 remembers none.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(lru::LruCache::new(cap))),
        }
    }

    pub fn get(&self, token: &str, now: u64, generation: u64) -> Option<Identity> {
        let key = digest(token);
        let mut entries = self.entries.as_ref()?.lock().ok()?;
        let entry = entries.get(&key)?;
        if entry.generation == generation && (now as f64) < entry.exp {
            return Some(entry.identity.clone());
        }
        entries.pop(&key);
        None
    }

    pub fn insert(&self, token: &str, identity: Identity, exp: f64, generation: u64) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(Mutex::lock) {
            entries.put(
                digest(token),
                Entry {
                    identity,
                    exp,
                    generation,
                },
            );
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserId;

    fn alice() -> Identity {
        Identity {
            user_id: UserId::for_tests("alice"),
            email: "a@example.com".to_owned(),
            name: None,
            image: None,
            expires_at: 0,
        }
    }

    #[test]
    fn entries_end_at_exp_and_with_the_key_set() {
        let cache = TokenCache::new(10);
        cache.insert("t", alice(), 1000.0, 1);
        assert_eq!(cache.get("t", 999, 1), Some(alice()));
        assert_eq!(cache.get("t", 1000, 1), None, "never past exp");
        cache.insert("t", alice(), 1000.0, 1);
        assert_eq!(cache.get("t", 10, 2), None, "the keys changed");
        assert_eq!(cache.get("other", 10, 1), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::new(2);
        for token in ["a", "b", "c"] {
            cache.insert(token, alice(), 1000.0, 0);
        }
        assert_eq!(cache.get("a", 0, 0), None, "the oldest was evicted");
        assert!(cache.get("c", 0, 0).is_some());
    }
}
