//! Logs and traces for every binary, set up in one place.
//!
//! [`TelemetryArgs`] holds the settings (`LOG_FORMAT`, the `OTEL_*` variables); [`init`]
//! installs the global subscriber from them: the `RUST_LOG` filter, log lines as text or JSON
//! (`log_format`), and span export over OTLP, by HTTP here or by gRPC (`otlp_grpc`). The
//! `propagation` functions carry the W3C trace context through NATS headers and CloudEvents,
//! so one trace follows a request from the gateway through the generator.

mod log_format;
mod otlp_grpc;
mod propagation;

pub use propagation::{current_traceparent, extract, inject_current, set_parent_from};

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::format::{Format, JsonFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use log_format::{JsonWithTrace, TextFields};

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

/// Flushes and stops the trace exporter when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("cannot flush traces: {e}");
            }
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), text or JSON lines,
/// and OTLP export when an endpoint is configured.
pub fn init(default_service: &str, args: &TelemetryArgs) -> anyhow::Result<TelemetryGuard> {
    install_crypto_provider();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let service = args
        .service_name
        .clone()
        .unwrap_or_else(|| default_service.to_owned());

    // Spans always get W3C ids, so trace context travels in every event even when nothing
    // is exported; the exporter is added only when an endpoint is configured.
    let endpoint = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty());
    let provider = provider(
        &service,
        endpoint,
        args.otlp_protocol,
        args.otlp_certificate.as_deref(),
    )?;
    // Per span, only what a trace is read for: no busy/idle timing on every enter and exit,
    // no thread attributes, and no OpenTelemetry context stack kept beside tracing's (trace
    // context is always taken from the tracing span here, never from OpenTelemetry's current
    // context). At thousands of requests a second each of those is measurable.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service.clone()))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false);

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    match args.log_format {
        // Colour only for a terminal: escape codes in a file or a pipe are noise, and cost
        // time on every span's fields.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(TextFields)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonWithTrace(Format::default().json().flatten_event(true))),
            )
            .try_init()?,
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Makes ring the process's rustls crypto provider, for every TLS client built after it
/// (the OTLP exporter's; async-nats picks ring too). reqwest is built without a provider of
/// its own (its default, aws-lc-rs, is not compiled in) and panics when it builds a client
/// in a process that installed none: every binary that uses reqwest calls this first.
/// Installing twice is harmless: the first one stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The tracer provider. Its sampler comes from `OTEL_TRACES_SAMPLER` and
/// `OTEL_TRACES_SAMPLER_ARG`, which the SDK reads when the builder is made (default
/// `parentbased_always_on`).
fn provider(
    service: &str,
    endpoint: Option<&str>,
    protocol: OtlpProtocol,
    ca: Option<&Path>,
) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else {
        return Ok(builder.build());
    };
    let ca_pem = ca.map(read_ca).transpose()?;
    Ok(match protocol {
        OtlpProtocol::HttpProtobuf => builder.with_batch_exporter(http_exporter(endpoint, ca_pem)?),
        OtlpProtocol::Grpc => {
            builder.with_batch_exporter(otlp_grpc::GrpcExporter::new(endpoint, ca_pem)?)
        }
    }
    .build())
}

/// OTLP/HTTP with protobuf bodies, posted to `<endpoint>/v1/traces`.
fn http_exporter(
    endpoint: &str,
    ca_pem: Option<Vec<u8>>,
) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let endpoint = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    // The blocking HTTP client owns a runtime of its own; build it off the async threads.
    let client = std::thread::spawn(move || reqwest_blocking_client(ca_pem))
        .join()
        .map_err(|_| anyhow::anyhow!("cannot build the OTLP HTTP client"))??;
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client)
        .with_endpoint(endpoint)
        .build()?)
}

/// The PEM of `OTEL_EXPORTER_OTLP_CERTIFICATE`, checked at start to hold certificates: a
/// missing or broken file stops the service instead of failing every export later.
fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the OTLP CA file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("cannot parse the OTLP CA file {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in the OTLP CA file {}",
        path.display()
    );
    Ok(pem)
}

/// The exporter's HTTP client: rustls with ring, the system's roots plus the certificates
/// of `ca_pem`.
fn reqwest_blocking_client(ca_pem: Option<Vec<u8>>) -> anyhow::Result<reqwest::blocking::Client> {
    let builder = reqwest::blocking::Client::builder();
    let builder = match ca_pem {
        Some(pem) => builder.tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(&pem).context("cannot parse the OTLP CA file")?,
        ),
        None => builder,
    };
    builder.build().context("cannot build the OTLP HTTP client")
}
