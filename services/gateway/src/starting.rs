//! What the HTTP port answers while the gateway waits for NATS and the stream at start: a
//! live process (`/healthz` 200, so a liveness probe does not restart a pod that waits for
//! a slow NATS), not ready for anything else (503 with `Retry-After`).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{ErrorBody, ErrorDetail, Health};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Stops answering when dropped or stopped; the real server takes over the same socket.
pub struct Starting(CancellationToken);

impl Starting {
    pub fn stop(self) {}
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Serves the start-up answers on a second handle of `listener`'s socket until stopped, and
/// gives `listener` back for the real server. Both handles accept from the same queue, so a
/// connection is answered by one or the other, never refused.
pub fn answer(listener: TcpListener) -> std::io::Result<(TcpListener, Starting)> {
    let socket = listener.into_std()?;
    let twin = TcpListener::from_std(socket.try_clone()?)?;
    let listener = TcpListener::from_std(socket)?;
    let stop = CancellationToken::new();
    let until = stop.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { Json(Health::OK) }))
        .fallback(not_yet);
    tokio::spawn(async move {
        let served = axum::serve(twin, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "start-up HTTP answers failed");
        }
    });
    Ok((listener, Starting(stop)))
}

async fn not_yet() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(ErrorBody {
            error: ErrorDetail {
                code: "unavailable".into(),
                field: None,
                message: "starting: waiting for NATS and the SN stream".into(),
            },
        }),
    )
}
