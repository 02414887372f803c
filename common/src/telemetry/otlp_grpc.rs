//! The OTLP/gRPC span exporter (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): tonic, with rustls and
//! ring for `https://` collectors.
//!
//! The SDK's batch processor exports from a plain thread of its own, and tonic needs a Tokio
//! runtime both where its channel is built (the connection task is spawned there) and where
//! an export is polled (its timers and I/O). So this exporter owns a one-thread runtime: the
//! channel is built in it and every export is driven by it, whatever thread asks.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::runtime::{Handle, Runtime};

/// tonic's span exporter and the runtime its channel lives on.
#[derive(Debug)]
pub(super) struct GrpcExporter {
    inner: opentelemetry_otlp::SpanExporter,
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<Runtime>,
}

impl GrpcExporter {
    /// An exporter to `endpoint`, taken as it is (gRPC has no path to add: the service's
    /// name is the path). For `https://` the collector's certificate is checked against the
    /// system's roots plus the certificates of `ca_pem`.
    pub(super) fn new(endpoint: &str, ca_pem: Option<Vec<u8>>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-grpc")
            .enable_all()
            .build()
            .context("cannot start the OTLP gRPC runtime")?;
        let builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(endpoint);
        let builder = if is_https(endpoint) {
            let tls = ClientTlsConfig::new().with_native_roots();
            let tls = match ca_pem {
                Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls,
            };
            builder.with_tls_config(tls)
        } else {
            builder
        };
        let inner = {
            let _in_runtime = runtime.enter();
            builder
                .build()
                .context("cannot build the OTLP gRPC exporter")?
        };
        Ok(Self {
            inner,
            runtime: Some(runtime),
        })
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }
}

fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

impl SpanExporter for GrpcExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // The batch processor's thread has no runtime: drive the export on ours. A caller
        // already inside one (which cannot block on another) awaits it where it is.
        if Handle::try_current().is_ok() {
            return self.inner.export(batch).await;
        }
        self.runtime().block_on(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for GrpcExporter {
    /// Dropping a runtime blocks on its worker, which panics on an async thread; the last
    /// export is over by now, so nothing is lost by not waiting.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_https_scheme_asks_for_tls() {
        assert!(is_https("https://collector:4317"));
        assert!(is_https("HTTPS://collector:4317"));
        assert!(!is_https("http://collector:4317"));
        assert!(!is_https("collector:4317"));
    }
}
