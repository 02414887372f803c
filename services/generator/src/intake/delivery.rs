//! The requests this replica holds: the latest delivery of each, kept alive while it waits
//! and runs, and how one goes back to JetStream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};
use common::events::GenerateRequested;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::config::WorkConfig;

/// How a request goes back to JetStream when this replica's log has failed: after its
/// last pull request has expired. The replica pulls no more once the log fails, but a pull
/// sent just before is still open at the server for up to `PULL_EXPIRES_SECS`; a request
/// given back sooner could be delivered to it again, and each such round trip would spend
/// one of the request's deliveries. So a request spends one delivery on a broken replica,
/// and only one.
pub fn give_back(work: &WorkConfig) -> AckKind {
    let expires = Duration::from_secs(work.pull_expires_secs.max(1));
    AckKind::Nak(Some(expires + Duration::from_secs(1)))
}

/// A request this replica took, waiting for its reservation turn.
pub struct Taken {
    pub req: GenerateRequested,
    pub delivery: Arc<Delivery>,
    pub permit: OwnedSemaphorePermit,
    pub held: Arc<Holdings>,
    /// Stopped just before the request is given back to JetStream, or once it is answered.
    pub alive: KeepAlive,
}

/// Tells JetStream, until stopped, that a taken request is still being worked on
/// ([`Delivery::keep_alive`]).
pub struct KeepAlive(Option<tokio::task::JoinHandle<()>>);

impl KeepAlive {
    pub fn start(delivery: Arc<Delivery>, ack_wait: Duration) -> KeepAlive {
        let task = tokio::spawn(async move {
            let never = delivery.keep_alive(ack_wait).await;
            match never {}
        });
        KeepAlive(Some(task))
    }

    /// Once this returns, no progress ack goes out any more: one sent after a Nak with
    /// a delay would restart the ack wait and hold back the request's redelivery.
    pub async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The requests this replica is working on, by task.
#[derive(Default)]
pub struct Holdings(std::sync::Mutex<HashMap<Uuid, Arc<Delivery>>>);

impl Holdings {
    /// Holds `msg` as its task's delivery, or hands it to the run already holding the task
    /// (then `None`): that run keeps it alive and acks it, so the latest delivery is answered.
    pub fn take(&self, task: Uuid, msg: Message) -> Option<Arc<Delivery>> {
        let mut held = self.0.lock().expect("holdings lock poisoned");
        if let Some(running) = held.get(&task) {
            tracing::debug!(task_id = %task, "redelivered while running here");
            *running.msg.lock().expect("delivery lock poisoned") = msg;
            return None;
        }
        let delivery = Arc::new(Delivery {
            task,
            msg: std::sync::Mutex::new(msg),
            taken: Instant::now(),
        });
        held.insert(task, delivery.clone());
        Some(delivery)
    }

    pub fn release(&self, delivery: &Delivery) {
        self.0
            .lock()
            .expect("holdings lock poisoned")
            .remove(&delivery.task);
    }
}

/// The latest delivery of a request that a run holds.
pub struct Delivery {
    pub task: Uuid,
    msg: std::sync::Mutex<Message>,
    /// When this replica took the first delivery.
    taken: Instant,
}

impl Delivery {
    pub fn current(&self) -> Message {
        self.msg.lock().expect("delivery lock poisoned").clone()
    }

    /// Tells JetStream the request is still being worked on, a few times per ack wait, for
    /// as long as this replica holds it (a wait for the reservation turn, a long task, a
    /// retry). The pull loop says so once when it takes the request; the next word comes a
    /// third of the ack wait after that, and most tasks end before.
    async fn keep_alive(&self, ack_wait: Duration) -> std::convert::Infallible {
        let every = (ack_wait / 3).max(Duration::from_millis(100));
        let mut next = self.taken + every;
        loop {
            tokio::time::sleep_until(next.into()).await;
            let _ = self.current().ack_with(AckKind::Progress).await;
            next = Instant::now() + every;
        }
    }
}
