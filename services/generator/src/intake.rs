//! The durable pull consumer shared by every replica: takes requests while there is room,
//! runs each as a task, and acks only after the task's last event was acknowledged.
//!
//! A failed event log (a full disk, an I/O error) is this replica's fault, not the
//! request's: the replica stops pulling at once, is not retried in place, records no
//! FAILURE, and hands back every request it holds (see [`hand_back`]), so another replica
//! finishes them.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, Batch};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use common::events::{codes, EventData, GenerateRequested};
use common::request::valid_model;
use common::{subjects, Event};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};
use uuid::Uuid;

use crate::ledger::Turn;
use crate::task::{self, Outcome, TaskError, Worker};
use crate::Nats;

/// What the intake works with: the task's handles and the connection it pulls requests on.
struct Intake {
    w: Worker,
    nats: Nats,
}

/// How long a task tries again in place while NATS is unreachable before the failure spends
/// one of the request's deliveries.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// How a request goes back to JetStream when this replica's log has failed: after its
/// last pull request has expired. The replica pulls no more once the log fails, but a pull
/// sent just before is still open at the server for up to `PULL_EXPIRES_SECS`; a request
/// handed back sooner could be delivered to it again, and each such round trip would spend
/// one of the request's deliveries. So a request spends one delivery on a broken replica,
/// and only one.
fn hand_back(shared: &Intake) -> AckKind {
    let expires = Duration::from_secs(shared.w.work.pull_expires_secs.max(1));
    AckKind::Nak(Some(expires + Duration::from_secs(1)))
}

pub fn consumer_config(work: &crate::config::WorkConfig) -> pull::Config {
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

pub async fn run(w: Worker, nats: Nats, cancel: CancellationToken) {
    let shared = Arc::new(Intake { w, nats });
    let permits = Arc::new(Semaphore::new(shared.w.work.concurrency.max(1)));
    // Requests taken, in delivery order, to the dispatcher that gives each its reservation
    // turn and runs it. The pull loop never waits for a turn: requests of one pull that it
    // left unread could be dropped with the pull when the client's timer for it ends.
    let (taken, queue) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch(shared.clone(), queue, cancel.clone()));
    let held = Arc::new(Holdings::default());
    let mut delay = Duration::from_millis(100);
    'outer: while !cancel.is_cancelled() && shared.w.log.fault().is_none() {
        let consumer = match open(&shared).await {
            Ok(c) => {
                delay = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot open the request consumer");
                pause(&cancel, &mut delay).await;
                continue;
            }
        };
        // A reconnect from here on means the server may have forgotten a pull request sent
        // on the old connection, or not be ready yet for a new one: open the consumer again
        // (which waits for JetStream to answer) and ask again.
        let mut connections = shared.nats.connections.clone();
        connections.borrow_and_update();
        loop {
            // Ask only for as many requests as there is room to run, so none waits unacked
            // here: its ack wait would run out and spend a delivery without it being worked
            // on, and it would be kept from other replicas meanwhile.
            let first = tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                _ = shared.w.log.failed() => break 'outer,
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            if shared.w.log.fault().is_some() {
                break 'outer;
            }
            if connections.has_changed().unwrap_or(false) {
                continue 'outer;
            }
            let room = 1 + permits.available_permits();
            let expires = Duration::from_secs(shared.w.work.pull_expires_secs.max(1));
            let mut batch = match pull(&consumer, room, expires).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask for requests");
                    pause(&cancel, &mut delay).await;
                    continue 'outer;
                }
            };
            let mut first = Some(first);
            let mut reconnected = false;
            loop {
                let next = if reconnected {
                    // Take what already arrived, then open the consumer again.
                    match batch.next().now_or_never() {
                        Some(Some(m)) => m,
                        _ => continue 'outer,
                    }
                } else {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => break 'outer,
                        _ = shared.w.log.failed() => {
                            hand_back_pulled(&shared, batch, &cancel).await;
                            break 'outer;
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
                        None => break,
                    }
                };
                let msg = match next {
                    Ok(msg) => msg,
                    // The consumer may be gone (deleted, or lost with its server): open it
                    // again rather than pulling on it.
                    Err(e) => {
                        tracing::warn!(error = %e, "request consumer interrupted");
                        pause(&cancel, &mut delay).await;
                        continue 'outer;
                    }
                };
                // Never waits: only this loop takes permits, and it asked for no more than
                // were free.
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed"),
                };
                let req = match decode(&msg) {
                    Decoded::Request(req) => req,
                    Decoded::Invalid { task, message } => {
                        refuse(&shared, &msg, &task, message).await;
                        continue;
                    }
                    Decoded::Foreign => {
                        tracing::warn!(subject = %msg.subject, "dropping a message that is not a request");
                        let _ = msg.ack_with(AckKind::Term).await;
                        continue;
                    }
                };
                // Ours from now on: restart its ack wait before it queues for the reservation
                // turn.
                let _ = msg.ack_with(AckKind::Progress).await;
                // A redelivery of a request still queued or running here (its ack wait ran out
                // while NATS was unreachable) joins that run instead of starting a second one.
                let Some(delivery) = held.take(req.task_id, msg) else {
                    continue;
                };
                // Kept alive from here until the run ends, the wait for the reservation turn
                // included: behind a turn that is slow (a leader election, a reconnect), a
                // request must not run out of deliveries while this replica holds it.
                let ack_wait = Duration::from_secs(shared.w.work.ack_wait_secs.max(1));
                let alive = KeepAlive::start(delivery.clone(), ack_wait);
                let _ = taken.send(Taken {
                    req,
                    delivery,
                    permit,
                    held: held.clone(),
                    alive,
                });
            }
        }
    }
    if let Some(fault) = shared.w.log.fault() {
        tracing::error!(
            %fault,
            "the event log failed: this replica takes no more requests and hands back those \
             it holds for the other replicas; it stays not ready until it is restarted"
        );
    }
    // Stop taking work; tasks in flight finish their batch and hand the request back.
    drop(taken);
    let _ = dispatcher.await;
}

/// Hands back, unread, whatever the pull open when the log failed still brings, until it
/// ends (at the latest after `PULL_EXPIRES_SECS`).
async fn hand_back_pulled(shared: &Intake, mut batch: Batch, cancel: &CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            m = batch.next() => m,
        };
        match next {
            Some(Ok(msg)) => {
                tracing::info!(subject = %msg.subject, "handing back a request: the event log failed");
                let _ = msg.ack_with(hand_back(shared)).await;
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// Waits `delay` (doubling it, up to 2 s) unless stopped first.
async fn pause(cancel: &CancellationToken, delay: &mut Duration) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(Duration::from_secs(2));
}

/// A request this replica took, waiting for its reservation turn.
struct Taken {
    req: GenerateRequested,
    delivery: Arc<Delivery>,
    permit: OwnedSemaphorePermit,
    held: Arc<Holdings>,
    /// Stopped just before the request is handed back, or once it is answered.
    alive: KeepAlive,
}

/// Tells JetStream, until stopped, that a taken request is still being worked on
/// ([`Delivery::keep_alive`]).
struct KeepAlive(Option<tokio::task::JoinHandle<()>>);

impl KeepAlive {
    fn start(delivery: Arc<Delivery>, ack_wait: Duration) -> KeepAlive {
        let task = tokio::spawn(async move {
            let never = delivery.keep_alive(ack_wait).await;
            match never {}
        });
        KeepAlive(Some(task))
    }

    /// Once this returns, no word of progress goes out any more: one sent after a Nak with
    /// a delay would restart the ack wait and hold back the request's redelivery.
    async fn stop(mut self) {
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

/// Gives each taken request, in the order taken, its reservation turn, and runs it. Ends
/// once the pull loop is gone and every task has finished.
async fn dispatch(
    shared: Arc<Intake>,
    mut queue: mpsc::UnboundedReceiver<Taken>,
    cancel: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    while let Some(taken) = queue.recv().await {
        while tasks.try_join_next().is_some() {}
        if cancel.is_cancelled() || shared.w.log.fault().is_some() {
            // Stopping, or nothing can be logged: hand back what has not started, for
            // another replica or the next start.
            let Taken {
                delivery,
                held,
                alive,
                ..
            } = taken;
            alive.stop().await;
            held.release(&delivery);
            let how = match shared.w.log.fault() {
                Some(_) => {
                    tracing::info!(task_id = %delivery.task, "handing back a request not started: the event log failed");
                    hand_back(&shared)
                }
                None => AckKind::Nak(None),
            };
            let _ = delivery.current().ack_with(how).await;
            continue;
        }
        let turn = shared.w.ledger.take_turn().await;
        if shared.w.log.fault().is_some() {
            // Failed while this request waited for its turn: not run (a reservation it
            // published could not be logged).
            let Taken {
                delivery,
                held,
                alive,
                ..
            } = taken;
            drop(turn);
            tracing::info!(task_id = %delivery.task, "handing back a request not started: the event log failed");
            alive.stop().await;
            held.release(&delivery);
            let _ = delivery.current().ack_with(hand_back(&shared)).await;
            continue;
        }
        let (shared, cancel) = (shared.clone(), cancel.clone());
        tasks.spawn(async move {
            let Taken {
                req,
                delivery,
                permit,
                held,
                alive,
            } = taken;
            let run = AssertUnwindSafe(handle(&shared, req, &delivery, alive, turn, &cancel));
            let panicked = run.catch_unwind().await.is_err();
            // Released before any hand-back, so that a redelivery arriving here at once is
            // run rather than joined to this finished run.
            held.release(&delivery);
            if panicked {
                // A bug, not the request's fault as far as anyone knows: hand it back, so
                // it is retried and, past its deliveries, ends in FAILURE.
                tracing::error!(task_id = %delivery.task, "task panicked; handing the request back");
                let _ = delivery.current().ack_with(AckKind::Nak(None)).await;
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Opens the durable consumer, made to match this replica's settings: one made earlier with
/// other settings (an older ACK_WAIT_SECS or MAX_DELIVER) is updated, and the change logged.
/// Every replica should run with the same settings; the last to open it wins.
async fn open(shared: &Intake) -> anyhow::Result<PullConsumer> {
    let stream = shared.nats.js.get_stream_no_info(subjects::STREAM).await?;
    let wanted = consumer_config(&shared.w.work);
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

/// The requests this replica is working on, by task.
#[derive(Default)]
struct Holdings(std::sync::Mutex<HashMap<Uuid, Arc<Delivery>>>);

impl Holdings {
    /// Holds `msg` as its task's delivery, or hands it to the run already holding the task
    /// (then `None`): that run keeps it alive and acks it, so the latest delivery is answered.
    fn take(&self, task: Uuid, msg: Message) -> Option<Arc<Delivery>> {
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

    fn release(&self, delivery: &Delivery) {
        self.0
            .lock()
            .expect("holdings lock poisoned")
            .remove(&delivery.task);
    }
}

/// The latest delivery of a request that a run holds.
struct Delivery {
    task: Uuid,
    msg: std::sync::Mutex<Message>,
    /// When this replica took the first delivery.
    taken: Instant,
}

impl Delivery {
    fn current(&self) -> Message {
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

/// The request a message carries; anything else is terminated (never redelivered).
/// A message taken from the request consumer.
enum Decoded {
    Request(GenerateRequested),
    /// On a request subject but not a valid request: its task (the model and task of the
    /// subject) ends in FAILURE with `message`.
    Invalid {
        task: Box<GenerateRequested>,
        message: String,
    },
    /// Not on a request subject: nothing to answer.
    Foreign,
}

fn decode(msg: &Message) -> Decoded {
    let Some(parsed) = subjects::parse(&msg.subject) else {
        return Decoded::Foreign;
    };
    let Some(task_id) = parsed
        .task
        .filter(|_| parsed.kind == subjects::Kind::Requested)
    else {
        return Decoded::Foreign;
    };
    let problem = match Event::from_json(&msg.payload) {
        Ok(Event {
            data: EventData::Requested(r),
            ..
        }) => {
            if !valid_model(&r.code_model) {
                "code_model: must be 1 to 32 characters of A-Z a-z 0-9 _ -".to_owned()
            } else if r.code_model != parsed.model || r.task_id != task_id {
                format!(
                    "the request for task {} of model {} came on the subject of task {task_id} \
                     of model {}",
                    r.task_id, r.code_model, parsed.model
                )
            } else {
                return Decoded::Request(r);
            }
        }
        Ok(other) => format!("a {} event is not a request", other.type_name()),
        Err(e) => e.to_string(),
    };
    // Answered on the subjects of the model and task the request came on.
    Decoded::Invalid {
        task: Box::new(GenerateRequested {
            task_id,
            code_model: parsed.model.to_owned(),
            number: None,
            count: 0,
            format: Default::default(),
            requested_at: time::OffsetDateTime::now_utc(),
            idempotency_key: None,
        }),
        message: problem,
    }
}

/// Ends the task of a message that is not a valid request in FAILURE (`invalid_request`), so
/// it does not stay PENDING for ever.
async fn refuse(shared: &Intake, msg: &Message, invalid: &GenerateRequested, message: String) {
    tracing::warn!(subject = %msg.subject, %message, "refusing a message that is not a valid request");
    let answered = match shared.w.log.task_entries(invalid.task_id) {
        Ok(logged)
            if logged
                .iter()
                .any(|(_, e)| subjects::parse(&e.subject).is_some_and(|p| p.kind.is_final())) =>
        {
            Ok(())
        }
        Ok(_) => task::fail(&shared.w, invalid, codes::INVALID_REQUEST, message)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answered {
        Ok(()) => {
            let _ = msg.ack_with(AckKind::Ack).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the failure of an invalid request yet");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

async fn handle(
    shared: &Intake,
    req: GenerateRequested,
    delivery: &Delivery,
    alive: KeepAlive,
    turn: Turn,
    cancel: &CancellationToken,
) {
    let msg = delivery.current();
    let (delivered, pending) = msg
        .info()
        .map(|i| (i.delivered, i.pending))
        .unwrap_or((1, 0));
    metrics::gauge!("sn_consumer_pending").set(pending as f64);
    let span = info_span!(
        "process",
        otel.name = format!("process {}", msg.subject),
        otel.kind = "consumer",
        task_id = %req.task_id,
        code_model = %req.code_model,
        count = req.count,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %msg.subject,
        messaging.consumer.group.name = subjects::GENERATOR_CONSUMER,
        delivery = delivered,
    );
    common::telemetry::set_parent_from(&span, msg.headers.as_ref());
    drop(msg);
    async {
        let started = Instant::now();
        let running = shared.w.ledger.task_started();
        let result = run_retrying(shared, &req, turn, delivered > 1, cancel).await;
        // Its events are out (but for the failure of a last delivery, which `finish` may
        // still publish: a chained completion of another task then only goes out twice).
        drop(running);
        let msg = delivery.current();
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(delivered);
        finish(shared, &req, &msg, delivered, result, alive).await;
        tracing::debug!(elapsed = ?started.elapsed(), "request handled");
    }
    .instrument(span)
    .await;
}

/// Runs the task, trying again in place while NATS is unreachable or slow (a restart, a
/// leader election): such failures say nothing about the request, so they do not spend its
/// deliveries. Other failures, and transient ones lasting over `RETRY_FOR`, are returned.
async fn run_retrying(
    shared: &Intake,
    req: &GenerateRequested,
    turn: Turn,
    redelivered: bool,
    cancel: &CancellationToken,
) -> Result<Outcome, TaskError> {
    let until = Instant::now() + RETRY_FOR;
    let mut turn = Some(turn);
    let mut delay = Duration::from_millis(100);
    loop {
        let turn = match turn.take() {
            Some(t) => t,
            None => shared.w.ledger.take_turn().await,
        };
        match task::run(&shared.w, req, turn, redelivered, cancel).await {
            // Not with a failed log: the request goes to another replica instead.
            Err(e)
                if e.is_transient() && shared.w.log.fault().is_none() && Instant::now() < until =>
            {
                tracing::warn!(task_id = %req.task_id, error = %e, retry_in = ?delay, "task interrupted, trying again");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(TaskError::Stopped),
                    _ = shared.w.log.failed() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

async fn finish(
    shared: &Intake,
    req: &GenerateRequested,
    msg: &Message,
    delivered: i64,
    result: Result<Outcome, TaskError>,
    alive: KeepAlive,
) {
    // The request stays alive until it is answered (recording the failure of a last
    // delivery can take a while), and goes quiet before it is handed back.
    let state = match result {
        Ok(Outcome::Success) => "success",
        Ok(Outcome::Failure) => "failure",
        Ok(Outcome::Replayed) => "replayed",
        // Whatever the error, once the log has failed: the replica's fault, not the
        // request's. Not retried here, no FAILURE recorded (it could not be logged first,
        // and the task has not failed); another replica takes the request.
        Err(e) if shared.w.log.fault().is_some() => {
            tracing::warn!(task_id = %req.task_id, delivered, error = %e, "handing the request back: the event log failed");
            alive.stop().await;
            let _ = msg.ack_with(hand_back(shared)).await;
            return;
        }
        Err(TaskError::Stopped) => {
            tracing::info!(task_id = %req.task_id, "handing the request back at shutdown");
            alive.stop().await;
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        Err(e) if delivered < shared.w.work.max_deliver => {
            tracing::warn!(task_id = %req.task_id, delivered, error = %e, "task failed, will retry");
            let backoff = Duration::from_millis(200 * delivered.max(1) as u64);
            alive.stop().await;
            let _ = msg.ack_with(AckKind::Nak(Some(backoff))).await;
            return;
        }
        Err(e) => {
            tracing::error!(task_id = %req.task_id, delivered, error = %e, "task failed on its last delivery");
            let message = format!("gave up after {delivered} deliveries: {e}");
            if let Err(e) = task::fail(&shared.w, req, codes::INTERNAL, message).await {
                tracing::error!(task_id = %req.task_id, error = %e, "cannot record the failure");
                return;
            }
            "failure"
        }
    };
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(task_id = %req.task_id, error = %e, "cannot ack the request; it will be replayed");
    }
    // Answered: a word of progress still on its way is ignored, so no need to wait for it.
    drop(alive);
    metrics::counter!("sn_tasks_total", "state" => state).increment(1);
}
