//! A GraphQL-over-WebSocket client for tests: a real WebSocket (tokio-tungstenite) speaking
//! `graphql-transport-ws` message by message, so tests can also send what a correct client
//! never would.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest as _, http::HeaderValue},
};

/// How long a test waits for a message it expects before failing (a bound, not a delay).
const PATIENCE: Duration = Duration::from_secs(15);

pub struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// How the connection ended, once `recv` saw it end.
    ended: Option<Closed>,
}

/// How a connection ended: the close code and reason, or `None` for no close frame.
pub type Closed = Option<(u16, String)>;

impl Socket {
    /// Connects to `/graphql` offering `protocol` (none if `None`).
    pub async fn connect_with(addr: SocketAddr, protocol: Option<&str>) -> Self {
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .expect("a request");
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(protocol).expect("ascii"),
            );
        }
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the WebSocket handshake succeeds");
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Self {
            stream,
            protocol,
            ended: None,
        }
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, Some("graphql-transport-ws")).await
    }

    /// Connects with extra handshake headers (`Origin`, `X-Forwarded-For`, …).
    pub async fn connect_with_headers(addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        match Self::try_connect(addr, headers).await {
            Ok(socket) => socket,
            Err(status) => panic!("the WebSocket handshake was refused with {status}"),
        }
    }

    /// Tries the handshake with extra headers; the HTTP status when it is refused.
    pub async fn try_connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, response)) => Ok(Self {
                stream,
                protocol: response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                ended: None,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(err) => panic!("the WebSocket handshake failed: {err}"),
        }
    }

    /// Connects and completes `connection_init` with `token` (anonymous if `None`).
    pub async fn open(addr: SocketAddr, token: Option<&str>) -> Self {
        let mut socket = Self::connect(addr).await;
        socket.init(token).await;
        socket
    }

    pub async fn send(&mut self, message: &Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(Message::text(text))
            .await
            .expect("the message is sent");
    }

    pub async fn init(&mut self, token: Option<&str>) {
        let payload = match token {
            Some(token) => json!({ "authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        self.send(&json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = self.recv().await.expect("an answer to connection_init");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// Subscribes (or runs a query) under `id`, then makes sure the operation has settled on
    /// the server: the server reads no message after `subscribe` before the subscription is
    /// registered, so once the `pong` arrives, no later change can be missed.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(&json!({ "type": "subscribe", "id": id,
                           "payload": { "query": query, "variables": variables } }))
            .await;
        self.send(&json!({ "type": "ping" })).await;
        let message = self.recv().await.expect("the connection stays open");
        assert_eq!(message["type"], "pong", "unexpected message before pong");
    }

    /// The next GraphQL message (anything but pings and pongs), or `None` once closed.
    pub async fn recv(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("a message arrives in time")?;
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON messages");
                    if value["type"] == "ping" {
                        self.send(&json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(value);
                }
                Ok(Message::Close(frame)) => {
                    self.ended = Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                    return None;
                }
                Err(_) => {
                    self.ended = Some(None);
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    /// The payload of the next `next` message for `id`; fails on anything else.
    pub async fn next(&mut self, id: &str) -> Value {
        let message = self.recv().await.expect("the connection stays open");
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        message["payload"].clone()
    }

    /// Closes the connection from the client's side and waits for the server's answer.
    pub async fn send_close(&mut self) {
        let _ = self.stream.close(None).await;
        let _ = self.closed().await;
    }

    /// Reads everything without ever answering a `ping` (a client whose network went away,
    /// or that hangs) until the server closes the connection; returns the close frame.
    pub async fn silent_until_closed(&mut self, patience: Duration) -> Closed {
        loop {
            let message = tokio::time::timeout(patience, self.stream.next())
                .await
                .expect("the server closes the connection in time");
            match message {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until the server closes the connection and returns its close frame.
    pub async fn closed(&mut self) -> Closed {
        if let Some(ended) = self.ended.take() {
            return ended;
        }
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("the connection closes in time");
            match message {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// The `taskChanged` subscription with the fields an Apollo cache needs.
pub const TASK_CHANGED: &str = "subscription Changes($filter: TaskFilter) {
  taskChanged(filter: $filter) { kind taskId at task { id title completed description } }
}";

/// The `taskChanged` event in a `next` payload, failing the test if it carries errors.
#[track_caller]
pub fn task_changed(payload: &Value) -> &Value {
    assert!(payload.get("errors").is_none(), "{payload}");
    &payload["data"]["taskChanged"]
}
