//! The gateway's read side: folds the whole `SN` stream from the start (ordered consumer),
//! then follows it. Nothing here cannot be rebuilt from the stream.
//!
//! - `fold`: one task's state machine, moved by the task's events;
//! - `views`: the tasks, the ledger and the indexes the API queries ([`Views`]);
//! - `snapshot`: the views' stored form and the object store that keeps it, so a start folds
//!   only what came after the latest snapshot;
//! - `consume`: the consumer loop that feeds the events to a [`Projection`].
//!
//! [`Projection`] holds the views behind a lock, with the position they reflect and
//! broadcasts of what changed, for long polls, event streams and followed downloads.

mod consume;
mod fold;
mod snapshot;
#[cfg(test)]
mod testing;
mod views;

pub use consume::run;
pub use fold::{State, Task};
pub use snapshot::Snapshots;
pub use views::Views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use common::subjects::{self, Kind};
use common::Event;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::download::{Ended, LiveBatch, Outcome, TaskFeed};

/// The folded views, the stream position they reflect, a feed of changed tasks, and a feed
/// of the generated batches as they arrive.
pub struct Projection {
    views: RwLock<Views>,
    position: watch::Sender<u64>,
    caught_up: AtomicBool,
    changes: broadcast::Sender<Uuid>,
    batches: broadcast::Sender<LiveBatch>,
}

/// Batches the live feed keeps for a reader that has not taken them yet (each up to 256 KiB,
/// and it may keep the NATS read buffer it was cut from alive); a reader further behind is
/// told it lagged and reads the stream instead. Only a followed download that has caught up
/// with the stream holds a reader, and while it waits it takes every batch off the feed.
const LIVE_BATCHES: usize = 32;

impl Default for Projection {
    fn default() -> Self {
        Projection {
            views: RwLock::new(Views::default()),
            position: watch::Sender::new(0),
            caught_up: AtomicBool::new(false),
            changes: broadcast::channel(4096).0,
            batches: broadcast::channel(LIVE_BATCHES).0,
        }
    }
}

impl Projection {
    pub fn views(&self) -> RwLockReadGuard<'_, Views> {
        self.views.read().expect("views lock poisoned")
    }

    /// Starts from `views` (a snapshot) in place of what was folded so far.
    pub fn restore(&self, views: Views) {
        let position = views.position();
        *self.views.write().expect("views lock poisoned") = views;
        self.position.send_replace(position);
    }

    /// Folds one event at stream sequence `seq`.
    pub fn apply(&self, seq: u64, event: &Event) {
        let changed = self
            .views
            .write()
            .expect("views lock poisoned")
            .apply(seq, event);
        self.position.send_replace(seq);
        if let Some(id) = changed {
            let _ = self.changes.send(id);
        }
    }

    /// Records a position without an event (an undecodable message was skipped).
    pub fn skip(&self, seq: u64) {
        self.views.write().expect("views lock poisoned").skip(seq);
        self.position.send_replace(seq);
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    pub fn set_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(
                position = self.position(),
                tasks = self.views().len(),
                "projection caught up"
            );
        }
    }

    /// Waits (bounded) until the fold has reached stream sequence `seq`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.position.subscribe();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|p| *p >= seq)).await,
            Ok(Ok(_))
        );
        reached
    }

    /// Task ids as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }

    /// Hands a received message to the live batch feed if it is a batch and anyone listens.
    pub(crate) fn offer(&self, seq: u64, subject: &async_nats::Subject, payload: &bytes::Bytes) {
        if self.batches.receiver_count() == 0 {
            return;
        }
        if subjects::parse(subject).is_some_and(|p| p.kind == Kind::Generated) {
            let _ = self.batches.send(LiveBatch {
                seq,
                subject: subject.clone(),
                payload: payload.clone(),
            });
        }
    }
}

/// What a followed download reads of the projection.
impl TaskFeed for Projection {
    fn changes(&self) -> broadcast::Receiver<Uuid> {
        self.subscribe()
    }

    fn batches(&self) -> broadcast::Receiver<LiveBatch> {
        self.batches.subscribe()
    }

    fn outcome(&self, id: Uuid) -> Outcome {
        let views = self.views();
        let Some(task) = views.task(&id) else {
            return Outcome::Unknown;
        };
        match task.state {
            State::Pending | State::Started => Outcome::Running,
            State::Success => Outcome::Succeeded(Ended {
                batches: task.batches.unwrap_or(0),
                count: task.count,
                first_number: task.range.map(|(first, _)| first),
            }),
            State::Failure => Outcome::Failed(format!(
                "task {id} ended in {}: {}",
                task.state.as_str(),
                task.error.as_ref().map_or("", |e| e.message.as_str())
            )),
        }
    }
}
