//! The bodies the API sends, as Rust types: the handlers build these, and the OpenAPI
//! document is derived from the same types (utoipa's `ToSchema`), so the two cannot drift.
//! `schema` documents the request bodies and the `common` types that have no schema of
//! their own.
//!
//! Nothing here knows where the data comes from; the projection and the handlers fill them.
//! The fields of bodies once built as JSON maps keep those maps' order: by name.

mod error;
mod health;
mod model;
pub mod schema;
mod task;

pub use error::{ErrorBody, ErrorDetail};
pub use health::{Health, Readiness};
pub use model::{IssuedRange, LedgerBody, ModelBody, ModelList, SchemeView, SerialInfo};
pub use task::{AcceptedBody, State, TaskError, TaskPage, TaskView};
