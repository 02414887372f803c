//! Follows every model's ledger subject (`sn.*.reserved`) from where the log's snapshot left
//! off, folds it into the shared ledger, and persists the reservations in the log's snapshot
//! a little later, several in one write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use common::events::EventData;
use common::{subjects, Event};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use common::ledger::{Applied, Range, Reservation};

use crate::log::{StoredRange, StoredScheme};
use crate::Shared;

pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    // Kept across restarts of the follow: a save that failed is tried again with the next
    // one, so the snapshot's position never moves past a range it lacks.
    let mut unsaved = Unsaved::default();
    while !cancel.is_cancelled() {
        let from = *shared.ledger_pos.borrow();
        match follow(&shared, &cancel, &mut unsaved).await {
            Ok(()) => return,
            Err(e) if shared.log.fault().is_some() => {
                // The snapshot cannot be saved, and this replica issues nothing any more.
                tracing::warn!(error = %e, "the event log failed: the ledger follower stops");
                return;
            }
            Err(e) => {
                if *shared.ledger_pos.borrow() > from {
                    delay = Duration::from_millis(100);
                }
                tracing::warn!(error = %e, retry_in = ?delay, "ledger follower interrupted");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// How long a folded reservation may wait before the snapshot saves it (with every other one
/// folded meanwhile, in one call), and how many may wait at most. A snapshot behind
/// the ledger only makes the next start fold those reservations again from the stream; one
/// write per reservation made the log's disk writes race each task's own flush.
const SAVE_AFTER: Duration = Duration::from_millis(100);
const SAVE_AT_MOST: usize = 512;

/// What the follower folded and the snapshot does not hold yet.
#[derive(Default)]
struct Unsaved {
    ranges: Vec<(String, StoredRange)>,
    schemes: Vec<StoredScheme>,
    /// The stream position reached; `None` when nothing waits.
    seq: Option<u64>,
    due: Option<Instant>,
}

impl Unsaved {
    fn add(&mut self, range: Option<(String, StoredRange)>, seq: u64) {
        self.ranges.extend(range);
        self.seq = Some(seq);
        self.due.get_or_insert_with(|| Instant::now() + SAVE_AFTER);
    }

    /// Saves the ranges, then the position, so the snapshot never moves past a range it
    /// lacks. Keeps them all if the save fails.
    fn save(&mut self, shared: &Shared) -> Result<(), crate::log::LogError> {
        if let Some(seq) = self.seq {
            shared
                .log
                .save_ledger(&self.ranges, &self.schemes, Some(seq))?;
            metrics::gauge!("sn_ledger_saved_position").set(seq as f64);
        }
        *self = Unsaved::default();
        Ok(())
    }
}

async fn follow(
    shared: &Shared,
    cancel: &CancellationToken,
    unsaved: &mut Unsaved,
) -> anyhow::Result<()> {
    let followed = follow_saving(shared, cancel, unsaved).await;
    // Whatever ended the follow, what it folded is kept.
    unsaved.save(shared)?;
    followed
}

async fn follow_saving(
    shared: &Shared,
    cancel: &CancellationToken,
    unsaved: &mut Unsaved,
) -> anyhow::Result<()> {
    let mut connections = shared.connections.clone();
    connections.borrow_and_update();
    let start = *shared.ledger_pos.borrow() + 1;
    let stream = shared.js.get_stream_no_info(subjects::STREAM).await?;
    let replicas = stream.get_info().await?.config.num_replicas;
    shared
        .single_replica
        .store(replicas <= 1, Ordering::Relaxed);
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::ALL_RESERVATIONS.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await?;
    // Ready once every reservation stored before now is folded. The last message's pending
    // count says so too, but nats-server 2.9.10 can count one message more than it delivers
    // on this wildcard filter from a start sequence, and the follower would never be ready.
    // So the last reservation's sequence is looked up as well, beside the follow: a lookup
    // stuck on a cluster electing a leader must not hold up the folding reservations wait for.
    if consumer.info().await?.num_pending == 0 {
        mark_ready(shared);
    }
    let mut target: Option<u64> = None;
    let lookup = last_reservation(&stream);
    tokio::pin!(lookup);
    let mut messages = consumer.messages().await?;
    loop {
        let due = unsaved.due;
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            found = &mut lookup, if target.is_none() => {
                target = Some(found);
                if *shared.ledger_pos.borrow() >= found {
                    mark_ready(shared);
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                unsaved.save(shared)?;
                continue;
            }
            // The server may have dropped the consumer with the old connection.
            _ = connections.changed() => anyhow::bail!("reconnected to NATS"),
            _ = shared.follower_stalled.notified() => anyhow::bail!("a reservation waited for it"),
            m = messages.next() => m,
        };
        let msg = match msg {
            Some(m) => m?,
            None => anyhow::bail!("ledger consumer ended"),
        };
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        match Event::from_json(&msg.payload) {
            Ok(Event {
                data: EventData::Reserved(r),
                ..
            }) => {
                let range = Range {
                    first: r.first,
                    last: r.last,
                    task: r.task_id,
                };
                let (held, fixed) = {
                    let mut ledger = shared.ledger.write().expect("ledger lock poisoned");
                    let before = ledger.scheme(&r.code_model);
                    ledger.reserve(
                        &r.code_model,
                        seq,
                        Reservation {
                            range,
                            scheme: r.scheme,
                            automatic: r.automatic,
                        },
                    );
                    let fixed = ledger.scheme(&r.code_model).filter(|_| before.is_none());
                    (ledger.held(&r.code_model, r.task_id) == Some(range), fixed)
                };
                let stored = StoredRange {
                    first: r.first,
                    last: r.last,
                    task: r.task_id,
                    seq,
                    automatic: r.automatic,
                };
                if let Some(scheme) = fixed {
                    unsaved.schemes.push(StoredScheme {
                        model: r.code_model.clone(),
                        scheme,
                        seq,
                    });
                }
                // Saved whenever the ledger holds it, even when this replica folded it first
                // (its own reservation): the snapshot never moves past a range it lacks.
                unsaved.add(held.then(|| (r.code_model.clone(), stored)), seq);
            }
            Ok(Event {
                data: EventData::Declared(d),
                ..
            }) => {
                let applied = shared
                    .ledger
                    .write()
                    .expect("ledger lock poisoned")
                    .declare(&d.code_model, seq, d.scheme);
                if applied == Applied::Granted {
                    unsaved.schemes.push(StoredScheme {
                        model: d.code_model.clone(),
                        scheme: d.scheme,
                        seq,
                    });
                }
                unsaved.add(None, seq);
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(seq, error = %e, "undecodable event on a ledger subject");
                }
                // Still a message on the subject: the next compare-and-set must expect it.
                if let Some(p) = subjects::parse(&msg.subject) {
                    shared
                        .ledger
                        .write()
                        .expect("ledger lock poisoned")
                        .observe(p.model, seq);
                }
                unsaved.add(None, seq);
            }
        }
        if unsaved.ranges.len() + unsaved.schemes.len() >= SAVE_AT_MOST {
            unsaved.save(shared)?;
        }
        shared.ledger_pos.send_replace(seq);
        if pending == 0 || target.is_some_and(|last| seq >= last) {
            mark_ready(shared);
        }
    }
}

/// The stream sequence of the last reservation (0 when there is none), asked until answered.
async fn last_reservation(stream: &jetstream::stream::Stream<()>) -> u64 {
    let mut delay = Duration::from_millis(100);
    loop {
        match stream
            .get_last_raw_message_by_subject(subjects::ALL_RESERVATIONS)
            .await
        {
            Ok(m) => return m.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return 0,
            Err(e) => tracing::debug!(error = %e, "cannot read the last reservation yet"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

fn mark_ready(shared: &Shared) {
    if !shared.ledger_ready.swap(true, Ordering::Relaxed) {
        tracing::info!(position = *shared.ledger_pos.borrow(), "ledger caught up");
    }
}
