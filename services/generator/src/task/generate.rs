//! Generating a task that holds its range: its batches rendered in order, logged a group at a
//! time, each group flushed before it is published, and the completion last.

use std::collections::HashMap;
use std::time::Instant;

use common::events::{generated_id, EventData, GenerateRequested, TaskCompleted};
use common::ledger::Range;
use common::serial::{Order, SerialFormatter};
use common::{subjects, Event, Format};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use super::render::{batch_span, BatchOf, RenderAhead};
use super::{entry_of, TaskError, Worker};
use crate::log::{Entry, Granted};
use crate::outbox::Outbox;

/// Events of one generated batch stay under this size (NATS allows 1 MiB by default).
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Serials per generated event for serials of `serial_len` bytes.
pub fn batch_size(serial_len: usize, limit: u64) -> u64 {
    let fit = (MAX_EVENT_BYTES - 1024) / (serial_len + 3);
    (fit as u64).clamp(1, limit.max(1))
}

/// One task's work once it holds its range.
pub struct Job<'a> {
    pub w: &'a Worker,
    pub req: &'a GenerateRequested,
    /// Only numbers of this range are issued: `first` and `count` come from it, never the
    /// request.
    pub range: Range,
    /// The model's scheme, in which every serial of the range is written.
    pub scheme: Format,
    /// Checked when the job was made: the replica holds the model's key.
    pub formatter: SerialFormatter,
    pub per_batch: u64,
}

/// A task's way into the log and out to the stream: appends entries, flushes, and only then
/// publishes them. The reservation this run published (see [`Granted`]) goes into the log
/// with the first entries.
pub struct Writer<'a> {
    w: &'a Worker,
    task: uuid::Uuid,
    granted: Option<Box<Granted>>,
    outbox: Outbox<'a>,
    /// Entries rendered and not logged yet.
    group: Vec<Entry>,
}

impl<'a> Writer<'a> {
    pub fn new(w: &'a Worker, task: uuid::Uuid, granted: Option<Box<Granted>>) -> Self {
        Writer {
            w,
            task,
            granted,
            outbox: w.outbox(),
            group: Vec::new(),
        }
    }

    /// Logs the reservation this run published, if no entry of the task carried it yet.
    pub fn log_granted(&mut self) -> Result<(), TaskError> {
        if let Some(g) = self.granted.take() {
            self.w.log.append_with(self.task, Some(&g), &[], false)?;
        }
        Ok(())
    }

    /// Logs, flushes and sends the entries rendered so far.
    async fn flush_group(&mut self) -> Result<(), TaskError> {
        if self.group.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.group);
        self.append_and_send(entries).await
    }

    /// Appends entries to the log (after the reservation, if not logged yet), flushes, and
    /// only then publishes them.
    pub async fn append_and_send(&mut self, entries: Vec<Entry>) -> Result<(), TaskError> {
        let seqs = self.append(&entries).await?;
        for (seq, entry) in seqs.into_iter().zip(&entries) {
            self.outbox.send(seq, entry).await?;
        }
        Ok(())
    }

    /// Appends and flushes; the entries' log sequences.
    async fn append(&mut self, entries: &[Entry]) -> Result<Vec<u64>, TaskError> {
        let granted = self.granted.take();
        let seqs = self
            .w
            .log
            .append_with(self.task, granted.as_deref(), entries, true)?;
        self.w
            .log
            .flush()
            .instrument(info_span!("log flush", entries = entries.len()))
            .await?;
        Ok(seqs)
    }

    /// Waits for every ack and records them in the log.
    pub async fn drain(&mut self) -> Result<(), TaskError> {
        Ok(self.outbox.drain().await?)
    }
}

pub async fn generate(
    job: &Job<'_>,
    writer: &mut Writer<'_>,
    logged: &[(u64, Entry)],
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let started = Instant::now();
    let Job {
        w,
        req,
        range,
        scheme,
        ref formatter,
        per_batch,
    } = *job;
    let (first, total) = (range.first, range.count());
    let batches = total.div_ceil(per_batch);
    // Batches this replica already logged for the task (a redelivery after a crash).
    let done: HashMap<&str, (u64, &Entry)> = logged
        .iter()
        .map(|(seq, e)| (e.id.as_str(), (*seq, e)))
        .collect();
    let subject = subjects::generated(&req.code_model, req.task_id);
    let group_size = w.work.batches_per_flush.max(1);
    let batch_of = BatchOf {
        task_id: req.task_id,
        code_model: &req.code_model,
        subject: &subject,
        formatter,
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
            writer.flush_group().await?;
            writer.drain().await?;
            return Err(TaskError::Stopped);
        }
        let entry = match ahead.as_mut() {
            Some(rendered) => rendered.next().await.ok_or_else(|| {
                TaskError::Render("the thread rendering the task's batches stopped".into())
            })?,
            None => match done.get(generated_id(req.task_id, batch).as_str()) {
                // Logged before a crash: publish again only if never acknowledged.
                Some(&(seq, entry)) => {
                    if w.log.is_pending(seq)? {
                        writer.outbox.send(seq, entry).await?;
                    }
                    continue;
                }
                None => batch_span(req.task_id, batch).in_scope(|| batch_of.entry(batch)),
            },
        };
        writer.group.push(entry);
        if writer.group.len() >= group_size {
            writer.flush_group().await?;
        }
    }
    complete(job, writer, batches).await?;
    metrics::counter!("sn_serials_issued_total", "code_model" => req.code_model.clone())
        .increment(total);
    metrics::histogram!("sn_generation_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Logs the completion with the last batches (one flush) and publishes it only once every
/// batch is acknowledged: the stream never shows a completion ahead of a batch.
async fn complete(job: &Job<'_>, writer: &mut Writer<'_>, batches: u64) -> Result<(), TaskError> {
    let Job { w, req, range, .. } = *job;
    let completed = Event::new(
        crate::SOURCE,
        EventData::Completed(TaskCompleted {
            task_id: req.task_id,
            code_model: req.code_model.clone(),
            count: range.count(),
            first_serial: job.formatter.to_string(range.first),
            last_serial: job.formatter.to_string(range.last),
            batches,
        }),
    )
    .with_traceparent(common::telemetry::current_traceparent());
    let completion = entry_of(&completed);
    let mut group = std::mem::take(&mut writer.group);
    group.push(completion.clone());
    let seqs = writer.append(&group).await?;
    let (last_seq, batch_seqs) = seqs.split_last().expect("the group holds the completion");
    for (seq, entry) in batch_seqs.iter().zip(&group) {
        writer.outbox.send(*seq, entry).await?;
    }
    // A task of one batch, alone on a single-replica stream, sends its completion right
    // behind the batch without waiting for the batch's ack: JetStream stores it only right
    // behind the batch, so the stream still never shows it alone, and a message of another
    // task stored in between would only send it a second time.
    if group.len() == 2 && batches == 1 && w.ledger.publishes_alone() {
        writer.outbox.send_following(*last_seq, &completion).await?;
    } else {
        // Waits for the batches' acks (`Outbox::send` does for a task's last event); the log
        // learns they are published together with the completion, one write less before it.
        writer.outbox.send(*last_seq, &completion).await?;
    }
    writer.drain().await
}
