//! Tasks and reservations run against the in-memory stream, with a follower that folds its
//! ledger subjects as the real one does.
//!
//! The runtime is tokio's current-thread one: the follower runs only when a test or a task
//! awaits something that is not ready, so a message stored from the test is folded no sooner
//! than the task's next wait (what makes a conflict happen on purpose).

use std::sync::Arc;

use bytes::Bytes;
use common::events::{EventData, GenerateRequested, RangeReserved};
use common::ledger::Ledger as Fold;
use common::subjects::{self, Kind};
use common::Event;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{run, Outcome, Worker};
use crate::config::WorkConfig;
use crate::ledger::Ledger;
use crate::log::EventLog;
use crate::stream::fake::{FakeStream, Message};

const MODEL: &str = "0111";

struct Setup {
    _dir: tempfile::TempDir,
    stream: Arc<FakeStream>,
    w: Worker,
}

/// A worker on a new log and the in-memory stream, its ledger caught up and followed.
fn setup(single_replica: bool, stream: Arc<FakeStream>, work: WorkConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), Arc::new(super::Serials)).unwrap();
    let ledger = Arc::new(Ledger::new(Fold::planning(), 0, single_replica));
    ledger.mark_ready();
    follow(stream.clone(), ledger.clone());
    let w = Worker {
        log,
        ledger,
        stream: stream.clone(),
        keys: Arc::default(),
        max_count: 1_000_000,
        work,
    };
    Setup {
        _dir: dir,
        stream,
        w,
    }
}

/// Batches of 10 serials, one batch per flush, one ack awaited at a time (so a failed
/// publish stops the task before the next batch is logged).
fn small_batches() -> WorkConfig {
    WorkConfig {
        batch_size: 10,
        batches_per_flush: 1,
        max_inflight: 1,
        ..WorkConfig::default()
    }
}

/// Folds every message on a ledger subject into `ledger` as it is stored.
fn follow(stream: Arc<FakeStream>, ledger: Arc<Ledger>) {
    tokio::spawn(async move {
        let mut stored = stream.subscribe();
        let mut folded = 0;
        loop {
            let messages = stream.messages();
            for (at, m) in messages.iter().enumerate().skip(folded) {
                if subjects::parse(&m.subject).is_some_and(|p| p.kind == Kind::Reserved) {
                    ledger.fold_message(&m.subject, at as u64 + 1, &m.payload);
                }
            }
            folded = messages.len();
            if stored.changed().await.is_err() {
                return;
            }
        }
    });
}

fn request(count: u64) -> GenerateRequested {
    GenerateRequested {
        task_id: Uuid::new_v4(),
        code_model: MODEL.into(),
        number: None,
        count,
        format: Default::default(),
        requested_at: time::OffsetDateTime::now_utc(),
        idempotency_key: None,
    }
}

/// Another task's reservation of `first..=last`, as another replica publishes it.
fn reservation_of_another(first: u64, last: u64) -> Message {
    let event = Event::new(
        crate::SOURCE,
        EventData::Reserved(RangeReserved {
            task_id: Uuid::new_v4(),
            code_model: MODEL.into(),
            first,
            last,
            scheme: Some(common::Format::default()),
            automatic: true,
        }),
    );
    Message {
        subject: subjects::reserved(MODEL),
        id: event.id.clone(),
        payload: Bytes::from(event.to_json()),
    }
}

/// Runs `req` once, as a first delivery or a later one.
async fn run_once(w: &Worker, req: &GenerateRequested, redelivered: bool) -> Outcome {
    let turn = w.ledger.take_turn().await;
    run(w, req, turn, redelivered, &CancellationToken::new())
        .await
        .unwrap()
}

/// What the stream holds of one task, decoded: (reserved ranges, generated batches as
/// (batch, first number, count), whether the completion is last).
#[derive(Debug, Default, PartialEq, Eq)]
struct Published {
    reserved: Vec<(u64, u64)>,
    batches: Vec<(u64, u64, u64)>,
    completed_last: bool,
}

fn published(stream: &FakeStream, task: Uuid) -> Published {
    let mut out = Published::default();
    let mine: Vec<Event> = stream
        .messages()
        .iter()
        .map(|m| Event::from_json(&m.payload).unwrap())
        .filter(|e| e.data.task_id() == Some(task))
        .collect();
    for (at, e) in mine.iter().enumerate() {
        match &e.data {
            EventData::Reserved(r) => out.reserved.push((r.first, r.last)),
            EventData::Generated(g) => out.batches.push((g.batch, g.first_number, g.count)),
            EventData::Completed(_) => out.completed_last = at == mine.len() - 1,
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn a_task_reserves_then_publishes_every_batch_before_its_completion() {
    let s = setup(true, Arc::default(), small_batches());
    let req = request(25);

    let outcome = run_once(&s.w, &req, false).await;

    assert_eq!(outcome, Outcome::Success);
    assert_eq!(
        published(&s.stream, req.task_id),
        Published {
            reserved: vec![(1, 25)],
            batches: vec![(0, 1, 10), (1, 11, 10), (2, 21, 5)],
            completed_last: true,
        }
    );
    // Everything the task published is in its log, and nothing is left to publish.
    assert_eq!(s.w.log.task_entries(req.task_id).unwrap().len(), 5);
    assert!(s.w.log.pending().unwrap().is_empty());
}

#[tokio::test]
async fn a_lost_compare_and_set_plans_again_past_the_winner() {
    let s = setup(true, Arc::default(), small_batches());
    // Stored by another replica and not folded yet: the task expects the ledger's last
    // sequence to be 0, and its compare-and-set is refused.
    let winner = reservation_of_another(1, 10);
    s.stream.store(&winner.subject, &winner.id, winner.payload);
    let req = request(10);

    let outcome = run_once(&s.w, &req, false).await;

    assert_eq!(outcome, Outcome::Success);
    let mine = published(&s.stream, req.task_id);
    assert_eq!(
        mine.reserved,
        [(11, 20)],
        "one reservation, past the winner"
    );
    assert_eq!(mine.batches, [(0, 11, 10)]);
    assert!(mine.completed_last);
}

#[tokio::test]
async fn a_reservation_the_ledger_voids_is_logged_and_the_task_plans_again() {
    // A cluster may accept two compare-and-sets expecting the same sequence: the first in
    // stream order wins.
    let s = setup(false, Arc::default(), small_batches());
    s.stream.race_next(reservation_of_another(1, 10));
    let req = request(10);

    let outcome = run_once(&s.w, &req, false).await;

    assert_eq!(outcome, Outcome::Success);
    let mine = published(&s.stream, req.task_id);
    assert_eq!(
        mine.reserved,
        [(1, 10), (11, 20)],
        "the void one, then the held one"
    );
    assert_eq!(mine.batches, [(0, 11, 10)]);
    assert!(mine.completed_last);
    // The log keeps both reservations for audits, and the held range in its snapshot.
    let logged = s.w.log.task_entries(req.task_id).unwrap();
    let reserved = logged
        .iter()
        .filter(|(_, e)| e.subject == subjects::reserved(MODEL))
        .count();
    assert_eq!(reserved, 2);
    assert_eq!(
        s.w.ledger
            .held(MODEL, req.task_id)
            .map(|(r, _)| (r.first, r.last)),
        Some((11, 20))
    );
}

#[tokio::test]
async fn a_task_whose_publish_failed_runs_again_and_publishes_each_batch_once() {
    let s = setup(true, Arc::default(), small_batches());
    let req = request(30);
    // The reservation and the first batch are stored; the second batch's ack never comes.
    s.stream.fail_after(2);
    let turn = s.w.ledger.take_turn().await;
    let failed = run(&s.w, &req, turn, false, &CancellationToken::new()).await;
    let e = failed.expect_err("the publish failed");
    assert!(e.is_transient(), "{e}");

    let outcome = run_once(&s.w, &req, false).await;

    assert_eq!(outcome, Outcome::Success);
    assert_eq!(
        published(&s.stream, req.task_id),
        Published {
            reserved: vec![(1, 30)],
            batches: vec![(0, 1, 10), (1, 11, 10), (2, 21, 10)],
            completed_last: true,
        }
    );
    assert!(s.w.log.pending().unwrap().is_empty());
}

#[tokio::test]
async fn a_resumed_task_keeps_its_logged_batches_and_their_size() {
    let stream: Arc<FakeStream> = Arc::default();
    let s = setup(true, stream.clone(), small_batches());
    let req = request(30);
    s.stream.fail_after(2);
    let turn = s.w.ledger.take_turn().await;
    run(&s.w, &req, turn, false, &CancellationToken::new())
        .await
        .expect_err("the publish failed");
    let logged_before = s.w.log.task_entries(req.task_id).unwrap().len();
    assert_eq!(
        logged_before, 4,
        "the reservation and three batches, one never stored"
    );

    // Redelivered after a restart with another batch size: the same log, a ledger folded
    // again from the stream.
    let ledger = Arc::new(Ledger::new(Fold::planning(), 0, true));
    ledger.mark_ready();
    follow(stream.clone(), ledger.clone());
    let w = Worker {
        ledger,
        work: WorkConfig {
            batch_size: 7,
            ..small_batches()
        },
        ..s.w.clone()
    };
    let outcome = run_once(&w, &req, true).await;

    assert_eq!(outcome, Outcome::Success);
    assert_eq!(
        published(&stream, req.task_id),
        Published {
            reserved: vec![(1, 30)],
            batches: vec![(0, 1, 10), (1, 11, 10), (2, 21, 10)],
            completed_last: true,
        }
    );
}

#[tokio::test]
async fn a_task_redelivered_to_another_replica_keeps_the_batch_size_it_published() {
    let stream: Arc<FakeStream> = Arc::default();
    let first = setup(true, stream.clone(), small_batches());
    let req = request(30);
    // The reservation and two batches are stored; then the replica is gone.
    stream.fail_after(3);
    let turn = first.w.ledger.take_turn().await;
    run(&first.w, &req, turn, false, &CancellationToken::new())
        .await
        .expect_err("the publish failed");

    // Another replica, its own log empty, another batch size.
    let other = setup(
        true,
        stream.clone(),
        WorkConfig {
            batch_size: 7,
            ..small_batches()
        },
    );
    let outcome = run_once(&other.w, &req, true).await;

    assert_eq!(outcome, Outcome::Success);
    let mine = published(&stream, req.task_id);
    assert_eq!(mine.reserved, [(1, 30)]);
    assert_eq!(mine.batches, [(0, 1, 10), (1, 11, 10), (2, 21, 10)]);
    assert!(mine.completed_last);
}

#[tokio::test]
async fn a_redelivered_task_that_ended_is_replayed_without_issuing_anything() {
    let s = setup(true, Arc::default(), small_batches());
    let req = request(10);
    assert_eq!(run_once(&s.w, &req, false).await, Outcome::Success);
    let before = s.stream.messages();

    let outcome = run_once(&s.w, &req, true).await;

    assert_eq!(outcome, Outcome::Replayed);
    assert_eq!(
        s.stream.messages(),
        before,
        "the same ids: nothing new stored"
    );
}

#[tokio::test]
async fn an_explicit_range_over_an_issued_one_is_refused_without_publishing() {
    let s = setup(true, Arc::default(), small_batches());
    let winner = reservation_of_another(1, 10);
    s.stream.store(&winner.subject, &winner.id, winner.payload);
    s.w.ledger.wait_until_folded(MODEL, 1).await.unwrap();
    let stored = s.stream.messages().len();
    let req = GenerateRequested {
        number: Some(8),
        ..request(5)
    };

    let reservation = crate::reserve::reserve(&s.w, &req).await.unwrap();

    assert!(
        matches!(
            reservation,
            crate::reserve::Reservation::Refused(common::events::codes::RANGE_CONFLICT, _)
        ),
        "{reservation:?}"
    );
    assert_eq!(s.stream.messages().len(), stored, "nothing published");
}
