//! Reading a task's batches in stream order, each once.
//!
//! Direct gets walk the task's `generated` subject without a consumer: any replica answers,
//! and nothing has to be created or cleaned up on the server. Any replica may lag, so the
//! end of what is stored is confirmed by the stream's leader. A followed task, once the walk
//! has read all the leader holds, takes its next batches from the projection's live feed
//! (the same messages, which the projection receives anyway): the walk subscribes to the
//! feed before asking the leader, so everything stored after the leader's "no more" reaches
//! the feed in stream order and nothing can fall in between. If the feed outran the walk
//! (it keeps only a few batches), the walk reads the stream again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::subjects;
use futures::Stream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{DownloadError, LiveBatch, TaskFeed};
use crate::broker::{Broker, Replica, Stored};

/// How a download follows a task that has not ended yet.
pub struct Follow {
    pub(super) feed: Arc<dyn TaskFeed>,
    /// Task ids as the projection changes them; subscribed before the task was looked up.
    changes: broadcast::Receiver<Uuid>,
    /// Fired at shutdown: a follow still waiting then fails the body.
    stop: CancellationToken,
}

impl Follow {
    /// `changes` is `feed.changes()` taken before the task was looked up, so a change in
    /// between is not missed.
    pub fn new(
        feed: Arc<dyn TaskFeed>,
        changes: broadcast::Receiver<Uuid>,
        stop: CancellationToken,
    ) -> Follow {
        Follow {
            feed,
            changes,
            stop,
        }
    }

    /// Waits for a wanted batch on `live` or a change of `task`, at most `FOLLOW_RECHECK`.
    /// Other tasks' batches are taken off the feed meanwhile, so a waiting walk holds none of
    /// them. Fails once the gateway is stopping.
    async fn wait(
        &mut self,
        live: &mut broadcast::Receiver<LiveBatch>,
        task: Uuid,
        subject: &str,
        from: u64,
    ) -> Result<Live, DownloadError> {
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
                    batch = live.recv() => match batch {
                        Ok(b) if wanted(&b, subject, from) => return Live::Batch(b),
                        Ok(_) => {}
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                        Err(RecvError::Lagged(_)) => return Live::Stream,
                    },
                }
            }
        };
        tokio::select! {
            _ = self.stop.cancelled() => Err(DownloadError::Stopping),
            woke = tokio::time::timeout(FOLLOW_RECHECK, woke) => Ok(woke.unwrap_or(Live::Changed)),
        }
    }
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

/// Where a download's walk through a task's batches is.
pub(super) struct Walk {
    broker: Arc<dyn Broker>,
    subject: String,
    task: Uuid,
    /// Every batch below this stream sequence was yielded.
    seq: u64,
    follow: Option<Follow>,
    /// Following the live feed: subscribed before the stream's leader said it held no batch
    /// from `seq` on, so every batch stored since reaches this receiver, in stream order
    /// (or the receiver reports that it lagged).
    live: Option<broadcast::Receiver<LiveBatch>>,
}

impl Walk {
    /// A walk through the batches of `task` (of `model`) from stream sequence `from_seq` on.
    pub(super) fn new(
        broker: Arc<dyn Broker>,
        model: &str,
        task: Uuid,
        from_seq: u64,
        follow: Option<Follow>,
    ) -> Walk {
        Walk {
            broker,
            subject: subjects::generated(model, task),
            task,
            seq: from_seq.max(1),
            follow,
            live: None,
        }
    }

    /// The payloads of the batches, in stream order.
    pub(super) fn payloads(self) -> impl Stream<Item = Result<Bytes, DownloadError>> + Send {
        futures::stream::try_unfold(self, |mut walk| async move {
            Ok(walk.next().await?.map(|stored| (stored.payload, walk)))
        })
    }

    /// The next batch, or `None` once the task's batches are all read.
    async fn next(&mut self) -> Result<Option<Stored>, DownloadError> {
        let found = self.find().await?;
        if let Some(stored) = &found {
            self.seq = stored.seq + 1;
        }
        Ok(found)
    }

    async fn find(&mut self) -> Result<Option<Stored>, DownloadError> {
        loop {
            // Looked at before any read: once the task has ended every batch is stored (and
            // was offered to the feed), so finding none after that means there are no more.
            let ended = self
                .follow
                .as_ref()
                .is_none_or(|f| f.feed.outcome(self.task).ended());
            if let (Some(f), Some(live)) = (self.follow.as_mut(), self.live.as_mut()) {
                let next = match held(live, &self.subject, self.seq) {
                    Ok(Some(b)) => Live::Batch(b),
                    Ok(None) if ended => {
                        let found = self.read(Replica::Leader).await?;
                        if found.is_some() {
                            // One the feed did not bring (a copy published after the end):
                            // the stream has the rest.
                            self.live = None;
                        }
                        return Ok(found);
                    }
                    Ok(None) => f.wait(live, self.task, &self.subject, self.seq).await?,
                    Err(()) => Live::Stream,
                };
                match next {
                    Live::Batch(b) => {
                        metrics::counter!("sn_download_batches_total", "read" => "feed")
                            .increment(1);
                        return Ok(Some(Stored {
                            seq: b.seq,
                            payload: b.payload,
                        }));
                    }
                    Live::Changed => {}
                    Live::Stream => self.live = None,
                }
                continue;
            }
            if let Some(found) = self.read(Replica::Any).await? {
                return Ok(Some(found));
            }
            let live = self
                .follow
                .as_ref()
                .filter(|_| !ended)
                .map(|f| f.feed.batches());
            match (self.read(Replica::Leader).await?, live) {
                (Some(found), _) => return Ok(Some(found)),
                (None, Some(live)) => self.live = Some(live),
                (None, None) => return Ok(None),
            }
        }
    }

    /// The first batch at or after `seq`, as `replica` holds it.
    async fn read(&self, replica: Replica) -> Result<Option<Stored>, DownloadError> {
        let found = self
            .broker
            .next_stored(&self.subject, self.seq, replica)
            .await?;
        if found.is_some() {
            metrics::counter!("sn_download_batches_total", "read" => "stream").increment(1);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::broker::fake::FakeBroker;
    use crate::download::Outcome;

    /// The projection's side: stores a message on the fake stream, offers it to the feed,
    /// announces the change; says whether the task has ended.
    struct Projection {
        stream: Arc<FakeBroker>,
        batches: broadcast::Sender<LiveBatch>,
        changes: broadcast::Sender<Uuid>,
        task: Uuid,
        ended: AtomicBool,
    }

    impl Projection {
        fn store(&self, seq: u64, subject: &str) {
            let payload = Bytes::from(format!("batch at {seq}"));
            self.stream.insert(seq, subject, payload.clone());
            let _ = self.batches.send(LiveBatch {
                seq,
                subject: subject.into(),
                payload,
            });
            let _ = self.changes.send(self.task);
        }
    }

    impl TaskFeed for Projection {
        fn changes(&self) -> broadcast::Receiver<Uuid> {
            self.changes.subscribe()
        }
        fn batches(&self) -> broadcast::Receiver<LiveBatch> {
            self.batches.subscribe()
        }
        fn outcome(&self, _: Uuid) -> Outcome {
            if self.ended.load(Ordering::SeqCst) {
                Outcome::Failed("ended".into())
            } else {
                Outcome::Running
            }
        }
    }

    /// Stores a message the projection never offers (stored before a follow began).
    fn insert(stream: &FakeBroker, seq: u64, subject: &str) {
        stream.insert(seq, subject, Bytes::from(format!("batch at {seq}")));
    }

    /// The walk's next batch: polled until it waits (if it does), then `meanwhile` runs and
    /// the walk goes on. Checks the payload is the one stored at the sequence.
    async fn next(walk: &mut Walk, meanwhile: impl FnOnce()) -> Option<u64> {
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
        found.unwrap().map(|stored| {
            assert_eq!(stored.payload, format!("batch at {}", stored.seq));
            stored.seq
        })
    }

    #[tokio::test]
    async fn a_followed_walk_reads_every_batch_once_in_order_from_feed_or_stream() {
        let task = Uuid::new_v4();
        let mine = subjects::generated("M", task);
        let other = subjects::generated("M", Uuid::new_v4());
        let stream = Arc::new(FakeBroker::default());
        // A feed of 4, so a walk that falls behind by more is told it lagged.
        let projection = Arc::new(Projection {
            stream: stream.clone(),
            batches: broadcast::channel(4).0,
            changes: broadcast::channel(64).0,
            task,
            ended: AtomicBool::new(false),
        });
        let follow = Follow::new(
            projection.clone(),
            projection.changes(),
            CancellationToken::new(),
        );
        let mut walk = Walk::new(stream.clone(), "M", task, 1, Some(follow));
        let mut read = Vec::new();

        // Stored before the walk began, and 4 on the leader only (a replica lags): all read
        // from the stream, the replica's "no more" at 3 not taken for the end.
        projection.store(2, &mine);
        projection.store(3, &other);
        insert(&stream, 4, &mine);
        stream.replica_sees.store(4, Ordering::SeqCst);
        read.push(next(&mut walk, || ()).await.unwrap());
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_none());
        stream.replica_sees.store(u64::MAX, Ordering::SeqCst);

        // Stored while the walk waits at the end of what was stored: from the feed.
        read.push(
            next(&mut walk, || projection.store(5, &mine))
                .await
                .unwrap(),
        );
        assert!(walk.live.is_some());

        // Ten batches while the walk waits: more than the feed keeps, so it reads the stream
        // again from where it was, then takes up the feed once it has caught up.
        let mut stored = Some(|| (6..16).for_each(|seq| projection.store(seq, &mine)));
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
            next(&mut walk, || projection.store(17, &mine))
                .await
                .unwrap(),
        );
        assert!(walk.live.is_some());

        // The task ends with two batches still on the feed: both are read from it, then the
        // leader confirms there are no more.
        let end = || {
            projection.store(18, &mine);
            projection.store(19, &mine);
            projection.ended.store(true, Ordering::SeqCst);
            let _ = projection.changes.send(task);
        };
        read.push(next(&mut walk, end).await.unwrap());
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_some());
        // A copy the feed never brought (published after the end) is still read.
        insert(&stream, 20, &mine);
        read.push(next(&mut walk, || ()).await.unwrap());
        assert!(walk.live.is_none());
        assert_eq!(next(&mut walk, || ()).await, None);

        let mut expected = vec![2, 4, 5];
        expected.extend(6..16);
        expected.extend(17..21);
        assert_eq!(read, expected);
    }

    #[tokio::test]
    async fn a_follow_waiting_at_shutdown_fails_the_body() {
        let task = Uuid::new_v4();
        let stream = Arc::new(FakeBroker::default());
        let projection = Arc::new(Projection {
            stream: stream.clone(),
            batches: broadcast::channel(4).0,
            changes: broadcast::channel(4).0,
            task,
            ended: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let follow = Follow::new(projection.clone(), projection.changes(), stop.clone());
        let mut walk = Walk::new(stream, "M", task, 1, Some(follow));

        let found = walk.next();
        tokio::pin!(found);
        assert!(futures::poll!(&mut found).is_pending());
        stop.cancel();

        assert!(matches!(found.await, Err(DownloadError::Stopping)));
    }
}
