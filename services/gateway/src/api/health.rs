//! `GET /healthz` and `GET /readyz`.

use serde::Serialize;
use utoipa::ToSchema;

/// Liveness: the process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

impl Health {
    pub const OK: Health = Health { status: "ok" };
}

/// Readiness: NATS connected and the views caught up with the stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub nats_connected: bool,
    /// The stream sequence the views reflect.
    pub position: u64,
    pub projection_caught_up: bool,
    pub ready: bool,
}
