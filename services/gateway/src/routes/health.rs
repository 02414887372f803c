//! Liveness, readiness (NATS connected and projection caught up) and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::api::{Health, Readiness};
use crate::app::AppState;

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health::OK)
}

/// Readiness: NATS connected and the views caught up with the stream.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Not ready", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let connected = state.broker.connected();
    let caught_up = state.projection.caught_up();
    let status = if connected && caught_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        nats_connected: connected,
        position: state.projection.position(),
        projection_caught_up: caught_up,
        ready: connected && caught_up,
    };
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
        common::metrics::render(),
    )
}
