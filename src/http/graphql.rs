//! `GET` and `POST /graphql`: GraphQL over HTTP, as the spec (graphql/graphql-over-http)
//! and its `graphql-http` audit describe it.
//!
//! In order, a request is checked for: an acceptable response type (406), a JSON body on
//! POST (415), a valid bearer token if one is sent (401), the caller's rate (429), the body
//! size (413) and JSON (400), the batch size (400). Only then do operations run, in order,
//! through `graphql::pipeline`, whose [`Outcome`] decides the status (`reply` has the table).

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::{
        ConnectInfo, RawQuery, State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::Value as Json;
use tokio::time::Instant;

use super::{
    AppState,
    admission::{admit, charge},
    graphiql, json,
    negotiate::{self, MediaType},
    params,
    reply::{body_of, error, json_response, not_acceptable, respond},
    ws,
};
use crate::graphql::{
    error::ErrorCode,
    pipeline::{Context, Method, Outcome},
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
    let deadline = Instant::now() + state.config.request_timeout;
    let params = match params::from_query_string(query.as_deref().unwrap_or_default()) {
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
    let deadline = Instant::now() + state.config.request_timeout;
    if !params::is_json_content(&headers) {
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
    let body = match params::read_body(body, state.config.max_body_bytes, media).await {
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
            let outcome = match params::from_json(single) {
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
        let outcome = match params::from_json(item) {
            Ok(params) => state.executor.execute(params, cx).await,
            Err(message) => Outcome::bad_params(message),
        };
        bodies.push(body_of(outcome));
    }
    json_response(media, StatusCode::OK, &bodies)
}
