//! GraphQL over WebSocket on `GET /graphql`: the `graphql-transport-ws` protocol (the
//! `graphql-ws` library's, which Apollo Client, urql and GraphiQL speak) and the legacy
//! `graphql-ws` protocol of subscriptions-transport-ws.
//!
//! - [`protocol`]: the messages of both protocols and every close, as data (no I/O).
//! - [`connection`]: one connection's task, the phases it moves through, its operations.
//! - here: the handshake (origin, caps, subprotocol) and the instance's count of sockets.
//!
//! Close codes, as the protocol defines them (the graphql-ws client retries all but 4400,
//! 4401, 4409, 4429 and 1009):
//!
//! | code | when                                                                  |
//! |------|-----------------------------------------------------------------------|
//! | 4400 | a message that is not valid JSON of a known type                       |
//! | 4401 | `subscribe` before `connection_ack`                                    |
//! | 4403 | a token refused at `connection_init`, or the token expired             |
//! | 4406 | no supported subprotocol was offered                                   |
//! | 4408 | no `connection_init` within `WS_INIT_TIMEOUT`, or nothing heard from the client within two `WS_KEEPALIVE` periods |
//! | 4409 | `subscribe` with an id already in use                                  |
//! | 4429 | a second `connection_init`                                             |
//! | 1009 | a message over `WS_MAX_MESSAGE_BYTES`                                  |
//! | 1013 | too slow: events were not read in time; or rate-limited / keys unavailable at init |
//! | 1001 | the server is shutting down (after in-flight results are sent)         |
//! | 1000 | idle: no operation for `WS_IDLE_TIMEOUT`                               |
//!
//! Every connection is bounded in time: it must initialise within `WS_INIT_TIMEOUT`, answer
//! the server's pings (any message counts; `graphql-transport-ws` only, since the legacy
//! keep-alive has no answer) within two `WS_KEEPALIVE` periods, and run some operation at
//! least every `WS_IDLE_TIMEOUT`. And in number: `WS_MAX_CONNECTIONS` in all,
//! `WS_MAX_CONNECTIONS_PER_CLIENT` per client address (its /64 for IPv6) at the upgrade and
//! per user at `connection_init`. Queries and mutations take a place among the operations in
//! flight (`MAX_IN_FLIGHT`) like HTTP requests; past it they are answered
//! `SERVICE_UNAVAILABLE`.
//!
//! Reasons start with the `extensions.code` HTTP would answer with (`UNAUTHENTICATED: …`).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use axum::{
    extract::ws::WebSocketUpgrade,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use tracing::Instrument as _;

mod connection;
mod protocol;

use self::{
    connection::Connection,
    protocol::{LEGACY_WS, Protocol, TRANSPORT_WS},
};
use super::{
    AppState,
    admission::Holdings,
    negotiate::MediaType,
    rate_limit,
    reply::{error, rate_limited, unavailable},
};
use crate::{
    graphql::error::ErrorCode,
    http::settings::WebSocketConfig,
    metrics::{self, Transport},
};

/// The WebSocket connections this instance holds, capped by `WS_MAX_CONNECTIONS` in all and
/// `WS_MAX_CONNECTIONS_PER_CLIENT` per client address and per user.
#[derive(Debug, Clone)]
pub struct Sockets {
    permits: Arc<tokio::sync::Semaphore>,
    /// Connections by client address key (`ip:…`).
    clients: Holdings,
    /// Connections by verified user.
    pub(super) users: Holdings,
    /// Connection tasks, so shutdown can wait for them to close.
    pub tracker: tokio_util::task::TaskTracker,
    /// Cancelled when the server shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Operation serial numbers, unique per process.
    pub(super) serials: Arc<AtomicU64>,
}

impl Sockets {
    pub fn new(limits: &WebSocketConfig, shutdown: tokio_util::sync::CancellationToken) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            clients: Holdings::new(limits.max_connections_per_client),
            users: Holdings::new(limits.max_connections_per_client),
            tracker: tokio_util::task::TaskTracker::new(),
            shutdown,
            serials: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// Answers a WebSocket handshake on `/graphql`.
pub async fn upgrade(
    state: AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Not a request that runs statements of its own: the statement count skips it.
    tracing::Span::current().record("websocket", true);
    crate::telemetry::uncounted();
    // Browsers send every page's WebSockets, whatever its origin, with no CORS check of
    // their own: a page elsewhere could recruit its visitors to hold connections here.
    if !origin_allowed(&state, headers) {
        return error(
            MediaType::Json,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This origin may not open WebSocket connections here (CORS_ALLOWED_ORIGINS).",
        );
    }
    let Ok(permit) = Arc::clone(&state.sockets.permits).try_acquire_owned() else {
        tracing::warn!("too many WebSocket connections; refusing one");
        metrics::get().load_shed(Transport::WebSocket);
        return unavailable(
            MediaType::Json,
            "This server holds as many WebSocket connections as it allows; retry later.",
            5,
        );
    };
    let client =
        rate_limit::client_addr(peer.ip(), headers, &state.config.rate_limit.trusted_proxies);
    let address_key = rate_limit::address_key(client, state.config.rate_limit.ipv6_prefix);
    if let Err(retry_after) = state.rate_limit.check(&address_key, 1) {
        return rate_limited(MediaType::Json, retry_after);
    }
    let Some(client_slot) = state.sockets.clients.take(&address_key) else {
        metrics::get().rate_limited(Transport::WebSocket);
        let mut response = error(
            MediaType::Json,
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            &format!(
                "This client holds {} WebSocket connections, the most one client may; close one first.",
                state.sockets.clients.max()
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let limits = &state.config.websocket;
    let upgrade = upgrade
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        // tungstenite's defaults (128 KiB each way) would cost ~150 KiB per connection;
        // GraphQL messages are small, and the buffers grow when one is not.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let protocol = upgrade
        .selected_protocol()
        .and_then(|value| Protocol::from_header(value.as_bytes()));
    let tracker = state.sockets.tracker.clone();
    // The connection's log lines stay in the request span of its handshake.
    let span = tracing::Span::current();
    // The connection runs in a task of its own, outside the handshake's request: it keeps the
    // handshake's trace id; its statements are not one request's.
    let trace_id = crate::telemetry::current_trace_id();
    upgrade.on_upgrade(move |mut socket| {
        tracker.track_future(
            crate::telemetry::in_request(trace_id, false, async move {
                let Some(protocol) = protocol else {
                    connection::send_close(&mut socket, protocol::Close::subprotocol()).await;
                    return;
                };
                let places = (permit, client_slot);
                Connection::new(state, protocol, address_key, places)
                    .run(socket)
                    .await;
            })
            .instrument(span),
        )
    })
}

/// Whether a handshake's `Origin` may connect: always without one (not a browser), or
/// without `CORS_ALLOWED_ORIGINS` (no browser app is configured, and tokens travel in
/// `connection_init`, never in cookies, so a page elsewhere gains no one's access); with it,
/// only the listed origins and the server's own (the playground).
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let allowed = &state.config.cors_allowed_origins;
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if allowed.is_empty() || allowed.contains(origin) {
        return true;
    }
    // Same origin: `scheme://host` where host is the one the request was sent to.
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let origin = origin.as_bytes();
    host.is_some_and(|host| {
        [&b"http://"[..], &b"https://"[..]]
            .iter()
            .any(|scheme| origin.strip_prefix(*scheme) == Some(host))
    })
}
