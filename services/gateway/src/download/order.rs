//! Batches in batch order, each once, checked to be the task's serials whole: one run of
//! numbers from the task's first, as many as it counts. A download that cannot be whole
//! fails its body with an error rather than ending short, so a partial download never
//! passes for a whole one.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use common::events::BorrowedBatch;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use uuid::Uuid;

use super::{DownloadError, Ended, Form, Outcome, TaskFeed};

/// Puts batches in order and drops repeats (a republished batch appears twice in the stream).
pub(super) struct Reorder {
    next: u64,
    total: u64,
    waiting: BTreeMap<u64, Bytes>,
}

pub(super) enum Slot {
    /// The batch is the next one: render it now.
    Now,
    /// Ahead of the next one: kept until the batches before it are rendered.
    Later,
    /// Already rendered or out of range.
    Drop,
}

impl Reorder {
    pub(super) fn new(total: u64) -> Reorder {
        Reorder {
            next: 0,
            total,
            waiting: BTreeMap::new(),
        }
    }

    pub(super) fn place(&mut self, batch: u64, payload: &Bytes) -> Slot {
        if batch < self.next || batch >= self.total {
            Slot::Drop
        } else if batch == self.next {
            self.next += 1;
            Slot::Now
        } else {
            self.waiting.entry(batch).or_insert_with(|| payload.clone());
            Slot::Later
        }
    }

    /// The next batch, if it arrived early.
    pub(super) fn pop_ready(&mut self) -> Option<Bytes> {
        let p = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(p)
    }

    pub(super) fn done(&self) -> bool {
        self.next >= self.total
    }
}

/// Checks that the batches, in order, are one run of numbers of the task's size: a batch
/// that does not start where the one before ended (or a short total) fails the body.
pub(super) struct Continuity {
    next_number: Option<u64>,
    serials: u64,
    count: u64,
    /// The first batch's first number.
    first_number: Option<u64>,
}

impl Continuity {
    /// Batches starting at `first_number` (if known yet), `count` serials in all.
    pub(super) fn new(first_number: Option<u64>, count: u64) -> Continuity {
        Continuity {
            next_number: first_number,
            serials: 0,
            count,
            first_number: None,
        }
    }

    fn take(&mut self, batch: &BorrowedBatch<'_>) -> Result<(), DownloadError> {
        if let Some(expected) = self.next_number.filter(|&n| n != batch.first_number) {
            return Err(DownloadError::Broken(format!(
                "batch {} starts at number {}, not {expected}",
                batch.batch, batch.first_number
            )));
        }
        let len = batch.serials.len() as u64;
        self.first_number.get_or_insert(batch.first_number);
        self.next_number = batch.first_number.checked_add(len);
        self.serials += len;
        Ok(())
    }

    fn end(&self) -> Result<(), DownloadError> {
        if self.serials == self.count {
            Ok(())
        } else {
            Err(DownloadError::Broken(format!(
                "the batches hold {} serials, the task {}",
                self.serials, self.count
            )))
        }
    }

    /// The checks at the end of a followed task, against what its completion says.
    fn end_as(&mut self, ended: &Ended, batches_read: u64) -> Result<(), DownloadError> {
        let started_right = match (self.first_number, ended.first_number) {
            (Some(seen), Some(first)) => seen == first,
            (None, _) => true,
            (Some(_), None) => false,
        };
        self.count = ended.count;
        if batches_read != ended.batches {
            Err(DownloadError::Broken(format!(
                "{batches_read} batches arrived, the task has {}",
                ended.batches
            )))
        } else if !started_right {
            Err(DownloadError::Broken(
                "the batches do not start at the task's first number".into(),
            ))
        } else {
            self.end()
        }
    }
}

/// How many batches make the task, and how its end is checked.
pub(super) enum Total {
    /// The task is SUCCESS: its completion counted them.
    Known(u64),
    /// The task was still running: its outcome is asked once its batches have run out (and
    /// it has ended).
    AtEnd(Arc<dyn TaskFeed>, Uuid),
}

/// What the task's outcome says once a followed task's batches have run out.
fn at_end(feed: &dyn TaskFeed, task: Uuid) -> Result<Ended, DownloadError> {
    match feed.outcome(task) {
        Outcome::Succeeded(ended) => Ok(ended),
        Outcome::Failed(why) => Err(DownloadError::Broken(why)),
        Outcome::Running => Err(DownloadError::Broken(format!(
            "the batches of task {task} ran out before it ended"
        ))),
        Outcome::Unknown => Err(DownloadError::Broken(format!("task {task} is gone"))),
    }
}

/// Rendered chunks, one per batch, in batch order, ending after the last batch.
pub(super) fn ordered_lines(
    source: BoxStream<'static, Result<Bytes, DownloadError>>,
    total: Total,
    continuity: Continuity,
    form: Form,
) -> impl futures::Stream<Item = Result<Bytes, DownloadError>> {
    let (known, at_end_of) = match total {
        Total::Known(n) => (n, None),
        Total::AtEnd(feed, task) => (u64::MAX, Some((feed, task))),
    };
    // `None` once the body has ended, with an error or whole.
    let state = Some((source, Reorder::new(known), continuity, at_end_of));
    stream::unfold(state, move |state| async move {
        let (mut source, mut reorder, mut continuity, at_end_of) = state?;
        if reorder.done() {
            return continuity.end().err().map(|e| (Err(e), None));
        }
        let fail = |e| Some((Err(e), None));
        loop {
            let payload = match source.next().await {
                Some(Ok(p)) => p,
                Some(Err(e)) => return fail(e),
                // A followed task: its batches ran out once it ended.
                None => {
                    let Some((feed, task)) = &at_end_of else {
                        // Fewer batches than the completion counted.
                        return fail(DownloadError::Broken(format!(
                            "batch {} is missing",
                            reorder.next
                        )));
                    };
                    let end = at_end(feed.as_ref(), *task)
                        .and_then(|ended| continuity.end_as(&ended, reorder.next));
                    return end.err().map(|e| (Err(e), None));
                }
            };
            let Ok(batch) = BorrowedBatch::parse(&payload) else {
                continue;
            };
            if !matches!(reorder.place(batch.batch, &payload), Slot::Now) {
                continue;
            }
            if let Err(e) = continuity.take(&batch) {
                return fail(e);
            }
            let mut out = Vec::with_capacity(payload.len());
            form.render(&batch, &mut out);
            while let Some(p) = reorder.pop_ready() {
                let Ok(b) = BorrowedBatch::parse(&p) else {
                    continue;
                };
                if let Err(e) = continuity.take(&b) {
                    return fail(e);
                }
                form.render(&b, &mut out);
            }
            let state = Some((source, reorder, continuity, at_end_of));
            return Some((Ok(Bytes::from(out)), state));
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;
    use crate::download::LiveBatch;

    fn batch(batch: u64, first_number: u64, serials: &[&str]) -> Bytes {
        let event = serde_json::json!({
            "type": common::events::types::GENERATED,
            "data": {"batch": batch, "first_number": first_number, "serials": serials},
        });
        Bytes::from(event.to_string())
    }

    async fn lines(batches: Vec<Bytes>, total: u64, count: u64) -> Vec<Result<Bytes, String>> {
        collect(batches, Total::Known(total), Some(1), count).await
    }

    async fn collect(
        batches: Vec<Bytes>,
        total: Total,
        first: Option<u64>,
        count: u64,
    ) -> Vec<Result<Bytes, String>> {
        let source = stream::iter(batches.into_iter().map(Ok)).boxed();
        ordered_lines(source, total, Continuity::new(first, count), Form::Text)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn batches_that_are_not_one_run_of_the_tasks_size_fail_the_body() {
        // Whole, though out of order.
        let whole = lines(
            vec![batch(1, 3, &["c", "d"]), batch(0, 1, &["a", "b"])],
            2,
            4,
        )
        .await;
        assert_eq!(whole, [Ok(Bytes::from("a\nb\nc\nd\n"))]);
        // Batch 1 made with another batch size than batch 0: a gap.
        let gap = lines(vec![batch(0, 1, &["a", "b"]), batch(1, 4, &["d"])], 2, 3).await;
        assert_eq!(gap.len(), 2);
        assert_eq!(gap[0], Ok(Bytes::from("a\nb\n")));
        assert_eq!(gap[1], Err("batch 1 starts at number 4, not 3".into()));
        // Fewer serials than the task counts.
        let short = lines(vec![batch(0, 1, &["a"])], 1, 2).await;
        assert_eq!(short.len(), 2);
        assert!(short[1].is_err());
    }

    /// A task that has ended as its outcome says.
    struct EndedAs(Outcome);

    impl TaskFeed for EndedAs {
        fn changes(&self) -> broadcast::Receiver<Uuid> {
            broadcast::channel(1).1
        }
        fn batches(&self) -> broadcast::Receiver<LiveBatch> {
            broadcast::channel(1).1
        }
        fn outcome(&self, _: Uuid) -> Outcome {
            self.0.clone()
        }
    }

    /// A followed task (range not known when it started) that ended as `ended` says.
    async fn followed(
        batches: Vec<Bytes>,
        ended: Result<(u64, u64, u64), &'static str>,
    ) -> Vec<Result<Bytes, String>> {
        let outcome = match ended {
            Ok((batches, count, first)) => Outcome::Succeeded(Ended {
                batches,
                count,
                first_number: Some(first),
            }),
            Err(why) => Outcome::Failed(why.into()),
        };
        let total = Total::AtEnd(Arc::new(EndedAs(outcome)), Uuid::new_v4());
        collect(batches, total, None, 0).await
    }

    #[tokio::test]
    async fn a_followed_download_ends_as_the_task_does() {
        let two = || vec![batch(0, 5, &["e", "f"]), batch(1, 7, &["g"])];
        let whole = followed(two(), Ok((2, 3, 5))).await;
        assert_eq!(whole, [Ok(Bytes::from("e\nf\n")), Ok(Bytes::from("g\n"))]);
        // The task failed while its serials were streaming.
        let failed = followed(two(), Err("task x ended in FAILURE: boom")).await;
        assert_eq!(
            failed.last(),
            Some(&Err("task x ended in FAILURE: boom".into()))
        );
        // A batch the completion counts never arrived.
        let short = followed(two(), Ok((3, 4, 5))).await;
        assert_eq!(
            short.last(),
            Some(&Err("2 batches arrived, the task has 3".into()))
        );
        // The batches are not the task's range.
        let elsewhere = followed(two(), Ok((2, 3, 1))).await;
        assert!(elsewhere.last().unwrap().is_err(), "{elsewhere:?}");
        // Counted serials differ.
        let count = followed(two(), Ok((2, 4, 5))).await;
        assert!(count.last().unwrap().is_err(), "{count:?}");
    }

    #[test]
    fn reorder_emits_in_order_once() {
        let mut r = Reorder::new(3);
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert!(matches!(r.place(1, &b("1")), Slot::Later));
        assert!(matches!(r.place(0, &b("0")), Slot::Now));
        assert_eq!(r.pop_ready(), Some(b("1")));
        assert_eq!(r.pop_ready(), None);
        assert!(matches!(r.place(0, &b("0 again")), Slot::Drop));
        assert!(matches!(r.place(7, &b("bogus")), Slot::Drop));
        assert!(!r.done());
        assert!(matches!(r.place(2, &b("2")), Slot::Now));
        assert!(r.done());
    }
}
