//! `GET /tasks/{id}/serials`' body: a task's serials, read from its stored batches and
//! streamed in order, never held whole in memory.
//!
//! - `walk`: reads the task's batches from the stream through the [`Broker`] and, for a
//!   followed task (one still running), from the projection's live feed once it has read
//!   everything stored;
//! - `order`: puts the batches in batch order, drops repeats, and checks they are one run of
//!   numbers of the task's size, failing the body rather than ending it short;
//! - `form`: renders a batch as text, CSV or NDJSON;
//! - `ahead`: runs the reading and the rendering a few batches ahead of the socket.
//!
//! What the download needs of the projection is the [`TaskFeed`] port, so this module
//! depends on neither the projection nor the handlers.

mod ahead;
mod form;
mod order;
mod walk;

pub use ahead::run_ahead;
pub use form::Form;
pub use walk::Follow;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::broker::{Broker, BrokerError};
use order::{ordered_lines, Continuity, Total};
use walk::Walk;

/// What a download needs of the projection.
pub trait TaskFeed: Send + Sync + 'static {
    /// Task ids as they change.
    fn changes(&self) -> broadcast::Receiver<Uuid>;
    /// Messages of `generated` subjects the projection receives from now on, in stream
    /// order, each sent before the change it makes to its task.
    fn batches(&self) -> broadcast::Receiver<LiveBatch>;
    /// Where the task stands now.
    fn outcome(&self, task: Uuid) -> Outcome;
}

/// A message of a `generated` subject as the projection received it: a followed download
/// takes its batches from here instead of asking the stream for them again.
#[derive(Debug, Clone)]
pub struct LiveBatch {
    pub seq: u64,
    pub subject: async_nats::Subject,
    pub payload: Bytes,
}

/// Where a followed task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// PENDING or STARTED.
    Running,
    /// SUCCESS. Its batches are all stored by then (on the stream's leader and a quorum):
    /// the generator publishes the end only after every batch is acknowledged.
    Succeeded(Ended),
    /// FAILURE, with what to tell the reader.
    Failed(String),
    /// Not in the views.
    Unknown,
}

impl Outcome {
    fn ended(&self) -> bool {
        matches!(self, Outcome::Succeeded(_) | Outcome::Failed(_))
    }
}

/// What the completion of a task says of its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub batches: u64,
    pub count: u64,
    pub first_number: Option<u64>,
}

/// Why a download's body fails partway.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Read(#[from] BrokerError),
    #[error("the gateway is stopping")]
    Stopping,
    /// The batches are not the task's serials, whole and in order.
    #[error("{0}")]
    Broken(String),
}

/// The task whose serials are read, as the views know it when the download starts.
#[derive(Debug, Clone)]
pub struct Download {
    pub task: Uuid,
    pub code_model: String,
    /// Stream sequence of the task's first event: its batches come after it.
    pub first_seq: u64,
    /// The first number of the reserved range, if reserved yet.
    pub first_number: Option<u64>,
    pub count: u64,
    /// The batches of a SUCCESS task; `None` for a followed task, whose batches are counted
    /// once it has ended.
    pub batches: Option<u64>,
}

/// How many batches the walk reads ahead of the rendering, and the rendering ahead of the
/// socket.
const READ_AHEAD: usize = 4;
const RENDER_AHEAD: usize = 2;

/// The body of the download: rendered chunks, one or more batches each, in order; a CSV
/// header first. With `follow`, it goes on until the task ends.
pub fn serials(
    broker: Arc<dyn Broker>,
    download: Download,
    follow: Option<Follow>,
    form: Form,
) -> BoxStream<'static, Result<Bytes, DownloadError>> {
    let total = match (download.batches, &follow) {
        (Some(n), None) => Total::Known(n),
        (_, Some(f)) => Total::AtEnd(f.feed.clone(), download.task),
        (None, None) => Total::Known(0),
    };
    let walk = Walk::new(
        broker,
        &download.code_model,
        download.task,
        download.first_seq,
        follow,
    );
    let batches = run_ahead(walk.payloads().boxed(), READ_AHEAD, || {
        Err(DownloadError::Broken("reading the batches failed".into()))
    });
    let continuity = Continuity::new(download.first_number, download.count);
    let lines = run_ahead(
        ordered_lines(batches, total, continuity, form).boxed(),
        RENDER_AHEAD,
        || Err(DownloadError::Broken("rendering the serials failed".into())),
    );
    let header = form.header().map(|h| Ok(Bytes::from_static(h)));
    stream::iter(header).chain(lines).boxed()
}
