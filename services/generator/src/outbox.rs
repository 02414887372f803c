//! The outbox: publishes logged entries with many acks in flight, and marks each entry
//! published once JetStream acknowledged it. On start, whatever the log still holds as
//! pending is published again; its deterministic `Nats-Msg-Id` makes the repeat harmless.

use std::collections::VecDeque;

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::log::{Entry, EventLog, LogError};
use crate::stream::{Ack, Expect, PublishError, Refusal, Stream};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot publish {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: PublishError,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

impl OutboxError {
    fn publish(subject: String, source: PublishError) -> Self {
        metrics::counter!("sn_publish_retries_total").increment(1);
        OutboxError::Publish { subject, source }
    }

    /// Whether trying again later may work: NATS was unreachable or slow, not refusing.
    pub fn is_transient(&self) -> bool {
        matches!(self, OutboxError::Publish { source, .. } if source.is_transient())
    }
}

pub struct Outbox<'a> {
    stream: &'a dyn Stream,
    log: &'a EventLog,
    /// Publishes awaiting their ack at once, at most.
    max_inflight: usize,
    inflight: VecDeque<Inflight>,
    acked: Vec<u64>,
}

/// A publish waiting for its ack.
struct Inflight {
    seq: u64,
    subject: String,
    id: String,
    ack: Ack,
    /// Sent on the condition that the entry before it was the stream's last message (see
    /// [`Outbox::send_following`]): the entry, to publish again plainly if that failed.
    chained: Option<Entry>,
}

/// A task's last event (completed or failed).
fn ends_task(subject: &str) -> bool {
    common::subjects::parse(subject).is_some_and(|p| p.kind.is_final())
}

impl<'a> Outbox<'a> {
    pub fn new(stream: &'a dyn Stream, log: &'a EventLog, max_inflight: usize) -> Self {
        Outbox {
            stream,
            log,
            max_inflight: max_inflight.max(1),
            inflight: VecDeque::new(),
            acked: Vec::new(),
        }
    }

    /// Sends one logged (and flushed) entry; waits only when too many acks are in flight. A
    /// task's last event waits until every entry sent before it is acknowledged, so the
    /// stream never shows it ahead of one of them (a replay, a republish at start included).
    pub async fn send(&mut self, seq: u64, entry: &Entry) -> Result<(), OutboxError> {
        if ends_task(&entry.subject) {
            self.settle().await?;
        }
        self.make_room().await?;
        self.publish(seq, entry, None).await
    }

    /// Sends a task's last event right behind the one entry still waiting for its ack,
    /// without waiting for that ack: JetStream stores it only if that entry is then the
    /// stream's last message (`Nats-Expected-Last-Msg-Id`), so it is never stored without it.
    /// If anything else was stored in between, it is published again plainly once that ack
    /// is in (at the next settle). With no entry waiting it goes out plainly, and with more
    /// than one it waits for them all, as [`Outbox::send`] does. Only for a stream of one
    /// replica, which stores a connection's publishes in the order sent.
    pub async fn send_following(&mut self, seq: u64, entry: &Entry) -> Result<(), OutboxError> {
        if self.inflight.len() > 1 {
            self.settle().await?;
        }
        let previous = self.inflight.back().map(|sent| sent.id.clone());
        self.publish(seq, entry, previous.as_deref()).await
    }

    async fn make_room(&mut self) -> Result<(), OutboxError> {
        while self.inflight.len() >= self.max_inflight {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn publish(
        &mut self,
        seq: u64,
        entry: &Entry,
        previous: Option<&str>,
    ) -> Result<(), OutboxError> {
        let expect = match previous {
            Some(previous) => Expect::LastMessageId(previous),
            None => Expect::Nothing,
        };
        let ack = self
            .stream
            .publish(
                entry.subject.clone(),
                &entry.id,
                entry.payload.clone(),
                expect,
            )
            .await
            .map_err(|e| OutboxError::publish(entry.subject.clone(), e))?;
        self.inflight.push_back(Inflight {
            seq,
            subject: entry.subject.clone(),
            id: entry.id.clone(),
            ack,
            chained: previous.map(|_| entry.clone()),
        });
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), OutboxError> {
        let Some(sent) = self.inflight.pop_front() else {
            return Ok(());
        };
        match sent.ack.await {
            Ok(_) => {
                if sent.chained.is_some() {
                    metrics::counter!("sn_chained_publishes_total", "outcome" => "stored")
                        .increment(1);
                }
            }
            // Something else came between: every earlier ack is in (they settle in order),
            // so the entry it followed is stored and it may go out plainly.
            Err(e) if e.refusal == Refusal::WrongLastMessageId && sent.chained.is_some() => {
                metrics::counter!("sn_chained_publishes_total", "outcome" => "again").increment(1);
                let entry = sent.chained.expect("checked above");
                return self.publish(sent.seq, &entry, None).await;
            }
            Err(e) => return Err(OutboxError::publish(sent.subject, e)),
        }
        self.acked.push(sent.seq);
        if self.acked.len() >= 32 {
            self.log.mark_published(&self.acked)?;
            self.acked.clear();
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
        self.log.mark_published(&self.acked)?;
        self.acked.clear();
        Ok(())
    }
}

/// Publishes every entry logged but never acknowledged (a crash between flush and ack).
#[instrument(name = "republish pending", skip_all, fields(entries))]
pub async fn republish_pending(
    stream: &dyn Stream,
    log: &EventLog,
    max_inflight: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let pending = log.pending()?;
    tracing::Span::current().record("entries", pending.len());
    if pending.is_empty() {
        return Ok(());
    }
    tracing::info!(
        entries = pending.len(),
        "republishing events logged before the last stop"
    );
    let mut outbox = Outbox::new(stream, log, max_inflight);
    for (seq, entry) in &pending {
        if cancel.is_cancelled() {
            break;
        }
        outbox.send(*seq, entry).await?;
    }
    outbox.drain().await?;
    Ok(())
}
