//! What the HTTP side needs from NATS, behind one small trait so handlers can be tested with
//! a fake and no sockets: publish a request and wait for its acknowledgement, and read
//! stored messages (a download's batches).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, RawMessageErrorKind},
};
use bytes::Bytes;
use common::backoff::Backoff;
use common::{subjects, Event};
use futures::future::BoxFuture;

#[cfg(test)]
pub mod fake;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("{0}")]
    Other(String),
}

/// The stream's answer to a publish.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub sequence: u64,
    pub duplicate: bool,
}

pub trait Broker: Send + Sync + 'static {
    /// Publishes a request event to `subject` (its [`Event::nats_subject`]) and waits for
    /// JetStream's acknowledgement.
    fn publish(
        &self,
        subject: String,
        event: Event,
    ) -> BoxFuture<'_, Result<Accepted, BrokerError>>;
    fn connected(&self) -> bool;
    /// Last sequence of the stream.
    fn last_sequence(&self) -> BoxFuture<'_, Result<u64, BrokerError>>;
    /// The first message of `subject` at stream sequence `seq` or later, as `replica`
    /// holds it; `None` when there is none.
    fn next_stored(
        &self,
        subject: &str,
        seq: u64,
        replica: Replica,
    ) -> BoxFuture<'_, Result<Option<Stored>, BrokerError>>;
}

/// Which copy of the stream a read asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replica {
    /// Any replica (a direct get): may lag behind the leader.
    Any,
    /// The stream's leader: holds everything acknowledged.
    Leader,
}

/// A stored message: its stream sequence and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub payload: Bytes,
}

pub struct NatsBroker {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream<()>,
    /// How long a publish is retried without an acknowledgement (`PUBLISH_DEADLINE_SECS`).
    deadline: Duration,
}

impl NatsBroker {
    pub async fn new(
        client: async_nats::Client,
        js: jetstream::Context,
        deadline: Duration,
    ) -> anyhow::Result<NatsBroker> {
        let stream = js.get_stream_no_info(subjects::STREAM).await?;
        Ok(NatsBroker {
            client,
            js,
            stream,
            deadline,
        })
    }
}

fn other(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Other(e.to_string())
}

/// One publish of the event `id` and its acknowledgement, waited for at most 5 s.
async fn publish_once(
    js: &jetstream::Context,
    subject: String,
    id: &str,
    payload: Bytes,
) -> Result<Accepted, BrokerError> {
    let publish = common::nats::event_publish(id, payload, None);
    let ack = js.send_publish(subject, publish).await.map_err(other)?;
    let ack = tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .map_err(|_| BrokerError::Other("no ack from JetStream in time".into()))?
        .map_err(other)?;
    Ok(Accepted {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

impl Broker for NatsBroker {
    fn publish(
        &self,
        subject: String,
        event: Event,
    ) -> BoxFuture<'_, Result<Accepted, BrokerError>> {
        // The CloudEvent carries the same trace context as the NATS headers.
        let event = event.with_traceparent(common::telemetry::current_traceparent());
        let payload: Bytes = event.to_json().into();
        Box::pin(async move {
            // Tried again with the same message id until the deadline: a leader election
            // or a reconnect answers nothing, or "no responders", for a few seconds, and
            // the duplicate window makes a retry of a publish that was stored after all
            // answer "duplicate" instead of storing it twice.
            let deadline = tokio::time::Instant::now() + self.deadline;
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
            loop {
                let last_error = if self.connected() {
                    match publish_once(&self.js, subject.clone(), &event.id, payload.clone()).await
                    {
                        Ok(accepted) => return Ok(accepted),
                        Err(e) => e,
                    }
                } else {
                    BrokerError::Disconnected
                };
                let pause = backoff.next_delay();
                let now = tokio::time::Instant::now();
                if now + pause >= deadline {
                    return Err(last_error);
                }
                metrics::counter!("sn_publish_retries_total").increment(1);
                tracing::debug!(error = ?last_error, retry_in = ?pause, "publish not acknowledged yet");
                tokio::time::sleep(pause).await;
            }
        })
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64, BrokerError>> {
        Box::pin(async move { common::nats::last_sequence(&self.js).await.map_err(other) })
    }

    fn next_stored(
        &self,
        subject: &str,
        seq: u64,
        replica: Replica,
    ) -> BoxFuture<'_, Result<Option<Stored>, BrokerError>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            match replica {
                Replica::Any => {
                    match self
                        .stream
                        .direct_get_next_for_subject(subject, Some(seq))
                        .await
                    {
                        Ok(m) => Ok(Some(Stored {
                            seq: m.sequence,
                            payload: m.payload,
                        })),
                        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                        Err(e) => Err(other(e)),
                    }
                }
                Replica::Leader => {
                    let read = self
                        .stream
                        .raw_message_builder()
                        .sequence(seq)
                        .next_by_subject(subject)
                        .send()
                        .await;
                    match read {
                        Ok(m) => Ok(Some(Stored {
                            seq: m.sequence,
                            payload: m.payload,
                        })),
                        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
                        Err(e) => Err(other(e)),
                    }
                }
            }
        })
    }
}
