//! `GET /tasks/{id}/serials`: checks the request and the task's state, then streams the
//! body that `download` reads and renders.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;
use crate::app::AppState;
use crate::download::{self, Download, Follow, Form, TaskFeed};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::projection::State as TaskState;
use crate::routes::tasks::{find, parse_id};

#[derive(Debug, serde::Deserialize)]
pub struct DownloadQuery {
    format: Option<String>,
    follow: Option<String>,
}

/// The serials of a finished task, streamed in order.
#[utoipa::path(
    get,
    path = "/tasks/{id}/serials",
    tag = "serials",
    params(
        ("id" = uuid::Uuid, Path, description = "Task id"),
        ("format" = Option<String>, Query, description = "text, csv or ndjson (else chosen by Accept)"),
        ("follow" = Option<bool>, Query, description = "true: also for a task still PENDING or STARTED; the serials stream as their batches are stored, and the body ends with the task (in an error if it fails)"),
    ),
    responses(
        (status = 200, description = "One serial per line; CSV `serial,number`; or NDJSON", content(
            (String = "text/plain"), (String = "text/csv"), (String = "application/x-ndjson")
        )),
        (status = 400, description = "Malformed id, or a format other than text, csv or ndjson", body = ErrorBody),
        (status = 404, description = "Unknown task", body = ErrorBody),
        (status = 409, description = "Task not SUCCESS yet (without follow), or FAILURE", body = ErrorBody),
        (status = 422, description = "Invalid follow", body = ErrorBody),
        (status = 503, description = "NATS unreachable", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "download serials", skip_all, fields(task_id = %raw))]
pub async fn download(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let follow = match q.follow.as_deref() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::Unprocessable {
                field: "follow".into(),
                message: "must be true or false".into(),
            })
        }
    };
    let form = Form::pick(q.format.as_deref(), &headers).ok_or_else(|| {
        ApiError::BadRequest("format: must be text, csv or ndjson (or left out for Accept)".into())
    })?;
    // Subscribed before the lookup, so a change in between is not missed.
    let changes = state.projection.changes();
    let view = find(&state, id).await?;
    let followed = follow && !view.is_final();
    if view.state != TaskState::Success && !followed {
        return Err(ApiError::Conflict {
            code: "not_ready",
            message: format!(
                "task {id} is {}; serials are served once it is SUCCESS (or as they come, with \
                 ?follow=true, while it runs)",
                view.state.as_str()
            ),
        });
    }
    let download = Download {
        task: id,
        code_model: view.code_model.clone(),
        first_seq: view.first_seq,
        first_number: view.range.map(|(first, _)| first),
        count: view.count,
        batches: (!followed).then(|| view.batches.unwrap_or(0)),
    };
    let follow = followed.then(|| {
        let feed: Arc<dyn TaskFeed> = state.projection.clone();
        Follow::new(feed, changes, state.shutdown.clone())
    });
    let body = download::serials(state.broker.clone(), download, follow, form);
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(form.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{id}.{}\"",
        form.extension()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
