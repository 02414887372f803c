//! Reading settings. Each binary has one clap struct composed of groups that live beside the
//! code that uses them (`nats::NatsArgs`, `telemetry::TelemetryArgs`); this module only loads
//! an optional `.env` file first.

/// Loads `.env` from the working directory, if there is one, before clap reads the
/// environment. Variables already set win.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}
