//! The GraphQL-over-WebSocket protocols as data: the subprotocols spoken, every message a
//! client may send (read and checked into [`ClientMessage`]), every message the server sends
//! ([`ServerMessage`]), and every close ([`Close`]) with its code. No I/O: the connection loop
//! (`connection`) reads frames and writes what this module builds.
//!
//! `graphql-transport-ws` (the `graphql-ws` library's, which Apollo Client, urql and
//! GraphiQL speak) and the legacy `graphql-ws` of subscriptions-transport-ws differ in their
//! message names (`subscribe`/`start`, `complete`/`stop`, `next`/`data`) and keep-alive
//! (`ping`, answered by `pong`; `ka`, never answered).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::http::json;

/// The subprotocols spoken, in order of preference.
pub(super) const TRANSPORT_WS: &str = "graphql-transport-ws";
pub(super) const LEGACY_WS: &str = "graphql-ws";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// `graphql-ws` (subscriptions-transport-ws, deprecated).
    Legacy,
}

impl Protocol {
    /// The protocol a handshake agreed on, from its `Sec-WebSocket-Protocol`.
    pub(super) fn from_header(value: &[u8]) -> Option<Self> {
        match value {
            b"graphql-transport-ws" => Some(Self::Transport),
            b"graphql-ws" => Some(Self::Legacy),
            _ => None,
        }
    }

    /// Whether the client must answer the server's keep-alive (the legacy `ka` has no
    /// answer).
    pub(super) fn answers_pings(self) -> bool {
        self == Self::Transport
    }
}

/// A client's message, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ClientMessage {
    /// `connection_init`, with its payload (`connectionParams`; empty when absent).
    ConnectionInit { payload: Map<String, Json> },
    /// `ping` (transport), whose payload the `pong` returns.
    Ping { payload: Option<Json> },
    /// `pong` (transport).
    Pong,
    /// `subscribe` (transport) or `start` (legacy): an operation under a client's id.
    Subscribe { id: String, payload: Json },
    /// `complete` (transport) or `stop` (legacy): the client ends an operation; an id that
    /// names none is no error.
    Complete { id: Option<String> },
    /// `connection_terminate` (legacy).
    Terminate,
}

/// Every message type of either protocol, as it arrives: what serde reads before the
/// protocol's rules are applied.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Json>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Json>,
    },
    Pong {},
    Subscribe {
        #[serde(default)]
        id: Option<Json>,
        #[serde(default)]
        payload: Option<Json>,
    },
    Start {
        #[serde(default)]
        id: Option<Json>,
        #[serde(default)]
        payload: Option<Json>,
    },
    Complete {
        #[serde(default)]
        id: Option<Json>,
    },
    Stop {
        #[serde(default)]
        id: Option<Json>,
    },
    ConnectionTerminate {},
}

impl ClientMessage {
    /// Reads a text frame of `protocol`; anything else closes with 4400.
    pub(super) fn parse(text: &str, protocol: Protocol) -> Result<Self, Close> {
        // Strict JSON first: a key given twice has no single meaning.
        let value = json::from_str(text).map_err(|_| Close::invalid("not a JSON object"))?;
        let Json::Object(object) = &value else {
            return Err(Close::invalid("not a JSON object"));
        };
        match object.get("type") {
            Some(Json::String(_)) => {}
            _ => return Err(Close::invalid("\"type\" must be a string")),
        }
        let wire: Wire =
            serde_json::from_value(value).map_err(|_| Close::invalid("unknown message type"))?;
        let transport = protocol == Protocol::Transport;
        match wire {
            Wire::ConnectionInit { payload } => Ok(Self::ConnectionInit {
                payload: match payload {
                    None | Some(Json::Null) => Map::new(),
                    Some(Json::Object(payload)) => payload,
                    Some(_) => return Err(Close::invalid("\"payload\" must be an object")),
                },
            }),
            Wire::Ping { payload } if transport => Ok(Self::Ping { payload }),
            Wire::Pong {} if transport => Ok(Self::Pong),
            Wire::Subscribe { id, payload } if transport => Self::subscribe(id, payload),
            Wire::Start { id, payload } if !transport => Self::subscribe(id, payload),
            Wire::Complete { id } if transport => Ok(Self::Complete { id: string(id) }),
            Wire::Stop { id } if !transport => Ok(Self::Complete { id: string(id) }),
            Wire::ConnectionTerminate {} if !transport => Ok(Self::Terminate),
            _ => Err(Close::invalid("unknown message type")),
        }
    }

    fn subscribe(id: Option<Json>, payload: Option<Json>) -> Result<Self, Close> {
        let id = string(id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Close::invalid("\"id\" must be a non-empty string"))?;
        let payload = payload.ok_or_else(|| Close::invalid("\"payload\" is missing"))?;
        Ok(Self::Subscribe { id, payload })
    }
}

fn string(value: Option<Json>) -> Option<String> {
    match value {
        Some(Json::String(text)) => Some(text),
        _ => None,
    }
}

/// A message the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ServerMessage {
    ConnectionAck,
    /// The legacy protocol's refusal of `connection_init`, sent before the close.
    ConnectionError {
        payload: Json,
    },
    Ping,
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<Json>,
    },
    /// The legacy keep-alive.
    Ka,
    /// A result (transport).
    Next {
        id: String,
        payload: Json,
    },
    /// A result (legacy).
    Data {
        id: String,
        payload: Json,
    },
    Error {
        id: String,
        payload: Json,
    },
    Complete {
        id: String,
    },
}

impl ServerMessage {
    /// The keep-alive of `protocol`.
    pub(super) fn keepalive(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Transport => Self::Ping,
            Protocol::Legacy => Self::Ka,
        }
    }

    /// A result of operation `id` in `protocol`'s name for it.
    pub(super) fn result(protocol: Protocol, id: String, payload: Json) -> Self {
        match protocol {
            Protocol::Transport => Self::Next { id, payload },
            Protocol::Legacy => Self::Data { id, payload },
        }
    }

    /// The refusal of operation `id` (it never ran), with its code.
    pub(super) fn refusal(
        id: String,
        code: crate::graphql::error::ErrorCode,
        message: &str,
    ) -> Self {
        let payload = serde_json::json!([
            { "message": message, "extensions": { "code": code.as_str() } }
        ]);
        Self::Error { id, payload }
    }

    pub(super) fn text(&self) -> String {
        // Strings and JSON values only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why the server closes a connection, with the code the protocol gives it. Reasons start
/// with the `extensions.code` HTTP would answer with where there is one (`UNAUTHENTICATED:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Close {
    pub(super) code: u16,
    pub(super) reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// 4400: a message that is not valid JSON of a known type.
    pub(super) fn invalid(why: &str) -> Self {
        Self::new(4400, format!("Invalid message received: {why}"))
    }

    /// 4400: binary frames carry no GraphQL.
    pub(super) fn binary() -> Self {
        Self::invalid("binary messages are not supported")
    }

    /// 4401: `subscribe` before `connection_ack`.
    pub(super) fn unauthorized() -> Self {
        Self::new(4401, "Unauthorized")
    }

    /// 4403: the token of `connection_init` was refused, or it expired.
    pub(super) fn unauthenticated(why: &str) -> Self {
        Self::new(4403, format!("UNAUTHENTICATED: {why}"))
    }

    /// 4403: the connection's token expired.
    pub(super) fn expired() -> Self {
        Self::unauthenticated("the token has expired; reconnect with a fresh one")
    }

    /// 4406: no subprotocol the server speaks was offered.
    pub(super) fn subprotocol() -> Self {
        Self::new(4406, "Subprotocol not acceptable: use graphql-transport-ws")
    }

    /// 4408: no `connection_init` within `WS_INIT_TIMEOUT`.
    pub(super) fn init_timeout() -> Self {
        Self::new(4408, "Connection initialisation timeout")
    }

    /// 4408: nothing heard from the client within two keep-alive periods.
    pub(super) fn ping_timeout() -> Self {
        Self::new(
            4408,
            "Ping timeout: nothing heard from the client within two keep-alive periods; reconnect",
        )
    }

    /// 4409: `subscribe` with an id in use.
    pub(super) fn duplicate(id: &str) -> Self {
        Self::new(
            4409,
            format!("Subscriber for {} already exists", truncated(id, 60)),
        )
    }

    /// 4429: a second `connection_init`.
    pub(super) fn second_init() -> Self {
        Self::new(4429, "Too many initialisation requests")
    }

    /// 1009: a message over `WS_MAX_MESSAGE_BYTES`.
    pub(super) fn too_big() -> Self {
        Self::new(1009, "Message too big")
    }

    /// 1013: events were not read in time.
    pub(super) fn too_slow() -> Self {
        Self::new(
            1013,
            "Too slow: events were not read in time; reconnect and resume from the last version",
        )
    }

    /// 1013: refused for now at `connection_init`; `reason` starts with its code.
    pub(super) fn try_later(reason: String) -> Self {
        Self::new(1013, reason)
    }

    /// 1001: the server is shutting down.
    pub(super) fn going_away() -> Self {
        Self::new(1001, "Server shutting down; reconnect")
    }

    /// 1000: no operation for `WS_IDLE_TIMEOUT`.
    pub(super) fn idle() -> Self {
        Self::new(
            1000,
            "Idle: no operation for WS_IDLE_TIMEOUT; reconnect when needed",
        )
    }

    /// The reason as a close frame can carry it (123 bytes at most).
    pub(super) fn frame_reason(&self) -> String {
        truncated(&self.reason, 123)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(message: &Json, protocol: Protocol) -> Result<ClientMessage, Close> {
        ClientMessage::parse(&message.to_string(), protocol)
    }

    #[test]
    fn every_client_message_of_each_protocol_is_read() {
        use Protocol::{Legacy, Transport};
        let query = json!({ "query": "{ apiVersion }" });
        for protocol in [Transport, Legacy] {
            assert_eq!(
                parse(&json!({ "type": "connection_init" }), protocol),
                Ok(ClientMessage::ConnectionInit {
                    payload: Map::new()
                })
            );
            let init = parse(
                &json!({ "type": "connection_init", "payload": { "authorization": "Bearer t" } }),
                protocol,
            );
            assert!(
                matches!(init, Ok(ClientMessage::ConnectionInit { payload }) if payload.len() == 1)
            );
        }
        assert_eq!(
            parse(
                &json!({ "type": "subscribe", "id": "1", "payload": query }),
                Transport
            ),
            Ok(ClientMessage::Subscribe {
                id: "1".to_owned(),
                payload: query.clone()
            })
        );
        assert_eq!(
            parse(
                &json!({ "type": "start", "id": "1", "payload": query }),
                Legacy
            ),
            Ok(ClientMessage::Subscribe {
                id: "1".to_owned(),
                payload: query
            })
        );
        assert_eq!(
            parse(&json!({ "type": "complete", "id": "1" }), Transport),
            Ok(ClientMessage::Complete {
                id: Some("1".to_owned())
            })
        );
        assert_eq!(
            parse(&json!({ "type": "stop", "id": 7 }), Legacy),
            Ok(ClientMessage::Complete { id: None })
        );
        assert_eq!(
            parse(
                &json!({ "type": "ping", "payload": { "at": 1 } }),
                Transport
            ),
            Ok(ClientMessage::Ping {
                payload: Some(json!({ "at": 1 }))
            })
        );
        assert_eq!(
            parse(&json!({ "type": "pong" }), Transport),
            Ok(ClientMessage::Pong)
        );
        assert_eq!(
            parse(&json!({ "type": "connection_terminate" }), Legacy),
            Ok(ClientMessage::Terminate)
        );
    }

    #[test]
    fn malformed_and_foreign_messages_close_with_4400() {
        use Protocol::{Legacy, Transport};
        let cases: [(&str, Protocol, &str); 12] = [
            ("not json", Transport, "not a JSON object"),
            ("[1]", Transport, "not a JSON object"),
            (
                r#"{"type":"ping","type":"pong"}"#,
                Transport,
                "not a JSON object",
            ),
            (r#"{"type":7}"#, Transport, "\"type\" must be a string"),
            (r#"{"id":"1"}"#, Transport, "\"type\" must be a string"),
            (r#"{"type":"hello"}"#, Transport, "unknown message type"),
            (
                r#"{"type":"start","id":"1","payload":{}}"#,
                Transport,
                "unknown message type",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{}}"#,
                Legacy,
                "unknown message type",
            ),
            (r#"{"type":"ping"}"#, Legacy, "unknown message type"),
            (
                r#"{"type":"subscribe","id":"","payload":{}}"#,
                Transport,
                "\"id\" must be a non-empty string",
            ),
            (
                r#"{"type":"subscribe","id":"1"}"#,
                Transport,
                "\"payload\" is missing",
            ),
            (
                r#"{"type":"connection_init","payload":[]}"#,
                Transport,
                "\"payload\" must be an object",
            ),
        ];
        for (text, protocol, why) in cases {
            let close = ClientMessage::parse(text, protocol).expect_err(text);
            assert_eq!(close.code, 4400, "{text}");
            assert!(close.reason.ends_with(why), "{text}: {}", close.reason);
        }
    }

    #[test]
    fn server_messages_are_written_in_each_protocols_names() {
        let written = |message: ServerMessage| -> Json {
            serde_json::from_str(&message.text()).expect("json")
        };
        let payload = json!({ "data": { "apiVersion": "1" } });
        assert_eq!(
            written(ServerMessage::result(
                Protocol::Transport,
                "1".to_owned(),
                payload.clone()
            )),
            json!({ "type": "next", "id": "1", "payload": payload })
        );
        assert_eq!(
            written(ServerMessage::result(
                Protocol::Legacy,
                "1".to_owned(),
                payload.clone()
            )),
            json!({ "type": "data", "id": "1", "payload": payload })
        );
        assert_eq!(
            ServerMessage::keepalive(Protocol::Transport).text(),
            r#"{"type":"ping"}"#
        );
        assert_eq!(
            ServerMessage::keepalive(Protocol::Legacy).text(),
            r#"{"type":"ka"}"#
        );
        assert_eq!(
            ServerMessage::ConnectionAck.text(),
            r#"{"type":"connection_ack"}"#
        );
        assert_eq!(
            ServerMessage::Pong { payload: None }.text(),
            r#"{"type":"pong"}"#
        );
        let refusal = ServerMessage::refusal(
            "q".to_owned(),
            crate::graphql::error::ErrorCode::RateLimited,
            "slow down",
        );
        assert_eq!(
            serde_json::from_str::<Json>(&refusal.text()).expect("json"),
            json!({ "type": "error", "id": "q",
                    "payload": [{ "message": "slow down", "extensions": { "code": "RATE_LIMITED" } }] })
        );
    }

    #[test]
    fn every_close_has_its_protocol_code_and_fits_a_frame() {
        let closes = [
            (Close::invalid("x"), 4400),
            (Close::binary(), 4400),
            (Close::unauthorized(), 4401),
            (Close::unauthenticated("bad"), 4403),
            (Close::expired(), 4403),
            (Close::subprotocol(), 4406),
            (Close::init_timeout(), 4408),
            (Close::ping_timeout(), 4408),
            (Close::duplicate(&"🦀".repeat(100)), 4409),
            (Close::second_init(), 4429),
            (Close::too_big(), 1009),
            (Close::too_slow(), 1013),
            (
                Close::try_later("RATE_LIMITED: retry after 1 s".to_owned()),
                1013,
            ),
            (Close::going_away(), 1001),
            (Close::idle(), 1000),
        ];
        for (close, code) in closes {
            assert_eq!(close.code, code, "{}", close.reason);
            assert!(close.frame_reason().len() <= 123);
        }
        assert!(
            Close::unauthenticated("bad")
                .reason
                .starts_with("UNAUTHENTICATED: ")
        );
        assert_eq!(truncated("é", 1), "", "cut at a character boundary");
    }
}
