//! The process-wide Prometheus recorder both services expose on `/metrics`.
//!
//! Each service installs it once at start with its own `describe` function (HELP texts, and
//! series registered at zero so dashboards see them from the start), then renders it per scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from half a millisecond (one JetStream round trip) to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder and runs `describe`; later calls do nothing.
pub fn install(describe: fn()) {
    RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    });
}

/// The text exposition of every series; empty before [`install`].
pub fn render() -> String {
    RECORDER.get().map(|h| h.render()).unwrap_or_default()
}
