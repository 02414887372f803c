//! Where a task's time went, read from the stream itself: JetStream stamps every stored
//! message, so the stamps of a task's events (requested, reserved, first and last batch,
//! completed) split its POST -> SUCCESS span into the gateway's intake, the generator's
//! pickup and reservation, its batches, its completion, and the gateway noticing it.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream::Stream};
use common::subjects::{self, Kind};
use futures::StreamExt;
use time::OffsetDateTime;
use uuid::Uuid;

/// Stream stamps of one task's events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamps {
    pub requested: Option<OffsetDateTime>,
    pub reserved: Option<OffsetDateTime>,
    pub first_batch: Option<OffsetDateTime>,
    pub last_batch: Option<OffsetDateTime>,
    pub completed: Option<OffsetDateTime>,
}

async fn stream(nats_url: &str) -> anyhow::Result<Stream<()>> {
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    let stream = js.get_stream_no_info(subjects::STREAM).await?;
    Ok(stream)
}

/// Stamps of every task of `model`, read with an ordered consumer (for many small tasks).
pub async fn of_model(nats_url: &str, model: &str) -> anyhow::Result<HashMap<Uuid, Stamps>> {
    let stream = stream(nats_url).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::of_model(model),
            ..Default::default()
        })
        .await?;
    let mut out: HashMap<Uuid, Stamps> = HashMap::new();
    let mut messages = consumer.messages().await?;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await? {
        let msg = msg?;
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (at, pending) = (info.published, info.pending);
        let task = match subjects::parse(&msg.subject) {
            Some(subjects::Parsed {
                task: Some(task), ..
            }) => Some(task),
            // The ledger subject names no task: its event does.
            Some(_) => common::Event::from_json_without_serials(&msg.payload)
                .ok()
                .and_then(|e| e.task_id()),
            None => None,
        };
        if let (Some(task), Some(p)) = (task, subjects::parse(&msg.subject)) {
            let s = out.entry(task).or_default();
            match p.kind {
                Kind::Requested => s.requested = Some(at),
                Kind::Reserved => s.reserved = Some(at),
                Kind::Generated => {
                    s.first_batch.get_or_insert(at);
                    s.last_batch = Some(at);
                }
                Kind::Completed | Kind::Failed => s.completed = Some(at),
            }
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Stamps of one task, the only one of its model, from a few direct gets (for a big task,
/// whose batches are not worth reading back).
pub async fn of_task(nats_url: &str, model: &str, task: Uuid) -> anyhow::Result<Stamps> {
    let stream = stream(nats_url).await?;
    let last = |subject: String| {
        let stream = stream.clone();
        async move {
            stream
                .direct_get_last_for_subject(subject)
                .await
                .ok()
                .map(|m| m.time)
        }
    };
    let generated = subjects::generated(model, task);
    Ok(Stamps {
        requested: last(subjects::requested(model, task)).await,
        reserved: last(subjects::reserved(model)).await,
        first_batch: stream
            .direct_get_first_for_subject(generated.as_str())
            .await
            .ok()
            .map(|m| m.time),
        last_batch: last(generated).await,
        completed: last(subjects::task(Kind::Completed, model, task)).await,
    })
}

/// Seconds from `a` to `b`, when both are known.
pub fn between(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<f64> {
    Some((b? - a?).as_seconds_f64())
}
