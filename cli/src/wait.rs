//! Following a task to its end. Each round is a long poll (`GET /tasks/{id}?wait=N`) that the
//! gateway answers as soon as the task ends; a gateway that answers at once instead is
//! polled every 100 ms.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::api::{Api, ApiError, Reply};
use crate::retry;
use crate::views::TaskView;

/// Shortest time between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls until the task is SUCCESS or FAILURE and returns that view; `seen` gets every view
/// on the way (for a progress bar). `long_poll` is how long one round may wait on the server.
pub async fn until_done(
    api: &Api,
    id: Uuid,
    long_poll: Duration,
    mut seen: impl FnMut(&TaskView),
) -> Result<Reply<TaskView>, ApiError> {
    loop {
        let asked = Instant::now();
        let reply = retry::transient(async || api.task(id, Some(long_poll)).await).await?;
        seen(&reply.view);
        if reply.view.state.is_final() {
            return Ok(reply);
        }
        let spent = asked.elapsed();
        if spent < POLL_INTERVAL {
            tokio::time::sleep(POLL_INTERVAL - spent).await;
        }
    }
}
