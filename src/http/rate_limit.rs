//! Per-caller rate limiting: a token bucket per verified user id (anonymous callers share
//! one per client address), so one caller's flood never slows another.
//!
//! The bucket arithmetic is `governor`'s (GCRA, lock-free); this module only picks the key and
//! keeps the key table from growing without bound.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

use crate::config::RateLimitConfig;

#[derive(Clone)]
pub struct RateLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl RateLimit {
    /// A limiter for `config`; `per_minute = 0` disables limiting. Spawns a task that forgets
    /// idle callers every minute.
    pub fn new(config: &RateLimitConfig) -> Self {
        let limiter = NonZeroU32::new(config.per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            ))
        });
        if let Some(limiter) = &limiter {
            let weak = Arc::downgrade(limiter);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let Some(limiter) = weak.upgrade() else {
                        return;
                    };
                    // A caller whose bucket is full again is indistinguishable from a new one.
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            });
        }
        Self { limiter }
    }

    /// Charges one request to `key`; when over the limit, how long until the next is allowed.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}
