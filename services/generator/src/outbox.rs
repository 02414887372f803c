//! The outbox: publishes logged entries with many acks in flight, and marks each entry
//! published once JetStream acknowledged it. On start, whatever the log still holds as
//! pending is published again; its deterministic `Nats-Msg-Id` makes the repeat harmless.

use std::collections::VecDeque;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::log::{Entry, LogError};
use crate::Shared;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot publish {subject}: {message}")]
    Publish {
        subject: String,
        message: String,
        transient: bool,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

impl OutboxError {
    fn publish(subject: String, e: &PublishError) -> Self {
        metrics::counter!("sn_publish_retries_total").increment(1);
        OutboxError::Publish {
            subject,
            message: e.to_string(),
            transient: transient(e.kind()),
        }
    }

    /// Whether trying again later may work: NATS was unreachable or slow, not refusing.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboxError::Publish {
                transient: true,
                ..
            }
        )
    }
}

/// Publish failures that come from the connection or a stream between leaders (no answer, no
/// responders), as opposed to a refusal that repeats on every try (payload too large).
pub fn transient(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::MaxAckPending
    )
}

pub struct Outbox<'a> {
    shared: &'a Shared,
    inflight: VecDeque<(u64, String, PublishAckFuture)>,
    acked: Vec<u64>,
}

impl<'a> Outbox<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Outbox {
            shared,
            inflight: VecDeque::new(),
            acked: Vec::new(),
        }
    }

    /// Sends one logged (and flushed) entry; waits only when too many acks are in flight.
    pub async fn send(&mut self, seq: u64, entry: &Entry) -> Result<(), OutboxError> {
        while self.inflight.len() >= self.shared.work.max_inflight.max(1) {
            self.settle_one().await?;
        }
        let publish = common::nats::event_publish(&entry.id, entry.payload.clone(), None);
        let ack = self
            .shared
            .js
            .send_publish(entry.subject.clone(), publish)
            .await
            .map_err(|e| OutboxError::publish(entry.subject.clone(), &e))?;
        self.inflight.push_back((seq, entry.subject.clone(), ack));
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), OutboxError> {
        if let Some((seq, subject, ack)) = self.inflight.pop_front() {
            ack.await.map_err(|e| OutboxError::publish(subject, &e))?;
            self.acked.push(seq);
            if self.acked.len() >= 32 {
                self.shared.log.mark_published(&self.acked)?;
                self.acked.clear();
            }
        }
        Ok(())
    }

    /// Waits for every ack in flight. The log learns of them at the next [`Outbox::drain`]
    /// (until then a restart would publish them again, which is harmless).
    pub async fn settle(&mut self) -> Result<(), OutboxError> {
        while !self.inflight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for every ack in flight and records them in the log.
    #[instrument(name = "publish acks", skip_all)]
    pub async fn drain(&mut self) -> Result<(), OutboxError> {
        self.settle().await?;
        self.shared.log.mark_published(&self.acked)?;
        self.acked.clear();
        Ok(())
    }
}

/// Publishes every entry logged but never acknowledged (a crash between flush and ack).
#[instrument(name = "republish pending", skip_all, fields(entries))]
pub async fn republish_pending(shared: &Shared, cancel: &CancellationToken) -> anyhow::Result<()> {
    let pending = shared.log.pending()?;
    tracing::Span::current().record("entries", pending.len());
    if pending.is_empty() {
        return Ok(());
    }
    tracing::info!(
        entries = pending.len(),
        "republishing events logged before the last stop"
    );
    let mut outbox = Outbox::new(shared);
    for (seq, entry) in &pending {
        if cancel.is_cancelled() {
            break;
        }
        outbox.send(*seq, entry).await?;
    }
    outbox.drain().await?;
    Ok(())
}
