//! The report: the machine, the settings, and for every figure the median over runs next to
//! its budget and the old service; printed as a table and written as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::figures::{number, Results, Series};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
    pub nats_server: Option<String>,
}

impl Machine {
    pub fn probe(nats_server: Option<String>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024;
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            nats_server,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub target: String,
    pub runs: usize,
    pub parts: String,
    pub concurrency: usize,
    pub duration_s: u64,
    pub tasks: usize,
    pub task_size: u64,
    pub big: Vec<u64>,
    pub replay_events: u64,
    pub rss_interval_ms: u64,
}

impl Settings {
    pub fn of(config: &Config) -> Settings {
        Settings {
            target: config
                .url
                .clone()
                .unwrap_or_else(|| "a fresh stack per part and run".into()),
            runs: config.runs,
            parts: config
                .parts()
                .iter()
                .map(|p| format!("{p:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(","),
            concurrency: config.concurrency,
            duration_s: config.duration,
            tasks: config.tasks,
            task_size: config.task_size,
            big: config.big.clone(),
            replay_events: config.replay_events,
            rss_interval_ms: config.rss_interval_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    series: &'a Series,
    median: f64,
    min: f64,
    max: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<String>,
}

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub results: Results,
    pub notes: Vec<String>,
}

impl Report {
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nmachine: {} cpus ({}), {} MiB, kernel {}, {}",
            m.cpus,
            m.cpu_model,
            m.memory_mib,
            m.kernel,
            m.nats_server.as_deref().unwrap_or("nats-server ?")
        );
        let _ = writeln!(
            out,
            "runs: {} (median, min, max over runs); target: {}\n",
            self.settings.runs, self.settings.target
        );
        let head = [
            "figure",
            "median",
            "min",
            "max",
            "unit",
            "budget",
            "old service",
            "verdict",
        ];
        let rows: Vec<[String; 8]> = self
            .results
            .series
            .iter()
            .map(|s| {
                [
                    s.label.clone(),
                    number(s.median()),
                    number(s.min()),
                    number(s.max()),
                    s.unit.to_owned(),
                    s.budget_text(),
                    s.old_service.map(number).unwrap_or_default(),
                    s.verdict().unwrap_or_default(),
                ]
            })
            .collect();
        let mut widths = head.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i == 0 || i >= 4 {
                    let _ = write!(l, "{c:<w$}  ");
                } else {
                    let _ = write!(l, "{c:>w$}  ");
                }
            }
            l.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&head.map(String::from)));
        let _ = writeln!(out, "{}", line(&widths.map(|w| "-".repeat(w))));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let figures: Vec<Row<'_>> = self
            .results
            .series
            .iter()
            .map(|s| Row {
                series: s,
                median: s.median(),
                min: s.min(),
                max: s.max(),
                verdict: s.verdict(),
            })
            .collect();
        serde_json::json!({
            "machine": self.machine,
            "settings": self.settings,
            "figures": figures,
            "notes": self.notes,
        })
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}
