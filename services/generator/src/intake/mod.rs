//! The durable pull consumer shared by every replica: takes requests while there is room,
//! runs each as a task, and acks only after the task's last event was acknowledged.
//!
//! This module pulls: it asks for as many requests as there are free task slots and queues
//! each one it takes. `dispatch` gives them the reservation turn in that order and answers
//! them; `delivery` holds the latest delivery of each and keeps it alive; `decode` tells a
//! request from anything else.
//!
//! A failed event log (a full disk, an I/O error) is this replica's fault, not the
//! request's: the replica stops pulling at once, is not retried in place, records no
//! FAILURE, and gives every request it holds back to JetStream with a delayed Nak (see [`delivery::give_back`]), so another
//! replica finishes them.

mod decode;
mod delivery;
mod dispatch;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, Batch};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use common::backoff::Backoff;
use common::subjects;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::WorkConfig;
use crate::task::Worker;
use crate::Nats;
use decode::{decode, refuse, Decoded};
use delivery::{give_back, Holdings, KeepAlive, Taken};
use dispatch::dispatch;

pub fn consumer_config(work: &WorkConfig) -> pull::Config {
    pull::Config {
        durable_name: Some(subjects::GENERATOR_CONSUMER.to_owned()),
        description: Some("serial-number generators".to_owned()),
        filter_subject: subjects::ALL_REQUESTS.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(work.ack_wait_secs.max(1)),
        max_deliver: work.max_deliver.max(1),
        max_ack_pending: 1024,
        ..Default::default()
    }
}

/// What the intake works with: the task's handles and the connection it pulls requests on.
pub(crate) struct Intake {
    pub w: Worker,
    pub nats: Nats,
    /// One per task this replica may run at once; a request is pulled only with one free.
    permits: Arc<Semaphore>,
    held: Arc<Holdings>,
    /// Requests taken, in delivery order, to the dispatcher that gives each its reservation
    /// turn and runs it. The pull loop never waits for a turn: requests of one pull that it
    /// left unread could be dropped with the pull when the client's timer for it ends.
    taken: mpsc::UnboundedSender<Taken>,
}

/// What the pull loop does next.
enum Next {
    /// Ask for requests again on the same consumer.
    Pull,
    /// Open the consumer again at once (a reconnect).
    Reopen,
    /// Open the consumer again after a pause (it failed).
    Retry,
    /// Stopping, or the log failed.
    Stop,
}

pub async fn run(w: Worker, nats: Nats, cancel: CancellationToken) {
    let (taken, queue) = mpsc::unbounded_channel();
    let intake = Intake {
        permits: Arc::new(Semaphore::new(w.work.concurrency.max(1))),
        held: Arc::default(),
        w,
        nats,
        taken,
    };
    let dispatcher = tokio::spawn(dispatch(intake.w.clone(), queue, cancel.clone()));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while !cancel.is_cancelled() && intake.w.log.fault().is_none() {
        let consumer = match open(&intake).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the request consumer");
                backoff.wait(&cancel).await;
                continue;
            }
        };
        backoff.reset();
        match pull_from(&intake, &consumer, &cancel).await {
            Next::Stop => break,
            Next::Retry => {
                backoff.wait(&cancel).await;
            }
            Next::Reopen | Next::Pull => {}
        }
    }
    if let Some(fault) = intake.w.log.fault() {
        tracing::error!(
            %fault,
            "the event log failed: this replica takes no more requests and gives back those \
             it holds for the other replicas; it stays not ready until it is restarted"
        );
    }
    // Stop taking work; tasks in flight finish their batch and hand the request back.
    drop(intake);
    let _ = dispatcher.await;
}

/// Asks `consumer` for requests, as many as there is room to run, until it must be opened
/// again or the intake stops.
async fn pull_from(intake: &Intake, consumer: &PullConsumer, cancel: &CancellationToken) -> Next {
    // A reconnect from here on means the server may have forgotten a pull request sent
    // on the old connection, or not be ready yet for a new one: open the consumer again
    // (which waits for JetStream to answer) and ask again.
    let mut connections = intake.nats.connections.clone();
    connections.borrow_and_update();
    loop {
        // Ask only for as many requests as there is room to run, so none waits unacked
        // here: its ack wait would run out and spend a delivery without it being worked
        // on, and it would be kept from other replicas meanwhile.
        let first = tokio::select! {
            _ = cancel.cancelled() => return Next::Stop,
            _ = intake.w.log.failed() => return Next::Stop,
            p = intake.permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        if intake.w.log.fault().is_some() {
            return Next::Stop;
        }
        if connections.has_changed().unwrap_or(false) {
            return Next::Reopen;
        }
        let room = 1 + intake.permits.available_permits();
        let expires = Duration::from_secs(intake.w.work.pull_expires_secs.max(1));
        let batch = match pull(consumer, room, expires).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask for requests");
                return Next::Retry;
            }
        };
        match take_pulled(intake, batch, first, &mut connections, cancel).await {
            Next::Pull => {}
            other => return other,
        }
    }
}

/// Takes the requests one pull brings, the first with the permit `first`.
async fn take_pulled(
    intake: &Intake,
    mut batch: Batch,
    first: OwnedSemaphorePermit,
    connections: &mut common::nats::Connections,
    cancel: &CancellationToken,
) -> Next {
    let mut first = Some(first);
    let mut reconnected = false;
    loop {
        let next = if reconnected {
            // Take what already arrived, then open the consumer again.
            match batch.next().now_or_never() {
                Some(Some(m)) => m,
                _ => return Next::Reopen,
            }
        } else {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Next::Stop,
                _ = intake.w.log.failed() => {
                    return_pulled(&intake.w, batch, cancel).await;
                    return Next::Stop;
                }
                Ok(()) = connections.changed() => {
                    reconnected = true;
                    continue;
                }
                m = batch.next() => m,
            };
            match next {
                Some(m) => m,
                // The request for `room` was filled or expired: ask again.
                None => return Next::Pull,
            }
        };
        let msg = match next {
            Ok(msg) => msg,
            // The consumer may be gone (deleted, or lost with its server): open it again
            // rather than pulling on it.
            Err(e) => {
                tracing::warn!(error = %e, "request consumer interrupted");
                return Next::Retry;
            }
        };
        // Never waits: only this loop takes permits, and it asked for no more than were free.
        let permit = match first.take() {
            Some(p) => p,
            None => intake
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed"),
        };
        take(intake, msg, permit).await;
    }
}

/// Takes one delivered message: a request is queued for its reservation turn, anything else
/// answered at once.
async fn take(intake: &Intake, msg: Message, permit: OwnedSemaphorePermit) {
    let req = match decode(&msg) {
        Decoded::Request(req) => req,
        Decoded::Invalid { task, message } => {
            refuse(&intake.w, &msg, &task, message).await;
            return;
        }
        Decoded::Foreign => {
            tracing::warn!(subject = %msg.subject, "dropping a message that is not a request");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    // Ours from now on: restart its ack wait before it queues for the reservation turn.
    let _ = msg.ack_with(AckKind::Progress).await;
    // A redelivery of a request still queued or running here (its ack wait ran out while
    // NATS was unreachable) joins that run instead of starting a second one.
    let Some(delivery) = intake.held.take(req.task_id, msg) else {
        return;
    };
    // Kept alive from here until the run ends, the wait for the reservation turn included:
    // behind a turn that is slow (a leader election, a reconnect), a request must not run
    // out of deliveries while this replica holds it.
    let ack_wait = Duration::from_secs(intake.w.work.ack_wait_secs.max(1));
    let alive = KeepAlive::start(delivery.clone(), ack_wait);
    let _ = intake.taken.send(Taken {
        req,
        delivery,
        permit,
        held: intake.held.clone(),
        alive,
    });
}

/// Hands back, unread, whatever the pull open when the log failed still brings, until it
/// ends (at the latest after `PULL_EXPIRES_SECS`).
async fn return_pulled(w: &Worker, mut batch: Batch, cancel: &CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            m = batch.next() => m,
        };
        match next {
            Some(Ok(msg)) => {
                tracing::info!(subject = %msg.subject, "handing back a request: the event log failed");
                let _ = msg.ack_with(give_back(&w.work)).await;
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// Opens the durable consumer, made to match this replica's settings: one made earlier with
/// other settings (an older ACK_WAIT_SECS or MAX_DELIVER) is updated, and the change logged.
/// Every replica should run with the same settings; the last to open it wins.
async fn open(intake: &Intake) -> anyhow::Result<PullConsumer> {
    let stream = intake.nats.js.get_stream_no_info(subjects::STREAM).await?;
    let wanted = consumer_config(&intake.w.work);
    let consumer: PullConsumer = stream
        .get_or_create_consumer(subjects::GENERATOR_CONSUMER, wanted.clone())
        .await?;
    let changes = differences(&consumer.cached_info().config, &wanted);
    if changes.is_empty() {
        return Ok(consumer);
    }
    let updated = stream.update_consumer(wanted).await?;
    tracing::info!(
        consumer = subjects::GENERATOR_CONSUMER,
        changed = %changes.join(", "),
        "the durable consumer had other settings: updated to this replica's"
    );
    Ok(updated)
}

/// The settings of `have` that differ from `want`, as `name: old -> new`.
fn differences(have: &async_nats::jetstream::consumer::Config, want: &pull::Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.ack_wait != want.ack_wait {
        out.push(format!(
            "ack_wait: {:?} -> {:?}",
            have.ack_wait, want.ack_wait
        ));
    }
    if have.max_deliver != want.max_deliver {
        out.push(format!(
            "max_deliver: {} -> {}",
            have.max_deliver, want.max_deliver
        ));
    }
    if have.filter_subject != want.filter_subject {
        out.push(format!(
            "filter_subject: {:?} -> {:?}",
            have.filter_subject, want.filter_subject
        ));
    }
    if have.max_ack_pending != want.max_ack_pending {
        out.push(format!(
            "max_ack_pending: {} -> {}",
            have.max_ack_pending, want.max_ack_pending
        ));
    }
    out
}

/// One pull request for up to `room` requests, handed over as they arrive. The request ends
/// when `room` arrived or after `expires`. (A continuous pull stream of one message at
/// a time stalls: when a request arrives before the client has counted its own pull as sent,
/// it believes one is still on the way and asks for no more until that pull expires.)
async fn pull(consumer: &PullConsumer, room: usize, expires: Duration) -> anyhow::Result<Batch> {
    Ok(consumer
        .batch()
        .max_messages(room)
        .expires(expires)
        .messages()
        .await?)
}
