//! Parts c and d: one big task, from its POST until its last serial is downloaded
//! (`GET /tasks/{id}/serials`, counted while it streams, never held), with the peak RSS and
//! the CPU time of every process of the stack over that span. Then a second task of the same
//! size downloaded while it is generated: POST, and at once `GET .../serials?follow=true`.

use std::time::{Duration, Instant};

use anyhow::bail;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::{fresh_model, Api};
use crate::config::Config;
use crate::figures::{Budget, Figure};
use crate::parts::{size_label, Target};
use crate::rss::Watch;
use crate::timeline::{self, between};

/// Between two reads of an unfinished task when the gateway does not hold them.
const POLL_GAP: Duration = Duration::from_millis(1);
const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// A big task's request: a new model, in random order with `--random-order`.
fn body_of(model: &str, size: u64, config: &Config) -> bytes::Bytes {
    match config.random_order {
        true => Api::random_body(model, size),
        false => Api::body(model, size),
    }
}

/// A big task's label: its size, and `.random` for random-order serials.
fn label_of(size: u64, config: &Config) -> String {
    match config.random_order {
        true => format!("{}.random", size_label(size)),
        false => size_label(size),
    }
}

pub async fn run(target: &Target, config: &Config, size: u64) -> anyhow::Result<Vec<Figure>> {
    let api = &target.api;
    let model = fresh_model();
    let body = body_of(&model, size, config);
    let label = label_of(size, config);
    let watch = Watch::start(
        target.watched(),
        Duration::from_millis(config.rss_interval_ms.max(1)),
    );

    let sent_at = OffsetDateTime::now_utc();
    let sent = Instant::now();
    let id = api.post(body).await?;
    api.wait_success(&id, POLL_GAP, TASK_TIMEOUT).await?;
    let success = sent.elapsed();
    let seen_at = OffsetDateTime::now_utc();
    let got = api.download(&id).await?;
    let total = sent.elapsed();
    let usage = watch.finish();

    if got.lines != size {
        bail!("task {id}: downloaded {} lines, expected {size}", got.lines);
    }
    let download = total - success;
    let (total_budget, old) = match size {
        1_000_000 => (Some(0.175), Some(1.75)),
        10_000_000 => (Some(2.0), None),
        _ => (None, None),
    };
    // "POST until downloaded", measured one way or another, against the same budget.
    let total_figure = |key: &str, how: &str, secs: f64| {
        let mut t = Figure::new(
            format!("c.{label}.{key}"),
            format!("c. {label} serials: POST until downloaded{how}"),
            "s",
            secs,
        );
        if let Some(b) = total_budget {
            t = t.budget(Budget::AtMost(b));
        }
        if let Some(o) = old {
            t = t.old(o);
        }
        t
    };
    let mut figures = vec![
        total_figure("total_s", "", total.as_secs_f64()),
        Figure::new(
            format!("c.{label}.success_s"),
            format!("c. {label}: POST until SUCCESS"),
            "s",
            success.as_secs_f64(),
        ),
        Figure::new(
            format!("c.{label}.download_s"),
            format!("c. {label}: download"),
            "s",
            download.as_secs_f64(),
        ),
        Figure::new(
            format!("c.{label}.download_mib_s"),
            format!("c. {label}: download rate"),
            "MiB/s",
            got.bytes as f64 / 1048576.0 / download.as_secs_f64(),
        ),
    ];
    if let (Some(url), Ok(task)) = (&target.nats_url, Uuid::parse_str(&id)) {
        let s = timeline::of_task(url, &model, task).await?;
        for (key, label, span) in [
            (
                "intake",
                "POST sent -> request stored",
                between(Some(sent_at), s.requested),
            ),
            (
                "reserve",
                "request stored -> range reserved",
                between(s.requested, s.reserved),
            ),
            (
                "first_batch",
                "range reserved -> first batch stored",
                between(s.reserved, s.first_batch),
            ),
            (
                "batches",
                "first -> last batch stored",
                between(s.first_batch, s.last_batch),
            ),
            (
                "complete",
                "last batch -> completion stored",
                between(s.last_batch, s.completed),
            ),
            (
                "notice",
                "completion stored -> client sees SUCCESS",
                between(s.completed, Some(seen_at)),
            ),
        ] {
            if let Some(secs) = span {
                figures.push(Figure::new(
                    format!("c.{label_}.stage.{key}_s", label_ = label_of(size, config)),
                    format!("c. {} stage: {label}", label_of(size, config)),
                    "s",
                    secs,
                ));
            }
        }
    }
    for (w, u) in &usage {
        figures.push(Figure::new(
            format!("c.{label}.cpu.{}", w.name),
            format!("c. {label}: CPU seconds of {}", w.name),
            "s",
            u.cpu_s,
        ));
    }
    // Streamed while generated: the download runs alongside the generation.
    let sent = Instant::now();
    let followed = api.post(body_of(&fresh_model(), size, config)).await?;
    let got = api.download_query(&followed, "?follow=true").await?;
    let follow_total = sent.elapsed();
    if got.lines != size {
        bail!(
            "task {followed}: followed {} lines, expected {size}",
            got.lines
        );
    }
    figures.insert(
        1,
        total_figure(
            "follow_total_s",
            ", ?follow=true",
            follow_total.as_secs_f64(),
        ),
    );
    if config.wants(crate::config::Part::D) {
        let peak = |name: &str| {
            usage
                .iter()
                .find(|(w, _)| w.name == name)
                .map(|(_, u)| u.peak_mib())
        };
        let (gw, gen) = (peak("gateway"), peak("generator"));
        if let Some(v) = gw {
            figures.push(Figure::new(
                format!("d.{label}.rss_gateway_mib"),
                format!("d. {label}: peak RSS gateway"),
                "MiB",
                v,
            ));
        }
        if let Some(v) = gen {
            figures.push(Figure::new(
                format!("d.{label}.rss_generator_mib"),
                format!("d. {label}: peak RSS generator"),
                "MiB",
                v,
            ));
        }
        if let (Some(a), Some(b)) = (gw, gen) {
            let mut sum = Figure::new(
                format!("d.{label}.rss_sum_mib"),
                format!("d. {label}: peak RSS gateway + generator"),
                "MiB",
                a + b,
            );
            if size == 1_000_000 {
                sum = sum.budget(Budget::AtMost(40.0)).old(420.0);
            }
            figures.push(sum);
        }
        if let Some(v) = peak("nats") {
            figures.push(Figure::new(
                format!("d.{label}.rss_nats_mib"),
                format!("d. {label}: peak RSS nats-server"),
                "MiB",
                v,
            ));
        }
    }
    Ok(figures)
}
