//! `sn-bench`: the serial-number service measured end to end against its budgets.
//!
//! `config` says what to run; `stack` starts nats-server and the release services on
//! loopback (or `--url` names a running stack); each module of `parts` measures one thing
//! through the public HTTP API (`api`) and the stream, `rss` watches memory and CPU time,
//! and `report` prints the medians over runs next to the budgets and the old service.

pub mod api;
pub mod config;
pub mod figures;
pub mod parts;
pub mod report;
pub mod rss;
pub mod stack;
pub mod stats;
pub mod timeline;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{Config, Part};
use crate::figures::Results;
use crate::parts::{big_task, latency, replay, throughput, Target};
use crate::report::{Machine, Report, Settings};
use crate::stack::Binaries;

/// How long a running stack may take to finish part a's backlog.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);

pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let bins = Binaries::locate(config)?;
    let mut results = Results::default();
    let mut notes = Vec::new();
    let load_before = load_average();
    let mut fixture: Option<replay::Fixture> = None;
    let parts = config.parts();
    for run in 1..=config.runs.max(1) {
        for &part in &parts {
            // Part d measures during part c's tasks.
            if part == Part::D && parts.contains(&Part::C) {
                continue;
            }
            eprintln!("run {run}/{}: part {}", config.runs, letter(part));
            match part {
                Part::A => {
                    let target = Target::acquire(config, &bins).await?;
                    results.extend(throughput::run(&target, config).await?);
                    if target.is_remote() {
                        let took = throughput::drain(&target, DRAIN_TIMEOUT).await?;
                        eprintln!("  backlog worked off in {:.1} s", took.as_secs_f64());
                    }
                }
                Part::B => {
                    let target = Target::acquire(config, &bins).await?;
                    results.extend(latency::run(&target, config).await?);
                    note_polling(&target, "b", &mut notes);
                }
                Part::C | Part::D => {
                    for &size in &config.big {
                        let target = Target::acquire(config, &bins).await?;
                        results.extend(big_task::run(&target, config, size).await?);
                        note_polling(&target, "c", &mut notes);
                    }
                }
                Part::E => {
                    let mut fx = match fixture.take() {
                        Some(f) => f,
                        None => match (&config.url, &config.nats_url) {
                            (Some(_), Some(nats)) => replay::Fixture::existing(nats).await?,
                            _ => replay::Fixture::publish(&bins, config.replay_events).await?,
                        },
                    };
                    results.extend(replay::run(&mut fx, &bins).await?);
                    fixture = Some(fx);
                }
            }
        }
    }
    if let Some(sync) = &config.nats_sync {
        notes.push(format!(
            "the nats-server started ran with JetStream sync_interval: {sync}"
        ));
    }
    // Other work on the same cores skews every figure: the report says how busy they were.
    notes.push(format!(
        "load average (1, 5, 15 min) before: {load_before}; after: {}",
        load_average()
    ));
    let nats_version = if config.url.is_none() || parts.contains(&Part::E) {
        bins.nats_version()
    } else {
        None
    };
    Ok(Report {
        machine: Machine::probe(nats_version),
        settings: Settings::of(config),
        results,
        notes,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn letter(part: Part) -> &'static str {
    match part {
        Part::A => "a (accepted POST/s)",
        Part::B => "b (POST->SUCCESS latency)",
        Part::C => "c+d (big tasks, memory)",
        Part::D => "d (memory during big tasks)",
        Part::E => "e (projection replay)",
    }
}

/// Says so when the gateway answered `?wait=` reads before the task ended, i.e. the wait
/// was polling rather than a long-poll.
fn note_polling(target: &Target, part: &str, notes: &mut Vec<String>) {
    let early = target.api.early_answers.load(Ordering::Relaxed);
    if early == 0 {
        return;
    }
    let how = if part == "b" {
        "read again at once"
    } else {
        "read again after 1 ms"
    };
    let note = format!(
        "part {part}: the gateway answered GET /tasks/{{id}}?wait= before the task ended \
         (no long-poll), so unfinished tasks were {how}"
    );
    if !notes.contains(&note) {
        notes.push(note);
    }
}
