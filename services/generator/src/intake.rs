//! The durable pull consumer shared by every replica: takes requests while there is room,
//! runs each as a task, and acks only after the task's last event was acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use common::events::{codes, EventData, GenerateRequested};
use common::request::valid_model;
use common::{subjects, Event};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::task::{self, Outcome, TaskError, Turn};
use crate::Shared;

pub fn consumer_config(shared: &Shared) -> pull::Config {
    pull::Config {
        durable_name: Some(subjects::GENERATOR_CONSUMER.to_owned()),
        description: Some("serial-number generators".to_owned()),
        filter_subject: subjects::ALL_REQUESTS.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(shared.work.ack_wait_secs.max(1)),
        max_deliver: shared.work.max_deliver.max(1),
        max_ack_pending: 1024,
        ..Default::default()
    }
}

pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(shared.work.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut delay = Duration::from_millis(100);
    'outer: while !cancel.is_cancelled() {
        let mut messages = match open(&shared).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot open the request consumer");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        loop {
            // Take a request only when there is room to run it, so none waits unacked here.
            let permit = tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                m = messages.next() => m,
            };
            while tasks.try_join_next().is_some() {}
            match next {
                Some(Ok(msg)) => {
                    let turn = shared.reserve_turn.clone().lock_owned().await;
                    let (shared, cancel) = (shared.clone(), cancel.clone());
                    tasks.spawn(async move {
                        handle(&shared, msg, turn, &cancel).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "request consumer interrupted");
                    break;
                }
                None => break,
            }
        }
    }
    // Stop taking work; tasks in flight finish their batch and hand the request back.
    while tasks.join_next().await.is_some() {}
}

async fn open(shared: &Shared) -> anyhow::Result<pull::Stream> {
    let stream = shared.js.get_stream_no_info(subjects::STREAM).await?;
    let consumer = stream
        .get_or_create_consumer(subjects::GENERATOR_CONSUMER, consumer_config(shared))
        .await?;
    Ok(consumer.messages().await?)
}

async fn handle(shared: &Shared, msg: Message, turn: Turn, cancel: &CancellationToken) {
    let (delivered, pending) = msg
        .info()
        .map(|i| (i.delivered, i.pending))
        .unwrap_or((1, 0));
    metrics::gauge!("sn_consumer_pending").set(pending as f64);
    let req = match Event::from_json(&msg.payload) {
        Ok(Event {
            data: EventData::Requested(r),
            ..
        }) if valid_model(&r.code_model) => r,
        other => {
            tracing::warn!(subject = %msg.subject, ok = other.is_ok(), "dropping a message that is not a valid request");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
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
    async {
        let started = Instant::now();
        let result = task::run(shared, &req, &msg, turn, cancel).await;
        finish(shared, &req, &msg, delivered, result).await;
        tracing::debug!(elapsed = ?started.elapsed(), "request handled");
    }
    .instrument(span)
    .await;
}

async fn finish(
    shared: &Shared,
    req: &GenerateRequested,
    msg: &Message,
    delivered: i64,
    result: Result<Outcome, TaskError>,
) {
    let state = match result {
        Ok(Outcome::Success) => "success",
        Ok(Outcome::Failure) => "failure",
        Ok(Outcome::Replayed) => "replayed",
        Err(TaskError::Stopped) => {
            tracing::info!(task_id = %req.task_id, "handing the request back at shutdown");
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        Err(e) if delivered < shared.work.max_deliver => {
            tracing::warn!(task_id = %req.task_id, delivered, error = %e, "task failed, will retry");
            let backoff = Duration::from_millis(200 * delivered.max(1) as u64);
            let _ = msg.ack_with(AckKind::Nak(Some(backoff))).await;
            return;
        }
        Err(e) => {
            tracing::error!(task_id = %req.task_id, delivered, error = %e, "task failed on its last delivery");
            let message = format!("gave up after {delivered} deliveries: {e}");
            if let Err(e) = task::fail(shared, req, codes::INTERNAL, message).await {
                tracing::error!(task_id = %req.task_id, error = %e, "cannot record the failure");
                return;
            }
            "failure"
        }
    };
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(task_id = %req.task_id, error = %e, "cannot ack the request; it will be replayed");
    }
    metrics::counter!("sn_tasks_total", "state" => state).increment(1);
}
