//! The wire contract of the serial-number service and the plumbing both services share.
//!
//! `subjects` and `events` are the contract other NATS clients rely on; `serial` and `request`
//! hold the numbering rules the gateway checks early and the generator enforces; `nats`,
//! `telemetry` and `shutdown` are the glue every binary needs at start and stop, `health` the
//! containers' healthcheck.

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
pub mod subjects;
pub mod telemetry;

pub use events::{Event, EventData};
pub use request::{FieldError, GenerateSpec};
pub use serial::{CheckDigit, Format, FormatRequest};
