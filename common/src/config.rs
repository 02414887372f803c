//! Settings both binaries share, as clap argument groups with their environment variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::nats::{Credentials, NatsError, StreamSettings};

#[derive(Clone, Args)]
pub struct NatsArgs {
    /// NATS server(s) to connect to, comma-separated (`tls://` for TLS).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS credentials file (user JWT and nkey seed), as `nsc` writes it.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with NATS_PASSWORD).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password of NATS_USER.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// File holding an nkey seed (`SU...`) to authenticate with.
    #[arg(long, env = "NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// CA certificate (PEM) that signed the NATS servers' certificates; requires TLS.
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with NATS_KEY).
    #[arg(long, env = "NATS_CERT")]
    pub nats_cert: Option<PathBuf>,
    /// Private key (PEM) of NATS_CERT.
    #[arg(long, env = "NATS_KEY")]
    pub nats_key: Option<PathBuf>,
    /// Replicas of the SN stream when this service creates it.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// JetStream duplicate window of the SN stream, in seconds.
    #[arg(long, env = "DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.nats_url)
            .field("nats_creds", &self.nats_creds)
            .field("nats_user", &self.nats_user)
            .field(
                "nats_password",
                &self.nats_password.as_ref().map(|_| "<redacted>"),
            )
            .field("nats_nkey", &self.nats_nkey)
            .field("nats_ca", &self.nats_ca)
            .field("nats_cert", &self.nats_cert)
            .field("nats_key", &self.nats_key)
            .field("stream_replicas", &self.stream_replicas)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .finish()
    }
}

impl NatsArgs {
    /// How to authenticate and which certificates to trust; refuses half-given settings.
    pub fn credentials(&self) -> Result<Credentials, NatsError> {
        let pair = |a: bool, b: bool, what: &str| match a == b {
            true => Ok(()),
            false => Err(NatsError::Settings(what.to_owned())),
        };
        pair(
            self.nats_user.is_some(),
            self.nats_password.is_some(),
            "NATS_USER and NATS_PASSWORD go together",
        )?;
        pair(
            self.nats_cert.is_some(),
            self.nats_key.is_some(),
            "NATS_CERT and NATS_KEY go together",
        )?;
        Credentials::new(
            self.nats_creds.clone(),
            self.nats_user.clone().zip(self.nats_password.clone()),
            self.nats_nkey.clone(),
            self.nats_ca.clone(),
            self.nats_cert.clone().zip(self.nats_key.clone()),
        )
    }

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

/// The OTLP transports built in, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log output: text or json (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP endpoint (e.g. http://jaeger:4318 for `http/protobuf`, http://jaeger:4317 for
    /// `grpc`, or https://); tracing export is off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// CA certificate(s) (PEM) trusted for an https:// OTLP endpoint, beside the system's
    /// roots: for a collector with a private CA.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    pub otlp_certificate: Option<PathBuf>,
    /// OTLP transport: `http/protobuf` or `grpc`. Any other value (`http/json`) is refused
    /// at start rather than sent to a port that speaks something else.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value_t = OtlpProtocol::HttpProtobuf
    )]
    pub otlp_protocol: OtlpProtocol,
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
