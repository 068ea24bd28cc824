//! The HTTP surface's settings: where it listens, what a request may be, who may call from a
//! browser, the per-caller budget, and the WebSocket limits.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use axum::http::HeaderValue;
use clap::Args;
use ipnet::IpNet;

use crate::config::{items, parse_duration, parse_duration_or_zero, whole};

/// The HTTP surface's settings, as read (see [`HttpConfig`] for what they become).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Address to listen on (0.0.0.0 for all).
    #[arg(long, env = "HOST", default_value = "127.0.0.1", value_parser = host)]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value = "8080", value_parser = whole::<u16, 0, 65535>)]
    pub port: u16,
    /// The most a request may take; also PostgreSQL's statement_timeout.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest request body (413 above it).
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "262144", value_parser = whole::<usize, 1024, 67_108_864>)]
    pub max_body_bytes: usize,
    /// The longest a download (GET /export) may take, body included; it is cut off then.
    #[arg(long, env = "EXPORT_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub export_timeout: Duration,
    /// Comma-separated browser origins allowed to call with credentials, e.g.
    /// https://app.example.com (default: none).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_parser = origins)]
    pub cors_allowed_origins: Option<Origins>,
    /// Sustained requests per minute per user (anonymous: per address); 0 disables.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value = "600", value_parser = whole::<u32, 0, 1_000_000>)]
    pub rate_limit_per_minute: u32,
    /// Requests a caller may send at once before the rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "60", value_parser = whole::<u32, 1, 1_000_000>)]
    pub rate_limit_burst: u32,
    /// Leading bits of an IPv6 address that make one client for the per-address limits (IPv4:
    /// the whole address).
    #[arg(long, env = "RATE_LIMIT_IPV6_PREFIX", default_value = "64", value_parser = whole::<u8, 16, 128>)]
    pub rate_limit_ipv6_prefix: u8,
    /// Comma-separated addresses or networks (10.0.0.0/8, ::1) of reverse proxies whose
    /// X-Forwarded-For names the client (default: none; the peer address is the client).
    #[arg(long, env = "TRUSTED_PROXIES", value_parser = networks)]
    pub trusted_proxies: Option<Networks>,
    /// Operations this instance serves at once, over HTTP and WebSocket, downloads included;
    /// more are answered 503 at once (0: no cap).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value = "256", value_parser = whole::<usize, 0, 1_000_000>)]
    pub max_in_flight: usize,
    #[command(flatten)]
    pub websocket: WebSocketSettings,
}

/// The WebSocket transport's limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "WebSocket")]
pub struct WebSocketSettings {
    /// WebSocket connections this instance holds; more are refused with 503 before the upgrade.
    #[arg(long, env = "WS_MAX_CONNECTIONS", default_value = "10000", value_parser = whole::<usize, 1, 1_000_000>)]
    pub ws_max_connections: usize,
    /// WebSocket connections one client address (its /64 for IPv6) may hold, and one user.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_CLIENT", default_value = "100", value_parser = whole::<usize, 1, 1_000_000>)]
    pub ws_max_connections_per_client: usize,
    /// A connection running no operation this long is closed (0: never).
    #[arg(long, env = "WS_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration_or_zero)]
    pub ws_idle_timeout: Duration,
    /// Operations (subscriptions, and queries or mutations still running) one connection may
    /// have at once.
    #[arg(long, env = "WS_MAX_OPERATIONS_PER_CONNECTION", default_value = "25", value_parser = whole::<usize, 1, 10_000>)]
    pub ws_max_operations_per_connection: usize,
    /// Largest message a client may send over the socket (close code 1009 above it).
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value = "65536", value_parser = whole::<usize, 1024, 67_108_864>)]
    pub ws_max_message_bytes: usize,
    /// Time a new socket has to send connection_init (close code 4408).
    #[arg(long, env = "WS_INIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_init_timeout: Duration,
    /// How often the server pings an open socket (0: never); a socket that answers nothing
    /// within two periods is closed.
    #[arg(long, env = "WS_KEEPALIVE", default_value = "15s", value_parser = parse_duration_or_zero)]
    pub ws_keepalive: Duration,
}

/// Browser origins, checked (`CORS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(pub Vec<HeaderValue>);

/// Networks of trusted proxies (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

/// The HTTP listener and the limits applied to every request.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `HOST` and `PORT`.
    pub addr: SocketAddr,
    /// `REQUEST_TIMEOUT`: the most a request may take, database work included.
    pub request_timeout: Duration,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `EXPORT_TIMEOUT`: the longest a download (`/export`) may take, body included.
    pub export_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`: browser origins allowed to call the API with credentials.
    pub cors_allowed_origins: Vec<HeaderValue>,
    pub rate_limit: RateLimitConfig,
    pub websocket: WebSocketConfig,
}

/// The per-caller request budget, and who the caller is.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_PER_MINUTE`: sustained requests per minute for one caller; 0 turns limiting off.
    pub per_minute: u32,
    /// `RATE_LIMIT_BURST`: how many requests a caller may send at once before the rate applies.
    pub burst: u32,
    /// `TRUSTED_PROXIES`: the networks whose `X-Forwarded-For` names the client. Empty: the
    /// peer address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `MAX_IN_FLIGHT`: operations this instance serves at once; more are shed with 503.
    /// 0 turns the cap off.
    pub max_in_flight: usize,
    /// `RATE_LIMIT_IPV6_PREFIX`: how many leading bits of an IPv6 address make one client for
    /// the per-address limits (64: every /64 is one client).
    pub ipv6_prefix: u8,
}

/// GraphQL over WebSocket: the limits on connections (see the README section
/// "Subscriptions and sync").
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// `WS_MAX_CONNECTIONS`: WebSocket connections this instance holds at once; more are
    /// refused with 503 before the upgrade.
    pub max_connections: usize,
    /// `WS_MAX_CONNECTIONS_PER_CLIENT`: WebSocket connections one client address (its /64 for
    /// IPv6) may hold, and one user once authenticated.
    pub max_connections_per_client: usize,
    /// `WS_IDLE_TIMEOUT`: how long a connection may run no operation before it is closed; 0
    /// keeps idle connections.
    pub idle_timeout: Duration,
    /// `WS_MAX_OPERATIONS_PER_CONNECTION`: operations (subscriptions, and queries or
    /// mutations still running) one connection may have at once.
    pub per_connection: usize,
    /// `WS_MAX_MESSAGE_BYTES`: the largest message a client may send; larger ones close the
    /// connection with 1009.
    pub max_message_bytes: usize,
    /// `WS_INIT_TIMEOUT`: how long a new connection has to send `connection_init` (4408).
    pub init_timeout: Duration,
    /// `WS_KEEPALIVE`: how often the server pings an idle connection; 0 turns pings off.
    pub keepalive: Duration,
}

impl HttpSettings {
    /// The HTTP configuration these settings describe.
    pub fn into_config(self) -> HttpConfig {
        let ws = self.websocket;
        HttpConfig {
            addr: SocketAddr::new(self.host, self.port),
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
            export_timeout: self.export_timeout,
            cors_allowed_origins: self.cors_allowed_origins.unwrap_or_default().0,
            rate_limit: RateLimitConfig {
                per_minute: self.rate_limit_per_minute,
                burst: self.rate_limit_burst,
                trusted_proxies: self.trusted_proxies.unwrap_or_default().0,
                max_in_flight: self.max_in_flight,
                ipv6_prefix: self.rate_limit_ipv6_prefix,
            },
            websocket: WebSocketConfig {
                max_connections: ws.ws_max_connections,
                max_connections_per_client: ws.ws_max_connections_per_client,
                idle_timeout: ws.ws_idle_timeout,
                per_connection: ws.ws_max_operations_per_connection,
                max_message_bytes: ws.ws_max_message_bytes,
                init_timeout: ws.ws_init_timeout,
                keepalive: ws.ws_keepalive,
            },
        }
    }
}

fn host(raw: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(raw.trim())
        .map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".to_owned())
}

fn origins(raw: &str) -> Result<Origins, String> {
    items(raw)
        .map(|origin| {
            if origin == "*" {
                // Browsers refuse `*` on credentialed requests, and echoing any origin
                // would let every site act with the user's cookies: list them instead.
                return Err("\"*\" is not allowed; list each origin".to_owned());
            }
            let (scheme, rest) = origin.split_once("://").ok_or_else(|| {
                format!("{origin:?} is not an origin like https://app.example.com")
            })?;
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "{origin:?} is not an origin like https://app.example.com (no path)"
                ));
            }
            HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a valid origin"))
        })
        .collect::<Result<_, _>>()
        .map(Origins)
}

/// Addresses (one host each) and networks, comma-separated.
fn networks(raw: &str) -> Result<Networks, String> {
    items(raw)
        .map(|item| {
            IpNet::from_str(item)
                .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an address or network like 10.0.0.0/8"))
        })
        .collect::<Result<_, _>>()
        .map(Networks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_networks() {
        let Networks(nets) = networks("10.0.0.0/8, 192.168.1.7, ::1").expect("valid");
        let inside = |ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            nets.iter().any(|net| net.contains(&ip))
        };
        assert!(inside("10.200.3.4"));
        assert!(inside("192.168.1.7"));
        assert!(!inside("192.168.1.8"));
        assert!(inside("::1"));
        assert!(!inside("11.0.0.1"));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x"] {
            assert!(networks(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_listed_one_by_one() {
        assert_eq!(
            origins("https://a.example, http://localhost:3000").map(|o| o.0.len()),
            Ok(2)
        );
        assert!(origins("*").is_err_and(|e| e.contains("not allowed")));
        assert!(origins("https://a.example/path").is_err_and(|e| e.contains("no path")));
    }
}
