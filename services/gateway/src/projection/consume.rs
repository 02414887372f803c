//! The consumer that feeds the projection: an ordered push consumer over the whole `SN`
//! stream, from the event after the last one folded, recreated after any interruption
//! (a reconnect, a consumer lost with its server).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy};
use common::backoff::Backoff;
use common::nats::Connections;
use common::subjects;
use common::Event;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Projection;

/// How long the projection may go without an event before it checks the stream for newer ones.
const STALL_CHECK: Duration = Duration::from_secs(3);

/// Folds the stream into `projection` until `cancel`, recreating the consumer from the last
/// folded sequence after any interruption.
pub async fn run(
    projection: Arc<Projection>,
    js: jetstream::Context,
    mut connections: Connections,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while !cancel.is_cancelled() {
        let from = projection.position();
        match follow(&projection, &js, &mut connections, &cancel).await {
            Ok(()) => return,
            Err(e) => {
                if projection.position() > from {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "projection interrupted");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn follow(
    projection: &Projection,
    js: &jetstream::Context,
    connections: &mut Connections,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    connections.borrow_and_update();
    let start = projection.position() + 1;
    let stream = js.get_stream_no_info(subjects::STREAM).await?;
    let mut consumer = stream
        // Pushed rather than pulled, and unfiltered (the stream holds only `sn.>`): a replay
        // then never waits for a pull request, and the server skips subject matching;
        // together more than twice as fast on a replay of 1,000,000 events (BENCHMARKS.md,
        // "Startup and replay").
        .create_consumer(OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await?;
    if consumer.info().await?.num_pending == 0 {
        projection.set_caught_up();
    }
    let mut messages = consumer.messages().await?;
    let mut last_report = Instant::now();
    let mut watchdog =
        tokio::time::interval_at(tokio::time::Instant::now() + STALL_CHECK, STALL_CHECK);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet = true;
    // The stream's last sequence at the previous quiet check, not yet reached.
    let mut behind: Option<u64> = None;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = connections.changed() => anyhow::bail!("reconnected to NATS"),
            _ = watchdog.tick() => {
                // Nothing arrived for a whole check: fine if there is nothing new. Events that
                // were already stored at the previous quiet check and still have not arrived
                // mean a consumer lost with its server (a cluster node gone).
                if !std::mem::replace(&mut quiet, true) {
                    behind = None;
                    continue;
                }
                if let Some(last) = behind.filter(|&last| projection.position() < last) {
                    anyhow::bail!("no event since {} of {last}", projection.position());
                }
                let last = stream.get_info().await?.state.last_sequence;
                behind = (last > projection.position()).then_some(last);
                continue;
            }
            m = messages.next() => m,
        };
        quiet = false;
        let msg = match msg {
            Some(m) => m?,
            None => anyhow::bail!("projection consumer ended"),
        };
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        // Folded already: a consumer the client recreated before its first message starts
        // again from the stream's first event.
        let folded = seq <= projection.position();
        if !folded {
            // Whether it decodes or not: a follower must see every batch the stream holds.
            projection.offer(seq, &msg.subject, &msg.payload);
        }
        let decoded = (!folded).then(|| Event::from_json_without_serials(&msg.payload));
        match decoded {
            None => {}
            // A task's end, once live, gets a span in the task's trace; a replay and the
            // events in between are folded without one (no span per batch or per old event).
            Some(Ok(event)) if projection.caught_up() && event.data.kind().is_final() => {
                let span = tracing::info_span!(
                    "project",
                    otel.name = format!("process {}", msg.subject),
                    otel.kind = "consumer",
                    task_id = %event.task_id().unwrap_or_default(),
                    messaging.system = "nats",
                    messaging.operation.type = "process",
                    messaging.destination.name = %msg.subject,
                );
                common::telemetry::set_parent_from(&span, msg.headers.as_ref());
                span.in_scope(|| projection.apply(seq, &event));
            }
            Some(Ok(event)) => projection.apply(seq, &event),
            Some(Err(e)) => {
                tracing::warn!(seq, subject = %msg.subject, error = %e, "skipping an undecodable event");
                projection.skip(seq);
            }
        }
        metrics::counter!("sn_projection_events_total").increment(1);
        if pending == 0 {
            projection.set_caught_up();
        }
        if pending == 0 || last_report.elapsed() > Duration::from_secs(1) {
            metrics::gauge!("sn_projection_lag_events").set(pending as f64);
            last_report = Instant::now();
        }
    }
}
