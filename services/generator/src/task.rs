//! One request, start to finish: reuse what the log already holds for the task, reserve the
//! range, then generate, log and publish the batches and the completion.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::stream::DirectGetErrorKind;
use common::events::{
    codes, generated_id, EventData, GenerateRequested, GeneratedBatch, TaskCompleted, TaskFailed,
};
use common::ledger::Range;
use common::serial::{Order, SerialFormatter};
use common::subjects::{self, Kind};
use common::{Event, Format, GenerateSpec};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, instrument, Instrument};

use crate::log::{Entry, Granted, SerialsAt};
use crate::outbox::{Outbox, OutboxError};
use crate::reserve::{reserve, Reservation, ReserveError};
use crate::Shared;

/// This task's turn to reserve (see `Shared::reserve_turn`); dropping it passes the turn on.
pub type Turn = tokio::sync::OwnedMutexGuard<()>;

/// Events of one generated batch stay under this size (NATS allows 1 MiB by default).
const MAX_EVENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error("cannot read the task's published batches: {0}")]
    Lookup(String),
    #[error("stopped before the task finished")]
    Stopped,
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Render(String),
}

/// How a task ended, for metrics.
impl TaskError {
    /// Whether the same delivery may try again (NATS unreachable or slow) instead of
    /// spending one of the request's bounded deliveries.
    pub fn is_transient(&self) -> bool {
        match self {
            TaskError::Outbox(e) => e.is_transient(),
            TaskError::Reserve(e) => e.is_transient(),
            // The stream is there (the request came from it): a failed read is NATS's.
            TaskError::Lookup(_) => true,
            TaskError::Log(_) | TaskError::Stopped | TaskError::Key(_) | TaskError::Render(_) => {
                false
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Replayed,
}

/// Serials per generated event for serials of `serial_len` bytes.
pub fn batch_size(serial_len: usize, limit: u64) -> u64 {
    let fit = (MAX_EVENT_BYTES - 1024) / (serial_len + 3);
    (fit as u64).clamp(1, limit.max(1))
}

/// Runs one request. `redelivered`: an earlier delivery may have published batches, on this
/// replica or another.
pub async fn run(
    shared: &Shared,
    req: &GenerateRequested,
    turn: Turn,
    redelivered: bool,
    cancel: &CancellationToken,
) -> Result<Outcome, TaskError> {
    let logged = shared.log.task_entries(req.task_id)?;
    if logged.iter().any(|(_, e)| is_final(&e.subject)) {
        drop(turn);
        return replay(shared, &logged).await;
    }
    let spec = GenerateSpec {
        code_model: req.code_model.clone(),
        number: req.number,
        count: req.count,
        format: req.format,
    };
    if let Err(e) = spec.validate(shared.max_count) {
        drop(turn);
        fail(shared, req, codes::INVALID_REQUEST, e.to_string()).await?;
        return Ok(Outcome::Failure);
    }
    // A random-order model whose key this replica lacks: refused before taking numbers.
    let known = shared
        .ledger
        .read()
        .expect("ledger lock poisoned")
        .scheme(&req.code_model);
    if let Some(scheme) = known {
        if let Err(e) = SerialFormatter::keyed(&req.code_model, scheme, &shared.keys) {
            drop(turn);
            fail(shared, req, codes::INVALID_REQUEST, e.to_string()).await?;
            return Ok(Outcome::Failure);
        }
    }
    let reservation = reserve(shared, req).await;
    drop(turn);
    let (range, scheme, mut granted) = match reservation? {
        Reservation::Granted(r, scheme, g) => (r, scheme, g),
        Reservation::Refused(code, message) => {
            fail(shared, req, code, message).await?;
            return Ok(Outcome::Failure);
        }
    };
    // The task's range is the only one it may ever issue from: a request that no longer
    // matches it (another message with this task's id, or one published by hand) issues
    // nothing at all.
    if let Some((code, message)) = unlike_held(req, range, scheme) {
        log_granted(shared, req.task_id, &mut granted)?;
        fail(shared, req, code, message).await?;
        return Ok(Outcome::Failure);
    }
    // A random-order model whose key this replica lacks: nothing can be written.
    if let Err(e) = SerialFormatter::keyed(&req.code_model, scheme, &shared.keys) {
        log_granted(shared, req.task_id, &mut granted)?;
        fail(shared, req, codes::INVALID_REQUEST, e.to_string()).await?;
        return Ok(Outcome::Failure);
    }
    let serial_len = scheme.serial_len(&req.code_model);
    let per_batch = match earlier_batch_size(shared, req, range.first, &logged, redelivered).await {
        Ok(Some(size)) => size,
        Ok(None) => batch_size(serial_len, shared.work.batch_size),
        Err(e) => {
            log_granted(shared, req.task_id, &mut granted)?;
            return Err(e);
        }
    };
    let job = Job {
        req,
        range,
        scheme,
        per_batch,
    };
    let generated = generate(shared, &job, cancel, &logged, &mut granted).await;
    // Logged with the first entries, unless the task stopped before writing any.
    log_granted(shared, req.task_id, &mut granted)?;
    generated?;
    Ok(Outcome::Success)
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

/// One task's work once it holds its range.
struct Job<'a> {
    req: &'a GenerateRequested,
    range: Range,
    /// The model's scheme, in which every serial of the range is written.
    scheme: Format,
    per_batch: u64,
}

/// The batch size an earlier run of this task used, if it published or logged a batch: a
/// batch's numbers follow from its index and the size, so a resumed task keeps the size it
/// started with whatever `BATCH_SIZE` says now (another replica's, or a changed setting).
async fn earlier_batch_size(
    shared: &Shared,
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
    let lookup = |e: &dyn std::fmt::Display| TaskError::Lookup(e.to_string());
    let stream = shared
        .js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(|e| lookup(&e))?;
    let subject = subjects::generated(&req.code_model, req.task_id);
    let message = match stream.direct_get_next_for_subject(subject, None).await {
        Ok(m) => m,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(lookup(&e)),
    };
    let size = match Event::from_json_without_serials(&message.payload) {
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

/// Logs the reservation this run published, if no entry of the task carried it yet.
fn log_granted(
    shared: &Shared,
    task: uuid::Uuid,
    granted: &mut Option<Box<Granted>>,
) -> Result<(), TaskError> {
    if let Some(g) = granted.take() {
        shared.log.append_with(task, Some(&g), &[], false)?;
    }
    Ok(())
}

fn is_final(subject: &str) -> bool {
    subjects::parse(subject).is_some_and(|p| matches!(p.kind, Kind::Completed | Kind::Failed))
}

/// A redelivered request whose task already ended: publish the same events again (same ids,
/// so JetStream and every fold drop them) and issue nothing new.
#[instrument(name = "replay", skip_all, fields(events = logged.len()))]
async fn replay(shared: &Shared, logged: &[(u64, Entry)]) -> Result<Outcome, TaskError> {
    let mut outbox = Outbox::new(shared);
    for (seq, entry) in logged {
        outbox.send(*seq, entry).await?;
    }
    outbox.drain().await?;
    Ok(Outcome::Replayed)
}

async fn generate(
    shared: &Shared,
    job: &Job<'_>,
    cancel: &CancellationToken,
    logged: &[(u64, Entry)],
    granted: &mut Option<Box<Granted>>,
) -> Result<(), TaskError> {
    let started = Instant::now();
    let Job {
        req,
        range,
        scheme,
        per_batch,
    } = *job;
    // Only numbers of the held range: `first` and `count` come from it, never the request.
    let (first, total) = (range.first, range.count());
    // Checked before the task ran (see `run`): the replica holds the model's key.
    let mut formatter = SerialFormatter::keyed(&req.code_model, scheme, &shared.keys)
        .map_err(|e| TaskError::Key(e.to_string()))?;
    formatter.prepare_for(total);
    let batches = total.div_ceil(per_batch);
    // Batches this replica already logged for the task (a redelivery after a crash).
    let done: HashMap<&str, (u64, &Entry)> = logged
        .iter()
        .map(|(seq, e)| (e.id.as_str(), (*seq, e)))
        .collect();
    let subject = subjects::generated(&req.code_model, req.task_id);
    let mut outbox = Outbox::new(shared);
    let mut group: Vec<Entry> = Vec::new();
    let group_size = shared.work.batches_per_flush.max(1);

    let batch_of = BatchOf {
        task_id: req.task_id,
        code_model: &req.code_model,
        subject: &subject,
        formatter: &formatter,
        first,
        total,
        per_batch,
    };
    // A fresh random-order task renders its batches ahead on blocking threads (see
    // `RenderAhead`); a redelivered one looks each batch up in the log first, here.
    let mut ahead = (scheme.order == Order::Random && batches > 1 && done.is_empty())
        .then(|| RenderAhead::start(&batch_of, batches, 2 * group_size));

    for batch in 0..batches {
        if cancel.is_cancelled() {
            flush_group(shared, req.task_id, granted, &mut group, &mut outbox).await?;
            outbox.drain().await?;
            return Err(TaskError::Stopped);
        }
        let encoded = match ahead.as_mut() {
            Some(rendered) => rendered.next().await.map(Ok).ok_or_else(|| {
                TaskError::Render("the thread rendering the task's batches stopped".into())
            })?,
            None => match done.get(generated_id(req.task_id, batch).as_str()) {
                Some(&logged) => Err(logged),
                None => Ok(batch_span(req.task_id, batch).in_scope(|| batch_of.entry(batch))),
            },
        };
        match encoded {
            Ok(entry) => group.push(entry),
            // Logged before a crash: publish again only if never acknowledged.
            Err((seq, entry)) => {
                if shared.log.is_pending(seq)? {
                    outbox.send(seq, entry).await?;
                }
                continue;
            }
        }
        if group.len() >= group_size {
            flush_group(shared, req.task_id, granted, &mut group, &mut outbox).await?;
        }
    }
    let completed = Event::new(
        crate::SOURCE,
        EventData::Completed(TaskCompleted {
            task_id: req.task_id,
            code_model: req.code_model.clone(),
            count: total,
            first_serial: formatter.to_string(first),
            last_serial: formatter.to_string(range.last),
            batches,
        }),
    )
    .with_traceparent(common::telemetry::current_traceparent());
    // The completion is logged with the last batches (one flush) but published only once
    // every batch is acknowledged: the stream never shows a completion ahead of a batch.
    let completion = entry_of(&completed);
    group.push(completion.clone());
    let seqs = shared
        .log
        .append_with(req.task_id, granted.take().as_deref(), &group, true)?;
    shared
        .log
        .flush()
        .instrument(info_span!("log flush", entries = group.len()))
        .await?;
    let (last_seq, batch_seqs) = seqs.split_last().expect("the group holds the completion");
    for (seq, entry) in batch_seqs.iter().zip(&group) {
        outbox.send(*seq, entry).await?;
    }
    if group.len() == 2 && chain_completion(shared, batches) {
        // The task's one batch and its completion go out back to back; JetStream stores the
        // completion only right behind the batch, so the stream still never shows it alone.
        outbox.send_following(*last_seq, &completion).await?;
    } else {
        // Waits for the batches' acks (`Outbox::send` does for a task's last event); the log
        // learns they are published together with the completion, one write less before it.
        outbox.send(*last_seq, &completion).await?;
    }
    outbox.drain().await?;
    metrics::counter!("sn_serials_issued_total", "code_model" => req.code_model.clone())
        .increment(total);
    metrics::histogram!("sn_generation_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether a task of `batches` batches publishes its completion without waiting for its
/// batch's ack (see [`Outbox::send_following`]): only with a single-replica stream, and only
/// when no other task runs here, since a message stored in between sends the completion a
/// second time.
fn chain_completion(shared: &Shared, batches: u64) -> bool {
    batches == 1
        && shared.single_replica.load(Ordering::Relaxed)
        && shared.running.load(Ordering::Relaxed) <= 1
}

fn entry_of(event: &Event) -> Entry {
    Entry {
        subject: event.nats_subject(),
        id: event.id.clone(),
        payload: event.to_json().into(),
        serials: None,
    }
}

/// What every batch of a task is made from: [`BatchOf::entry`] gives batch `n`'s log entry.
#[derive(Clone, Copy)]
struct BatchOf<'a> {
    task_id: uuid::Uuid,
    code_model: &'a str,
    subject: &'a str,
    formatter: &'a SerialFormatter,
    /// The held range's first number and size.
    first: u64,
    total: u64,
    per_batch: u64,
}

impl BatchOf<'_> {
    /// Batch `batch`'s event, rendered, as the log keeps it.
    fn entry(&self, batch: u64) -> Entry {
        let first_number = self.first + batch * self.per_batch;
        let count = self.per_batch.min(self.total - batch * self.per_batch);
        tracing::Span::current().record("serials", count);
        let traceparent = common::telemetry::current_traceparent();
        let b = GeneratedBatch {
            source: crate::SOURCE,
            task_id: self.task_id,
            code_model: self.code_model,
            batch,
            first_number,
            count,
            formatter: self.formatter,
            traceparent: traceparent.as_deref(),
        };
        let format = self.formatter.format();
        let serial_len = format.serial_len(self.code_model);
        let mut payload = Vec::with_capacity(count as usize * (serial_len + 3) + 512);
        let bytes = b.encode(time::OffsetDateTime::now_utc(), &mut payload);
        Entry {
            subject: self.subject.to_owned(),
            id: b.id(),
            payload: payload.into(),
            // Logged as its range (sequential) or its serials' digits as numbers (random
            // order, so the log never needs the model's key), and written again when read.
            serials: Some(SerialsAt {
                bytes,
                code_model: self.code_model.to_owned(),
                format,
                first: first_number,
                count,
            }),
        }
    }
}

/// The span of rendering one batch; `serials` is recorded by [`BatchOf::entry`].
fn batch_span(task_id: uuid::Uuid, batch: u64) -> tracing::Span {
    info_span!("batch", task_id = %task_id, batch, serials = tracing::field::Empty)
}

/// A task's batches rendered ahead, in order, on blocking threads: batch `k` by thread
/// `k mod threads`, each at most `max(ahead / threads, 1) + 1` batches (its channel's and the
/// one it renders) before the task takes them. A
/// random-order serial costs a permutation (about ten AES blocks), so the next batches are
/// rendered on the spare cores while the last ones are logged and published, instead of
/// between them. The threads stop when this is dropped (the task ended early).
struct RenderAhead {
    rendered: Vec<tokio::sync::mpsc::Receiver<Entry>>,
    next: usize,
}

impl RenderAhead {
    fn start(batch_of: &BatchOf<'_>, batches: u64, ahead: usize) -> RenderAhead {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_RENDER_THREADS);
        let parent = tracing::Span::current();
        let rendered = (0..threads)
            .map(|thread| {
                let (tx, rx) = tokio::sync::mpsc::channel((ahead / threads).max(1));
                let (code_model, subject, formatter) = (
                    batch_of.code_model.to_owned(),
                    batch_of.subject.to_owned(),
                    batch_of.formatter.clone(),
                );
                let BatchOf {
                    task_id,
                    first,
                    total,
                    per_batch,
                    ..
                } = *batch_of;
                let parent = parent.clone();
                tokio::task::spawn_blocking(move || {
                    let batch_of = BatchOf {
                        task_id,
                        code_model: &code_model,
                        subject: &subject,
                        formatter: &formatter,
                        first,
                        total,
                        per_batch,
                    };
                    for batch in (thread as u64..batches).step_by(threads) {
                        let entry = parent.in_scope(|| {
                            batch_span(task_id, batch).in_scope(|| batch_of.entry(batch))
                        });
                        if tx.blocking_send(entry).is_err() {
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        RenderAhead { rendered, next: 0 }
    }

    /// The next batch in order; `None` if its thread stopped.
    async fn next(&mut self) -> Option<Entry> {
        let count = self.rendered.len();
        let entry = self.rendered[self.next % count].recv().await;
        self.next += 1;
        entry
    }
}

/// Threads a task renders its batches on at most (see [`RenderAhead`]).
const MAX_RENDER_THREADS: usize = 4;

async fn flush_group(
    shared: &Shared,
    task: uuid::Uuid,
    granted: &mut Option<Box<Granted>>,
    group: &mut Vec<Entry>,
    outbox: &mut Outbox<'_>,
) -> Result<(), TaskError> {
    if group.is_empty() {
        return Ok(());
    }
    let entries = std::mem::take(group);
    append_and_send(shared, task, granted.take().as_deref(), entries, outbox).await
}

/// Appends entries to the log (after `granted`, if given), flushes, and only then publishes
/// them.
async fn append_and_send(
    shared: &Shared,
    task: uuid::Uuid,
    granted: Option<&Granted>,
    entries: Vec<Entry>,
    outbox: &mut Outbox<'_>,
) -> Result<(), TaskError> {
    let seqs = shared.log.append_with(task, granted, &entries, true)?;
    shared
        .log
        .flush()
        .instrument(info_span!("log flush", entries = entries.len()))
        .await?;
    for (seq, entry) in seqs.into_iter().zip(&entries) {
        outbox.send(seq, entry).await?;
    }
    Ok(())
}

/// Ends the task in FAILURE: logged, flushed, published, acknowledged.
pub async fn fail(
    shared: &Shared,
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
    let mut outbox = Outbox::new(shared);
    append_and_send(
        shared,
        req.task_id,
        None,
        vec![entry_of(&event)],
        &mut outbox,
    )
    .await?;
    outbox.drain().await?;
    Ok(())
}
