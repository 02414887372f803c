//! The bodies the API sends, as Rust types: the handlers build these, and the OpenAPI
//! document (`crate::openapi`) is derived from the same types, so the two cannot drift.
//!
//! Nothing here knows where the data comes from; the projection and the handlers fill them.

mod task;

pub use task::{State, TaskError, TaskView};
