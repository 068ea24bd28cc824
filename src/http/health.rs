//! Probes for orchestrators: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers and is fully migrated).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use super::AppState;
use crate::db::{self, NotReady};

/// The longest `/readyz` waits for the database before answering 503.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /healthz`: liveness. Touches nothing, so a slow database never gets the process
/// restarted.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: readiness. 503 takes the instance out of rotation until the database is
/// back, without restarting it.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // An orchestrator's probe has its own short timeout; answer within it, even while the
    // database hangs, rather than leave the probe to guess.
    let checked = tokio::time::timeout(READINESS_TIMEOUT, db::readiness(&state.db.pool))
        .await
        .unwrap_or(Err(NotReady::Unreachable));
    match checked {
        Ok(()) => {
            state.db.health.reachable();
            (StatusCode::OK, Json(json!({ "status": "ready" })))
        }
        Err(reason) => {
            let reason = match reason {
                NotReady::Unreachable => "database unreachable",
                NotReady::MigrationsPending => "database migrations pending",
            };
            tracing::warn!(reason, "not ready");
            if reason == "database unreachable" {
                state.db.health.connection_lost();
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": reason })),
            )
        }
    }
}
