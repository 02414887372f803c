//! A task as `GET /tasks/{id}`, `GET /tasks` and `GET /events` show it.

use common::Format;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Celery's state names, so old clients keep working; the CLI reads the same enum.
pub use common::state::State;

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// A task's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    pub state: State,
    pub code_model: String,
    /// The first number: as requested, or as reserved once the generator picked it.
    pub number: Option<u64>,
    pub count: u64,
    pub generated: u64,
    pub first_serial: Option<String>,
    pub last_serial: Option<String>,
    pub error: Option<TaskError>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[schema(value_type = super::schema::FormatDoc)]
    pub format: Format,
}

/// `GET /tasks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// `202 Accepted`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedBody {
    pub id: Uuid,
    pub state: State,
}
