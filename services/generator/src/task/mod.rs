//! One request, start to finish: reuse what the log already holds for the task, reserve the
//! range, then generate, log and publish the batches and the completion ([`generate`]).

mod generate;
mod render;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use common::events::{codes, EventData, GenerateRequested, TaskFailed};
use common::ledger::Range;
use common::serial::{Keyring, SerialFormatter};
use common::subjects::{self, Kind};
use common::{Event, Format, GenerateSpec};
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::config::WorkConfig;
use crate::ledger::{Ledger, Turn};
use crate::log::{Entry, EventLog};
use crate::outbox::{Outbox, OutboxError};
use crate::reserve::{reserve, Reservation, ReserveError};
use crate::stream::Stream;

pub use generate::batch_size;
use generate::{Job, Writer};
pub use render::Serials;

/// What a task works with: the log, the ledger, the stream, the keys and the limits.
#[derive(Clone)]
pub struct Worker {
    pub log: EventLog,
    pub ledger: Arc<Ledger>,
    pub stream: Arc<dyn Stream>,
    /// The master keys of random-order models (`SERIAL_KEY`).
    pub keys: Arc<Keyring>,
    /// Most serials one task may ask for.
    pub max_count: u64,
    pub work: WorkConfig,
}

impl Worker {
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox::new(&*self.stream, &self.log, self.work.max_inflight)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error("cannot read the task's published batches: {0}")]
    Lookup(#[from] crate::stream::ReadError),
    #[error("stopped before the task finished")]
    Stopped,
    #[error("{0}")]
    Render(String),
}

impl TaskError {
    /// Whether the same delivery may try again (NATS unreachable or slow) instead of
    /// spending one of the request's bounded deliveries.
    pub fn is_transient(&self) -> bool {
        match self {
            TaskError::Outbox(e) => e.is_transient(),
            TaskError::Reserve(e) => e.is_transient(),
            // The stream is there (the request came from it): a failed read is NATS's.
            TaskError::Lookup(_) => true,
            TaskError::Log(_) | TaskError::Stopped | TaskError::Render(_) => false,
        }
    }
}

/// How a task ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Replayed,
}

/// Runs one request, holding this replica's reservation `turn` until the task holds its
/// range (or needs none). `redelivered`: an earlier delivery may have published batches, on
/// this replica or another.
pub async fn run(
    w: &Worker,
    req: &GenerateRequested,
    turn: Turn,
    redelivered: bool,
    cancel: &CancellationToken,
) -> Result<Outcome, TaskError> {
    let logged = w.log.task_entries(req.task_id)?;
    if logged.iter().any(|(_, e)| is_final(&e.subject)) {
        drop(turn);
        return replay(w, &logged).await;
    }
    let reservation = match refused_before_reserving(w, req) {
        Some((code, message)) => Reservation::Refused(code, message),
        None => reserve(w, req).await?,
    };
    drop(turn);
    let (range, scheme, granted) = match reservation {
        Reservation::Granted(r, scheme, g) => (r, scheme, g),
        Reservation::Refused(code, message) => {
            fail(w, req, code, message).await?;
            return Ok(Outcome::Failure);
        }
    };
    let mut writer = Writer::new(w, req.task_id, granted);
    let job = match held_job(w, req, range, scheme, &logged, redelivered).await {
        Ok(Ok(job)) => job,
        Ok(Err((code, message))) => {
            writer.log_granted()?;
            fail(w, req, code, message).await?;
            return Ok(Outcome::Failure);
        }
        Err(e) => {
            writer.log_granted()?;
            return Err(e);
        }
    };
    let generated = generate::generate(&job, &mut writer, &logged, cancel).await;
    // Logged with the first entries, unless the task stopped before writing any.
    writer.log_granted()?;
    generated?;
    Ok(Outcome::Success)
}

/// Why the request fails before any number is reserved, if it does: a request the rules
/// refuse, or a random-order model whose key this replica lacks.
fn refused_before_reserving(w: &Worker, req: &GenerateRequested) -> Option<(&'static str, String)> {
    let spec = GenerateSpec {
        code_model: req.code_model.clone(),
        number: req.number,
        count: req.count,
        format: req.format,
    };
    if let Err(e) = spec.validate(w.max_count) {
        return Some((codes::INVALID_REQUEST, e.to_string()));
    }
    let scheme = w.ledger.scheme(&req.code_model)?;
    SerialFormatter::keyed(&req.code_model, scheme, &w.keys)
        .err()
        .map(|e| (codes::INVALID_REQUEST, e.to_string()))
}

/// The work of a task holding `range`, or the failure it ends with: the request must match
/// the range, the replica must hold the model's key, and a resumed task keeps its batch size.
async fn held_job<'a>(
    w: &'a Worker,
    req: &'a GenerateRequested,
    range: Range,
    scheme: Format,
    logged: &[(u64, Entry)],
    redelivered: bool,
) -> Result<Result<Job<'a>, (&'static str, String)>, TaskError> {
    // The task's range is the only one it may ever issue from: a request that no longer
    // matches it (another message with this task's id, or one published by hand) issues
    // nothing at all.
    if let Some(failure) = unlike_held(req, range, scheme) {
        return Ok(Err(failure));
    }
    // A random-order model whose key this replica lacks: nothing can be written.
    let mut formatter = match SerialFormatter::keyed(&req.code_model, scheme, &w.keys) {
        Ok(f) => f,
        Err(e) => return Ok(Err((codes::INVALID_REQUEST, e.to_string()))),
    };
    let per_batch = match earlier_batch_size(w, req, range.first, logged, redelivered).await? {
        Some(size) => size,
        None => batch_size(scheme.serial_len(&req.code_model), w.work.batch_size),
    };
    formatter.prepare_for(range.count());
    Ok(Ok(Job {
        w,
        req,
        range,
        scheme,
        formatter,
        per_batch,
    }))
}

/// What a request asks that its task's range and scheme do not give, as a failure.
fn unlike_held(
    req: &GenerateRequested,
    range: Range,
    scheme: Format,
) -> Option<(&'static str, String)> {
    if req.format.resolve(Some(scheme)).is_err() {
        return Some((
            codes::FORMAT_MISMATCH,
            format!(
                "the request asks for {}, but model {} has the scheme {scheme}",
                req.format, req.code_model
            ),
        ));
    }
    let same_first = req.number.is_none_or(|n| n == range.first);
    (range.count() != req.count || !same_first).then(|| {
        (
            codes::INVALID_REQUEST,
            format!(
                "task {} holds numbers {}..={} ({} serials); this request asks for {} serials{}",
                req.task_id,
                range.first,
                range.last,
                range.count(),
                req.count,
                req.number.map(|n| format!(" from {n}")).unwrap_or_default()
            ),
        )
    })
}

/// The batch size an earlier run of this task used, if it published or logged a batch: a
/// batch's numbers follow from its index and the size, so a resumed task keeps the size it
/// started with whatever `BATCH_SIZE` says now (another replica's, or a changed setting).
async fn earlier_batch_size(
    w: &Worker,
    req: &GenerateRequested,
    first: u64,
    logged: &[(u64, Entry)],
    redelivered: bool,
) -> Result<Option<u64>, TaskError> {
    let size_of = |batch: u64, first_number: u64, count: u64| match batch {
        0 => Some(count),
        i => first_number
            .checked_sub(first)
            .filter(|offset| offset % i == 0)
            .map(|offset| offset / i),
    };
    let mine = logged.iter().find_map(|(_, e)| {
        let s = e.serials.as_ref()?;
        let batch = e.id.rsplit(':').next()?.parse().ok()?;
        size_of(batch, s.first, s.count)
    });
    if mine.is_some() || !redelivered {
        return Ok(mine.filter(|&n| n > 0));
    }
    let subject = subjects::generated(&req.code_model, req.task_id);
    let Some(payload) = w.stream.first_message(&subject).await? else {
        return Ok(None);
    };
    let size = match Event::from_json_without_serials(&payload) {
        Ok(Event {
            data: EventData::Generated(g),
            ..
        }) => size_of(g.batch, g.first_number, g.count),
        _ => None,
    };
    if size.is_none() {
        tracing::warn!(task_id = %req.task_id, "a published batch of the task does not fit its range");
    }
    Ok(size.filter(|&n| n > 0))
}

fn is_final(subject: &str) -> bool {
    subjects::parse(subject).is_some_and(|p| matches!(p.kind, Kind::Completed | Kind::Failed))
}

/// A redelivered request whose task already ended: publish the same events again (same ids,
/// so JetStream and every fold drop them) and issue nothing new.
#[instrument(name = "replay", skip_all, fields(events = logged.len()))]
async fn replay(w: &Worker, logged: &[(u64, Entry)]) -> Result<Outcome, TaskError> {
    let mut outbox = w.outbox();
    for (seq, entry) in logged {
        outbox.send(*seq, entry).await?;
    }
    outbox.drain().await?;
    Ok(Outcome::Replayed)
}

/// Ends the task in FAILURE: logged, flushed, published, acknowledged.
pub async fn fail(
    w: &Worker,
    req: &GenerateRequested,
    code: &str,
    message: String,
) -> Result<(), TaskError> {
    tracing::info!(task_id = %req.task_id, code, %message, "task failed");
    let event = Event::new(
        crate::SOURCE,
        EventData::Failed(TaskFailed {
            task_id: req.task_id,
            code_model: req.code_model.clone(),
            code: code.to_owned(),
            message,
        }),
    )
    .with_traceparent(common::telemetry::current_traceparent());
    let mut writer = Writer::new(w, req.task_id, None);
    writer.append_and_send(vec![entry_of(&event)]).await?;
    writer.drain().await
}

fn entry_of(event: &Event) -> Entry {
    Entry {
        subject: event.nats_subject(),
        id: event.id.clone(),
        payload: event.to_json().into(),
        serials: None,
    }
}
