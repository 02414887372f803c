//! The wire contract of the serial-number service and the plumbing both services share.
//!
//! The contract other NATS clients rely on: `subjects` names every subject, `events` defines
//! the CloudEvents on the `SN` stream, `state` the task states of the HTTP API. The numbering
//! rules the gateway checks early and the generator enforces: `serial` (how a number is
//! written), `request` (what a valid request is) and `ledger` (which ranges a model has
//! issued). The glue every binary needs at start and stop: `config` (`.env`), `nats`,
//! `telemetry`, `metrics`, `backoff`, `shutdown`, and `health` for the containers'
//! healthcheck. No module imports one that imports it back: `nats` sits on `events`,
//! `subjects`, `telemetry` and `backoff`; `events`, `request` and `ledger` on `serial`.

pub mod backoff;
pub mod config;
pub mod events;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod nats;
pub mod request;
pub mod serial;
pub mod shutdown;
pub mod state;
pub mod subjects;
pub mod telemetry;

pub use events::{Event, EventData};
pub use request::{FieldError, GenerateSpec};
pub use serial::{CheckDigit, Format, FormatRequest};
pub use state::State;
