//! One task's state machine: how each event of the task moves it.
//!
//! A task is `PENDING` from its first event, `STARTED` once its range is reserved or a batch
//! arrives, and ends `SUCCESS` or `FAILURE`. States only move forward, so events of one task
//! may arrive in any order (a batch before its request still counts), and a repeated event
//! changes nothing. What a task's events do to the indexes and the ledger is for
//! [`super::Views`] to decide; this module only moves one [`Task`].

use std::collections::HashSet;

use common::events::{GenerateRequested, SerialsGenerated, TaskCompleted, TaskFailed};
use common::Format;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::api::State;
use crate::api::{self, TaskError};

/// Everything the fold knows of one task: what `GET /tasks/{id}` shows, and what the
/// gateway needs besides (the request for idempotent replays, the reserved range and the
/// batch count for downloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: Uuid,
    pub state: State,
    pub code_model: String,
    /// The first number: as requested, or as reserved once the generator picked it.
    pub number: Option<u64>,
    pub count: u64,
    pub generated: u64,
    pub first_serial: Option<String>,
    pub last_serial: Option<String>,
    pub error: Option<TaskError>,
    pub created_at: Option<OffsetDateTime>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub format: Format,
    pub request: Option<GenerateRequested>,
    /// Reserved `[first, last]`.
    pub range: Option<(u64, u64)>,
    /// Generated batches the task holds, from the completion event.
    pub batches: Option<u64>,
    /// Stream sequence of the task's first event: where its batches start.
    pub first_seq: u64,
    /// Batches counted while the task runs (a republished batch is counted once); emptied
    /// when it ends.
    pub seen_batches: HashSet<u64>,
}

impl Task {
    pub fn new(id: Uuid, code_model: &str, first_seq: u64) -> Task {
        Task {
            first_seq,
            id,
            state: State::Pending,
            code_model: code_model.to_owned(),
            number: None,
            count: 0,
            generated: 0,
            first_serial: None,
            last_serial: None,
            error: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            format: Format::default(),
            request: None,
            range: None,
            batches: None,
            seen_batches: HashSet::new(),
        }
    }

    /// SUCCESS or FAILURE.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }

    /// The task as the API shows it.
    pub fn view(&self) -> api::TaskView {
        api::TaskView {
            id: self.id,
            state: self.state,
            code_model: self.code_model.clone(),
            number: self.number,
            count: self.count,
            generated: self.generated,
            first_serial: self.first_serial.clone(),
            last_serial: self.last_serial.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            format: self.format,
        }
    }

    fn advance(&mut self, to: State) {
        if !self.state.is_final() && to > self.state {
            self.state = to;
        }
    }

    /// The request: its count and first number; `scheme` is the format it will get as far
    /// as the ledger knows now (the reservation says for certain). False if already seen.
    pub fn requested(&mut self, r: &GenerateRequested, scheme: Format) -> bool {
        if self.request.is_some() {
            return false;
        }
        self.count = r.count;
        if self.range.is_none() {
            self.format = scheme;
        }
        if self.number.is_none() {
            self.number = r.number;
        }
        self.created_at = Some(r.requested_at);
        self.request = Some(r.clone());
        true
    }

    /// A reservation the ledger granted: the task holds `[first, last]` and has started.
    pub fn reserved(&mut self, first: u64, last: u64, scheme: Option<Format>, at: OffsetDateTime) {
        self.range = Some((first, last));
        self.number = Some(first);
        if let Some(scheme) = scheme {
            self.format = scheme;
        }
        self.started_at.get_or_insert(at);
        self.advance(State::Started);
    }

    /// A batch of serials; false if the task has ended or already counted the batch.
    pub fn generated(&mut self, g: &SerialsGenerated, at: OffsetDateTime) -> bool {
        if self.state.is_final() || !self.seen_batches.insert(g.batch) {
            return false;
        }
        self.generated += g.count;
        self.started_at.get_or_insert(at);
        self.advance(State::Started);
        true
    }

    /// The task's end in success; false if it had already ended.
    pub fn completed(&mut self, c: &TaskCompleted, at: OffsetDateTime) -> bool {
        if self.state.is_final() {
            return false;
        }
        self.advance(State::Success);
        self.generated = c.count;
        self.count = c.count;
        self.batches = Some(c.batches);
        self.first_serial = Some(c.first_serial.clone());
        self.last_serial = Some(c.last_serial.clone());
        self.finished_at = Some(at);
        self.seen_batches = HashSet::new();
        true
    }

    /// The task's end in failure; false if it had already ended.
    pub fn failed(&mut self, f: &TaskFailed, at: OffsetDateTime) -> bool {
        if self.state.is_final() {
            return false;
        }
        self.advance(State::Failure);
        self.error = Some(TaskError {
            code: f.code.clone(),
            message: f.message.clone(),
        });
        self.finished_at = Some(at);
        self.seen_batches = HashSet::new();
        true
    }
}
