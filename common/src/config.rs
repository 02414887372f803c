//! Settings both binaries share, as clap argument groups with their environment variables.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::nats::StreamSettings;

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server(s) to connect to, comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Replicas of the SN stream when this service creates it.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// JetStream duplicate window of the SN stream, in seconds.
    #[arg(long, env = "DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
}

impl NatsArgs {
    pub fn stream(&self) -> StreamSettings {
        StreamSettings {
            replicas: self.stream_replicas.max(1),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs.max(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log output: text or json (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint (e.g. http://jaeger:4318); tracing export is off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Service name reported in traces.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

/// Serials per task, shared by both services.
pub const DEFAULT_MAX_COUNT: u64 = 10_000_000;

/// Loads `.env` from the working directory, if there is one, before clap reads the
/// environment. Variables already set win.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}
