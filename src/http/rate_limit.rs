//! Per-caller rate limiting: a token bucket per verified user id (anonymous callers, and
//! tokens not yet verified, are charged to their client address), so one caller's flood never
//! slows another. Every operation of a batch is charged.
//!
//! The bucket arithmetic is `governor`'s (GCRA, lock-free); this module picks the key, finds
//! the client's address behind trusted proxies, and keeps the key table from growing without
//! bound.
//!
//! An address key is the whole address for IPv4, and its network of
//! `RATE_LIMIT_IPV6_PREFIX` bits (a /64 by default) for IPv6: every IPv6 client holds at least
//! a /64, so keying on whole IPv6 addresses would give one client 2^64 buckets.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

use ipnet::IpNet;

use super::settings::RateLimitConfig;

/// Keys the table may hold before idle ones are dropped at once rather than at the next
/// minute's sweep: an attacker rotating addresses fills it no faster than it is emptied.
const MAX_KEYS: usize = 100_000;

#[derive(Clone)]
pub struct RateLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    /// Checks made, to look at the table's size every so often.
    checks: Arc<AtomicU64>,
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
        Self {
            limiter,
            checks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Charges `operations` to `key`; when over the limit, how long until they are allowed.
    pub fn check(&self, key: &str, operations: u32) -> Result<(), Duration> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(operations)) else {
            return Ok(());
        };
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && limiter.len() > MAX_KEYS
        {
            limiter.retain_recent();
        }
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
///
/// Hops are read as proxies write them: with or without a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`), brackets, spaces. A hop that is no address (`unknown`, bytes that
/// are not text) is skipped rather than making the whole header unreadable, which would charge
/// every client behind the proxy to the proxy's one address.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        trusted.iter().any(|net| net.contains(&ip))
    };
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .filter_map(|hop| std::str::from_utf8(hop).ok().and_then(parse_hop))
        .collect();
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One hop of `X-Forwarded-For`: an address, maybe with a port, maybe in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Some(rest) = hop.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        if !port_ok {
            return None;
        }
        return address.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    // `a.b.c.d:port` (an IPv6 address with a port must be bracketed).
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The rate-limit key of a client address: `ip:` and the address for IPv4 (an IPv4-mapped
/// IPv6 address counts as its IPv4 address), the network of its first `ipv6_prefix` bits for
/// IPv6.
pub fn address_key(addr: IpAddr, ipv6_prefix: u8) -> String {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match addr {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let prefix = ipv6_prefix.min(128);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let network = Ipv6Addr::from(u128::from(v6) & mask);
            format!("ip:{network}/{prefix}")
        }
    }
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
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
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

    #[test]
    fn every_shape_of_a_forwarded_hop_is_read_and_bad_hops_are_skipped() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let client = |xff: &str| client_addr(proxy, &headers(xff), &proxies).to_string();
        assert_eq!(client("198.51.100.7:4711"), "198.51.100.7");
        assert_eq!(client("  198.51.100.7  "), "198.51.100.7");
        assert_eq!(client("[2001:db8::7]:4711"), "2001:db8::7");
        assert_eq!(client("[2001:db8::7]"), "2001:db8::7");
        assert_eq!(client("2001:db8::7"), "2001:db8::7");
        assert_eq!(
            client("198.51.100.7, unknown"),
            "198.51.100.7",
            "a bad hop is skipped"
        );
        assert_eq!(client("198.51.100.7,, 10.0.0.9:80"), "198.51.100.7");
        assert_eq!(client("[2001:db8::7]:99999"), "10.0.0.5", "no such port");
        assert_eq!(client("[2001:db8::7"), "10.0.0.5");
        assert_eq!(client("1.2.3.4:x"), "10.0.0.5");
        // A value that is not text: the hops that are still count.
        let mut raw = HeaderMap::new();
        raw.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.7, \xff\xfe").expect("opaque bytes"),
        );
        assert_eq!(
            client_addr(proxy, &raw, &proxies).to_string(),
            "198.51.100.7"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let key = |ip: &str, prefix| address_key(ip.parse().expect("ip"), prefix);
        assert_eq!(key("2001:db8:1:2::1", 64), "ip:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2::3c", 64), key("2001:db8:1:2:ffff::1", 64));
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 48), "ip:2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 128), "ip:2001:db8::1/128");
        assert_eq!(key("203.0.113.9", 64), "ip:203.0.113.9");
        assert_eq!(
            key("::ffff:203.0.113.9", 64),
            "ip:203.0.113.9",
            "IPv4-mapped"
        );
    }
}
