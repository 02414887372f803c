//! The generator's configuration: one clap struct, every flag also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use common::nats::NatsArgs;
use common::request::DEFAULT_MAX_COUNT;
use common::telemetry::TelemetryArgs;

#[derive(Debug, Parser)]
#[command(
    name = "generator",
    version,
    about = "Issues serial numbers from requests on the SN stream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the sled event log as NDJSON, one CloudEvent per line, in log order.
    Log {
        #[arg(long, env = "DATA_DIR", default_value = "./data/generator")]
        data_dir: PathBuf,
    },
    /// Exit 0 when GET /healthz on ADMIN_ADDR's port (on 127.0.0.1 for a wildcard address)
    /// answers 200 within 2 s, else 1: a container healthcheck without a shell or curl.
    Healthcheck,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Address of the admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// Folder of the sled event log.
    #[arg(long, env = "DATA_DIR", default_value = "./data/generator")]
    pub data_dir: PathBuf,
    /// Most serials one task may ask for.
    #[arg(long, env = "MAX_COUNT", default_value_t = DEFAULT_MAX_COUNT)]
    pub max_count: u64,
    #[command(flatten)]
    pub work: WorkConfig,
    #[command(flatten)]
    pub keys: common::serial::keys::KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkConfig {
    /// Requests processed at once by this replica.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Deliveries of one request before it ends in FAILURE (internal).
    #[arg(long, env = "MAX_DELIVER", default_value_t = 5)]
    pub max_deliver: i64,
    /// Seconds JetStream waits for an ack (or a progress ack) before redelivering a request.
    #[arg(long, env = "ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
    /// Upper bound of serials per generated event (each event also stays under 256 KiB).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 10_000)]
    pub batch_size: u64,
    /// Batches appended to the log per flush.
    #[arg(long, env = "BATCHES_PER_FLUSH", default_value_t = 8)]
    pub batches_per_flush: usize,
    /// Publishes awaiting their JetStream ack at once, per task.
    #[arg(long, env = "MAX_INFLIGHT", default_value_t = 64)]
    pub max_inflight: usize,
    /// Seconds one pull request for requests waits at the server before it is renewed.
    #[arg(long, env = "PULL_EXPIRES_SECS", default_value_t = 5)]
    pub pull_expires_secs: u64,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            concurrency: 16,
            max_deliver: 5,
            ack_wait_secs: 30,
            batch_size: 10_000,
            batches_per_flush: 8,
            max_inflight: 64,
            pull_expires_secs: 5,
        }
    }
}
