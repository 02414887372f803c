//! Follows every model's ledger subject (`sn.*.reserved`) from where the log's snapshot left
//! off, folds it into the shared ledger, and persists each reservation in the log.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use common::events::EventData;
use common::{subjects, Event};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ledger::Range;
use crate::log::StoredRange;
use crate::Shared;

pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        let from = *shared.ledger_pos.borrow();
        match follow(&shared, &cancel).await {
            Ok(()) => return,
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

async fn follow(shared: &Shared, cancel: &CancellationToken) -> anyhow::Result<()> {
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
    if consumer.info().await?.num_pending == 0 {
        mark_ready(shared);
    }
    let mut messages = consumer.messages().await?;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
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
                let held = {
                    let mut ledger = shared.ledger.write().expect("ledger lock poisoned");
                    ledger.apply(&r.code_model, seq, range);
                    ledger.held(&r.code_model, r.task_id) == Some(range)
                };
                let stored = StoredRange {
                    first: r.first,
                    last: r.last,
                    task: r.task_id,
                    seq,
                };
                // Saved whenever the ledger holds it, even when this replica folded it first
                // (its own reservation): the snapshot never moves past a range it lacks.
                let ranges = if held {
                    vec![(r.code_model.clone(), stored)]
                } else {
                    vec![]
                };
                shared.log.save_ledger(&ranges, Some(seq))?;
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
                shared.log.save_ledger(&[], Some(seq))?;
            }
        }
        shared.ledger_pos.send_replace(seq);
        if pending == 0 {
            mark_ready(shared);
        }
    }
}

fn mark_ready(shared: &Shared) {
    if !shared.ledger_ready.swap(true, Ordering::Relaxed) {
        tracing::info!(position = *shared.ledger_pos.borrow(), "ledger caught up");
    }
}
