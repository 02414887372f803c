//! Reserving a range on the model's ledger: a compare-and-set publish on
//! `sn.<model>.reserved` expecting the last ledger sequence this replica has folded.
//! JetStream serialises competing replicas; the loser catches up and plans again. The caller
//! holds this replica's reservation turn.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use common::events::{codes, EventData, GenerateRequested, RangeReserved};
use common::ledger::{Applied, Plan, Range, Reservation as Folded};
use common::{subjects, Event, Format};
use tracing::instrument;

use crate::log::{Entry, Granted, StoredRange};
use crate::Shared;

/// How long a loser of the compare-and-set waits for the follower to fold the winner.
const CATCH_UP: Duration = Duration::from_secs(5);
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
    #[error("cannot reserve: {message}")]
    Publish { message: String, transient: bool },
    #[error("cannot reserve: the ledger follower did not catch up with sequence {0}")]
    CatchUp(u64),
    #[error("cannot reserve after {MAX_ATTEMPTS} compare-and-set conflicts")]
    Contention,
    #[error("cannot log the reservation: {0}")]
    Log(#[from] crate::log::LogError),
}

impl ReserveError {
    /// A read of the stream that failed: the server was unreachable or between leaders.
    fn unanswered(e: &dyn std::fmt::Display) -> Self {
        ReserveError::Publish {
            message: e.to_string(),
            transient: true,
        }
    }

    /// Whether trying again later may work (see `OutboxError::is_transient`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReserveError::Publish {
                transient: true,
                ..
            } | ReserveError::CatchUp(_)
        )
    }
}

#[instrument(name = "reserve", skip_all, fields(task_id = %req.task_id, code_model = %req.code_model, first, last))]
pub async fn reserve(
    shared: &Shared,
    req: &GenerateRequested,
) -> Result<Reservation, ReserveError> {
    let model = req.code_model.as_str();
    for _ in 0..MAX_ATTEMPTS {
        let plan = shared.ledger.read().expect("ledger lock poisoned").plan(
            model,
            req.task_id,
            req.number,
            req.count,
            req.format,
        );
        let (first, last, expected, scheme, automatic, fixes_scheme) = match plan {
            Plan::Held(r, scheme) => return Ok(Reservation::Granted(r, scheme, None)),
            Plan::Reserve {
                first,
                last,
                expected_seq,
                scheme,
                automatic,
                fixes_scheme,
            } => (first, last, expected_seq, scheme, automatic, fixes_scheme),
            refused => return Ok(refusal(req, refused)),
        };
        // A random order that this reservation fixes takes this replica's current key; one
        // fixed before must be a key this replica holds, checked before any number is taken.
        let mut scheme = scheme;
        if scheme.order == common::serial::Order::Random {
            if scheme.key_id.is_none() {
                match shared.keys.current() {
                    Ok(id) => scheme.key_id = Some(id),
                    Err(e) => {
                        return Ok(Reservation::Refused(codes::INVALID_REQUEST, e.to_string()))
                    }
                }
            }
            if let Err(e) = common::serial::SerialFormatter::keyed(model, scheme, &shared.keys) {
                return Ok(Reservation::Refused(codes::INVALID_REQUEST, e.to_string()));
            }
        }
        let event = Event::new(
            crate::SOURCE,
            EventData::Reserved(RangeReserved {
                task_id: req.task_id,
                code_model: model.to_owned(),
                first,
                last,
                scheme: Some(scheme),
                automatic,
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
            // Stored, now or by an earlier attempt of ours (a duplicate ack inside the window).
            // Whether it holds is the fold's call, not the ack's: the first reservation in
            // stream order wins, and a clustered server may accept two compare-and-sets
            // expecting the same sequence (nats-server#4320). So wait until the follower has
            // folded up to it, then look.
            Ok(ack) => {
                // Published by this call: the log keeps a copy for audits, written with the
                // task's first entries (one write, flushed with them) or below if void.
                let mut unlogged = None;
                // Serialised by the server: every earlier message on the model's ledger is at
                // or below `expected`, all folded and disjoint from ours, and the model's
                // scheme was fixed by one of them, so the fold will grant it; no need to wait
                // for the follower. A reservation that would fix the scheme waits: whether it
                // meets another model's serials is decided by messages on other subjects.
                // Not before the follower has caught up at start either: the log's snapshot may
                // hold ranges past its saved position, so the model's last sequence can be ahead
                // of reservations not folded yet.
                let at_once = shared.single_replica.load(Ordering::Relaxed)
                    && !fixes_scheme
                    && shared.ledger_ready.load(Ordering::Relaxed);
                if !ack.duplicate {
                    let mut range = None;
                    if at_once {
                        let range_of = Range {
                            first,
                            last,
                            task: req.task_id,
                        };
                        let applied = shared
                            .ledger
                            .write()
                            .expect("ledger lock poisoned")
                            .reserve(
                                model,
                                ack.sequence,
                                Folded {
                                    range: range_of,
                                    scheme: Some(scheme),
                                    automatic,
                                },
                            );
                        if applied == Applied::Granted {
                            let stored = StoredRange {
                                first,
                                last,
                                task: req.task_id,
                                seq: ack.sequence,
                                automatic,
                            };
                            range = Some((model.to_owned(), stored));
                        }
                    }
                    unlogged = Some(Box::new(Granted {
                        entry: Entry {
                            subject: subjects::reserved(model),
                            id: event.id,
                            payload,
                            serials: None,
                        },
                        range,
                    }));
                }
                if !at_once || ack.duplicate {
                    wait_for_follower(shared, model, ack.sequence).await?;
                }
                let held = {
                    let ledger = shared.ledger.read().expect("ledger lock poisoned");
                    ledger.held(model, req.task_id).zip(ledger.scheme(model))
                };
                if let Some((range, scheme)) = held {
                    tracing::Span::current()
                        .record("first", range.first)
                        .record("last", range.last);
                    metrics::counter!("sn_reservations_total", "outcome" => "granted").increment(1);
                    return Ok(Reservation::Granted(range, scheme, unlogged));
                }
                if let Some(g) = unlogged {
                    shared.log.append_with(req.task_id, Some(&g), &[], false)?;
                }
                tracing::warn!(
                    task_id = %req.task_id,
                    first,
                    last,
                    seq = ack.sequence,
                    "an earlier message on the ledger voids our reservation: planning again"
                );
                metrics::counter!("sn_reservations_total", "outcome" => "void").increment(1);
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                metrics::counter!("sn_reservations_total", "outcome" => "conflict").increment(1);
                let last_seq = last_ledger_seq(shared, model).await?;
                wait_for_follower(shared, model, last_seq).await?;
            }
            Err(e) => {
                metrics::counter!("sn_publish_retries_total").increment(1);
                return Err(ReserveError::Publish {
                    message: e.to_string(),
                    transient: crate::outbox::transient(e.kind()),
                });
            }
        }
    }
    Err(ReserveError::Contention)
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

async fn last_ledger_seq(shared: &Shared, model: &str) -> Result<u64, ReserveError> {
    let stream = shared
        .js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(|e| ReserveError::unanswered(&e))?;
    match stream
        .get_last_raw_message_by_subject(&subjects::reserved(model))
        .await
    {
        Ok(m) => Ok(m.sequence),
        // No message on the subject: a compare-and-set expects 0.
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(0)
        }
        Err(e) => Err(ReserveError::unanswered(&e)),
    }
}

/// Waits until the follower has folded the stream up to `seq`, then records that the model's
/// ledger subject is at least there.
async fn wait_for_follower(shared: &Shared, model: &str, seq: u64) -> Result<(), ReserveError> {
    let mut rx = shared.ledger_pos.subscribe();
    let before = *rx.borrow_and_update();
    let caught_up = tokio::time::timeout(CATCH_UP, rx.wait_for(|pos| *pos >= seq))
        .await
        .is_ok_and(|r| r.is_ok());
    if !caught_up {
        // Behind but moving is a follower catching up; not moving at all, a lost consumer.
        if *shared.ledger_pos.borrow() == before {
            shared.follower_stalled.notify_one();
        }
        return Err(ReserveError::CatchUp(seq));
    }
    shared
        .ledger
        .write()
        .expect("ledger lock poisoned")
        .observe(model, seq);
    Ok(())
}
