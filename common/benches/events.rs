//! Event encoding and decoding on the hot paths: the generator encoding a 10,000-serial batch,
//! the projection decoding events without their serials, a download parsing a batch in place.

use std::hint::black_box;

use common::events::{BorrowedBatch, EventData, GenerateRequested, GeneratedBatch, TaskCompleted};
use common::serial::SerialFormatter;
use common::{Event, Format};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use time::OffsetDateTime;
use uuid::Uuid;

const SERIALS: u64 = 10_000;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn batch_json(formatter: &SerialFormatter, task_id: Uuid) -> Vec<u8> {
    let mut out = Vec::new();
    GeneratedBatch {
        source: "/sn/generator",
        task_id,
        code_model: "0111",
        batch: 3,
        first_number: 30_001,
        count: SERIALS,
        formatter,
        traceparent: Some(TRACEPARENT),
    }
    .encode(OffsetDateTime::now_utc(), &mut out);
    out
}

fn small_events(task_id: Uuid) -> (Vec<u8>, Vec<u8>) {
    let requested = Event::new(
        "/sn/gateway",
        EventData::Requested(GenerateRequested {
            task_id,
            code_model: "0111".into(),
            number: None,
            count: 10,
            format: Format::default().into(),
            requested_at: OffsetDateTime::now_utc(),
            idempotency_key: None,
        }),
    )
    .with_traceparent(Some(TRACEPARENT.into()));
    let completed = Event::new(
        "/sn/generator",
        EventData::Completed(TaskCompleted {
            task_id,
            code_model: "0111".into(),
            count: 10,
            first_serial: "011100000001".into(),
            last_serial: "011100000010".into(),
            batches: 1,
        }),
    );
    (requested.to_json(), completed.to_json())
}

fn encode(c: &mut Criterion) {
    let formatter = SerialFormatter::new("0111", Format::default());
    let task_id = Uuid::new_v4();
    let mut group = c.benchmark_group("batch_encode");
    group.throughput(Throughput::Elements(SERIALS));
    let mut out = Vec::with_capacity(batch_json(&formatter, task_id).len());
    let now = OffsetDateTime::now_utc();
    group.bench_function("generated_batch_10k", |b| {
        b.iter(|| {
            out.clear();
            GeneratedBatch {
                source: "/sn/generator",
                task_id,
                code_model: "0111",
                batch: 3,
                first_number: black_box(30_001),
                count: SERIALS,
                formatter: &formatter,
                traceparent: Some(TRACEPARENT),
            }
            .encode(now, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let formatter = SerialFormatter::new("0111", Format::default());
    let task_id = Uuid::new_v4();
    let batch = batch_json(&formatter, task_id);
    let (requested, completed) = small_events(task_id);

    let mut group = c.benchmark_group("batch_decode_10k");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("from_json", |b| {
        b.iter(|| Event::from_json(black_box(&batch)).unwrap())
    });
    group.bench_function("from_json_without_serials", |b| {
        b.iter(|| Event::from_json_without_serials(black_box(&batch)).unwrap())
    });
    group.bench_function("borrowed_batch_parse", |b| {
        b.iter(|| {
            BorrowedBatch::parse(black_box(&batch))
                .unwrap()
                .serials
                .len()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("small_event_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("requested_from_json", |b| {
        b.iter(|| Event::from_json(black_box(&requested)).unwrap())
    });
    group.bench_function("completed_from_json_without_serials", |b| {
        b.iter(|| Event::from_json_without_serials(black_box(&completed)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
