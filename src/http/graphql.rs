//! `GET` and `POST /graphql`: GraphQL over HTTP, as the spec (graphql/graphql-over-http)
//! and its `graphql-http` audit describe it.
//!
//! In order, a request is checked for: an acceptable response type (406), a JSON body on
//! POST (415), a valid bearer token if one is sent (401), the caller's rate (429), the body
//! size (413) and JSON (400), the batch size (400). Only then do operations run, in order,
//! through `graphql::pipeline`, whose [`Outcome`] decides the status:
//!
//! | outcome                          | graphql-response+json | application/json |
//! |----------------------------------|-----------------------|------------------|
//! | executed (has `data`)            | 200                   | 200              |
//! | unusable parameters              | 400                   | 400              |
//! | document error (parse, validate) | 400                   | 200 (legacy)     |
//! | mutation over GET                | 405 + `Allow: POST`   | 405              |
//! | introspection refused            | 403 / 401             | 403 / 401        |
//! | deadline passed                  | 504                   | 504              |
//!
//! The newest spec draft moves validation errors to 422; the published audit still expects
//! 400, which Apollo Client and urql both handle, so taskql answers 400.

use std::net::SocketAddr;

use axum::{
    body::{Body, Bytes},
    extract::{
        ConnectInfo, RawQuery, State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value as Json, json};
use tokio::time::Instant;

use super::{
    AppState, graphiql, json,
    negotiate::{self, MediaType},
    rate_limit, ws,
};
use crate::{
    auth::{AuthError, Identity},
    graphql::{
        error::{ErrorCode, code_of},
        pipeline::{Context, Failure, Method, Outcome, Params},
        viewer::Viewer,
    },
};

pub async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The same path serves GraphQL over WebSocket: what clients use by default.
    if let Ok(upgrade) = upgrade {
        return ws::upgrade(state, peer, &headers, upgrade).await;
    }
    if negotiate::wants_html(&headers) {
        return graphiql::page(&state, query.as_deref());
    }
    let Some(media) = negotiate::response_type(&headers) else {
        return not_acceptable();
    };
    let deadline = Instant::now() + state.config.http.request_timeout;
    let params = match get_params(query.as_deref().unwrap_or_default()) {
        Ok(params) => params,
        Err(message) => {
            return error(
                media,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &message,
            );
        }
    };
    let admitted = match admit(&state, &headers, peer, media).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let cx = Context {
        method: Method::Get,
        deadline,
        viewer: admitted.viewer,
        live: None,
    };
    let outcome = state.executor.execute(params, &cx).await;
    respond(media, outcome)
}

pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(media) = negotiate::response_type(&headers) else {
        return not_acceptable();
    };
    let deadline = Instant::now() + state.config.http.request_timeout;
    if !is_json_content(&headers) {
        return error(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "POST bodies must be application/json (UTF-8).",
        );
    }
    let admitted = match admit(&state, &headers, peer, media).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let body = match read_body(body, state.config.http.max_body_bytes, media).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let json: Json = match json::from_slice(&body) {
        Ok(json) => json,
        Err(err) => {
            let message = format!("The body is not valid JSON: {err}.");
            return error(
                media,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &message,
            );
        }
    };
    let cx = Context {
        method: Method::Post,
        deadline,
        viewer: admitted.viewer,
        live: None,
    };
    match json {
        Json::Array(items) => batch(&state, media, items, &cx, &admitted.key).await,
        single => {
            let outcome = match params_from_json(single) {
                Ok(params) => state.executor.execute(params, &cx).await,
                Err(message) => Outcome::bad_params(message),
            };
            respond(media, outcome)
        }
    }
}

/// A JSON array of operations (Apollo's `BatchHttpLink`): run in order, answered in order.
async fn batch(
    state: &AppState,
    media: MediaType,
    items: Vec<Json>,
    cx: &Context,
    key: &str,
) -> Response {
    let max = state.executor.limits().max_batch;
    if items.is_empty() || items.len() > max {
        let message = format!(
            "A batch must hold 1 to {max} operations; this one has {}.",
            items.len()
        );
        return error(
            media,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &message,
        );
    }
    // Each operation costs what a request of its own would: the first was charged on entry.
    let more = u32::try_from(items.len() - 1).unwrap_or(u32::MAX);
    if let Err(response) = charge(state, key, more, media) {
        return *response;
    }
    let mut bodies = Vec::with_capacity(items.len());
    for item in items {
        let outcome = match params_from_json(item) {
            Ok(params) => state.executor.execute(params, cx).await,
            Err(message) => Outcome::bad_params(message),
        };
        bodies.push(body_of(outcome));
    }
    json_response(media, StatusCode::OK, &bodies)
}

/// The caller of a request, authenticated and charged one operation.
pub(super) struct Admitted {
    pub(super) viewer: std::sync::Arc<Viewer>,
    /// The rate-limit key the request's operations are charged to.
    key: String,
}

/// Authenticates the caller and charges their rate limit. A missing token is anonymous; a
/// token that is present but unusable is refused outright, never downgraded to anonymous.
/// A token already verified is charged to its user alone (see [`identify`]).
pub(super) async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
) -> Result<Admitted, Response> {
    let client =
        rate_limit::client_addr(peer.ip(), headers, &state.config.rate_limit.trusted_proxies);
    let address_key = rate_limit::address_key(client, state.config.rate_limit.ipv6_prefix);
    let identity = match bearer_token(headers, media).map_err(|r| *r)? {
        None => None,
        Some(token) => Some(
            identify(state, token, &address_key)
                .await
                .map_err(|denied| denied.into_response(media))?,
        ),
    };
    let key = match &identity {
        Some(identity) => {
            tracing::Span::current().record("user_id", identity.user_id.as_str());
            format!("user:{}", identity.user_id)
        }
        None => address_key,
    };
    charge(state, &key, 1, media).map_err(|r| *r)?;
    let viewer = std::sync::Arc::new(Viewer::new(identity, state.db.clone()));
    Ok(Admitted { viewer, key })
}

/// Charges `operations` to `key`, or answers 429 with `Retry-After`.
fn charge(
    state: &AppState,
    key: &str,
    operations: u32,
    media: MediaType,
) -> Result<(), Box<Response>> {
    state
        .rate_limit
        .check(key, operations)
        .map_err(|retry_after| Box::new(rate_limited(media, retry_after)))
}

/// 429 with `Retry-After`.
pub(super) fn rate_limited(media: MediaType, retry_after: std::time::Duration) -> Response {
    crate::metrics::get().rate_limited(crate::metrics::Transport::Http);
    let mut response = error(
        media,
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        "Too many requests; slow down and retry after the time in the Retry-After header.",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_seconds(retry_after)),
    );
    response
}

/// 503 with `Retry-After: retry_after` seconds: the database, the token issuer or this
/// instance cannot serve now, and a retry soon may succeed.
pub(super) fn unavailable(media: MediaType, message: &str, retry_after: u64) -> Response {
    let mut response = error(
        media,
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServiceUnavailable,
        message,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// 500 with a generic message and `errorId` (and the trace's id when there is one), for
/// failures outside GraphQL execution; the log line with the same `error_id` has the cause.
pub(super) fn internal_error(cause: &str) -> Response {
    let error_id = uuid::Uuid::new_v4().to_string();
    tracing::error!(error_id = %error_id, error.cause_chain = %cause, "internal error");
    let mut extensions = json!({
        "code": ErrorCode::InternalServerError.as_str(),
        "errorId": error_id,
    });
    if let Some(trace_id) = crate::telemetry::current_trace_id() {
        extensions["traceId"] = trace_id.into();
    }
    let body = json!({ "errors": [{
        "message": crate::graphql::error::INTERNAL_MESSAGE,
        "extensions": extensions,
    }]});
    json_response(MediaType::Json, StatusCode::INTERNAL_SERVER_ERROR, &body)
}

/// Whole seconds to wait, at least one (what `Retry-After` carries).
pub(super) fn retry_seconds(retry_after: std::time::Duration) -> u64 {
    retry_after.as_secs_f64().ceil().max(1.0) as u64
}

/// The bearer token of the request, if it has an `Authorization` header; a malformed header
/// is refused.
fn bearer_token(headers: &HeaderMap, media: MediaType) -> Result<Option<&str>, Box<Response>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|_| values.next().is_none())
        .and_then(parse_bearer)
        .map(Some)
        .ok_or_else(|| Box::new(unauthorized(media, "invalid_request", BEARER_FORMAT)))
}

/// What a malformed `Authorization` value is told.
pub(super) const BEARER_FORMAT: &str =
    "Send exactly one Authorization header of the form \"Bearer <token>\".";

/// The token of an `Authorization` value of the form `Bearer <token>`.
pub(super) fn parse_bearer(value: &str) -> Option<&str> {
    value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Why a presented token did not admit its caller.
pub(super) enum Denied {
    /// The client's address spent its budget of tokens not seen before.
    RateLimited(std::time::Duration),
    /// The keys could not be fetched (JWKS mode): not the token's fault.
    Unavailable(String),
    /// The token is not valid; the reason is safe to show.
    Invalid(AuthError),
}

impl Denied {
    fn into_response(self, media: MediaType) -> Response {
        match self {
            Self::RateLimited(retry_after) => rate_limited(media, retry_after),
            Self::Unavailable(message) => unavailable(media, &message, 5),
            Self::Invalid(err) => unauthorized(media, "invalid_token", &err.to_string()),
        }
    }
}

/// The identity behind `token`. A token verified before costs a hash; one not seen before
/// costs a signature check, so the client's address (`address_key`) is charged for it first:
/// a flood of forged tokens runs out of budget like anonymous requests do. HTTP and
/// WebSocket both come through here, so both refuse the same tokens for the same reasons.
pub(super) async fn identify(
    state: &AppState,
    token: &str,
    address_key: &str,
) -> Result<Identity, Denied> {
    if let Some(identity) = state.verifier.cached(token) {
        return Ok(identity);
    }
    state
        .rate_limit
        .check(address_key, 1)
        .map_err(Denied::RateLimited)?;
    match state.verifier.verify(token).await {
        Ok(identity) => Ok(identity),
        Err(err) if err.is_unavailable() => Err(Denied::Unavailable(err.to_string())),
        Err(err) => {
            // The reason is logged for operators; the token itself never is.
            tracing::info!(reason = ?err, "refused a token");
            Err(Denied::Invalid(err))
        }
    }
}

/// 401 with the RFC 6750 challenge, so clients know to get a new token.
pub(super) fn unauthorized(media: MediaType, error_kind: &str, description: &str) -> Response {
    let mut response = error(
        media,
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        description,
    );
    let challenge = format!(
        "Bearer error=\"{error_kind}\", error_description=\"{}\"",
        description.replace('"', "'")
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The response for one operation, with its status from the table in the module docs.
fn respond(media: MediaType, outcome: Outcome) -> Response {
    // The database could not be reached: a client should back off and retry, and load
    // balancers and proxies recognise 503 as that.
    let unavailable = outcome
        .response
        .errors
        .iter()
        .any(|error| code_of(error) == Some(ErrorCode::ServiceUnavailable.as_str()));
    let status = match outcome.failure {
        None if unavailable => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
        Some(Failure::BadParams | Failure::NeedsWebSocket) => StatusCode::BAD_REQUEST,
        Some(Failure::Document) => match media {
            MediaType::GraphQLResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        },
        Some(Failure::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
        Some(Failure::Forbidden) => StatusCode::FORBIDDEN,
        Some(Failure::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Some(Failure::Timeout) => StatusCode::GATEWAY_TIMEOUT,
    };
    let failure = outcome.failure;
    let mut response = json_response(media, status, &body_of(outcome));
    if unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    match failure {
        Some(Failure::MethodNotAllowed) => {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        Some(Failure::Unauthenticated) => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

/// The JSON body of one operation. Operations that did not execute have no `data` entry,
/// which is how clients tell "refused" from "ran and returned null".
#[derive(serde::Serialize)]
struct ResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<async_graphql::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<async_graphql::ServerError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: std::collections::BTreeMap<String, async_graphql::Value>,
}

fn body_of(outcome: Outcome) -> ResponseBody {
    let response = outcome.response;
    ResponseBody {
        data: outcome.failure.is_none().then_some(response.data),
        errors: response.errors,
        extensions: response.extensions,
    }
}

fn json_response(media: MediaType, status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Serialising values and errors cannot fail: keys are strings, numbers finite.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.header_value());
    // Answers are per user: no shared cache may keep them.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// An error that happened before any operation ran, as a GraphQL response body.
pub fn error(media: MediaType, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    json_response(media, status, &body)
}

fn not_acceptable() -> Response {
    error(
        MediaType::Json,
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::BadRequest,
        "Accept application/graphql-response+json or application/json.",
    )
}

fn is_json_content(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    // JSON is UTF-8 (RFC 8259); a body declared in another charset cannot be read as sent.
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

async fn read_body(body: Body, limit: usize, media: MediaType) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let over_limit = std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if over_limit {
            let message =
                format!("The request body is larger than this server accepts ({limit} bytes).");
            error(
                media,
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadRequest,
                &message,
            )
        } else {
            error(
                media,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "The request body could not be read.",
            )
        }
    })
}

/// Reads the GraphQL parameters of a POST body object, checking each one's JSON type.
fn params_from_json(value: Json) -> Result<Params, String> {
    let Json::Object(mut object) = value else {
        return Err("A GraphQL request must be a JSON object (or an array of them).".into());
    };
    let query = match object.remove("query") {
        None | Some(Json::Null) => None,
        Some(Json::String(query)) => Some(query),
        Some(_) => return Err("\"query\" must be a string.".into()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(_) => return Err("\"operationName\" must be a string.".into()),
    };
    Ok(Params {
        query,
        operation_name,
        variables: json_map(object.remove("variables"), "variables")?,
        extensions: json_map(object.remove("extensions"), "extensions")?,
    })
}

fn json_map(value: Option<Json>, name: &str) -> Result<Map<String, Json>, String> {
    match value {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(map)) => Ok(map),
        Some(_) => Err(format!("\"{name}\" must be a JSON object.")),
    }
}

/// Reads the GraphQL parameters of a GET query string; `variables` and `extensions` are
/// JSON-encoded, as the spec says.
fn get_params(query_string: &str) -> Result<Params, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query_string)
        .map_err(|_| "The query string is not valid URL encoding.".to_owned())?;
    let mut params = Params::default();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.clone()) {
            return Err(format!("The parameter \"{key}\" is given more than once."));
        }
        let decode = |name: &str| -> Result<Map<String, Json>, String> {
            if value.is_empty() {
                return Ok(Map::new());
            }
            let json: Json = json::from_str(&value).map_err(|err| {
                format!("\"{name}\" must be a JSON-encoded object without repeated keys: {err}.")
            })?;
            json_map(Some(json), name)
        };
        match key.as_str() {
            "query" => params.query = Some(value),
            "operationName" => params.operation_name = Some(value).filter(|name| !name.is_empty()),
            "variables" => params.variables = decode("variables")?,
            "extensions" => params.extensions = decode("extensions")?,
            _ => {}
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("ascii"),
            );
            is_json_content(&headers)
        };
        assert!(check("application/json"));
        assert!(check("application/json; charset=utf-8"));
        assert!(check("Application/JSON;charset=\"UTF-8\""));
        assert!(!check("application/json; charset=latin1"));
        assert!(!check("text/plain;charset=UTF-8"));
        assert!(!check("application/graphql"));
        assert!(!is_json_content(&HeaderMap::new()));
    }

    #[test]
    fn get_parameters_are_decoded() {
        let params = get_params(
            "query=query%20A%7Ba%7D&operationName=A&variables=%7B%22x%22%3A1%7D&extensions=",
        )
        .expect("valid");
        assert_eq!(params.query.as_deref(), Some("query A{a}"));
        assert_eq!(params.operation_name.as_deref(), Some("A"));
        assert_eq!(params.variables.get("x"), Some(&json!(1)));
        assert!(
            get_params("variables=%5B1%5D").is_err(),
            "an array is not a variables map"
        );
        assert!(
            get_params("query=a&query=b").is_err(),
            "duplicates are ambiguous"
        );
    }
}
