//! Rendering a task's batches: each batch's event with its serials written out, and, for a
//! random-order task, the next batches rendered ahead on blocking threads.

use common::events::{write_serials, GeneratedBatch};
use common::request::valid_model;
use common::serial::{CheckDigit, Format, SerialFormatter};
use tracing::info_span;

use crate::log::{Entry, SerialsAt, WriteSerials};

/// How the generator writes serials, for the log to write a batch's serials again when it
/// reads the batch back (it keeps only their numbers).
pub struct Serials;

impl WriteSerials for Serials {
    fn writes(&self, model: &str, format: Format) -> bool {
        // A valid model, all digits under a check digit.
        valid_model(model)
            && (format.check_digit == CheckDigit::None || model.bytes().all(|b| b.is_ascii_digit()))
    }

    fn write_range(&self, model: &str, format: Format, first: u64, count: u64, out: &mut Vec<u8>) {
        write_serials(&SerialFormatter::new(model, format), first, count, out);
    }

    fn write_numbers(&self, model: &str, format: Format, numbers: &[u64], out: &mut Vec<u8>) {
        // Each is written as a sequential scheme writes that number: the same digits, and
        // the check digit computed over them.
        let formatter = SerialFormatter::new(model, format);
        for (i, &number) in numbers.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\"" } else { b"\",\"" });
            formatter.write(number, out);
        }
        if !numbers.is_empty() {
            out.push(b'"');
        }
    }
}

/// What every batch of a task is made from: [`BatchOf::entry`] gives batch `n`'s log entry.
#[derive(Clone, Copy)]
pub struct BatchOf<'a> {
    pub task_id: uuid::Uuid,
    pub code_model: &'a str,
    pub subject: &'a str,
    pub formatter: &'a SerialFormatter,
    /// The held range's first number and size.
    pub first: u64,
    pub total: u64,
    pub per_batch: u64,
}

impl BatchOf<'_> {
    /// Batch `batch`'s event, rendered, as the log keeps it.
    pub fn entry(&self, batch: u64) -> Entry {
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
pub fn batch_span(task_id: uuid::Uuid, batch: u64) -> tracing::Span {
    info_span!("batch", task_id = %task_id, batch, serials = tracing::field::Empty)
}

/// A task's batches rendered ahead, in order, on blocking threads: batch `k` by thread
/// `k mod threads`, each at most `max(ahead / threads, 1) + 1` batches (its channel's and the
/// one it renders) before the task takes them. A
/// random-order serial costs a permutation (about ten AES blocks), so the next batches are
/// rendered on the spare cores while the last ones are logged and published, instead of
/// between them. The threads stop when this is dropped (the task ended early).
pub struct RenderAhead {
    rendered: Vec<tokio::sync::mpsc::Receiver<Entry>>,
    next: usize,
}

impl RenderAhead {
    pub fn start(batch_of: &BatchOf<'_>, batches: u64, ahead: usize) -> RenderAhead {
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
    pub async fn next(&mut self) -> Option<Entry> {
        let count = self.rendered.len();
        let entry = self.rendered[self.next % count].recv().await;
        self.next += 1;
        entry
    }
}

/// Threads a task renders its batches on at most (see [`RenderAhead`]).
const MAX_RENDER_THREADS: usize = 4;
