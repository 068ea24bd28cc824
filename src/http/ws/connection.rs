//! One WebSocket connection: the task that owns its socket, the [`Phase`]s it moves through,
//! and the operations it runs.
//!
//! Operations run in tasks of their own and hand their messages to this one through a small
//! bounded queue (the outbox); a subscription whose messages cannot be written stops reading
//! its events, its queue in the hub fills, and the hub raises the connection's [`Overflow`]
//! alarm: the connection is closed as too slow, and nobody else waits for it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::StreamExt as _;
use serde_json::{Map, Value as Json};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc},
    task::AbortHandle,
    time::Instant,
};
use tracing::Instrument as _;

use super::protocol::{ClientMessage, Close, Protocol, ServerMessage};
use crate::{
    auth::Identity,
    graphql::{
        error::ErrorCode,
        pipeline::{Context, Method, Started},
        schema::viewer::Viewer,
    },
    http::{
        AppState,
        admission::{BEARER_FORMAT, Denied, Held, identify, parse_bearer},
        params,
        reply::{body_of, retry_seconds},
    },
    live::{Link, Overflow},
    metrics::{self, Transport},
};

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages operations hand to the socket's task before it writes them.
const OUTBOX: usize = 16;

/// Where a connection stands.
enum Phase {
    /// Waiting for `connection_init`, until `deadline`.
    AwaitingInit { deadline: Instant },
    /// Initialised: operations may run.
    Ready(Session),
    /// The server is shutting down: running operations finish and are answered, new ones are
    /// refused, and the connection closes (1001) once none runs.
    Draining,
}

/// An initialised connection's caller.
struct Session {
    /// `None`: anonymous (introspection only, as over HTTP).
    caller: Option<Identity>,
    /// When the caller's token expires (4403 then).
    expires: Option<Instant>,
    /// The caller's place among their user's connections.
    _slot: Option<Held>,
}

/// What one client message leads to.
enum Step {
    Continue,
    Close(Close),
    /// The socket failed: nothing more can be written.
    Gone,
}

/// The socket could not be written: it is gone.
#[derive(Debug, Clone, Copy)]
struct Gone;

/// What an operation task hands the socket's task.
enum Out {
    Result(String, u64, Json),
    Refused(String, u64, Json),
    Complete(String, u64),
    /// The operation ended without a message (a subscription cut short by shutdown).
    Ended(String, u64),
}

pub(super) struct Connection {
    state: AppState,
    protocol: Protocol,
    address_key: String,
    /// The connection's place among all and among its client address's.
    _places: (OwnedSemaphorePermit, Held),
    _counted: metrics::Held,
    phase: Phase,
    /// When the client last sent anything: it must answer pings.
    heard: Instant,
    /// When the connection last had an operation running (or was opened).
    busy: Instant,
    overflow: Arc<Overflow>,
    /// Running operations by id, with their serial numbers: a message of an operation that
    /// was cancelled, or whose id was reused since, is dropped.
    operations: HashMap<String, (u64, AbortHandle)>,
    outbox: mpsc::Sender<Out>,
    inbox: mpsc::Receiver<Out>,
}

impl Connection {
    pub(super) fn new(
        state: AppState,
        protocol: Protocol,
        address_key: String,
        places: (OwnedSemaphorePermit, Held),
    ) -> Self {
        let (outbox, inbox) = mpsc::channel(OUTBOX);
        let init_timeout = state.config.websocket.init_timeout;
        let now = Instant::now();
        Self {
            state,
            protocol,
            address_key,
            _places: places,
            _counted: metrics::get().hold_websocket(),
            phase: Phase::AwaitingInit {
                deadline: now.checked_add(init_timeout).unwrap_or(now),
            },
            heard: now,
            busy: now,
            overflow: Arc::new(Overflow::default()),
            operations: HashMap::new(),
            outbox,
            inbox,
        }
    }

    /// Serves the connection, then closes it with the reason it ended for.
    pub(super) async fn run(mut self, mut socket: WebSocket) {
        let ended = self.serve(&mut socket).await;
        for (_, (_, task)) in self.operations.drain() {
            task.abort();
        }
        match ended {
            Some(close) => send_close(&mut socket, close).await,
            // The client closed (or the socket failed): complete the closing handshake, so a
            // client that said goodbye sees its own code echoed rather than an abnormal end.
            None => {
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, futures_util::SinkExt::close(&mut socket))
                        .await;
            }
        }
    }

    /// Serves until the connection should end; the close to send, if any.
    async fn serve(&mut self, socket: &mut WebSocket) -> Option<Close> {
        let limits = self.state.config.websocket.clone();
        let shutdown = self.state.sockets.shutdown.clone();
        let mut keepalive = (!limits.keepalive.is_zero()).then(|| {
            let first = Instant::now()
                .checked_add(limits.keepalive)
                .unwrap_or_else(Instant::now);
            tokio::time::interval_at(first, limits.keepalive)
        });
        // A client that has not answered two pings in a row is gone (its network dropped
        // without a close, or it hangs): its slot is not kept for it.
        let silence = limits.keepalive.saturating_mul(2);
        loop {
            if matches!(self.phase, Phase::Draining) && self.operations.is_empty() {
                return Some(Close::going_away());
            }
            let init_deadline = match &self.phase {
                Phase::AwaitingInit { deadline } => Some(*deadline),
                _ => None,
            };
            let expires = match &self.phase {
                Phase::Ready(session) => session.expires,
                _ => None,
            };
            let initialised = init_deadline.is_none();
            // Idle: nothing running since `busy`, for WS_IDLE_TIMEOUT.
            let idle_at = (!limits.idle_timeout.is_zero() && self.operations.is_empty())
                .then(|| self.busy.checked_add(limits.idle_timeout))
                .flatten();
            tokio::select! {
                biased;
                () = self.overflow.raised() => return Some(Close::too_slow()),
                () = shutdown.cancelled(), if !matches!(self.phase, Phase::Draining) => {
                    // In-flight queries and mutations finish and are answered; subscriptions
                    // end without `complete`, so clients resubscribe after reconnecting.
                    self.phase = Phase::Draining;
                }
                () = sleep_until(init_deadline) => return Some(Close::init_timeout()),
                () = sleep_until(expires) => return Some(Close::expired()),
                () = sleep_until(idle_at) => return Some(Close::idle()),
                Some(out) = self.inbox.recv() => {
                    if self.forward(socket, out).await.is_err() {
                        return None;
                    }
                    if self.operations.is_empty() {
                        self.busy = Instant::now();
                    }
                }
                _ = tick(&mut keepalive), if initialised => {
                    if self.protocol.answers_pings() && self.heard.elapsed() > silence {
                        return Some(Close::ping_timeout());
                    }
                    if send(socket, &ServerMessage::keepalive(self.protocol)).await.is_err() {
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
                        Message::Binary(_) => return Some(Close::binary()),
                    };
                    match self.handle(socket, &text).await {
                        Step::Continue => {}
                        Step::Close(close) => return Some(close),
                        Step::Gone => return None,
                    }
                }
            }
        }
    }

    /// Handles one client message.
    async fn handle(&mut self, socket: &mut WebSocket, text: &str) -> Step {
        let message = match ClientMessage::parse(text, self.protocol) {
            Ok(message) => message,
            Err(close) => return Step::Close(close),
        };
        match message {
            ClientMessage::ConnectionInit { payload } => self.initialise(socket, &payload).await,
            ClientMessage::Ping { payload } => {
                written(send(socket, &ServerMessage::Pong { payload }).await)
            }
            ClientMessage::Pong => Step::Continue,
            ClientMessage::Terminate => Step::Gone,
            ClientMessage::Subscribe { id, payload } => {
                let caller = match &self.phase {
                    Phase::AwaitingInit { .. } => return Step::Close(Close::unauthorized()),
                    Phase::Ready(session) => Some(session.caller.clone()),
                    Phase::Draining => None,
                };
                let params = match params::from_json(payload) {
                    Ok(params) => params,
                    Err(why) => return Step::Close(Close::invalid(&why)),
                };
                if self.operations.contains_key(&id) {
                    return Step::Close(Close::duplicate(&id));
                }
                written(self.start(socket, id, params, caller).await)
            }
            ClientMessage::Complete { id } => {
                if let Some(id) = id
                    && let Some((_, task)) = self.operations.remove(&id)
                {
                    task.abort();
                }
                Step::Continue
            }
        }
    }

    /// `connection_init`: authenticates the caller (or not: no token is anonymous) and takes
    /// their place among their user's connections.
    async fn initialise(&mut self, socket: &mut WebSocket, payload: &Map<String, Json>) -> Step {
        if !matches!(self.phase, Phase::AwaitingInit { .. }) {
            return Step::Close(Close::second_init());
        }
        let caller = match self.authenticate(payload).await {
            Ok(caller) => caller,
            Err(refused) => {
                if self.protocol == Protocol::Legacy {
                    // The legacy protocol reports a refused init in a message first.
                    let error = ServerMessage::ConnectionError {
                        payload: serde_json::json!({ "message": refused.reason }),
                    };
                    let _ = send(socket, &error).await;
                }
                return Step::Close(refused);
            }
        };
        let mut slot = None;
        if let Some(identity) = &caller {
            let users = &self.state.sockets.users;
            let Some(held) = users.take(&format!("user:{}", identity.user_id)) else {
                metrics::get().rate_limited(Transport::WebSocket);
                return Step::Close(Close::try_later(format!(
                    "RATE_LIMITED: this user holds {} WebSocket connections, the most one user may; close one",
                    users.max()
                )));
            };
            slot = Some(held);
        }
        let expires = caller
            .as_ref()
            .and_then(|identity| expiry(identity.expires_at));
        self.phase = Phase::Ready(Session {
            caller,
            expires,
            _slot: slot,
        });
        written(send(socket, &ServerMessage::ConnectionAck).await)
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
            return Err(Close::unauthenticated(BEARER_FORMAT));
        };
        match identify(&self.state, token, &self.address_key).await {
            Ok(identity) => {
                tracing::Span::current().record("user_id", identity.user_id.as_str());
                Ok(Some(identity))
            }
            Err(Denied::Invalid(err)) => Err(Close::unauthenticated(&err.to_string())),
            Err(Denied::RateLimited(retry_after)) => {
                metrics::get().rate_limited(Transport::WebSocket);
                Err(Close::try_later(format!(
                    "RATE_LIMITED: retry after {} s",
                    retry_seconds(retry_after)
                )))
            }
            Err(Denied::Unavailable(message)) => {
                Err(Close::try_later(format!("SERVICE_UNAVAILABLE: {message}")))
            }
        }
    }

    /// Starts an operation in a task of its own, after the connection's limits, the
    /// caller's rate and a place in flight allow it; a refusal is an `error` message, and
    /// the connection stays. `caller`: `None` while draining (every operation is refused).
    async fn start(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        params: crate::graphql::pipeline::Params,
        caller: Option<Option<Identity>>,
    ) -> Result<(), Gone> {
        let Some(caller) = caller else {
            let refusal = ServerMessage::refusal(
                id,
                ErrorCode::ServiceUnavailable,
                "The server is shutting down; reconnect and retry.",
            );
            return send(socket, &refusal).await;
        };
        let limit = self.state.config.websocket.per_connection;
        if self.operations.len() >= limit {
            let refusal = ServerMessage::refusal(
                id,
                ErrorCode::TooManySubscriptions,
                &format!(
                    "This connection already runs {limit} operations, the most it allows; complete one first."
                ),
            );
            return send(socket, &refusal).await;
        }
        self.busy = Instant::now();
        // A place among the operations in flight, as an HTTP request takes one; a
        // subscription gives it back once started (it then runs no work of its own; its
        // number is bounded per user and per connection instead).
        let Some(place) = self.state.in_flight.enter() else {
            metrics::get().load_shed(Transport::WebSocket);
            let refusal = ServerMessage::refusal(
                id,
                ErrorCode::ServiceUnavailable,
                "The server is at capacity; retry shortly.",
            );
            return send(socket, &refusal).await;
        };
        let key = match &caller {
            Some(identity) => format!("user:{}", identity.user_id),
            None => self.address_key.clone(),
        };
        if let Err(retry_after) = self.state.rate_limit.check(&key, 1) {
            metrics::get().rate_limited(Transport::WebSocket);
            let refusal = ServerMessage::refusal(
                id,
                ErrorCode::RateLimited,
                &format!(
                    "Too many requests; slow down and retry after {} s.",
                    retry_seconds(retry_after)
                ),
            );
            return send(socket, &refusal).await;
        }
        let serial = self
            .state
            .sockets
            .serials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = self.state.config.request_timeout;
        let (link, settled) = Link::new(Arc::clone(&self.overflow));
        let now = Instant::now();
        let cx = Context {
            method: Method::WebSocket,
            deadline: now.checked_add(timeout).unwrap_or(now),
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
                        let out = if outcome.is_error() {
                            Out::Refused(id.clone(), serial, errors_of(&outcome))
                        } else {
                            Out::Result(id.clone(), serial, payload_of(outcome))
                        };
                        let refused = matches!(out, Out::Refused(..));
                        // `next` then `complete`: the outbox keeps them in order.
                        if outbox.send(out).await.is_ok() && !refused {
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
                                Out::Refused(id.clone(), serial, errors_of(&outcome))
                            } else {
                                Out::Result(id.clone(), serial, payload_of(outcome))
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
    async fn forward(&mut self, socket: &mut WebSocket, out: Out) -> Result<(), Gone> {
        let (id, serial) = match &out {
            Out::Result(id, serial, _)
            | Out::Refused(id, serial, _)
            | Out::Complete(id, serial)
            | Out::Ended(id, serial) => (id.clone(), *serial),
        };
        if self.operations.get(&id).map(|(current, _)| *current) != Some(serial) {
            return Ok(());
        }
        let message = match out {
            Out::Result(id, _, payload) => ServerMessage::result(self.protocol, id, payload),
            Out::Refused(id, _, payload) => {
                self.operations.remove(&id);
                ServerMessage::Error { id, payload }
            }
            Out::Complete(id, _) => {
                self.operations.remove(&id);
                ServerMessage::Complete { id }
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

/// An executed operation's `next` payload: the GraphQL response body HTTP would send.
fn payload_of(outcome: crate::graphql::pipeline::Outcome) -> Json {
    serde_json::to_value(body_of(outcome)).unwrap_or_default()
}

/// The errors of an operation that produced no result, for an `error` message.
fn errors_of(outcome: &crate::graphql::pipeline::Outcome) -> Json {
    serde_json::to_value(&outcome.response.errors).unwrap_or_default()
}

fn written(sent: Result<(), Gone>) -> Step {
    match sent {
        Ok(()) => Step::Continue,
        Err(Gone) => Step::Gone,
    }
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

async fn sleep_until(at: Option<Instant>) {
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
    capacity.then(Close::too_big)
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), Gone> {
    socket
        .send(Message::Text(Utf8Bytes::from(message.text())))
        .await
        .map_err(|_| Gone)
}

/// Sends a close frame and waits (briefly) for it to be written.
pub(super) async fn send_close(socket: &mut WebSocket, close: Close) {
    tracing::debug!(code = close.code, reason = %close.reason, "closing a WebSocket connection");
    let frame = CloseFrame {
        code: close.code,
        reason: Utf8Bytes::from(close.frame_reason()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}
