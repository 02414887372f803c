//! Live views: `GET /events` (Server-Sent Events of task changes, fed by the projection) and
//! the dashboard's static files, embedded in the binary.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::app::AppState;
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    task_id: Option<Uuid>,
    code_model: Option<String>,
}

/// Every change of a task as `event: task` with the task's view as data.
#[utoipa::path(
    get,
    path = "/events",
    tag = "tasks",
    params(
        ("task_id" = Option<uuid::Uuid>, Query, description = "Only this task"),
        ("code_model" = Option<String>, Query, description = "Only this model"),
    ),
    responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream", body = String))
)]
pub async fn events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.projection.subscribe();
    let stream = stream::unfold((rx, state, q), |(mut rx, state, q)| async move {
        loop {
            let next = tokio::select! {
                // The stream ends at shutdown, so a graceful stop is not held open by it.
                _ = state.shutdown.cancelled() => return None,
                next = rx.recv() => next,
            };
            let id = match next {
                Ok(id) => id,
                // A slow client skipped some changes; later ones carry the whole view anyway.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            };
            if q.task_id.is_some_and(|t| t != id) {
                continue;
            }
            let json = {
                let views = state.projection.views();
                let Some(view) = views.task(&id) else {
                    continue;
                };
                if q.code_model
                    .as_deref()
                    .is_some_and(|m| m != view.code_model)
                {
                    continue;
                }
                serde_json::to_string(&view.view()).unwrap_or_default()
            };
            let event = SseEvent::default()
                .event("task")
                .id(id.to_string())
                .data(json);
            return Some((Ok(event), (rx, state, q)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");
/// The tokens and base rules the dashboard and the API documentation page share.
const THEME: &str = include_str!("../../ui/theme.css");

pub async fn ui_index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub async fn ui_app() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

pub async fn ui_style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub async fn ui_theme() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], THEME)
}
