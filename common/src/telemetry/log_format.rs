//! How log lines look: text lines without the fields that only steer span export, and JSON
//! lines that carry the active span's `trace_id` and `span_id`.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The fields of text log lines: tracing-subscriber's, less those that only steer or label
/// the exported spans. `otel.*` are instructions to the OpenTelemetry layer (span name and
/// kind), and the `messaging.system`/`messaging.operation.type` conventions are the same on
/// every span of their kind; the fmt layer would render them into a string for every span
/// (a sizeable part of a request's cost) only to repeat what the span's name says.
pub(super) struct TextFields;

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

pub(super) struct TextVisitor<'a>(DefaultVisitor<'a>);

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
pub(super) struct JsonWithTrace(pub(super) Format<Json>);

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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

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
