//! The projection's fold, `Views::apply`, over a realistic mix: mostly 10-serial tasks
//! (requested, reserved, one batch, completed), some 100,000-serial tasks (ten batches), and a
//! few rejected ones (requested, failed). Measured on decoded events, and from the JSON as
//! the replay sees it (`Event::from_json_without_serials` + `apply`). Also the views snapshot
//! of that mix, written and read back.

use std::hint::black_box;

use common::events::{
    EventData, GenerateRequested, GeneratedBatch, RangeReserved, TaskCompleted, TaskFailed,
};
use common::serial::SerialFormatter;
use common::{Event, Format};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gateway::projection::Views;
use time::OffsetDateTime;
use uuid::Uuid;

const TASKS: u64 = 2_000;

/// The JSON of every event of the mix, in stream order.
fn stream() -> Vec<Vec<u8>> {
    let formatter = SerialFormatter::new("0111", Format::default());
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    let mut next = 1u64;
    for t in 0..TASKS {
        let task_id = Uuid::new_v4();
        let (count, per_batch) = if t % 20 == 19 {
            (100_000, 10_000)
        } else {
            (10, 10)
        };
        let ev = |data| Event::new("/sn/generator", data).to_json();
        out.push(ev(EventData::Requested(GenerateRequested {
            task_id,
            code_model: "0111".into(),
            number: None,
            count,
            format: Format::default().into(),
            requested_at: now,
            idempotency_key: (t % 4 == 0).then(|| format!("key-{t}")),
        })));
        if t % 50 == 49 {
            out.push(ev(EventData::Failed(TaskFailed {
                task_id,
                code_model: "0111".into(),
                code: "range_conflict".into(),
                message: "numbers overlap an issued range".into(),
            })));
            continue;
        }
        let first = next;
        next += count;
        out.push(ev(EventData::Reserved(RangeReserved {
            task_id,
            code_model: "0111".into(),
            first,
            last: first + count - 1,
            scheme: Some(Format::default()),
            automatic: true,
        })));
        for batch in 0..count / per_batch {
            // Small batches carry their serials; big ones too, but the fold never reads
            // them, so a short batch keeps the set in memory without changing the fold.
            let mut json = Vec::new();
            GeneratedBatch {
                source: "/sn/generator",
                task_id,
                code_model: "0111",
                batch,
                first_number: first + batch * per_batch,
                count: per_batch.min(10),
                formatter: &formatter,
                traceparent: None,
            }
            .encode(now, &mut json);
            out.push(json);
        }
        out.push(ev(EventData::Completed(TaskCompleted {
            task_id,
            code_model: "0111".into(),
            count,
            first_serial: formatter.to_string(first),
            last_serial: formatter.to_string(first + count - 1),
            batches: count / per_batch,
        })));
    }
    out
}

fn fold(c: &mut Criterion) {
    let raw = stream();
    let events: Vec<Event> = raw
        .iter()
        .map(|j| Event::from_json_without_serials(j).unwrap())
        .collect();
    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("apply", |b| {
        b.iter_batched(
            Views::default,
            |mut views| {
                for (seq, e) in events.iter().enumerate() {
                    black_box(views.apply(seq as u64 + 1, e));
                }
                views
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("decode_and_apply", |b| {
        b.iter_batched(
            Views::default,
            |mut views| {
                for (seq, json) in raw.iter().enumerate() {
                    let e = Event::from_json_without_serials(json).unwrap();
                    black_box(views.apply(seq as u64 + 1, &e));
                }
                views
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A snapshot of the folded views: writing it, and reading it back into views.
fn snapshot(c: &mut Criterion) {
    let mut views = Views::default();
    for (seq, json) in stream().iter().enumerate() {
        views.apply(
            seq as u64 + 1,
            &Event::from_json_without_serials(json).unwrap(),
        );
    }
    let bytes = postcard::to_stdvec(&views).unwrap();
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Elements(views.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| postcard::to_stdvec(black_box(&views)).unwrap())
    });
    group.bench_function("decode", |b| {
        b.iter(|| postcard::from_bytes::<Views>(black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, fold, snapshot);
criterion_main!(benches);
