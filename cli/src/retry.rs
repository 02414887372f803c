//! Riding out a gateway that restarts or briefly loses NATS while snctl follows a task: a
//! transient failure (connection refused, 502/503/504) is tried again, honouring
//! `Retry-After`, for a bounded time. Requests that change state are never retried here.

use std::time::{Duration, Instant};

use crate::api::ApiError;

/// How long a run of transient failures may last before it is reported.
pub const BUDGET: Duration = Duration::from_secs(30);
/// Pause between tries when the server names none.
const PAUSE: Duration = Duration::from_secs(1);
/// Longest pause, whatever `Retry-After` says.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Calls `call` until it succeeds, fails for good, or transient failures outlast [`BUDGET`].
pub async fn transient<T>(
    mut call: impl AsyncFnMut() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let deadline = Instant::now() + BUDGET;
    loop {
        match call().await {
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                let pause = e.retry_after().unwrap_or(PAUSE).min(MAX_PAUSE);
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}
