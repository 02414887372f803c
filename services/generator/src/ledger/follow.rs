//! Follows every model's ledger subject (`sn.*.reserved`) from where the log's snapshot left
//! off, folds each message into the [`Ledger`], and saves what it folded in the log's
//! snapshot a little later, several reservations in one write.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use common::backoff::Backoff;
use common::subjects;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Folded, Ledger};
use crate::log::{EventLog, LogError, StoredRange, StoredScheme};

/// What the follower reads the stream with.
pub struct Follower {
    pub ledger: std::sync::Arc<Ledger>,
    pub log: EventLog,
    pub js: jetstream::Context,
    /// Changes when the client reconnects (see `common::nats::Connections`).
    pub connections: common::nats::Connections,
}

pub async fn run(f: Follower, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    // Kept across restarts of the follow: a save that failed is tried again with the next
    // one, so the snapshot's position never moves past a range it lacks.
    let mut unsaved = Unsaved::default();
    while !cancel.is_cancelled() {
        let from = f.ledger.position();
        let followed = follow(&f, &cancel, &mut unsaved).await;
        // Whatever ended the follow, what it folded is kept.
        let saved = unsaved.save(&f.log).map_err(anyhow::Error::from);
        match saved.and(followed) {
            Ok(()) => return,
            Err(e) if f.log.fault().is_some() => {
                // The snapshot cannot be saved, and this replica issues nothing any more.
                tracing::warn!(error = %e, "the event log failed: the ledger follower stops");
                return;
            }
            Err(e) => {
                if f.ledger.position() > from {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "ledger follower interrupted");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
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
    fn add(&mut self, folded: Folded, seq: u64) {
        self.ranges.extend(folded.range);
        self.schemes.extend(folded.scheme);
        self.seq = Some(seq);
        self.due.get_or_insert_with(|| Instant::now() + SAVE_AFTER);
    }

    fn is_full(&self) -> bool {
        self.ranges.len() + self.schemes.len() >= SAVE_AT_MOST
    }

    /// Saves the ranges, then the position, so the snapshot never moves past a range it
    /// lacks. Keeps them all if the save fails.
    fn save(&mut self, log: &EventLog) -> Result<(), LogError> {
        if let Some(seq) = self.seq {
            log.save_ledger(&self.ranges, &self.schemes, Some(seq))?;
            metrics::gauge!("sn_ledger_saved_position").set(seq as f64);
        }
        *self = Unsaved::default();
        Ok(())
    }
}

async fn follow(
    f: &Follower,
    cancel: &CancellationToken,
    unsaved: &mut Unsaved,
) -> anyhow::Result<()> {
    let mut connections = f.connections.clone();
    connections.borrow_and_update();
    let start = f.ledger.position() + 1;
    let stream = f.js.get_stream_no_info(subjects::STREAM).await?;
    f.ledger
        .set_replicas(stream.get_info().await?.config.num_replicas);
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
        f.ledger.mark_ready();
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
                if f.ledger.position() >= found {
                    f.ledger.mark_ready();
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                unsaved.save(&f.log)?;
                continue;
            }
            // The server may have dropped the consumer with the old connection.
            _ = connections.changed() => anyhow::bail!("reconnected to NATS"),
            _ = f.ledger.stalled() => anyhow::bail!("a reservation waited for it"),
            m = messages.next() => m,
        };
        let msg = match msg {
            Some(m) => m?,
            None => anyhow::bail!("ledger consumer ended"),
        };
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let folded = f.ledger.fold_message(&msg.subject, seq, &msg.payload);
        unsaved.add(folded, seq);
        if unsaved.is_full() {
            unsaved.save(&f.log)?;
        }
        if pending == 0 || target.is_some_and(|last| seq >= last) {
            f.ledger.mark_ready();
        }
    }
}

/// The stream sequence of the last reservation (0 when there is none), asked until answered.
async fn last_reservation(stream: &jetstream::stream::Stream<()>) -> u64 {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match stream
            .get_last_raw_message_by_subject(subjects::ALL_RESERVATIONS)
            .await
        {
            Ok(m) => return m.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return 0,
            Err(e) => tracing::debug!(error = %e, "cannot read the last reservation yet"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
