//! `GET /export`: the signed-in user's own data as one download (their profile and every
//! task, as JSON), streamed.
//!
//! The tasks are read in batches along the primary key, each batch one short statement, so a
//! large export holds no connection or transaction while a slow client reads it, and memory
//! stays at one batch. A task changed during the download appears once, as it was when its
//! batch was read. If the database fails midway the response is cut off (the JSON is then
//! incomplete, which a client notices) rather than ending as if it were whole.
//!
//! A download is one operation in flight for as long as its body streams, not only until its
//! head is sent; a user runs one at a time (a second is answered 429); and it ends by
//! `EXPORT_TIMEOUT` at the latest: past it the body is cut off, and its places are given back
//! even if the client stopped reading.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use futures_util::{StreamExt as _, stream};
use serde_json::{Value as Json, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AppState,
    admission::{Held, Place, admit},
    negotiate::MediaType,
    reply::{error, internal_error, unauthorized, unavailable},
};
use crate::{
    auth::UserId,
    db,
    error::AppError,
    graphql::error::ErrorCode,
    metrics::{self, Transport},
};

/// Tasks per statement: large enough that an export of 10,000 tasks is 20 round trips,
/// small enough that a batch is a quick index range read.
const BATCH: i64 = 500;

pub async fn export(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let media = MediaType::Json;
    let Some(place) = state.in_flight.enter() else {
        tracing::warn!("too many requests in flight; shedding load");
        metrics::get().load_shed(Transport::Http);
        return unavailable(
            media,
            "The server is at capacity; retry after the time in the Retry-After header.",
            1,
        );
    };
    let admitted = match admit(&state, &headers, peer, media).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let viewer = admitted.viewer;
    if !viewer.is_authenticated() {
        return unauthorized(
            media,
            "invalid_request",
            "Sign in: send your token in the Authorization header to download your data.",
        );
    }
    let user_id = match viewer.ensure_user().await {
        Ok(user_id) => user_id.clone(),
        Err(err) => return failure(&err),
    };
    let Some(slot) = state.downloads.take(user_id.as_str()) else {
        metrics::get().rate_limited(Transport::Http);
        let mut response = error(
            media,
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "Your data is already being downloaded; wait for that download to finish.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let holding = Holding::new((place, slot), state.config.export_timeout);
    let user = match viewer.own_row().await {
        Ok(user) => user,
        Err(err) => return failure(&err),
    };
    let now = chrono::Utc::now();
    let head = json!({
        "format": "taskql-export/1",
        "exportedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "user": {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "image": user.image,
            "createdAt": user.created_at,
            "updatedAt": user.updated_at,
        },
    });
    // The document is `{…head…, "tasks": [ … ]}`: the head without its closing brace, the
    // tasks batch by batch, then the closing brackets.
    let mut opening = head.to_string();
    opening.pop();
    opening.push_str(",\"tasks\":[");
    let walk = Walk {
        pool: state.db.pool.clone(),
        user: user_id,
        after: None,
        first: true,
        done: false,
        holding,
    };
    let body = stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(opening)) })
        .chain(stream::unfold(walk, next_batch));
    let filename = format!(
        "attachment; filename=\"taskql-export-{}.json\"",
        now.format("%Y-%m-%d")
    );
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Where the export's walk over the user's tasks is.
struct Walk {
    pool: PgPool,
    user: UserId,
    after: Option<Uuid>,
    first: bool,
    done: bool,
    holding: Holding,
}

/// The places a download holds (one in flight, the user's one download), given back when it
/// ends, is dropped (the client went away), or at its deadline, whichever comes first: the
/// body is not read while the client does not read, so only a timer of its own can end it.
struct Holding {
    places: Arc<Mutex<Option<(Place, Held)>>>,
    deadline: tokio::time::Instant,
    watchdog: tokio::task::AbortHandle,
}

impl Holding {
    fn new(places: (Place, Held), limit: std::time::Duration) -> Self {
        let places = Arc::new(Mutex::new(Some(places)));
        let now = tokio::time::Instant::now();
        // Durations are bounded at start-up, so the deadline is representable; `now` if not.
        let deadline = now.checked_add(limit).unwrap_or(now);
        let watchdog = tokio::spawn({
            let places = Arc::clone(&places);
            async move {
                tokio::time::sleep_until(deadline).await;
                let expired = places.lock().unwrap_or_else(PoisonError::into_inner).take();
                if expired.is_some() {
                    tracing::warn!("a data export outlived EXPORT_TIMEOUT; giving its places back");
                }
            }
        })
        .abort_handle();
        Self {
            places,
            deadline,
            watchdog,
        }
    }

    fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.watchdog.abort();
        self.places
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

async fn next_batch(mut walk: Walk) -> Option<(Result<Bytes, std::io::Error>, Walk)> {
    if walk.done {
        return None;
    }
    if walk.holding.expired() {
        tracing::warn!("a data export outlived EXPORT_TIMEOUT; cutting the response off");
        walk.done = true;
        let err = std::io::Error::other("the export took longer than EXPORT_TIMEOUT");
        return Some((Err(err), walk));
    }
    let batch = match db::tasks::export_batch(&walk.pool, &walk.user, walk.after, BATCH).await {
        Ok(batch) => batch,
        Err(err) => {
            tracing::warn!(error = %err, "a data export failed midway; cutting the response off");
            walk.done = true;
            return Some((Err(std::io::Error::other("the export failed midway")), walk));
        }
    };
    let mut chunk = String::new();
    for task in &batch {
        if !walk.first {
            chunk.push(',');
        }
        walk.first = false;
        chunk.push_str(&task_json(task).to_string());
    }
    if let Some(last) = batch.last() {
        walk.after = Some(last.id);
    }
    if i64::try_from(batch.len()).unwrap_or(i64::MAX) < BATCH {
        chunk.push_str("]}\n");
        walk.done = true;
    }
    Some((Ok(Bytes::from(chunk)), walk))
}

/// A task as the GraphQL API names its fields.
fn task_json(task: &db::tasks::Task) -> Json {
    json!({
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "priority": task.priority,
        "dueAt": task.due_at,
        "completedAt": task.completed_at,
        "createdAt": task.created_at,
        "updatedAt": task.updated_at,
    })
}

/// An error before the download started, in the API's error shape.
fn failure(err: &AppError) -> Response {
    match err {
        AppError::Unavailable { .. } => unavailable(
            MediaType::Json,
            "The database is unavailable; retry after the time in the Retry-After header.",
            1,
        ),
        AppError::Unauthenticated => unauthorized(
            MediaType::Json,
            "invalid_request",
            "Sign in: send your token in the Authorization header.",
        ),
        other => internal_error(&format!("a data export failed: {other}")),
    }
}
