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
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::projection::LiveBatch;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("{0}")]
    Other(String),
}

/// How a download follows a task that has not ended yet. Once the walk has read every batch
/// the stream's leader holds, it takes the next ones from the projection's live feed as they
/// arrive, and looks at the task again whenever it changes.
pub struct Follow {
    /// Task ids as the projection changes them; subscribed before the task was looked up.
    pub changes: broadcast::Receiver<uuid::Uuid>,
    /// Subscribes to the projection's live feed of batches.
    pub feed: Box<dyn Fn() -> broadcast::Receiver<LiveBatch> + Send + Sync>,
    /// Whether the task has ended (SUCCESS or FAILURE). Its batches are all stored by then
    /// (on the stream's leader and a quorum): the generator publishes the end only after
    /// every batch is acknowledged.
    pub ended: Box<dyn Fn() -> bool + Send + Sync>,
    /// Fired at shutdown: a follow still waiting then fails the body.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Longest wait on the live feed before looking at the task again anyway.
const FOLLOW_RECHECK: Duration = Duration::from_secs(1);

/// What a walk waiting on the live feed got.
enum Live {
    Batch(LiveBatch),
    /// The task changed, changes were missed, or nothing came for `FOLLOW_RECHECK`: look at
    /// it again. The feed misses nothing it does not report, so the walk stays on it.
    Changed,
    /// The feed dropped batches before the walk took them: read the stream.
    Stream,
}

/// Whether `b` is the walk's: of its subject, at or after the next sequence it needs.
fn wanted(b: &LiveBatch, subject: &str, from: u64) -> bool {
    b.seq >= from && b.subject.as_str() == subject
}

/// The first wanted batch the feed already holds; `Err` when it dropped some.
fn held(
    feed: &mut broadcast::Receiver<LiveBatch>,
    subject: &str,
    from: u64,
) -> Result<Option<LiveBatch>, ()> {
    use broadcast::error::TryRecvError;
    loop {
        match feed.try_recv() {
            Ok(b) if wanted(&b, subject, from) => return Ok(Some(b)),
            Ok(_) => continue,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return Ok(None),
            Err(TryRecvError::Lagged(_)) => return Err(()),
        }
    }
}

impl Follow {
    /// Waits for a wanted batch on `feed` or a change of `task`, at most `FOLLOW_RECHECK`.
    /// Other tasks' batches are taken off the feed meanwhile, so a waiting walk holds none of
    /// them. Fails once the gateway is stopping.
    async fn wait(
        &mut self,
        feed: &mut broadcast::Receiver<LiveBatch>,
        task: uuid::Uuid,
        subject: &str,
        from: u64,
    ) -> Result<Live, BrokerError> {
        use broadcast::error::RecvError;
        let changes = &mut self.changes;
        let woke = async {
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(id) if id != task => {}
                        // The projection is gone (and its feed with it): only the recheck is left.
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                        Ok(_) | Err(RecvError::Lagged(_)) => return Live::Changed,
                    },
                    batch = feed.recv() => match batch {
                        Ok(b) if wanted(&b, subject, from) => return Live::Batch(b),
                        Ok(_) => {}
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                        Err(RecvError::Lagged(_)) => return Live::Stream,
                    },
                }
            }
        };
        tokio::select! {
            _ = self.stop.cancelled() => Err(BrokerError::Other("the gateway is stopping".into())),
            woke = tokio::time::timeout(FOLLOW_RECHECK, woke) => Ok(woke.unwrap_or(Live::Changed)),
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
    /// How long a publish is retried without an acknowledgement (`PUBLISH_DEADLINE_SECS`).
    pub deadline: Duration,
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
            let mut pause = Duration::from_millis(50);
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
                let now = tokio::time::Instant::now();
                if now + pause >= deadline {
                    return Err(last_error);
                }
                metrics::counter!("sn_publish_retries_total").increment(1);
                tracing::debug!(error = ?last_error, retry_in = ?pause, "publish not acknowledged yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
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
            // and nothing has to be created or cleaned up on the server. A followed task,
            // once the walk has reached the end of what the stream's leader holds, takes its
            // next batches from the projection's live feed instead (the same messages, which
            // the projection receives anyway): everything stored after the leader said "no
            // more" reaches the feed in stream order, so nothing can fall in between. If the
            // feed outran the walk, the walk reads the stream again.
            let walk = Walk {
                stream,
                subject,
                task,
                seq: from_seq.max(1),
                follow,
                live: None,
            };
            let batches = futures::stream::try_unfold(walk, |mut walk| async move {
                Ok(walk.next().await?.map(|(_, payload)| (payload, walk)))
            });
            Ok(run_ahead(batches.boxed(), 4, || {
                Err(BrokerError::Other("reading the batches failed".into()))
            }))
        })
    }
}

/// A stored message: its stream sequence and payload.
type Stored = (u64, Bytes);

/// A read of one stored message, if there is one.
type Read<'a> = BoxFuture<'a, Result<Option<Stored>, BrokerError>>;

/// The two reads a download's walk makes of the stream.
trait StreamReads: Send + Sync + 'static {
    /// The first message of `subject` at stream sequence `seq` or later, from any replica.
    fn any_replica(&self, subject: &str, seq: u64) -> Read<'_>;
    /// The same, as the stream's leader holds it.
    fn leader(&self, subject: &str, seq: u64) -> Read<'_>;
}

impl StreamReads for jetstream::stream::Stream<()> {
    fn any_replica(&self, subject: &str, seq: u64) -> Read<'_> {
        let subject = subject.to_owned();
        Box::pin(async move {
            match self.direct_get_next_for_subject(subject, Some(seq)).await {
                Ok(m) => Ok(Some((m.sequence, m.payload))),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(other(e)),
            }
        })
    }

    fn leader(&self, subject: &str, seq: u64) -> Read<'_> {
        let subject = subject.to_owned();
        Box::pin(async move {
            match self
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(subject)
                .send()
                .await
            {
                Ok(m) => Ok(Some((m.sequence, m.payload))),
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(other(e)),
            }
        })
    }
}

/// Where a download's walk through a task's batches is.
struct Walk<S> {
    stream: S,
    subject: String,
    task: uuid::Uuid,
    /// Every batch below this stream sequence was yielded.
    seq: u64,
    follow: Option<Follow>,
    /// Following the live feed: subscribed before the stream's leader said it held no batch
    /// from `seq` on, so every batch stored since reaches this receiver, in stream order
    /// (or the receiver reports that it lagged).
    live: Option<broadcast::Receiver<LiveBatch>>,
}

impl<S: StreamReads> Walk<S> {
    /// The next batch, or `None` once the task's batches are all read.
    async fn next(&mut self) -> Result<Option<Stored>, BrokerError> {
        let found = self.find().await?;
        if let Some((seq, _)) = found {
            self.seq = seq + 1;
        }
        Ok(found)
    }

    async fn find(&mut self) -> Result<Option<Stored>, BrokerError> {
        loop {
            // Looked at before any read: once the task has ended every batch is stored (and
            // was offered to the feed), so finding none after that means there are no more.
            let ended = self.follow.as_ref().is_none_or(|f| (f.ended)());
            if let (Some(f), Some(feed)) = (self.follow.as_mut(), self.live.as_mut()) {
                let next = match held(feed, &self.subject, self.seq) {
                    Ok(Some(b)) => Live::Batch(b),
                    Ok(None) if ended => {
                        let found = self.leader_next().await?;
                        if found.is_some() {
                            // One the feed did not bring (a copy published after the end):
                            // the stream has the rest.
                            self.live = None;
                        }
                        return Ok(found);
                    }
                    Ok(None) => f.wait(feed, self.task, &self.subject, self.seq).await?,
                    Err(()) => Live::Stream,
                };
                match next {
                    Live::Batch(b) => {
                        metrics::counter!("sn_download_batches_total", "read" => "feed")
                            .increment(1);
                        return Ok(Some((b.seq, b.payload)));
                    }
                    Live::Changed => {}
                    Live::Stream => self.live = None,
                }
                continue;
            }
            if let Some(found) = self.stream.any_replica(&self.subject, self.seq).await? {
                metrics::counter!("sn_download_batches_total", "read" => "stream").increment(1);
                return Ok(Some(found));
            }
            // Any replica answers a direct get, and one that lags may not hold the last
            // batches yet: the end of what is stored is confirmed by the stream's leader. A
            // follower subscribes to the feed first, so nothing stored after the leader's
            // answer can fall between the two.
            let feed = self.follow.as_ref().filter(|_| !ended).map(|f| (f.feed)());
            match (self.leader_next().await?, feed) {
                (Some(found), _) => return Ok(Some(found)),
                (None, Some(feed)) => self.live = Some(feed),
                (None, None) => return Ok(None),
            }
        }
    }

    async fn leader_next(&self) -> Result<Option<Stored>, BrokerError> {
        let found = self.stream.leader(&self.subject, self.seq).await?;
        if found.is_some() {
            metrics::counter!("sn_download_batches_total", "read" => "stream").increment(1);
        }
        Ok(found)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::sync::broadcast;

    use super::*;

    /// A stream in memory whose replicas may lag: `any_replica` sees only sequences below
    /// `replica_sees`, the leader sees everything.
    #[derive(Default, Clone)]
    struct Memory {
        messages: Arc<Mutex<BTreeMap<u64, (String, Bytes)>>>,
        replica_sees: Arc<AtomicU64>,
    }

    impl Memory {
        /// Stores a message the projection never offers (stored before a follow began).
        fn insert(&self, seq: u64, subject: &str) {
            let payload = Bytes::from(format!("batch at {seq}"));
            self.messages
                .lock()
                .unwrap()
                .insert(seq, (subject.to_owned(), payload));
        }

        fn first(&self, subject: &str, seq: u64, below: u64) -> Option<Stored> {
            let messages = self.messages.lock().unwrap();
            messages
                .range(seq..below.max(seq))
                .find(|(_, (s, _))| s == subject)
                .map(|(&seq, (_, payload))| (seq, payload.clone()))
        }
    }

    impl StreamReads for Memory {
        fn any_replica(&self, subject: &str, seq: u64) -> Read<'_> {
            let below = self.replica_sees.load(Ordering::SeqCst);
            let found = self.first(subject, seq, below);
            Box::pin(async move { Ok(found) })
        }

        fn leader(&self, subject: &str, seq: u64) -> Read<'_> {
            let found = self.first(subject, seq, u64::MAX);
            Box::pin(async move { Ok(found) })
        }
    }

    /// The projection's side: stores a message, offers it to the feed, announces the change.
    struct Projection {
        stream: Memory,
        batches: broadcast::Sender<LiveBatch>,
        changes: broadcast::Sender<uuid::Uuid>,
        task: uuid::Uuid,
    }

    impl Projection {
        fn store(&self, seq: u64, subject: &str) {
            let payload = Bytes::from(format!("batch at {seq}"));
            self.stream
                .messages
                .lock()
                .unwrap()
                .insert(seq, (subject.to_owned(), payload.clone()));
            let _ = self.batches.send(LiveBatch {
                seq,
                subject: subject.into(),
                payload,
            });
            let _ = self.changes.send(self.task);
        }
    }

    /// The walk's next batch: polled until it waits (if it does), then `meanwhile` runs and
    /// the walk goes on. Checks the payload is the one stored at the sequence.
    async fn next(walk: &mut Walk<Memory>, meanwhile: impl FnOnce()) -> Option<u64> {
        let found = walk.next();
        tokio::pin!(found);
        let found = match futures::poll!(&mut found) {
            std::task::Poll::Ready(found) => {
                meanwhile();
                found
            }
            std::task::Poll::Pending => {
                meanwhile();
                found.await
            }
        };
        found.unwrap().map(|(seq, payload)| {
            assert_eq!(payload, format!("batch at {seq}"));
            seq
        })
    }

    #[tokio::test]
    async fn a_followed_walk_reads_every_batch_once_in_order_from_feed_or_stream() {
        let task = uuid::Uuid::new_v4();
        let mine = "sn.M.generated.mine";
        let stream = Memory::default();
        // A feed of 4, so a walk that falls behind by more is told it lagged.
        let (batches, _) = broadcast::channel(4);
        let (changes, _) = broadcast::channel(64);
        let ended = Arc::new(AtomicBool::new(false));
        let follow = Follow {
            changes: changes.subscribe(),
            feed: Box::new({
                let batches: broadcast::Sender<LiveBatch> = batches.clone();
                move || batches.subscribe()
            }),
            ended: Box::new({
                let ended = ended.clone();
                move || ended.load(Ordering::SeqCst)
            }),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let projection = Projection {
            stream: stream.clone(),
            batches,
            changes,
            task,
        };
        let mut walk = Walk {
            stream: stream.clone(),
            subject: mine.to_owned(),
            task,
            seq: 1,
            follow: Some(follow),
            live: None,
        };
        let mut read = Vec::new();

        // Stored before the walk began, and 4 on the leader only (a replica lags): all read
        // from the stream, the replica's "no more" at 3 not taken for the end.
        projection.store(2, mine);
        projection.store(3, "sn.M.generated.other");
        stream.insert(4, mine);
        stream.replica_sees.store(4, Ordering::SeqCst);
        read.push(next(&mut walk, || ()).await.unwrap());
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_none());
        stream.replica_sees.store(u64::MAX, Ordering::SeqCst);

        // Stored while the walk waits at the end of what was stored: from the feed.
        read.push(next(&mut walk, || projection.store(5, mine)).await.unwrap());
        assert!(walk.live.is_some());

        // Ten batches while the walk waits: more than the feed keeps, so it reads the stream
        // again from where it was, then takes up the feed once it has caught up.
        let mut stored = Some(|| (6..16).for_each(|seq| projection.store(seq, mine)));
        for _ in 6..16 {
            let store = stored.take();
            read.push(
                next(&mut walk, || store.into_iter().for_each(|s| s()))
                    .await
                    .unwrap(),
            );
            assert!(walk.live.is_none());
        }
        read.push(
            next(&mut walk, || projection.store(17, mine))
                .await
                .unwrap(),
        );
        assert!(walk.live.is_some());

        // The task ends with two batches still on the feed: both are read from it, then the
        // leader confirms there are no more.
        let end = || {
            projection.store(18, mine);
            projection.store(19, mine);
            ended.store(true, Ordering::SeqCst);
            let _ = projection.changes.send(task);
        };
        read.push(next(&mut walk, end).await.unwrap());
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_some());
        // A copy the feed never brought (published after the end) is still read.
        stream.insert(20, mine);
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_none());
        assert_eq!(next(&mut walk, || ()).await, None);

        let mut expected = vec![2, 4, 5];
        expected.extend(6..16);
        expected.extend(17..21);
        assert_eq!(read, expected);
    }
}
