//! Telemetry in one place: the log filter and format, the OTLP trace export (HTTP here,
//! gRPC in `otlp_grpc`), and W3C trace context carried in NATS headers and CloudEvents.

mod otlp_grpc;

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{
    DefaultFields, DefaultVisitor, Format, Json, JsonFields, Writer,
};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, OtlpProtocol, TelemetryArgs};

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

/// The fields of text log lines: tracing-subscriber's, less those that only steer or label
/// the exported spans. `otel.*` are instructions to the OpenTelemetry layer (span name and
/// kind), and the `messaging.system`/`messaging.operation.type` conventions are the same on
/// every span of their kind; the fmt layer would render them into a string for every span
/// (a sizeable part of a request's cost) only to repeat what the span's name says.
struct TextFields;

fn shown_in_text(field: &Field) -> bool {
    let name = field.name();
    !(name.starts_with("otel.") || name == "messaging.system" || name == "messaging.operation.type")
}

impl<'a> MakeVisitor<Writer<'a>> for TextFields {
    type Visitor = TextVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        TextVisitor(DefaultFields::new().make_visitor(target))
    }
}

struct TextVisitor<'a>(DefaultVisitor<'a>);

impl Visit for TextVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if shown_in_text(field) {
            self.0.record_debug(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if shown_in_text(field) {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if shown_in_text(field) {
            self.0.record_error(field, value);
        }
    }
}

impl VisitOutput<fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// The JSON line of tracing-subscriber plus `trace_id` and `span_id` of the active span.
struct JsonWithTrace(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let span_cx = tracing::Span::current().context();
        let span = span_cx.span();
        let sc = span.span_context();
        let body = line.trim_end();
        match body.strip_suffix('}') {
            Some(open) if sc.is_valid() => writeln!(
                writer,
                r#"{open},"trace_id":"{}","span_id":"{}"}}"#,
                sc.trace_id(),
                sc.span_id()
            ),
            _ => writeln!(writer, "{body}"),
        }
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing (W3C lets a sender leave it out), and every
        // consumer would parse it on every message.
        if !value.is_empty() {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Writes `traceparent` (and `tracestate` when there is one) of the current span into NATS
/// headers.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The trace context a publisher put in NATS headers (empty when there is none).
pub fn extract(headers: Option<&HeaderMap>) -> opentelemetry::Context {
    match headers {
        Some(h) => TraceContextPropagator::new().extract(&HeaderExtractor(h)),
        None => opentelemetry::Context::new(),
    }
}

/// Makes the context found in `headers` the parent of `span`.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let cx = extract(headers);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of the current span, for the CloudEvents attribute.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_lines_keep_a_spans_data_and_leave_out_what_steers_its_export() {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(TextFields)
                .with_ansi(false)
                .with_writer(move || sink.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "publish",
                otel.name = format!("send {}", "sn.0111.requested.x"),
                otel.kind = "producer",
                messaging.system = "nats",
                messaging.operation.type = "send",
                messaging.destination.name = "sn.0111.requested.x",
                task_id = tracing::field::Empty,
            );
            span.record("task_id", "x");
            span.in_scope(|| tracing::warn!(count = 3, "not acknowledged"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                "publish{messaging.destination.name=\"sn.0111.requested.x\" task_id=\"x\"}: "
            ),
            "{text}"
        );
        assert!(text.contains("not acknowledged count=3"), "{text}");
        for hidden in ["otel.", "messaging.system", "messaging.operation.type"] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
    }
}
