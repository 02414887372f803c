//! The gateway's read side: folds the whole `SN` stream from the start (ordered consumer),
//! then follows it. Nothing here cannot be rebuilt from the stream.

mod fold;
mod snapshot;

pub use fold::{State, TaskError, TaskView, Views};
pub use snapshot::Snapshots;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy};
use common::nats::Connections;
use common::subjects::{self, Kind};
use common::Event;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// The folded views, the stream position they reflect, a feed of changed tasks, and a feed
/// of the generated batches as they arrive.
pub struct Projection {
    views: RwLock<Views>,
    position: watch::Sender<u64>,
    caught_up: AtomicBool,
    changes: broadcast::Sender<uuid::Uuid>,
    batches: broadcast::Sender<LiveBatch>,
}

/// A message of a `generated` subject as the projection received it, sent before it is
/// folded: a followed download takes its batches from here instead of asking the stream for
/// them again.
#[derive(Debug, Clone)]
pub struct LiveBatch {
    pub seq: u64,
    pub subject: async_nats::Subject,
    pub payload: bytes::Bytes,
}

/// Batches the live feed keeps for a reader that has not taken them yet (each up to 256 KiB,
/// and it may keep the NATS read buffer it was cut from alive); a reader further behind is
/// told it lagged and reads the stream instead. Only a followed download that has caught up
/// with the stream holds a reader, and while it waits it takes every batch off the feed.
const LIVE_BATCHES: usize = 32;

impl Default for Projection {
    fn default() -> Self {
        Projection {
            views: RwLock::new(Views::default()),
            position: watch::Sender::new(0),
            caught_up: AtomicBool::new(false),
            changes: broadcast::channel(4096).0,
            batches: broadcast::channel(LIVE_BATCHES).0,
        }
    }
}

impl Projection {
    pub fn views(&self) -> RwLockReadGuard<'_, Views> {
        self.views.read().expect("views lock poisoned")
    }

    /// Starts from `views` (a snapshot) in place of what was folded so far.
    pub fn restore(&self, views: Views) {
        let position = views.position();
        *self.views.write().expect("views lock poisoned") = views;
        self.position.send_replace(position);
    }

    /// Folds one event at stream sequence `seq`.
    pub fn apply(&self, seq: u64, event: &Event) {
        let changed = self
            .views
            .write()
            .expect("views lock poisoned")
            .apply(seq, event);
        self.position.send_replace(seq);
        if let Some(id) = changed {
            let _ = self.changes.send(id);
        }
    }

    /// Records a position without an event (an undecodable message was skipped).
    pub fn skip(&self, seq: u64) {
        self.views.write().expect("views lock poisoned").skip(seq);
        self.position.send_replace(seq);
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    pub fn set_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                position = self.position(),
                tasks = self.views().len(),
                "projection caught up"
            );
        }
    }

    /// Waits (bounded) until the fold has reached stream sequence `seq`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.position.subscribe();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|p| *p >= seq)).await,
            Ok(Ok(_))
        );
        reached
    }

    /// Task ids as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<uuid::Uuid> {
        self.changes.subscribe()
    }

    /// Messages of `generated` subjects the projection receives from now on, in stream order,
    /// each sent before the change it makes to its task.
    pub fn subscribe_batches(&self) -> broadcast::Receiver<LiveBatch> {
        self.batches.subscribe()
    }

    /// Hands a received message to the live batch feed if it is a batch and anyone listens.
    fn offer(&self, seq: u64, subject: &async_nats::Subject, payload: &bytes::Bytes) {
        if self.batches.receiver_count() == 0 {
            return;
        }
        if subjects::parse(subject).is_some_and(|p| p.kind == Kind::Generated) {
            let _ = self.batches.send(LiveBatch {
                seq,
                subject: subject.clone(),
                payload: payload.clone(),
            });
        }
    }
}

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
    let mut delay = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let from = projection.position();
        match follow(&projection, &js, &mut connections, &cancel).await {
            Ok(()) => return,
            Err(e) => {
                if projection.position() > from {
                    delay = Duration::from_millis(100);
                }
                tracing::warn!(error = %e, retry_in = ?delay, "projection interrupted");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
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
        // then never waits for a pull request, and the server skips subject matching. Both
        // measured about 2x faster on a replay of 1,000,000 events (BENCHMARKS.md).
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
