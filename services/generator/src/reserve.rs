//! Reserving a range on the model's ledger: a compare-and-set publish on
//! `sn.<model>.reserved` expecting the last ledger sequence this replica has folded.
//! JetStream serialises competing replicas; the loser catches up and plans again. The caller
//! holds this replica's reservation turn.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use common::events::{EventData, GenerateRequested, RangeReserved};
use common::{subjects, Event, Format};
use tracing::instrument;

use crate::ledger::{Plan, Range};
use crate::log::{Entry, StoredRange};
use crate::Shared;

/// How long a loser of the compare-and-set waits for the follower to fold the winner.
const CATCH_UP: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: usize = 1000;

#[derive(Debug)]
pub enum Reservation {
    Granted(Range),
    Conflict(Range),
    Exhausted { next: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("cannot reserve: {0}")]
    Publish(String),
    #[error("cannot reserve: the ledger follower did not catch up with sequence {0}")]
    CatchUp(u64),
    #[error("cannot reserve after {MAX_ATTEMPTS} compare-and-set conflicts")]
    Contention,
    #[error("cannot log the reservation: {0}")]
    Log(#[from] crate::log::LogError),
}

#[instrument(name = "reserve", skip_all, fields(task_id = %req.task_id, code_model = %req.code_model, first, last))]
pub async fn reserve(
    shared: &Shared,
    req: &GenerateRequested,
    format: Format,
) -> Result<Reservation, ReserveError> {
    let model = req.code_model.as_str();
    for _ in 0..MAX_ATTEMPTS {
        let plan = shared.ledger.read().expect("ledger lock poisoned").plan(
            model,
            req.task_id,
            req.number,
            req.count,
            format.capacity(),
        );
        let (first, last, expected) = match plan {
            Plan::Held(r) => return Ok(Reservation::Granted(r)),
            Plan::Conflict(r) => return Ok(Reservation::Conflict(r)),
            Plan::Exhausted { next } => return Ok(Reservation::Exhausted { next }),
            Plan::Reserve {
                first,
                last,
                expected_seq,
            } => (first, last, expected_seq),
        };
        let event = Event::new(
            crate::SOURCE,
            EventData::Reserved(RangeReserved {
                task_id: req.task_id,
                code_model: model.to_owned(),
                first,
                last,
            }),
        )
        .with_traceparent(common::telemetry::current_traceparent());
        let payload = bytes::Bytes::from(event.to_json());
        let publish = common::nats::event_publish(&event.id, payload.clone(), Some(expected));
        let result = match shared
            .js
            .send_publish(subjects::reserved(model), publish)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) if !ack.duplicate => {
                let range = Range {
                    first,
                    last,
                    task: req.task_id,
                };
                shared.ledger.write().expect("ledger lock poisoned").apply(
                    model,
                    ack.sequence,
                    range,
                );
                let stored = StoredRange {
                    first,
                    last,
                    task: req.task_id,
                    seq: ack.sequence,
                };
                shared
                    .log
                    .save_ledger(&[(model.to_owned(), stored)], None)?;
                // Accepted by the stream, the authority: the log keeps a copy for audits.
                let entry = Entry {
                    subject: subjects::reserved(model),
                    id: event.id,
                    payload,
                };
                shared.log.append(req.task_id, &[entry], false)?;
                tracing::Span::current()
                    .record("first", first)
                    .record("last", last);
                metrics::counter!("sn_reservations_total", "outcome" => "granted").increment(1);
                return Ok(Reservation::Granted(range));
            }
            // Our own earlier attempt landed (a retry inside the duplicate window): read and
            // fold that very message, then plan again (it will be `Held`).
            Ok(ack) => adopt(shared, model, ack.sequence).await?,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                metrics::counter!("sn_reservations_total", "outcome" => "conflict").increment(1);
                let last_seq = last_ledger_seq(shared, model).await?;
                wait_for_follower(shared, model, last_seq).await?;
            }
            Err(e) => {
                metrics::counter!("sn_publish_retries_total").increment(1);
                return Err(ReserveError::Publish(e.to_string()));
            }
        }
    }
    Err(ReserveError::Contention)
}

async fn last_ledger_seq(shared: &Shared, model: &str) -> Result<u64, ReserveError> {
    let stream = shared
        .js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(|e| ReserveError::Publish(e.to_string()))?;
    match stream
        .get_last_raw_message_by_subject(&subjects::reserved(model))
        .await
    {
        Ok(m) => Ok(m.sequence),
        Err(e) => Err(ReserveError::Publish(e.to_string())),
    }
}

/// Folds the reservation stored at `seq` (found by a duplicate ack) into the ledger.
async fn adopt(shared: &Shared, model: &str, seq: u64) -> Result<(), ReserveError> {
    let publish = |e: &dyn std::fmt::Display| ReserveError::Publish(e.to_string());
    let stream = shared
        .js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(|e| publish(&e))?;
    let raw = stream.get_raw_message(seq).await.map_err(|e| publish(&e))?;
    if let Ok(Event {
        data: EventData::Reserved(r),
        ..
    }) = Event::from_json(&raw.payload)
    {
        let range = Range {
            first: r.first,
            last: r.last,
            task: r.task_id,
        };
        shared
            .ledger
            .write()
            .expect("ledger lock poisoned")
            .apply(&r.code_model, seq, range);
        let stored = StoredRange {
            first: r.first,
            last: r.last,
            task: r.task_id,
            seq,
        };
        shared.log.save_ledger(&[(r.code_model, stored)], None)?;
    }
    wait_for_follower(shared, model, seq).await
}

/// Waits until the follower has folded the stream up to `seq`, then records that the model's
/// ledger subject is at least there.
async fn wait_for_follower(shared: &Shared, model: &str, seq: u64) -> Result<(), ReserveError> {
    let mut rx = shared.ledger_pos.subscribe();
    tokio::time::timeout(CATCH_UP, rx.wait_for(|pos| *pos >= seq))
        .await
        .map_err(|_| ReserveError::CatchUp(seq))?
        .map_err(|_| ReserveError::CatchUp(seq))?;
    shared
        .ledger
        .write()
        .expect("ledger lock poisoned")
        .observe(model, seq);
    Ok(())
}
