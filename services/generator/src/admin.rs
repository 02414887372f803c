//! Health, readiness and Prometheus metrics on `ADMIN_ADDR`; at start, while NATS is
//! awaited, `/healthz` alone.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;
use crate::log::EventLog;

/// What `/readyz` and `/metrics` look at.
#[derive(Clone)]
pub struct Health {
    pub log: EventLog,
    pub ledger: Arc<Ledger>,
    pub client: async_nats::Client,
}

/// Installs the process-wide Prometheus recorder (once).
pub fn init_metrics() {
    common::metrics::install(describe);
}

/// HELP texts, and every series registered at zero so dashboards see them from the start.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "sn_tasks_total",
        "Requests handled, by final state (success, failure, replayed)"
    );
    describe_counter!(
        "sn_serials_issued_total",
        Unit::Count,
        "Serials issued, by model"
    );
    describe_histogram!(
        "sn_generation_seconds",
        Unit::Seconds,
        "Time to generate, log and publish one task"
    );
    describe_gauge!(
        "sn_consumer_pending",
        "Requests waiting in the generator consumer (consumer lag)"
    );
    describe_counter!(
        "sn_publish_retries_total",
        "Publishes that failed and will be retried"
    );
    describe_counter!(
        "sn_reservations_total",
        "Compare-and-set reservations, by outcome"
    );
    describe_counter!(
        "sn_chained_publishes_total",
        "Completions sent right behind their task's batch, by outcome: stored, or sent again after its ack"
    );
    describe_gauge!(
        "sn_log_size_bytes",
        Unit::Bytes,
        "Size of the sled event log on disk"
    );
    describe_gauge!(
        "sn_ledger_position",
        "Stream sequence the ledger follower has folded up to"
    );
    describe_gauge!(
        "sn_ledger_saved_position",
        "Stream sequence the ledger snapshot in the log was last saved at (it trails the follower by up to 100 ms)"
    );
    describe_gauge!(
        "sn_log_failed",
        "1 once the sled event log has failed (a full disk, an I/O error): the replica takes no work until restarted"
    );
    for state in ["success", "failure", "replayed"] {
        metrics::counter!("sn_tasks_total", "state" => state).increment(0);
    }
    metrics::counter!("sn_publish_retries_total").increment(0);
    metrics::gauge!("sn_consumer_pending").set(0.0);
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, String) {
    match crate::readiness(&h.log, &h.ledger, &h.client) {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(State(h): State<Health>) -> String {
    metrics::gauge!("sn_log_failed").set(if h.log.fault().is_some() { 1.0 } else { 0.0 });
    metrics::gauge!("sn_log_size_bytes").set(h.log.size_on_disk() as f64);
    metrics::gauge!("sn_ledger_position").set(h.ledger.position() as f64);
    common::metrics::render()
}

pub async fn serve(listener: tokio::net::TcpListener, health: Health, cancel: CancellationToken) {
    let app = router(health);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}

/// Stops the start-up answers when dropped; the admin server then takes over the socket.
pub struct Starting(CancellationToken);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Answers `/healthz` (200) and nothing else (503) on a second handle of `listener`'s socket
/// until the returned guard is dropped, so a liveness probe does not restart a generator that
/// waits for a slow NATS. Gives `listener` back for the admin server: both handles accept from
/// the same queue, so no connection is refused in between.
pub fn answer_while_starting(
    listener: tokio::net::TcpListener,
) -> std::io::Result<(tokio::net::TcpListener, Starting)> {
    let socket = listener.into_std()?;
    let twin = tokio::net::TcpListener::from_std(socket.try_clone()?)?;
    let listener = tokio::net::TcpListener::from_std(socket)?;
    let stop = CancellationToken::new();
    let until = stop.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: waiting for NATS",
            )
        });
    tokio::spawn(async move {
        let served = axum::serve(twin, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "start-up admin answers failed");
        }
    });
    Ok((listener, Starting(stop)))
}
