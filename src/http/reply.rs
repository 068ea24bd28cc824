//! Every answer the HTTP layer builds itself, in one place: an operation's outcome with the
//! status GraphQL over HTTP gives it, and every refusal around execution (401 with its
//! challenge, 406, 413, 415, 429 and 503 with `Retry-After`, a masked 500), each in the
//! GraphQL response shape with an `extensions.code`.
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

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::negotiate::MediaType;
use crate::graphql::{
    error::{ErrorCode, code_of},
    pipeline::{Failure, Outcome},
};

/// 429 with `Retry-After`.
pub(crate) fn rate_limited(media: MediaType, retry_after: std::time::Duration) -> Response {
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
pub(crate) fn unavailable(media: MediaType, message: &str, retry_after: u64) -> Response {
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
pub(crate) fn internal_error(cause: &str) -> Response {
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
pub(crate) fn retry_seconds(retry_after: std::time::Duration) -> u64 {
    retry_after.as_secs_f64().ceil().max(1.0) as u64
}

/// 401 with the RFC 6750 challenge, so clients know to get a new token.
pub(crate) fn unauthorized(media: MediaType, error_kind: &str, description: &str) -> Response {
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

/// The response for one operation, with its status from the table above.
pub(crate) fn respond(media: MediaType, outcome: Outcome) -> Response {
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
pub(crate) struct ResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<async_graphql::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<async_graphql::ServerError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: std::collections::BTreeMap<String, async_graphql::Value>,
}

pub(crate) fn body_of(outcome: Outcome) -> ResponseBody {
    let response = outcome.response;
    ResponseBody {
        data: outcome.failure.is_none().then_some(response.data),
        errors: response.errors,
        extensions: response.extensions,
    }
}

pub(crate) fn json_response(
    media: MediaType,
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response {
    // Serialising values and errors cannot fail: keys are strings, numbers finite. A page's
    // answer is a few KiB: starting there saves the buffer's doublings and their copies.
    let mut bytes = Vec::with_capacity(4096);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
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
pub(crate) fn error(
    media: MediaType,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    json_response(media, status, &body)
}

pub(crate) fn not_acceptable() -> Response {
    error(
        MediaType::Json,
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::BadRequest,
        "Accept application/graphql-response+json or application/json.",
    )
}
