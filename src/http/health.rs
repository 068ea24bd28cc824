//! Probes for orchestrators: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers and is fully migrated).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use super::AppState;
use crate::db::{self, NotReady};

/// `GET /healthz`: liveness. Touches nothing, so a slow database never gets the process
/// restarted.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: readiness. 503 takes the instance out of rotation until the database is
/// back, without restarting it.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match db::readiness(&state.pool).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => {
            let reason = match reason {
                NotReady::Unreachable => "database unreachable",
                NotReady::MigrationsPending => "database migrations pending",
            };
            tracing::warn!(reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": reason })),
            )
        }
    }
}
