//! What the HTTP side needs from NATS, behind one small trait so handlers can be tested with
//! a fake and no sockets.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, RawMessageErrorKind},
};
use bytes::Bytes;
use common::{subjects, Event};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("{0}")]
    Other(String),
}

/// How a download follows a task that has not ended yet: when the task's batches run out
/// before it has ended, the walk waits for the task to change and looks again.
pub struct Follow {
    /// Task ids as the projection changes them; subscribed before the task was looked up.
    pub changes: tokio::sync::broadcast::Receiver<uuid::Uuid>,
    /// Whether the task has ended (SUCCESS or FAILURE). Its batches are all stored by then
    /// (on the stream's leader and a quorum): the generator publishes the end only after
    /// every batch is acknowledged.
    pub ended: Box<dyn Fn() -> bool + Send + Sync>,
    /// Fired at shutdown: a follow still waiting then fails the body.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Longest wait for a change before looking at the stream again anyway.
const FOLLOW_RECHECK: Duration = Duration::from_secs(1);

impl Follow {
    /// Waits until `task` changes (or changes may have been missed), at most
    /// `FOLLOW_RECHECK`; fails once the gateway is stopping.
    async fn changed(&mut self, task: uuid::Uuid) -> Result<(), BrokerError> {
        use tokio::sync::broadcast::error::RecvError;
        let changes = &mut self.changes;
        let change = async {
            loop {
                match changes.recv().await {
                    Ok(id) if id != task => continue,
                    // No more changes: only the recheck is left.
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                    Ok(_) | Err(RecvError::Lagged(_)) => return,
                }
            }
        };
        tokio::select! {
            _ = self.stop.cancelled() => Err(BrokerError::Other("the gateway is stopping".into())),
            _ = tokio::time::timeout(FOLLOW_RECHECK, change) => Ok(()),
        }
    }
}

/// The stream's answer to a publish.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub sequence: u64,
    pub duplicate: bool,
}

pub trait Broker: Send + Sync + 'static {
    /// Publishes a request event and waits for JetStream's acknowledgement.
    fn publish(&self, event: &Event) -> BoxFuture<'_, Result<Accepted, BrokerError>>;
    fn connected(&self) -> bool;
    /// Last sequence of the stream.
    fn last_sequence(&self) -> BoxFuture<'_, Result<u64, BrokerError>>;
    /// Raw payloads of the task's generated events, in stream order, from stream sequence
    /// `from_seq` on; with `follow`, on until the task has ended.
    fn generated(
        &self,
        model: &str,
        task: uuid::Uuid,
        from_seq: u64,
        follow: Option<Follow>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BrokerError>>, BrokerError>>;
}

pub struct NatsBroker {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

fn other(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Other(e.to_string())
}

impl Broker for NatsBroker {
    fn publish(&self, event: &Event) -> BoxFuture<'_, Result<Accepted, BrokerError>> {
        let subject = event.nats_subject();
        // The CloudEvent carries the same trace context as the NATS headers.
        let event = event
            .clone()
            .with_traceparent(common::telemetry::current_traceparent());
        let publish = common::nats::event_publish(&event.id, event.to_json().into(), None);
        Box::pin(async move {
            if !self.connected() {
                return Err(BrokerError::Disconnected);
            }
            let ack = self
                .js
                .send_publish(subject, publish)
                .await
                .map_err(other)?;
            let ack = tokio::time::timeout(Duration::from_secs(5), ack)
                .await
                .map_err(|_| BrokerError::Other("no ack from JetStream in time".into()))?
                .map_err(other)?;
            Ok(Accepted {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64, BrokerError>> {
        Box::pin(async move { common::nats::last_sequence(&self.js).await.map_err(other) })
    }

    fn generated(
        &self,
        model: &str,
        task: uuid::Uuid,
        from_seq: u64,
        follow: Option<Follow>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes, BrokerError>>, BrokerError>> {
        let subject = subjects::generated(model, task);
        Box::pin(async move {
            let stream = self
                .js
                .get_stream_no_info(subjects::STREAM)
                .await
                .map_err(other)?;
            // Direct gets walk the task's subject without a consumer: any replica answers,
            // and nothing has to be created or cleaned up on the server.
            let batches = futures::stream::try_unfold(
                (stream, subject, from_seq.max(1), follow),
                move |(stream, subject, seq, mut follow)| async move {
                    let found = loop {
                        // Looked at before the get: once the task has ended every batch is
                        // stored, so finding none after that means there are no more.
                        let ended = follow.as_ref().is_none_or(|f| (f.ended)());
                        match stream
                            .direct_get_next_for_subject(subject.as_str(), Some(seq))
                            .await
                        {
                            Ok(m) => break Some(m),
                            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                                match follow.as_mut() {
                                    Some(f) if !ended => f.changed(task).await?,
                                    // Any replica answers a direct get, and one that lags may
                                    // not hold the last batches yet: the end is confirmed by
                                    // the stream's leader.
                                    _ => match stream
                                        .raw_message_builder()
                                        .sequence(seq)
                                        .next_by_subject(subject.as_str())
                                        .send()
                                        .await
                                    {
                                        Ok(m) => break Some(m),
                                        Err(e)
                                            if e.kind() == RawMessageErrorKind::NoMessageFound =>
                                        {
                                            break None
                                        }
                                        Err(e) => return Err(other(e)),
                                    },
                                }
                            }
                            Err(e) => return Err(other(e)),
                        }
                    };
                    Ok(found.map(|m| {
                        let next = m.sequence + 1;
                        (m.payload, (stream, subject, next, follow))
                    }))
                },
            );
            Ok(run_ahead(batches.boxed(), 4, || {
                Err(BrokerError::Other("reading the batches failed".into()))
            }))
        })
    }
}

/// Drives `stream` on a task of its own, up to `depth` items ahead of its reader, so making
/// the next item (a round trip to NATS, rendering a batch) overlaps with using this one. The
/// task ends with the stream or as soon as the reader is gone. Should the task panic, the
/// reader gets `on_panic()` as the last item rather than an end that looks complete.
pub fn run_ahead<T: Send + 'static>(
    mut stream: BoxStream<'static, T>,
    depth: usize,
    on_panic: impl FnOnce() -> T + Send + 'static,
) -> BoxStream<'static, T> {
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    let producer = tokio::spawn(
        async move {
            loop {
                let item = tokio::select! {
                    _ = tx.closed() => break,
                    item = stream.next() => item,
                };
                let Some(item) = item else { break };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    let state = (rx, Some((producer, on_panic)));
    futures::stream::unfold(state, |(mut rx, mut end)| async move {
        if let Some(item) = rx.recv().await {
            return Some((item, (rx, end)));
        }
        let (producer, on_panic) = end.take()?;
        match producer.await {
            Err(e) if e.is_panic() => Some((on_panic(), (rx, None))),
            _ => None,
        }
    })
    .boxed()
}
