//! The gateway's configuration: one clap struct, every flag also an environment variable.

use std::net::SocketAddr;

use clap::Parser;
use common::config::{NatsArgs, TelemetryArgs, DEFAULT_MAX_COUNT};

#[derive(Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP API of the serial-number service"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// When set, POST and DELETE need `Authorization: Bearer <token>`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Most serials one task may ask for.
    #[arg(long, env = "MAX_COUNT", default_value_t = DEFAULT_MAX_COUNT)]
    pub max_count: u64,
    /// Events folded between two snapshots of the views (object store `SN_VIEWS`); a gateway
    /// starts from the latest snapshot. 0 turns snapshots off: every start folds the stream.
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 100_000)]
    pub snapshot_every: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats", &self.nats)
            .field("telemetry", &self.telemetry)
            .field("http_addr", &self.http_addr)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("max_count", &self.max_count)
            .field("snapshot_every", &self.snapshot_every)
            .finish()
    }
}
