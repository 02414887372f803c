//! Part e: how fast a fresh gateway is ready on a long stream. A stream of `replay_events`
//! events (a 10-serial task's four: requested, reserved, one generated batch, completed; over
//! 16 models) is published straight to JetStream once, with acks pipelined, and a first
//! gateway folds it and stores a snapshot of its views. Then every run starts two gateways on
//! it, one after the other, and times each from its spawn until `/readyz` answers 200, which
//! it does once the projection has caught up with the stream:
//! - cold: snapshots off, the whole stream folded;
//! - from the snapshot: the views loaded from the snapshot, the events after it folded.
//!
//! The stream lives on a nats-server of its own, so no generator takes the synthetic
//! requests. With `--url` and `--nats-url`, the running stack's stream is replayed as it is.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use common::events::{EventData, GenerateRequested, GeneratedBatch, RangeReserved, TaskCompleted};
use common::serial::SerialFormatter;
use common::{subjects, Event, Format};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::figures::{Budget, Figure};
use crate::rss;
use crate::stack::{free_ports, Binaries, Folder, Nats, Service};

/// Publishes awaiting their ack at once.
const WINDOW: usize = 4096;
const MODELS: usize = 16;
const SERIALS_PER_TASK: u64 = 10;
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// The stream a fresh gateway replays.
pub struct Fixture {
    pub nats_url: String,
    pub events: u64,
    pub published_per_s: Option<f64>,
    nats: Option<Nats>,
    _folder: Option<Folder>,
}

impl Fixture {
    /// A nats-server of its own holding at least `events` events.
    pub async fn publish(bins: &Binaries, events: u64) -> anyhow::Result<Fixture> {
        let folder = Folder::new("sn-bench-replay-", bins.keep)?;
        let [port] = free_ports()?;
        let nats = Nats::start(bins, folder.path(), port)?;
        let client = async_nats::connect(&nats.url).await?;
        let js = jetstream::new(client.clone());
        common::nats::ensure_stream(&js, common::nats::StreamSettings::default()).await?;
        let started = Instant::now();
        let published = publish(&js, events).await?;
        client.flush().await?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("  published {published} events in {secs:.2} s");
        store_snapshot(bins, &nats.url, &js).await?;
        Ok(Fixture {
            nats_url: nats.url.clone(),
            events: published,
            published_per_s: Some(published as f64 / secs),
            nats: Some(nats),
            _folder: Some(folder),
        })
    }

    /// The stream of a running stack, as it is.
    pub async fn existing(nats_url: &str) -> anyhow::Result<Fixture> {
        let js = jetstream::new(async_nats::connect(nats_url).await?);
        let mut stream = js
            .get_stream(subjects::STREAM)
            .await
            .context("the running stack has no SN stream")?;
        let events = stream.info().await?.state.messages;
        Ok(Fixture {
            nats_url: nats_url.to_owned(),
            events,
            published_per_s: None,
            nats: None,
            _folder: None,
        })
    }
}

/// A gateway folds the whole stream and stores a snapshot of its views; waits for it.
async fn store_snapshot(
    bins: &Binaries,
    nats_url: &str,
    js: &jetstream::Context,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let folder = Folder::new("sn-bench-gateway-", bins.keep)?;
    let [port] = free_ports()?;
    let mut gateway = Service::gateway(bins, nats_url, folder.path(), port, &[])?;
    gateway.wait_ready(READY_TIMEOUT).await?;
    let last = js
        .get_stream(subjects::STREAM)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let store = js.get_object_store(subjects::VIEWS_BUCKET).await?;
    loop {
        let at = store
            .info(subjects::VIEWS_OBJECT)
            .await
            .ok()
            .and_then(|i| i.metadata.get("position")?.parse::<u64>().ok());
        if at == Some(last) {
            break;
        }
        gateway.proc.check_alive()?;
        if started.elapsed() > READY_TIMEOUT {
            anyhow::bail!("no snapshot at {last}; log {}", gateway.proc.log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "  views snapshot stored in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One cold gateway folding the whole stream, then one starting from the snapshot.
pub async fn run(fixture: &mut Fixture, bins: &Binaries) -> anyhow::Result<Vec<Figure>> {
    let mut figures = start(fixture, bins, Start::Cold).await?;
    figures.extend(start(fixture, bins, Start::FromSnapshot).await?);
    // Published once per invocation: reported with the first run only.
    if let Some(rate) = fixture.published_per_s.take() {
        figures.push(Figure::new(
            "e.publish_events_per_s",
            "e. events published per s (setup, pipelined acks)",
            "1/s",
            rate,
        ));
    }
    Ok(figures)
}

#[derive(Clone, Copy, PartialEq)]
enum Start {
    Cold,
    FromSnapshot,
}

/// One fresh gateway, timed until ready.
async fn start(fixture: &Fixture, bins: &Binaries, how: Start) -> anyhow::Result<Vec<Figure>> {
    let folder = Folder::new("sn-bench-gateway-", bins.keep)?;
    let nats_pid = fixture.nats.as_ref().map(|n| n.proc.pid());
    let nats_before = nats_pid.and_then(rss::cpu_ticks);
    let [port] = free_ports()?;
    let env: &[(&str, &str)] = match how {
        Start::Cold => &[("SNAPSHOT_EVERY", "0")],
        Start::FromSnapshot => &[],
    };
    let mut gateway = Service::gateway(bins, &fixture.nats_url, folder.path(), port, env)?;
    let ready = gateway.wait_ready(READY_TIMEOUT).await?;
    let pid = gateway.proc.pid();
    let rss = rss::status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let cpu = rss::cpu_ticks(pid).unwrap_or(0) as f64 / rss::clock_ticks();
    let secs = ready.as_secs_f64();
    let nats_cpu = match (nats_pid.and_then(rss::cpu_ticks), nats_before) {
        (Some(after), Some(before)) => Some((after - before) as f64 / rss::clock_ticks()),
        _ => None,
    };
    let (key, what) = match how {
        Start::Cold => ("e", "cold, whole stream folded"),
        Start::FromSnapshot => ("e.snapshot", "from the views snapshot"),
    };
    let rate = Figure::new(
        format!("{key}.replay_events_per_s"),
        format!("e. ready rate, {what}"),
        "1/s",
        fixture.events as f64 / secs,
    );
    let mut figures = vec![
        match how {
            // The budget is for a start; a cold fold is reported beside it.
            Start::FromSnapshot => rate.budget(Budget::AtLeast(500_000.0)),
            Start::Cold => rate,
        },
        Figure::new(
            format!("{key}.replay_s"),
            format!("e. gateway ready on {} events, {what}", fixture.events),
            "s",
            secs,
        ),
        Figure::new(
            format!("{key}.gateway_rss_mib"),
            format!("e. gateway peak RSS when ready, {what}"),
            "MiB",
            rss,
        ),
        Figure::new(
            format!("{key}.gateway_cpu_s"),
            format!("e. gateway CPU seconds to be ready, {what}"),
            "s",
            cpu,
        ),
    ];
    if let Some(cpu) = nats_cpu {
        figures.push(Figure::new(
            format!("{key}.nats_cpu_s"),
            format!("e. nats-server CPU seconds meanwhile, {what}"),
            "s",
            cpu,
        ));
    }
    Ok(figures)
}

/// Publishes tasks of four events each until `events` are on the stream; returns how many.
async fn publish(js: &jetstream::Context, events: u64) -> anyhow::Result<u64> {
    let models: Vec<String> = (0..MODELS).map(|i| format!("R{i:03}")).collect();
    let formatters: Vec<SerialFormatter> = models
        .iter()
        .map(|m| SerialFormatter::new(m, Format::default()))
        .collect();
    let mut next = [1u64; MODELS];
    let mut inflight = VecDeque::with_capacity(WINDOW);
    let mut sent = 0u64;
    let mut task = 0usize;
    while sent < events {
        let m = task % MODELS;
        task += 1;
        let (model, formatter) = (&models[m], &formatters[m]);
        let first = next[m];
        next[m] += SERIALS_PER_TASK;
        for (subject, id, payload) in task_events(model, formatter, first) {
            let publish = common::nats::event_publish(&id, payload.into(), None);
            inflight.push_back(js.send_publish(subject, publish).await?);
            if inflight.len() >= WINDOW {
                if let Some(ack) = inflight.pop_front() {
                    ack.await?;
                }
            }
            sent += 1;
        }
    }
    while let Some(ack) = inflight.pop_front() {
        ack.await?;
    }
    Ok(sent)
}

/// The four events of one finished 10-serial task: (subject, event id, CloudEvent JSON).
fn task_events(
    model: &str,
    formatter: &SerialFormatter,
    first: u64,
) -> [(String, String, Vec<u8>); 4] {
    let task_id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let last = first + SERIALS_PER_TASK - 1;
    let event = |data: EventData, source: &str| {
        let e = Event::new(source, data);
        (e.nats_subject(), e.id.clone(), e.to_json())
    };
    let requested = event(
        EventData::Requested(GenerateRequested {
            task_id,
            code_model: model.to_owned(),
            number: None,
            count: SERIALS_PER_TASK,
            format: Format::default().into(),
            requested_at: now,
            idempotency_key: None,
        }),
        "/sn/gateway",
    );
    let reserved = event(
        EventData::Reserved(RangeReserved {
            task_id,
            code_model: model.to_owned(),
            first,
            last,
            scheme: Some(Format::default()),
            automatic: true,
        }),
        "/sn/generator",
    );
    let batch = GeneratedBatch {
        source: "/sn/generator",
        task_id,
        code_model: model,
        batch: 0,
        first_number: first,
        count: SERIALS_PER_TASK,
        formatter,
        traceparent: None,
    };
    let mut payload = Vec::with_capacity(512);
    batch.encode(now, &mut payload);
    let generated = (subjects::generated(model, task_id), batch.id(), payload);
    let completed = event(
        EventData::Completed(TaskCompleted {
            task_id,
            code_model: model.to_owned(),
            count: SERIALS_PER_TASK,
            first_serial: formatter.to_string(first),
            last_serial: formatter.to_string(last),
            batches: 1,
        }),
        "/sn/generator",
    );
    [requested, reserved, generated, completed]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_tasks_are_valid_events() {
        let f = SerialFormatter::new("R000", Format::default());
        let events = task_events("R000", &f, 11);
        let kinds: Vec<_> = events
            .iter()
            .map(|(subject, _, payload)| {
                let e = Event::from_json(payload).unwrap();
                assert_eq!(&e.nats_subject(), subject);
                e.data.kind()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                subjects::Kind::Requested,
                subjects::Kind::Reserved,
                subjects::Kind::Generated,
                subjects::Kind::Completed
            ]
        );
        let Ok(Event {
            data: EventData::Generated(g),
            ..
        }) = Event::from_json(&events[2].2)
        else {
            panic!("not a batch");
        };
        assert_eq!(g.serials.first().map(String::as_str), Some("R00000000011"));
        assert_eq!(g.serials.len(), 10);
    }
}
