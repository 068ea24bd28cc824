//! Per-caller rate limiting: a token bucket per verified user id (anonymous callers, and
//! tokens not yet verified, are charged to their client address), so one caller's flood never
//! slows another. Every operation of a batch is charged.
//!
//! The bucket arithmetic is `governor`'s (GCRA, lock-free); this module picks the key, finds
//! the client's address behind trusted proxies, and keeps the key table from growing without
//! bound.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

use crate::config::{Cidr, RateLimitConfig};

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

    /// Charges `operations` to `key`; when over the limit, how long until they are allowed.
    pub fn check(&self, key: &str, operations: u32) -> Result<(), Duration> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(operations)) else {
            return Ok(());
        };
        match limiter.check_key_n(&key.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
            }
            // More at once than the burst allows: such a request can never pass.
            Err(_) => Err(Duration::from_secs(60)),
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// last address in `X-Forwarded-For` that is not itself a trusted proxy. Entries to the left
/// of that one were written by the client and could be anything, so they are never used.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A garbled hop: stop at the last address a trusted proxy vouched for.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(xff).expect("ascii"),
        );
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxies: Vec<Cidr> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let spoofed = headers("1.1.1.1, 198.51.100.7");
        assert_eq!(client_addr(stranger, &spoofed, &proxies), stranger);
        assert_eq!(
            client_addr(proxy, &spoofed, &[]),
            proxy,
            "no proxies configured"
        );
        assert_eq!(
            client_addr(proxy, &spoofed, &proxies).to_string(),
            "198.51.100.7",
            "the rightmost untrusted hop, not the client-written leftmost one"
        );
        assert_eq!(
            client_addr(proxy, &headers("198.51.100.7, 10.0.0.9"), &proxies).to_string(),
            "198.51.100.7",
            "a chain of trusted proxies is skipped"
        );
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &proxies), proxy);
        assert_eq!(client_addr(proxy, &headers("garbage"), &proxies), proxy);
    }
}
