//! `GET /tasks/{id}` and `GET /tasks`, served from the projection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::api::{ErrorBody, TaskPage, TaskView};
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::projection::{State as TaskState, Task};

/// How long a read waits for a lagging projection before answering 404.
pub const CATCH_UP: Duration = Duration::from_secs(2);

pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a task id (UUID)")))
}

/// The task's view; when unknown, first waits (bounded) for the projection to reach the end
/// of the stream, so an id answered 202 never reads as 404.
pub async fn find(state: &AppState, id: Uuid) -> Result<Arc<Task>, ApiError> {
    if let Some(task) = state.projection.views().shared(&id) {
        return Ok(task);
    }
    let last = state
        .broker
        .last_sequence()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    state.projection.wait_for(last, CATCH_UP).await;
    state
        .projection
        .views()
        .shared(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))
}

/// A task's view; `wait` long-polls until it is SUCCESS or FAILURE.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    tag = "tasks",
    params(
        ("id" = uuid::Uuid, Path, description = "Task id"),
        ("wait" = Option<f64>, Query, description = "Seconds (0 to 60) to wait for the task to finish", minimum = 0, maximum = 60),
    ),
    responses(
        (status = 200, body = TaskView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown task", body = ErrorBody),
        (status = 422, description = "Invalid wait", body = ErrorBody),
        (status = 503, description = "NATS unreachable", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "get task", skip_all, fields(task_id = %raw))]
pub async fn get_task(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&raw)?;
    let wait = match q.wait.as_deref() {
        None | Some("") => None,
        Some(w) => Some(
            w.parse::<f64>()
                .ok()
                .filter(|w| w.is_finite() && (0.0..=60.0).contains(w))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| ApiError::Unprocessable {
                    field: "wait".into(),
                    message: "must be a number of seconds from 0 to 60".into(),
                })?,
        ),
    };
    // Subscribe before looking, so a change between the two is not missed.
    let mut changes = state.projection.subscribe();
    let view = find(&state, id).await?;
    let Some(wait) = wait else {
        return Ok(Json(view.view()));
    };
    if view.is_final() {
        return Ok(Json(view.view()));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let final_view = || {
            state
                .projection
                .views()
                .task(&id)
                .filter(|t| t.is_final())
                .map(Task::view)
        };
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Err(_) | Ok(Err(RecvError::Closed)) => break,
            Ok(Ok(changed)) if changed != id => continue,
            // This task changed, or some changes were skipped: look again.
            Ok(_) => {
                if let Some(v) = final_view() {
                    return Ok(Json(v));
                }
            }
        }
    }
    Ok(Json(find(&state, id).await?.view()))
}

#[derive(Debug, Deserialize)]
pub struct GetQuery {
    /// Long-poll: answer as soon as the task is SUCCESS or FAILURE, or after this many
    /// seconds (at most 60) with the view as it is then.
    wait: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    code_model: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Tasks, newest first.
#[utoipa::path(
    get,
    path = "/tasks",
    tag = "tasks",
    params(
        ("state" = Option<TaskState>, Query, description = "Only tasks in this state"),
        ("code_model" = Option<String>, Query, description = "Only tasks of this model"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = TaskPage),
        (status = 400, description = "Malformed query string", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let invalid = |field: &str, message: &str| ApiError::Unprocessable {
        field: field.into(),
        message: message.into(),
    };
    let wanted = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            TaskState::parse(s)
                .ok_or_else(|| invalid("state", "must be PENDING, STARTED, SUCCESS or FAILURE"))?,
        ),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| invalid("limit", "must be an integer from 1 to 1000"))?,
    };
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| invalid("cursor", "must be a cursor from a previous page"))?,
        ),
    };
    let model = q.code_model.as_deref().filter(|m| !m.is_empty());
    let views = state.projection.views();
    let (items, next) = views.list(wanted, model, cursor, limit);
    Ok(Json(TaskPage {
        items: items.into_iter().map(Task::view).collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}
