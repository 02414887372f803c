//! Requests that ran out of deliveries: JetStream stops redelivering a request after
//! `MAX_DELIVER` attempts and says so with an advisory. A generator that crashed on every
//! attempt never got to record the failure, so the advisory does: the task ends in FAILURE
//! (`internal`) instead of staying PENDING or STARTED for ever.

use common::events::{codes, EventData};
use common::{subjects, Event};
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::task::Worker;

#[derive(Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

fn advisory_subject() -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        subjects::STREAM,
        subjects::GENERATOR_CONSUMER
    )
}

pub async fn run(w: Worker, client: async_nats::Client, cancel: CancellationToken) {
    // A queue group: one replica handles each advisory.
    let mut sub = match client
        .queue_subscribe(advisory_subject(), subjects::GENERATOR_CONSUMER.to_owned())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to max-deliveries advisories");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return,
            // Nothing can be recorded here any more: leave the queue group (the subscription
            // is dropped), so the other replicas take every advisory.
            _ = w.log.failed() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&msg.payload) else {
            continue;
        };
        if let Err(e) = fail_request(&w, advisory).await {
            tracing::warn!(error = %e, "cannot record a request that ran out of deliveries");
        }
    }
}

async fn fail_request(w: &Worker, advisory: MaxDeliveries) -> anyhow::Result<()> {
    let payload = w.stream.message(advisory.stream_seq).await?;
    let Ok(Event {
        data: EventData::Requested(req),
        ..
    }) = Event::from_json(&payload)
    else {
        return Ok(());
    };
    // Finished after all (its ack was lost): nothing to record.
    let logged = w.log.task_entries(req.task_id)?;
    if logged
        .iter()
        .any(|(_, e)| subjects::parse(&e.subject).is_some_and(|p| p.kind.is_final()))
    {
        return Ok(());
    }
    let message = format!(
        "gave up after {} deliveries without an answer",
        advisory.deliveries
    );
    crate::task::fail(w, &req, codes::INTERNAL, message).await?;
    metrics::counter!("sn_tasks_total", "state" => "failure").increment(1);
    Ok(())
}
