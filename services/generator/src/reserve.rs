//! Reserving a range on the model's ledger: a compare-and-set publish on
//! `sn.<model>.reserved` expecting the last ledger sequence this replica has folded.
//! JetStream serialises competing replicas; the loser catches up and plans again. The caller
//! holds this replica's reservation turn.

use common::events::{codes, EventData, GenerateRequested, RangeReserved};
use common::ledger::{Plan, Range, Reservation as Folded};
use common::{subjects, Event, Format};
use tracing::instrument;

use crate::ledger::NotFolded;
use crate::log::{Entry, Granted};
use crate::stream::{Expect, PublishError, ReadError, Refusal};
use crate::task::Worker;

const MAX_ATTEMPTS: usize = 1000;

#[derive(Debug)]
pub enum Reservation {
    /// The range, the model's scheme, and what the caller logs with the task's first entries
    /// when this call published the reservation (see [`Granted`]).
    Granted(Range, Format, Option<Box<Granted>>),
    /// Nothing reserved: the failure code and message the task ends with.
    Refused(&'static str, String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("cannot reserve: {0}")]
    Publish(#[from] PublishError),
    #[error("cannot reserve: {0}")]
    Read(#[from] ReadError),
    #[error("cannot reserve: {0}")]
    CatchUp(#[from] NotFolded),
    #[error("cannot reserve after {MAX_ATTEMPTS} compare-and-set conflicts")]
    Contention,
    #[error("cannot log the reservation: {0}")]
    Log(#[from] crate::log::LogError),
}

impl ReserveError {
    /// Whether trying again later may work (see `OutboxError::is_transient`).
    pub fn is_transient(&self) -> bool {
        match self {
            ReserveError::Publish(e) => e.is_transient(),
            ReserveError::Read(_) | ReserveError::CatchUp(_) => true,
            ReserveError::Contention | ReserveError::Log(_) => false,
        }
    }
}

/// What one compare-and-set publishes.
struct Attempt {
    first: u64,
    last: u64,
    expected: u64,
    scheme: Format,
    automatic: bool,
    fixes_scheme: bool,
}

/// Reserves the range `req` asks for on its model's ledger. The caller holds this replica's
/// reservation turn.
#[instrument(name = "reserve", skip_all, fields(task_id = %req.task_id, code_model = %req.code_model, first, last))]
pub async fn reserve(w: &Worker, req: &GenerateRequested) -> Result<Reservation, ReserveError> {
    let model = req.code_model.as_str();
    for _ in 0..MAX_ATTEMPTS {
        let attempt = match w.ledger.plan(req) {
            Plan::Held(r, scheme) => return Ok(Reservation::Granted(r, scheme, None)),
            Plan::Reserve {
                first,
                last,
                expected_seq,
                scheme,
                automatic,
                fixes_scheme,
            } => Attempt {
                first,
                last,
                expected: expected_seq,
                scheme,
                automatic,
                fixes_scheme,
            },
            refused => return Ok(refusal(req, refused)),
        };
        let attempt = match keyed(w, model, attempt) {
            Ok(a) => a,
            Err(message) => return Ok(Reservation::Refused(codes::INVALID_REQUEST, message)),
        };
        if let Some(granted) = publish(w, req, &attempt).await? {
            return Ok(granted);
        }
    }
    Err(ReserveError::Contention)
}

/// A random order that this reservation fixes takes this replica's current key; one fixed
/// before must be a key this replica holds, checked before any number is taken.
fn keyed(w: &Worker, model: &str, mut attempt: Attempt) -> Result<Attempt, String> {
    if attempt.scheme.order != common::serial::Order::Random {
        return Ok(attempt);
    }
    if attempt.scheme.key_id.is_none() {
        attempt.scheme.key_id = Some(w.keys.current().map_err(|e| e.to_string())?);
    }
    common::serial::SerialFormatter::keyed(model, attempt.scheme, &w.keys)
        .map_err(|e| e.to_string())?;
    Ok(attempt)
}

/// Publishes one compare-and-set; the reservation if it holds, `None` to plan again (a
/// conflict, or a reservation the ledger voids).
async fn publish(
    w: &Worker,
    req: &GenerateRequested,
    a: &Attempt,
) -> Result<Option<Reservation>, ReserveError> {
    let model = req.code_model.as_str();
    let event = Event::new(
        crate::SOURCE,
        EventData::Reserved(RangeReserved {
            task_id: req.task_id,
            code_model: model.to_owned(),
            first: a.first,
            last: a.last,
            scheme: Some(a.scheme),
            automatic: a.automatic,
        }),
    )
    .with_traceparent(common::telemetry::current_traceparent());
    let payload = bytes::Bytes::from(event.to_json());
    let sent = w
        .stream
        .publish(
            subjects::reserved(model),
            &event.id,
            payload.clone(),
            Expect::LastSubjectSequence(a.expected),
        )
        .await;
    let stored = match sent {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    let ack = match stored {
        Ok(ack) => ack,
        Err(e) if e.refusal == Refusal::WrongLastSequence => {
            metrics::counter!("sn_reservations_total", "outcome" => "conflict").increment(1);
            let last_seq = w.stream.last_sequence(&subjects::reserved(model)).await?;
            w.ledger.wait_until_folded(model, last_seq).await?;
            return Ok(None);
        }
        Err(e) => {
            metrics::counter!("sn_publish_retries_total").increment(1);
            return Err(e.into());
        }
    };
    // Stored, now or by an earlier attempt of ours (a duplicate ack inside the window);
    // whether it holds is the ledger's call (see `Ledger::decide`).
    let folded = Folded {
        range: Range {
            first: a.first,
            last: a.last,
            task: req.task_id,
        },
        scheme: Some(a.scheme),
        automatic: a.automatic,
    };
    let decision = w
        .ledger
        .decide(model, ack.sequence, folded, a.fixes_scheme, ack.duplicate)
        .await?;
    // Published by this call: the log keeps a copy for audits, written with the task's
    // first entries (one write, flushed with them) or below if void.
    let unlogged = (!ack.duplicate).then(|| {
        Box::new(Granted {
            entry: Entry {
                subject: subjects::reserved(model),
                id: event.id,
                payload,
                serials: None,
            },
            range: decision.saved,
        })
    });
    if let Some((range, scheme)) = decision.held {
        tracing::Span::current()
            .record("first", range.first)
            .record("last", range.last);
        metrics::counter!("sn_reservations_total", "outcome" => "granted").increment(1);
        return Ok(Some(Reservation::Granted(range, scheme, unlogged)));
    }
    if let Some(g) = unlogged {
        w.log.append_with(req.task_id, Some(&g), &[], false)?;
    }
    tracing::warn!(
        task_id = %req.task_id,
        first = a.first,
        last = a.last,
        seq = ack.sequence,
        "an earlier message on the ledger voids our reservation: planning again"
    );
    metrics::counter!("sn_reservations_total", "outcome" => "void").increment(1);
    Ok(None)
}

/// The failure a plan that reserves nothing ends the task with.
fn refusal(req: &GenerateRequested, plan: Plan) -> Reservation {
    let model = &req.code_model;
    let count = req.count;
    let (code, message) = match plan {
        Plan::Conflict(hit) => {
            let n = req.number.unwrap_or_default();
            (
                codes::RANGE_CONFLICT,
                format!(
                    "numbers {n}..={} overlap {}..={} issued to task {}",
                    u128::from(n) + u128::from(count) - 1,
                    hit.first,
                    hit.last,
                    hit.task
                ),
            )
        }
        Plan::Exhausted { scheme } => (
            codes::RANGE_EXHAUSTED,
            format!(
                "no {count} consecutive free numbers are left for model {model} at {} digits",
                scheme.width
            ),
        ),
        Plan::TooWide { scheme } => (
            codes::INVALID_REQUEST,
            format!(
                "numbers {}..={} do not fit in {} digits",
                req.number.unwrap_or_default(),
                u128::from(req.number.unwrap_or_default()) + u128::from(count) - 1,
                scheme.width
            ),
        ),
        Plan::FormatMismatch { scheme } => (
            codes::FORMAT_MISMATCH,
            format!(
                "the request asks for {}, but model {model} has the scheme {scheme}",
                req.format
            ),
        ),
        Plan::NamespaceConflict {
            model: other,
            scheme,
        } => (
            codes::NAMESPACE_CONFLICT,
            format!(
                "serials of model {model} in {} could be those of model {other} ({scheme})",
                req.format.or_default()
            ),
        ),
        Plan::Invalid(message) => (codes::INVALID_REQUEST, message),
        // Plans that reserve are handled by the caller; never passed here.
        Plan::Held(..) | Plan::Reserve { .. } => (
            codes::INTERNAL,
            "a reservation was taken for a refusal".into(),
        ),
    };
    Reservation::Refused(code, message)
}
