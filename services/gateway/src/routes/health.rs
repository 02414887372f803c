//! Liveness, readiness (NATS connected and projection caught up) and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::AppState;

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: NATS connected and the views caught up with the stream.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let connected = state.broker.connected();
    let caught_up = state.projection.caught_up();
    let status = if connected && caught_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": connected && caught_up,
        "nats_connected": connected,
        "projection_caught_up": caught_up,
        "position": state.projection.position(),
    });
    (status, Json(body))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for (s, n) in state.projection.views().counts() {
        metrics::gauge!("sn_tasks", "state" => s.as_str()).set(n as f64);
    }
    metrics::gauge!("sn_projection_position").set(state.projection.position() as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::http::render_metrics(),
    )
}
