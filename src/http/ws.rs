//! GraphQL over WebSocket on `GET /graphql`: the `graphql-transport-ws` protocol (the
//! `graphql-ws` library's, which Apollo Client, urql and GraphiQL speak) and the legacy
//! `graphql-ws` protocol of subscriptions-transport-ws.
//!
//! One task owns each socket. Operations run in tasks of their own and hand their messages
//! to it through a small bounded queue; a subscription whose messages cannot be written
//! stops reading its events, its queue in the hub fills, and the hub raises the connection's
//! [`Overflow`] alarm: the connection is closed as too slow, and nobody else waits for it.
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
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use axum::{
    extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue},
    response::Response,
};
use futures_util::StreamExt as _;
use serde_json::{Map, Value as Json, json};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc},
    task::AbortHandle,
    time::Instant,
};
use tracing::Instrument as _;

use super::{
    AppState,
    graphql::{
        BEARER_FORMAT, Denied, error, identify, parse_bearer, rate_limited, retry_seconds,
        unavailable,
    },
    json,
    limits::{Held, Holdings},
    negotiate::MediaType,
    rate_limit,
};
use crate::{
    auth::Identity,
    config::SubscriptionConfig,
    graphql::{
        error::ErrorCode,
        pipeline::{Context, Method, Outcome, Params, Started},
        viewer::Viewer,
    },
    live::{Link, Overflow},
    metrics::{self, Transport},
};

/// The subprotocols spoken, in order of preference.
const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages operations hand to the socket's task before it writes them.
const OUTBOX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// `graphql-ws` (subscriptions-transport-ws, deprecated).
    Legacy,
}

impl Protocol {
    fn next(self) -> &'static str {
        match self {
            Self::Transport => "next",
            Self::Legacy => "data",
        }
    }

    fn subscribe(self) -> &'static str {
        match self {
            Self::Transport => "subscribe",
            Self::Legacy => "start",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            Self::Transport => "complete",
            Self::Legacy => "stop",
        }
    }

    fn keepalive(self) -> Json {
        match self {
            Self::Transport => json!({ "type": "ping" }),
            Self::Legacy => json!({ "type": "ka" }),
        }
    }
}

/// The WebSocket connections this instance holds, capped by `WS_MAX_CONNECTIONS` in all and
/// `WS_MAX_CONNECTIONS_PER_CLIENT` per client address and per user.
#[derive(Debug, Clone)]
pub struct Sockets {
    permits: Arc<tokio::sync::Semaphore>,
    /// Connections by client address key (`ip:…`).
    clients: Holdings,
    /// Connections by verified user.
    users: Holdings,
    /// Connection tasks, so shutdown can wait for them to close.
    pub tracker: tokio_util::task::TaskTracker,
    /// Cancelled when the server shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Operation serial numbers, unique per process.
    serials: Arc<AtomicU64>,
}

impl Sockets {
    pub fn new(limits: &SubscriptionConfig, shutdown: tokio_util::sync::CancellationToken) -> Self {
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
    // Browsers send every page's WebSockets, whatever its origin, with no CORS check of
    // their own: a page elsewhere could recruit its visitors to hold connections here.
    if !origin_allowed(&state, headers) {
        return error(
            MediaType::Json,
            axum::http::StatusCode::FORBIDDEN,
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
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            &format!(
                "This client holds {} WebSocket connections, the most one client may; close one first.",
                state.sockets.clients.max()
            ),
        );
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("5"),
        );
        return response;
    };
    let limits = &state.config.subscriptions;
    let upgrade = upgrade
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        // tungstenite's defaults (128 KiB each way) would cost ~150 KiB per connection;
        // GraphQL messages are small, and the buffers grow when one is not.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let protocol = match upgrade.selected_protocol().map(HeaderValue::as_bytes) {
        Some(b"graphql-transport-ws") => Some(Protocol::Transport),
        Some(b"graphql-ws") => Some(Protocol::Legacy),
        _ => None,
    };
    let tracker = state.sockets.tracker.clone();
    // The connection's log lines stay in the request span of its handshake.
    let span = tracing::Span::current();
    upgrade.on_upgrade(move |socket| {
        let connection = Connection::new(state, protocol, address_key, (permit, client_slot));
        tracker.track_future(connection.run(socket).instrument(span))
    })
}

/// Whether a handshake's `Origin` may connect: always without one (not a browser), or
/// without `CORS_ALLOWED_ORIGINS` (no browser app is configured, and tokens travel in
/// `connection_init`, never in cookies, so a page elsewhere gains no one's access); with it,
/// only the listed origins and the server's own (the playground).
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let allowed = &state.config.http.cors_allowed_origins;
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    if allowed.is_empty() || allowed.contains(origin) {
        return true;
    }
    // Same origin: `scheme://host` where host is the one the request was sent to.
    let host = headers
        .get(axum::http::header::HOST)
        .map(HeaderValue::as_bytes);
    let origin = origin.as_bytes();
    host.is_some_and(|host| {
        [&b"http://"[..], &b"https://"[..]]
            .iter()
            .any(|scheme| origin.strip_prefix(*scheme) == Some(host))
    })
}

/// What an operation task hands the socket's task.
enum Out {
    Next(String, u64, Json),
    Error(String, u64, Json),
    Complete(String, u64),
    /// The operation ended without a message (a subscription cut short by shutdown).
    Ended(String, u64),
}

/// Why the connection closes.
struct Close(u16, String);

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

struct Connection {
    state: AppState,
    protocol: Option<Protocol>,
    address_key: String,
    /// The connection's place among all and among its client's.
    _places: (OwnedSemaphorePermit, Held),
    /// Its place among its user's, once authenticated.
    user_slot: Option<Held>,
    _counted: metrics::Held,
    /// When the client last sent anything: it must answer pings.
    heard: Instant,
    /// When the connection last had an operation running (or was opened).
    busy: Instant,
    overflow: Arc<Overflow>,
    /// `None` until `connection_init`; then the caller (who may be anonymous).
    caller: Option<Option<Identity>>,
    /// Running operations by id, with their serial numbers: a message of an operation that
    /// was cancelled, or whose id was reused since, is dropped.
    operations: HashMap<String, (u64, AbortHandle)>,
    outbox: mpsc::Sender<Out>,
    inbox: mpsc::Receiver<Out>,
}

impl Connection {
    fn new(
        state: AppState,
        protocol: Option<Protocol>,
        address_key: String,
        places: (OwnedSemaphorePermit, Held),
    ) -> Self {
        let (outbox, inbox) = mpsc::channel(OUTBOX);
        Self {
            state,
            protocol,
            address_key,
            _places: places,
            user_slot: None,
            _counted: metrics::get().hold_websocket(),
            heard: Instant::now(),
            busy: Instant::now(),
            overflow: Arc::new(Overflow::default()),
            caller: None,
            operations: HashMap::new(),
            outbox,
            inbox,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let Some(protocol) = self.protocol else {
            close(
                &mut socket,
                Close::new(4406, "Subprotocol not acceptable: use graphql-transport-ws"),
            )
            .await;
            return;
        };
        let close_with = self.serve(&mut socket, protocol).await;
        for (_, (_, task)) in self.operations.drain() {
            task.abort();
        }
        match close_with {
            Some(reason) => close(&mut socket, reason).await,
            // The client closed (or the socket failed): complete the closing handshake, so a
            // client that said goodbye sees its own code echoed rather than an abnormal end.
            None => {
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, futures_util::SinkExt::close(&mut socket))
                        .await;
            }
        }
    }

    /// Serves the connection until it should close; returns the close to send, if any.
    async fn serve(&mut self, socket: &mut WebSocket, protocol: Protocol) -> Option<Close> {
        let limits = self.state.config.subscriptions.clone();
        let shutdown = self.state.sockets.shutdown.clone();
        let init_deadline = Instant::now() + limits.init_timeout;
        let mut keepalive = (!limits.keepalive.is_zero())
            .then(|| tokio::time::interval_at(Instant::now() + limits.keepalive, limits.keepalive));
        // A client that has not answered two pings in a row is gone (its network dropped
        // without a close, or it hangs): its slot is not kept for it.
        let silence = limits.keepalive.saturating_mul(2);
        let mut expires: Option<Instant> = None;
        let mut closing = false;
        loop {
            if closing && self.operations.is_empty() {
                return Some(Close::new(1001, "Server shutting down; reconnect"));
            }
            let initialised = self.caller.is_some();
            // Idle: nothing running since `busy`, for WS_IDLE_TIMEOUT.
            let idle_at = (!limits.idle_timeout.is_zero() && self.operations.is_empty())
                .then(|| self.busy.checked_add(limits.idle_timeout))
                .flatten();
            tokio::select! {
                biased;
                () = self.overflow.raised() => {
                    return Some(Close::new(1013, "Too slow: events were not read in time; reconnect and resume from the last version"));
                }
                () = shutdown.cancelled(), if !closing => {
                    // In-flight queries and mutations finish and are answered; subscriptions
                    // end without `complete`, so clients resubscribe after reconnecting.
                    closing = true;
                }
                () = tokio::time::sleep_until(init_deadline), if !initialised => {
                    return Some(Close::new(4408, "Connection initialisation timeout"));
                }
                () = sleep_until_opt(expires) => {
                    return Some(Close::new(4403, "UNAUTHENTICATED: the token has expired; reconnect with a fresh one"));
                }
                () = sleep_until_opt(idle_at) => {
                    return Some(Close::new(1000, "Idle: no operation for WS_IDLE_TIMEOUT; reconnect when needed"));
                }
                Some(out) = self.inbox.recv() => {
                    if let Err(()) = self.forward(socket, protocol, out).await {
                        return None;
                    }
                    if self.operations.is_empty() {
                        self.busy = Instant::now();
                    }
                }
                _ = tick(&mut keepalive), if initialised => {
                    // The legacy protocol's keep-alive (`ka`) has no answer: only
                    // graphql-transport-ws clients can be required to answer.
                    if protocol == Protocol::Transport && self.heard.elapsed() > silence {
                        return Some(Close::new(4408, "Ping timeout: nothing heard from the client within two keep-alive periods; reconnect"));
                    }
                    if send(socket, &protocol.keepalive()).await.is_err() {
                        return None;
                    }
                }
                received = socket.recv() => {
                    let message = match received {
                        None => return None,
                        Some(Ok(message)) => message,
                        Some(Err(err)) => return too_big(&err),
                    };
                    self.heard = Instant::now();
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Close(_) => return None,
                        // WebSocket-level pings are answered by the library.
                        Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Binary(_) => {
                            return Some(Close::new(4400, "Invalid message received: binary messages are not supported"));
                        }
                    };
                    match self.handle(socket, protocol, &text, closing).await {
                        Ok(Some(at)) => expires = Some(at),
                        Ok(None) => {}
                        Err(Some(close)) => return Some(close),
                        Err(None) => return None,
                    }
                }
            }
        }
    }

    /// Handles one client message. `Ok(Some(instant))` when it authenticated the connection
    /// with a token that expires then; `Err` closes the connection (`None`: the socket failed).
    async fn handle(
        &mut self,
        socket: &mut WebSocket,
        protocol: Protocol,
        text: &str,
        closing: bool,
    ) -> Result<Option<Instant>, Option<Close>> {
        let invalid =
            |why: &str| Some(Close::new(4400, format!("Invalid message received: {why}")));
        let message: Json = json::from_str(text).map_err(|_| invalid("not a JSON object"))?;
        let Json::Object(mut message) = message else {
            return Err(invalid("not a JSON object"));
        };
        let kind = match message.remove("type") {
            Some(Json::String(kind)) => kind,
            _ => return Err(invalid("\"type\" must be a string")),
        };
        match kind.as_str() {
            "connection_init" => {
                if self.caller.is_some() {
                    return Err(Some(Close::new(4429, "Too many initialisation requests")));
                }
                let payload = match message.remove("payload") {
                    None | Some(Json::Null) => Map::new(),
                    Some(Json::Object(payload)) => payload,
                    Some(_) => return Err(invalid("\"payload\" must be an object")),
                };
                let identity = match self.authenticate(&payload).await {
                    Ok(identity) => identity,
                    Err(refused) => {
                        if protocol == Protocol::Legacy {
                            // The legacy protocol reports a refused init in a message first.
                            let error = json!({ "type": "connection_error", "payload": { "message": refused.1 } });
                            let _ = send(socket, &error).await;
                        }
                        return Err(Some(refused));
                    }
                };
                if let Some(identity) = &identity {
                    let users = &self.state.sockets.users;
                    let Some(slot) = users.take(&format!("user:{}", identity.user_id)) else {
                        metrics::get().rate_limited(Transport::WebSocket);
                        return Err(Some(Close::new(
                            1013,
                            format!(
                                "RATE_LIMITED: this user holds {} WebSocket connections, the most one user may; close one",
                                users.max()
                            ),
                        )));
                    };
                    self.user_slot = Some(slot);
                }
                let expires = identity
                    .as_ref()
                    .and_then(|identity| expiry(identity.expires_at));
                self.caller = Some(identity);
                send(socket, &json!({ "type": "connection_ack" }))
                    .await
                    .map_err(|()| None)?;
                Ok(expires)
            }
            "ping" if protocol == Protocol::Transport => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = message.remove("payload") {
                    pong["payload"] = payload;
                }
                send(socket, &pong).await.map_err(|()| None)?;
                Ok(None)
            }
            "pong" if protocol == Protocol::Transport => Ok(None),
            "connection_terminate" if protocol == Protocol::Legacy => Err(None),
            kind if kind == protocol.subscribe() => {
                let Some(caller) = self.caller.clone() else {
                    return Err(Some(Close::new(4401, "Unauthorized")));
                };
                let id = match message.remove("id") {
                    Some(Json::String(id)) if !id.is_empty() => id,
                    _ => return Err(invalid("\"id\" must be a non-empty string")),
                };
                let params = match message.remove("payload") {
                    Some(payload) => params(payload).map_err(|why| invalid(&why))?,
                    None => return Err(invalid("\"payload\" is missing")),
                };
                if self.operations.contains_key(&id) {
                    return Err(Some(Close::new(
                        4409,
                        format!("Subscriber for {} already exists", truncated(&id, 60)),
                    )));
                }
                self.start(socket, id, params, caller, closing)
                    .await
                    .map_err(|()| None)?;
                Ok(None)
            }
            kind if kind == protocol.unsubscribe() => {
                if let Some(Json::String(id)) = message.remove("id")
                    && let Some((_, task)) = self.operations.remove(&id)
                {
                    task.abort();
                }
                Ok(None)
            }
            _ => Err(invalid("unknown message type")),
        }
    }

    /// Verifies the token of `connection_init`, if it carries one. No token makes an
    /// anonymous connection (which can introspect, as over HTTP); a refused one closes it.
    async fn authenticate(&self, payload: &Map<String, Json>) -> Result<Option<Identity>, Close> {
        // Apollo and urql pass `connectionParams` as the payload; the header's name is the
        // application's choice, so either spelling is read.
        let value = payload
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value);
        let token = match value {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::String(value)) => parse_bearer(value),
            Some(_) => None,
        };
        let Some(token) = token else {
            return Err(Close::new(
                4403,
                format!("UNAUTHENTICATED: {BEARER_FORMAT}"),
            ));
        };
        match identify(&self.state, token, &self.address_key).await {
            Ok(identity) => {
                tracing::Span::current().record("user_id", identity.user_id.as_str());
                Ok(Some(identity))
            }
            Err(Denied::Invalid(err)) => Err(Close::new(4403, format!("UNAUTHENTICATED: {err}"))),
            Err(Denied::RateLimited(retry_after)) => {
                metrics::get().rate_limited(Transport::WebSocket);
                Err(Close::new(
                    1013,
                    format!("RATE_LIMITED: retry after {} s", retry_seconds(retry_after)),
                ))
            }
            Err(Denied::Unavailable(message)) => {
                Err(Close::new(1013, format!("SERVICE_UNAVAILABLE: {message}")))
            }
        }
    }

    /// Starts an operation in a task of its own, after the connection's limits and the
    /// caller's rate allow it; a refusal is an `error` message, and the connection stays.
    async fn start(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        params: Params,
        caller: Option<Identity>,
        closing: bool,
    ) -> Result<(), ()> {
        let refuse = |code: ErrorCode, message: String| {
            json!({ "type": "error", "id": id, "payload": [
                { "message": message, "extensions": { "code": code.as_str() } }
            ]})
        };
        if closing {
            let message = refuse(
                ErrorCode::ServiceUnavailable,
                "The server is shutting down; reconnect and retry.".to_owned(),
            );
            return send(socket, &message).await;
        }
        let limit = self.state.config.subscriptions.per_connection;
        if self.operations.len() >= limit {
            let message = refuse(
                ErrorCode::TooManySubscriptions,
                format!(
                    "This connection already runs {limit} operations, the most it allows; complete one first."
                ),
            );
            return send(socket, &message).await;
        }
        self.busy = Instant::now();
        // A place among the operations in flight, as an HTTP request takes one; a
        // subscription gives it back once started (it then runs no work of its own; its
        // number is bounded per user and per connection instead).
        let Some(place) = self.state.in_flight.enter() else {
            metrics::get().load_shed(Transport::WebSocket);
            let message = refuse(
                ErrorCode::ServiceUnavailable,
                "The server is at capacity; retry shortly.".to_owned(),
            );
            return send(socket, &message).await;
        };
        let key = match &caller {
            Some(identity) => format!("user:{}", identity.user_id),
            None => self.address_key.clone(),
        };
        if let Err(retry_after) = self.state.rate_limit.check(&key, 1) {
            metrics::get().rate_limited(Transport::WebSocket);
            let message = refuse(
                ErrorCode::RateLimited,
                format!(
                    "Too many requests; slow down and retry after {} s.",
                    retry_seconds(retry_after)
                ),
            );
            return send(socket, &message).await;
        }
        let serial = self
            .state
            .sockets
            .serials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = self.state.config.http.request_timeout;
        let (link, settled) = Link::new(Arc::clone(&self.overflow));
        let cx = Context {
            method: Method::WebSocket,
            deadline: Instant::now() + timeout,
            viewer: Arc::new(Viewer::new(caller, self.state.db.clone())),
            live: Some(Arc::clone(&link)),
        };
        let executor = Arc::clone(&self.state.executor);
        let outbox = self.outbox.clone();
        let shutdown = self.state.sockets.shutdown.clone();
        let task_id = id.clone();
        let task = tokio::spawn(
            async move {
                let id = task_id;
                match executor.start(params, cx).await {
                    Started::Once(run) => {
                        link.settle();
                        let outcome = run.await;
                        drop(place);
                        if outcome.is_error() {
                            let _ = outbox
                                .send(Out::Error(id, serial, errors_of(&outcome)))
                                .await;
                            return;
                        }
                        // `next` then `complete`: the outbox keeps them in order.
                        let next = Out::Next(id.clone(), serial, body_of(outcome));
                        if outbox.send(next).await.is_ok() {
                            let _ = outbox.send(Out::Complete(id, serial)).await;
                        }
                    }
                    Started::Live(mut events) => {
                        drop(place);
                        loop {
                            let event = tokio::select! {
                                () = shutdown.cancelled() => {
                                    let _ = outbox.send(Out::Ended(id, serial)).await;
                                    return;
                                }
                                event = events.next() => event,
                            };
                            let Some(outcome) = event else {
                                let _ = outbox.send(Out::Complete(id, serial)).await;
                                return;
                            };
                            let failed = outcome.is_error();
                            // A subscription that could not start settles here.
                            link.settle();
                            let out = if failed {
                                Out::Error(id.clone(), serial, errors_of(&outcome))
                            } else {
                                Out::Next(id.clone(), serial, body_of(outcome))
                            };
                            if outbox.send(out).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                }
            }
            .in_current_span(),
        );
        self.operations.insert(id, (serial, task.abort_handle()));
        // No later message of this connection is read before the operation settled (see
        // `live::Link`); a task that ends first drops its sender, which settles too.
        let _ = tokio::time::timeout(timeout, settled).await;
        Ok(())
    }

    /// Writes an operation's message if the operation is still the one under its id.
    async fn forward(
        &mut self,
        socket: &mut WebSocket,
        protocol: Protocol,
        out: Out,
    ) -> Result<(), ()> {
        let (id, serial) = match &out {
            Out::Next(id, serial, _)
            | Out::Error(id, serial, _)
            | Out::Complete(id, serial)
            | Out::Ended(id, serial) => (id.clone(), *serial),
        };
        if self.operations.get(&id).map(|(current, _)| *current) != Some(serial) {
            return Ok(());
        }
        let message = match out {
            Out::Next(id, _, payload) => {
                json!({ "type": protocol.next(), "id": id, "payload": payload })
            }
            Out::Error(id, _, payload) => {
                self.operations.remove(&id);
                json!({ "type": "error", "id": id, "payload": payload })
            }
            Out::Complete(id, _) => {
                self.operations.remove(&id);
                json!({ "type": "complete", "id": id })
            }
            Out::Ended(id, _) => {
                self.operations.remove(&id);
                return Ok(());
            }
        };
        // A client that does not read blocks this write; the overflow alarm must still be
        // heard, so the write gives way to it (the connection then closes as too slow).
        tokio::select! {
            sent = send(socket, &message) => sent,
            () = self.overflow.raised() => Ok(()),
        }
    }
}

fn body_of(outcome: Outcome) -> Json {
    let response = outcome.response;
    let mut body = Map::new();
    body.insert(
        "data".to_owned(),
        serde_json::to_value(&response.data).unwrap_or(Json::Null),
    );
    if !response.errors.is_empty() {
        body.insert(
            "errors".to_owned(),
            serde_json::to_value(&response.errors).unwrap_or_default(),
        );
    }
    if !response.extensions.is_empty() {
        body.insert(
            "extensions".to_owned(),
            serde_json::to_value(&response.extensions).unwrap_or_default(),
        );
    }
    Json::Object(body)
}

fn errors_of(outcome: &Outcome) -> Json {
    serde_json::to_value(&outcome.response.errors).unwrap_or_default()
}

/// The GraphQL parameters of a `subscribe` payload, with the JSON types HTTP requires.
fn params(payload: Json) -> Result<Params, String> {
    let Json::Object(mut payload) = payload else {
        return Err("\"payload\" must be an object".to_owned());
    };
    let string = |value: Option<Json>, name: &str| match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("\"{name}\" must be a string")),
    };
    let map = |value: Option<Json>, name: &str| match value {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(map)) => Ok(map),
        Some(_) => Err(format!("\"{name}\" must be an object")),
    };
    Ok(Params {
        query: string(payload.remove("query"), "query")?,
        operation_name: string(payload.remove("operationName"), "operationName")?,
        variables: map(payload.remove("variables"), "variables")?,
        extensions: map(payload.remove("extensions"), "extensions")?,
    })
}

/// When a token that expires at `exp` (seconds since the epoch) stops being valid; `None`
/// when that is beyond what the clock can represent (the claim rules refuse such tokens
/// first: this never panics on a number a token carried).
fn expiry(exp: u64) -> Option<Instant> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Instant::now().checked_add(Duration::from_secs(exp.saturating_sub(now)))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A message over the size limit closes with 1009; other read errors end the connection.
fn too_big(err: &axum::Error) -> Option<Close> {
    let capacity = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|err| matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    capacity.then(|| Close::new(1009, "Message too big"))
}

async fn send(socket: &mut WebSocket, message: &Json) -> Result<(), ()> {
    socket
        .send(Message::Text(Utf8Bytes::from(message.to_string())))
        .await
        .map_err(|_| ())
}

/// Sends a close frame and waits (briefly) for it to be written.
async fn close(socket: &mut WebSocket, Close(code, reason): Close) {
    tracing::debug!(code, %reason, "closing a WebSocket connection");
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(truncated(&reason, 123)),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// At most `max` bytes of `text`, cut at a character boundary (close reasons hold 123).
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
