//! This replica's ledger: every model's scheme and issued ranges, folded from the models'
//! ledger subjects (`sn.<model>.reserved`), and the order in which this replica reserves.
//!
//! The fold itself is [`common::ledger::Ledger`], pure and shared with the gateway. [`Ledger`]
//! owns it with what the rest of the generator asks about it: the stream position it is
//! folded up to, whether it has caught up (readiness), whether the stream has one replica,
//! and the reservation turn. [`follow::run`] keeps it up to date from the stream and saves it
//! in the log's snapshot; `reserve` plans on it ([`Ledger::plan`]) and asks it whether a
//! reservation it stored holds ([`Ledger::decide`]). Nothing else writes the fold.

pub mod follow;
mod snapshot;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::events::{EventData, GenerateRequested};
use common::ledger::{Applied, Ledger as Fold, Plan, Range, Reservation};
use common::{subjects, Event, Format};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::log::{StoredRange, StoredScheme};

pub use snapshot::{restore, verify_saved_ranges};

/// How long a reservation waits for the follower to fold a sequence before giving up.
const CATCH_UP: Duration = Duration::from_secs(5);

/// This replica's turn to reserve, held from before a task reads its log until it holds its
/// range; dropping it passes the turn on (see [`Ledger::take_turn`]).
pub type Turn = tokio::sync::OwnedMutexGuard<()>;

pub struct Ledger {
    /// std's lock, not tokio's: nothing awaits while holding it.
    fold: RwLock<Fold>,
    /// The stream sequence the fold has reached.
    position: watch::Sender<u64>,
    /// Every reservation stored when the follower started is folded.
    ready: AtomicBool,
    /// The stream lacks reservations the log holds: this replica issues nothing.
    refusing: AtomicBool,
    /// Raised when a reservation waited too long for the follower: it recreates its consumer
    /// (one lost with a cluster node delivers nothing and reports nothing).
    stalled: Notify,
    /// The stream has one replica: its compare-and-set is checked and stored under one lock,
    /// so a reservation it accepts can be granted at its ack (see [`Ledger::decide`]). Read
    /// again whenever the follower (re)starts, so a stream edited to more replicas is noticed.
    single_replica: AtomicBool,
    /// Taken in delivery order (tokio's mutex is FIFO), so this replica reserves in the order
    /// requests arrived. Replicas are serialised by JetStream's compare-and-set.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Tasks running on this replica (see [`Ledger::task_started`]).
    running: AtomicUsize,
}

/// What the fold says of a reservation this replica stored (see [`Ledger::decide`]).
#[derive(Debug)]
pub struct Decision {
    /// The task's range and the model's scheme, if the reservation holds.
    pub held: Option<(Range, Format)>,
    /// The range to save in the log's snapshot with the task's first entries, when it was
    /// granted here at its ack (the follower saves the others).
    pub saved: Option<(String, StoredRange)>,
}

/// The follower did not fold up to the sequence a reservation waits for.
#[derive(Debug, thiserror::Error)]
#[error("the ledger follower did not catch up with sequence {0}")]
pub struct NotFolded(pub u64);

/// What folding one ledger message gave, for the log's snapshot.
#[derive(Debug, Default)]
pub struct Folded {
    /// A reservation that holds.
    pub range: Option<(String, StoredRange)>,
    /// A scheme the message fixed.
    pub scheme: Option<StoredScheme>,
}

impl Ledger {
    pub fn new(fold: Fold, position: u64, single_replica: bool) -> Ledger {
        Ledger {
            fold: RwLock::new(fold),
            position: watch::Sender::new(position),
            ready: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            stalled: Notify::new(),
            single_replica: AtomicBool::new(single_replica),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            running: AtomicUsize::new(0),
        }
    }

    /// Waits for this replica's turn to reserve.
    pub async fn take_turn(&self) -> Turn {
        self.turn.clone().lock_owned().await
    }

    /// What `req`'s task should reserve (see [`Fold::plan`]).
    pub fn plan(&self, req: &GenerateRequested) -> Plan {
        self.read().plan(
            &req.code_model,
            req.task_id,
            req.number,
            req.count,
            req.format,
        )
    }

    pub fn scheme(&self, model: &str) -> Option<Format> {
        self.read().scheme(model)
    }

    /// The range `task` holds and the model's scheme.
    pub fn held(&self, model: &str, task: uuid::Uuid) -> Option<(Range, Format)> {
        let fold = self.read();
        fold.held(model, task).zip(fold.scheme(model))
    }

    /// Decides a reservation of `model` that this replica's compare-and-set stored at `seq`.
    /// The first reservation in stream order wins, and a clustered server may accept two
    /// compare-and-sets expecting the same sequence (nats-server#4320), so the fold decides,
    /// not the ack: this waits until the follower has folded up to `seq`, then looks.
    ///
    /// Except with a single-replica stream, where the server serialises compare-and-sets:
    /// every earlier message on the model's ledger is at or below the sequence expected, all
    /// folded and disjoint from this one, and the model's scheme was fixed by one of them, so
    /// the fold grants it at once. Not a reservation that fixes the scheme (whether it meets
    /// another model's serials is decided by messages on other subjects), nor a `duplicate`
    /// (stored by an earlier attempt), nor before the follower has caught up at start (the
    /// snapshot may hold ranges past its saved position, so the model's last sequence can be
    /// ahead of reservations not folded yet).
    pub async fn decide(
        &self,
        model: &str,
        seq: u64,
        reservation: Reservation,
        fixes_scheme: bool,
        duplicate: bool,
    ) -> Result<Decision, NotFolded> {
        let at_once = !duplicate
            && !fixes_scheme
            && self.single_replica.load(Ordering::Relaxed)
            && self.is_ready();
        let mut saved = None;
        if at_once {
            if self.write().reserve(model, seq, reservation) == Applied::Granted {
                saved = Some((model.to_owned(), stored(reservation, seq)));
            }
        } else {
            self.wait_until_folded(model, seq).await?;
        }
        Ok(Decision {
            held: self.held(model, reservation.range.task),
            saved,
        })
    }

    /// Waits until the follower has folded the stream up to `seq`, then records that the
    /// model's ledger subject is at least there (the next compare-and-set expects it).
    pub async fn wait_until_folded(&self, model: &str, seq: u64) -> Result<(), NotFolded> {
        let mut rx = self.position.subscribe();
        let before = *rx.borrow_and_update();
        let caught_up = tokio::time::timeout(CATCH_UP, rx.wait_for(|pos| *pos >= seq))
            .await
            .is_ok_and(|r| r.is_ok());
        if !caught_up {
            // Behind but moving is a follower catching up; not moving at all, a lost consumer.
            if self.position() == before {
                self.stalled.notify_one();
            }
            return Err(NotFolded(seq));
        }
        self.write().observe(model, seq);
        Ok(())
    }

    /// Folds one message of a ledger subject stored at `seq`, and moves the position there.
    pub fn fold_message(&self, subject: &str, seq: u64, payload: &[u8]) -> Folded {
        let mut folded = Folded::default();
        {
            let mut fold = self.write();
            match Event::from_json(payload) {
                Ok(Event {
                    data: EventData::Reserved(r),
                    ..
                }) => {
                    let reservation = Reservation {
                        range: Range {
                            first: r.first,
                            last: r.last,
                            task: r.task_id,
                        },
                        scheme: r.scheme,
                        automatic: r.automatic,
                    };
                    let before = fold.scheme(&r.code_model);
                    fold.reserve(&r.code_model, seq, reservation);
                    folded.scheme =
                        fold.scheme(&r.code_model)
                            .filter(|_| before.is_none())
                            .map(|scheme| StoredScheme {
                                model: r.code_model.clone(),
                                scheme,
                                seq,
                            });
                    // Saved whenever the fold holds it, even when this replica granted it
                    // first (its own reservation): the snapshot never moves past a range it
                    // lacks.
                    if fold.held(&r.code_model, r.task_id) == Some(reservation.range) {
                        folded.range = Some((r.code_model, stored(reservation, seq)));
                    }
                }
                Ok(Event {
                    data: EventData::Declared(d),
                    ..
                }) => {
                    if fold.declare(&d.code_model, seq, d.scheme) == Applied::Granted {
                        folded.scheme = Some(StoredScheme {
                            model: d.code_model,
                            scheme: d.scheme,
                            seq,
                        });
                    }
                }
                other => {
                    if let Err(e) = other {
                        tracing::warn!(seq, error = %e, "undecodable event on a ledger subject");
                    }
                    // Still a message on the subject: the next compare-and-set must expect it.
                    if let Some(p) = subjects::parse(subject) {
                        fold.observe(p.model, seq);
                    }
                }
            }
        }
        self.position.send_replace(seq);
        folded
    }

    /// The stream sequence the fold has reached.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Marks the fold caught up with the stream: this replica may take work.
    pub fn mark_ready(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!(position = self.position(), "ledger caught up");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Waits until the fold has caught up; false when `cancel` fired first.
    pub async fn wait_ready(&self, cancel: &CancellationToken) -> bool {
        let mut pos = self.position.subscribe();
        while !self.is_ready() {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = pos.changed() => {}
                // Readiness also comes without a move (nothing to fold).
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        true
    }

    /// Why this replica cannot issue from its ledger, if it cannot.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.refusing.load(Ordering::Relaxed) {
            return Err("the stream lacks reservations this replica's log holds");
        }
        if !self.is_ready() {
            return Err("the ledger has not caught up with the stream yet");
        }
        Ok(())
    }

    /// The stream lacks reservations this replica's log holds: it issues nothing.
    pub fn refuse(&self) {
        self.refusing.store(true, Ordering::Relaxed);
    }

    /// Records how many replicas the stream has (read whenever the follower starts).
    pub fn set_replicas(&self, replicas: usize) {
        self.single_replica.store(replicas <= 1, Ordering::Relaxed);
    }

    /// Counts a task as running from now until the guard is dropped.
    pub fn task_started(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(&self.running)
    }

    /// Whether the stream stores this connection's publishes in the order sent with nothing
    /// of this replica in between: a single-replica stream and at most one task running.
    pub fn publishes_alone(&self) -> bool {
        self.single_replica.load(Ordering::Relaxed) && self.running.load(Ordering::Relaxed) <= 1
    }

    /// Completes when a reservation found the follower stalled.
    pub(crate) async fn stalled(&self) {
        self.stalled.notified().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Fold> {
        self.fold.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Fold> {
        self.fold.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task counted in [`Ledger::task_started`], until dropped (a panic included).
pub struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reservation folded at `seq`, as the log's snapshot keeps it.
fn stored(r: Reservation, seq: u64) -> StoredRange {
    StoredRange {
        range: r.range,
        seq,
        automatic: r.automatic,
    }
}
