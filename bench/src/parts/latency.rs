//! Part b: POST -> SUCCESS latency of sequential small tasks. Each task is POSTed, then read
//! with the long-poll `GET /tasks/{id}?wait=5`, which the gateway answers as soon as the task
//! is SUCCESS or FAILURE; the clock stops when that answer is in. Ten tasks warm up first.
//! When the stack's NATS is known, the stream's stamps split the span into stages.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::{fresh_model, Api};
use crate::config::Config;
use crate::figures::{Budget, Figure};
use crate::parts::Target;
use crate::stats::{percentile, sorted};
use crate::timeline::{self, between};

const WARM_UP: usize = 10;
const TASK_TIMEOUT: Duration = Duration::from_secs(30);

/// One measured task, by the client's clock.
struct Sample {
    id: String,
    sent: OffsetDateTime,
    seen: OffsetDateTime,
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Vec<Figure>> {
    let api = &target.api;
    let model = fresh_model();
    let body = Api::body(&model, config.task_size);
    for _ in 0..WARM_UP {
        let id = api.post(body.clone()).await?;
        api.wait_success(&id, Duration::ZERO, TASK_TIMEOUT).await?;
    }
    let reads_before = api.reads.load(Ordering::Relaxed);
    let mut total_ms = Vec::with_capacity(config.tasks);
    let mut post_ms = Vec::with_capacity(config.tasks);
    let mut samples = Vec::with_capacity(config.tasks);
    for _ in 0..config.tasks.max(1) {
        let sent_at = OffsetDateTime::now_utc();
        let sent = Instant::now();
        let id = api.post(body.clone()).await?;
        post_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        api.wait_success(&id, Duration::ZERO, TASK_TIMEOUT).await?;
        total_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        samples.push(Sample {
            id,
            sent: sent_at,
            seen: OffsetDateTime::now_utc(),
        });
    }
    let reads = api.reads.load(Ordering::Relaxed) - reads_before;
    let n = total_ms.len() as f64;
    let (total, post) = (sorted(total_ms), sorted(post_ms));
    let size = config.task_size;
    let mut figures = vec![
        Figure::new(
            "b.success_p50_ms",
            format!("b. POST->SUCCESS p50 ({size} serials)"),
            "ms",
            percentile(&total, 50.0),
        )
        .budget(Budget::AtMost(1.5))
        .old(18.0),
        Figure::new(
            "b.success_p95_ms",
            format!("b. POST->SUCCESS p95 ({size} serials)"),
            "ms",
            percentile(&total, 95.0),
        ),
        Figure::new(
            "b.success_p99_ms",
            format!("b. POST->SUCCESS p99 ({size} serials)"),
            "ms",
            percentile(&total, 99.0),
        )
        .budget(Budget::AtMost(4.0))
        .old(26.0),
        Figure::new(
            "b.post_p50_ms",
            "b. POST (202) alone p50",
            "ms",
            percentile(&post, 50.0),
        ),
        Figure::new(
            "b.reads_per_task",
            "b. GET /tasks/{id} reads per task",
            "count",
            reads as f64 / n,
        ),
    ];
    if let Some(url) = &target.nats_url {
        figures.extend(stages(url, &model, &samples).await?);
    }
    Ok(figures)
}

/// p50 and p99 of each stage of the measured tasks, from the stream's stamps.
async fn stages(nats_url: &str, model: &str, samples: &[Sample]) -> anyhow::Result<Vec<Figure>> {
    let stamps = timeline::of_model(nats_url, model).await?;
    let mut stages: [(&str, &str, Vec<f64>); 5] = [
        ("intake", "POST sent -> request stored", Vec::new()),
        ("reserve", "request stored -> range reserved", Vec::new()),
        ("batch", "range reserved -> batch stored", Vec::new()),
        ("complete", "batch stored -> completion stored", Vec::new()),
        (
            "notice",
            "completion stored -> client sees SUCCESS",
            Vec::new(),
        ),
    ];
    for s in samples {
        let Some(t) = Uuid::parse_str(&s.id).ok().and_then(|id| stamps.get(&id)) else {
            continue;
        };
        let spans = [
            between(Some(s.sent), t.requested),
            between(t.requested, t.reserved),
            between(t.reserved, t.last_batch),
            between(t.last_batch, t.completed),
            between(t.completed, Some(s.seen)),
        ];
        for ((_, _, v), span) in stages.iter_mut().zip(spans) {
            if let Some(secs) = span {
                v.push(secs * 1e3);
            }
        }
    }
    let mut figures = Vec::new();
    for (key, label, values) in stages {
        let v = sorted(values);
        for p in [50.0, 99.0] {
            figures.push(Figure::new(
                format!("b.stage.{key}.p{p}_ms"),
                format!("b. stage p{p}: {label}"),
                "ms",
                percentile(&v, p),
            ));
        }
    }
    Ok(figures)
}
