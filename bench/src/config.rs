//! The command line of `sn-bench`: what to measure, against which stack, how often.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// One part of the suite, named by the letter `--only` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Part {
    /// Accepted POST /generate_sn per second at a fixed concurrency, with latency.
    A,
    /// POST -> SUCCESS latency of sequential small tasks, through the long-poll read.
    B,
    /// Time from POST until every serial of a big task is downloaded.
    C,
    /// Peak RSS of gateway and generator during the big tasks (runs part c's tasks).
    D,
    /// Projection replay rate of a fresh gateway on a stream of >= 1,000,000 events.
    E,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "sn-bench",
    version,
    about = "Measures the serial-number service end to end against its budgets"
)]
pub struct Config {
    /// Gateway of a running stack (e.g. http://127.0.0.1:8080). Without it, every part starts
    /// its own stack (nats-server with a temporary store, generator, gateway) per run.
    #[arg(long)]
    pub url: Option<String>,
    /// NATS of the running stack given by --url. Part e then replays that stream as it is in
    /// a fresh gateway; without it, part e uses a nats-server of its own.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Pid of the running gateway, for its RSS and CPU time (part d).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// Pid of the running generator, for its RSS and CPU time (part d).
    #[arg(long)]
    pub generator_pid: Option<u32>,
    /// Parts to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "a,b,c,d,e")]
    pub only: Vec<Part>,
    /// Repetitions of every part; the report gives the median (and min, max).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Part a: clients POSTing at once, each on its own keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Part a: seconds measured (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Part b: sequential tasks measured (after 10 of warm-up).
    #[arg(long, default_value_t = 200)]
    pub tasks: usize,
    /// Part b: serials per task.
    #[arg(long, default_value_t = 10)]
    pub task_size: u64,
    /// Part c: serials of each big task, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub big: Vec<u64>,
    /// Part c: the big tasks' models write their serials in random order (FF1 under a
    /// SERIAL_KEY the started stack gets; a running stack needs its own).
    #[arg(long)]
    pub random_order: bool,
    /// Part e: events published to the stream before the fresh gateway starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: u64,
    /// Part d: milliseconds between two RSS samples.
    #[arg(long, default_value_t = 5)]
    pub rss_interval_ms: u64,
    /// Folder holding the `gateway` and `generator` binaries (default: sn-bench's own folder,
    /// i.e. the same target directory and profile).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The nats-server binary.
    #[arg(long, env = "NATS_SERVER_BIN", default_value = "nats-server")]
    pub nats_server: String,
    /// JetStream's `sync_interval` for the nats-server sn-bench starts (`always`, or a
    /// duration such as `10s`); without it, the server's default (fsync every 2 minutes).
    #[arg(long)]
    pub nats_sync: Option<String>,
    /// RUST_LOG of the services sn-bench starts.
    #[arg(long, default_value = "info")]
    pub service_log: String,
    /// Run the services sn-bench starts under this command, e.g. a profiler:
    /// "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p". They are stopped with
    /// SIGTERM so it can write its output.
    #[arg(long)]
    pub wrap: Option<String>,
    /// Keep the temporary folders (stores, sled logs, service logs) of the stacks started.
    #[arg(long)]
    pub keep: bool,
}

impl Config {
    /// The parts to run, in suite order, each once.
    pub fn parts(&self) -> Vec<Part> {
        let mut parts = self.only.clone();
        parts.sort();
        parts.dedup();
        parts
    }

    pub fn wants(&self, part: Part) -> bool {
        self.only.contains(&part)
    }
}
