//! Runs taken requests: each gets this replica's reservation turn in the order taken, runs
//! as a task (tried again in place while NATS is unreachable), and is answered: acked,
//! given back to JetStream for a retry, or ended in FAILURE past its deliveries.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};
use common::backoff::Backoff;
use common::events::{codes, GenerateRequested};
use common::subjects;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use super::delivery::{give_back, Delivery, KeepAlive, Taken};
use crate::ledger::Turn;
use crate::task::{self, Outcome, TaskError, Worker};

/// How long a task tries again in place while NATS is unreachable before the failure spends
/// one of the request's deliveries.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Gives each taken request, in the order taken, its reservation turn, and runs it. Ends
/// once the pull loop is gone and every task has finished.
pub async fn dispatch(
    w: Worker,
    mut queue: mpsc::UnboundedReceiver<Taken>,
    cancel: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    while let Some(taken) = queue.recv().await {
        while tasks.try_join_next().is_some() {}
        if cancel.is_cancelled() || w.log.fault().is_some() {
            // Stopping, or nothing can be logged: give back to JetStream what has not started, for
            // another replica or the next start.
            not_started(&w, taken).await;
            continue;
        }
        let turn = w.ledger.take_turn().await;
        if w.log.fault().is_some() {
            // Failed while this request waited for its turn: not run (a reservation it
            // published could not be logged).
            drop(turn);
            not_started(&w, taken).await;
            continue;
        }
        tasks.spawn(run_taken(w.clone(), taken, turn, cancel.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// Hands back a request that was not started: for another replica when the log failed, else
/// for the next start.
async fn not_started(w: &Worker, taken: Taken) {
    let Taken {
        delivery,
        held,
        alive,
        ..
    } = taken;
    alive.stop().await;
    held.release(&delivery);
    let how = match w.log.fault() {
        Some(_) => {
            tracing::info!(task_id = %delivery.task, "handing back a request not started: the event log failed");
            give_back(&w.work)
        }
        None => AckKind::Nak(None),
    };
    let _ = delivery.current().ack_with(how).await;
}

/// One taken request being run: its task attempted until it ends, then answered.
struct Run {
    w: Worker,
    req: GenerateRequested,
    delivery: Arc<Delivery>,
    /// This replica's reservation turn, taken by the dispatcher in delivery order: the first
    /// attempt reserves under it; an attempt after it waits for the turn again.
    turn: Option<Turn>,
    cancel: CancellationToken,
}

/// Runs one taken request to its answer; a panic hands it back.
async fn run_taken(w: Worker, taken: Taken, turn: Turn, cancel: CancellationToken) {
    let Taken {
        req,
        delivery,
        permit,
        held,
        alive,
    } = taken;
    let mut run = Run {
        w,
        req,
        delivery: delivery.clone(),
        turn: Some(turn),
        cancel,
    };
    let panicked = AssertUnwindSafe(run.handle(alive))
        .catch_unwind()
        .await
        .is_err();
    // Released before any hand-back, so that a redelivery arriving here at once is run
    // rather than joined to this finished run.
    held.release(&delivery);
    if panicked {
        // A bug, not the request's fault as far as anyone knows: hand it back, so it is
        // retried and, past its deliveries, ends in FAILURE.
        tracing::error!(task_id = %delivery.task, "task panicked; handing the request back");
        let _ = delivery.current().ack_with(AckKind::Nak(None)).await;
    }
    drop(permit);
}

impl Run {
    /// Runs the task in the span of the request and answers the request; `alive` keeps it
    /// from being redelivered until then.
    async fn handle(&mut self, alive: KeepAlive) {
        let msg = self.delivery.current();
        let (delivered, pending) = msg
            .info()
            .map(|i| (i.delivered, i.pending))
            .unwrap_or((1, 0));
        metrics::gauge!("sn_consumer_pending").set(pending as f64);
        let req = &self.req;
        let span = info_span!(
            "process",
            otel.name = format!("process {}", msg.subject),
            otel.kind = "consumer",
            task_id = %req.task_id,
            code_model = %req.code_model,
            count = req.count,
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %msg.subject,
            messaging.consumer.group.name = subjects::GENERATOR_CONSUMER,
            delivery = delivered,
        );
        common::telemetry::set_parent_from(&span, msg.headers.as_ref());
        drop(msg);
        async {
            let started = Instant::now();
            let ledger = self.w.ledger.clone();
            let running = ledger.task_started();
            let result = self.run_retrying(delivered > 1).await;
            // Its events are out (but for the failure of a last delivery, which `finish` may
            // still publish: a chained completion of another task then only goes out twice).
            drop(running);
            let msg = self.delivery.current();
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(delivered);
            finish(&self.w, &self.req, &msg, delivered, result, alive).await;
            tracing::debug!(elapsed = ?started.elapsed(), "request handled");
        }
        .instrument(span)
        .await;
    }

    /// Runs the task, trying again in place while NATS is unreachable or slow (a restart, a
    /// leader election): such failures say nothing about the request, so they do not spend
    /// its deliveries. Other failures, and transient ones lasting over `RETRY_FOR`, are
    /// returned.
    async fn run_retrying(&mut self, redelivered: bool) -> Result<Outcome, TaskError> {
        let until = Instant::now() + RETRY_FOR;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let turn = match self.turn.take() {
                Some(t) => t,
                None => self.w.ledger.take_turn().await,
            };
            let (w, req) = (&self.w, &self.req);
            match task::run(w, req, turn, redelivered, &self.cancel).await {
                // Not with a failed log: the request goes to another replica instead.
                Err(e) if e.is_transient() && w.log.fault().is_none() && Instant::now() < until => {
                    let delay = backoff.next_delay();
                    tracing::warn!(task_id = %req.task_id, error = %e, retry_in = ?delay, "task interrupted, trying again");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(TaskError::Stopped),
                        _ = w.log.failed() => return Err(e),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                other => return other,
            }
        }
    }
}

async fn finish(
    w: &Worker,
    req: &GenerateRequested,
    msg: &Message,
    delivered: i64,
    result: Result<Outcome, TaskError>,
    alive: KeepAlive,
) {
    // The request stays alive until it is answered (recording the failure of a last
    // delivery can take a while), and goes quiet before it is given back to JetStream.
    let state = match result {
        Ok(Outcome::Success) => "success",
        Ok(Outcome::Failure) => "failure",
        Ok(Outcome::Replayed) => "replayed",
        // Whatever the error, once the log has failed: the replica's fault, not the
        // request's. Not retried here, no FAILURE recorded (it could not be logged first,
        // and the task has not failed); another replica takes the request.
        Err(e) if w.log.fault().is_some() => {
            tracing::warn!(task_id = %req.task_id, delivered, error = %e, "handing the request back: the event log failed");
            alive.stop().await;
            let _ = msg.ack_with(give_back(&w.work)).await;
            return;
        }
        Err(TaskError::Stopped) => {
            tracing::info!(task_id = %req.task_id, "handing the request back at shutdown");
            alive.stop().await;
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        Err(e) if delivered < w.work.max_deliver => {
            tracing::warn!(task_id = %req.task_id, delivered, error = %e, "task failed, will retry");
            let backoff = Duration::from_millis(200 * delivered.max(1) as u64);
            alive.stop().await;
            let _ = msg.ack_with(AckKind::Nak(Some(backoff))).await;
            return;
        }
        Err(e) => {
            tracing::error!(task_id = %req.task_id, delivered, error = %e, "task failed on its last delivery");
            let message = format!("gave up after {delivered} deliveries: {e}");
            if let Err(e) = task::fail(w, req, codes::INTERNAL, message).await {
                tracing::error!(task_id = %req.task_id, error = %e, "cannot record the failure");
                return;
            }
            "failure"
        }
    };
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(task_id = %req.task_id, error = %e, "cannot ack the request; it will be replayed");
    }
    // Answered: a progress ack still on its way is ignored, so no need to wait for it.
    drop(alive);
    metrics::counter!("sn_tasks_total", "state" => state).increment(1);
}
