//! `POST /generate_sn`: the serial task kind's request. Checks the body, answers 409 at once
//! when the gateway's ledger already shows an overlap, honours `Idempotency-Key`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use common::events::{codes, EventData, GenerateRequested};
use common::{Event, Format, GenerateSpec};
use time::OffsetDateTime;

use crate::api::schema::GenerateBody;
use crate::api::{AcceptedBody, ErrorBody, State as TaskState};
use crate::app::AppState;
use crate::error::ApiError;
use crate::intake::{self, BODY_LIMIT};

pub const SOURCE: &str = "/sn/gateway";

/// Reads a JSON body: 415 unless JSON, 413 over the limit, 400 unless it parses.
pub async fn json_body(headers: &HeaderMap, body: Body) -> Result<serde_json::Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, not {:?}",
            content_type
        )));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::TooLarge(BODY_LIMIT))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

fn same_request(spec: &GenerateSpec, earlier: &GenerateRequested) -> bool {
    spec.code_model == earlier.code_model
        && spec.number == earlier.number
        && spec.count == earlier.count
        && spec.format == earlier.format
}

/// What the views already show against the request: a format other than the model's scheme
/// (422), a new model whose serials could be another's (409), a range that does not fit the
/// scheme (422), or overlaps an issued one (409). The generator checks all of it again, as the
/// authority; this answers at once what is already known.
fn check_against_views(state: &AppState, spec: &GenerateSpec) -> Result<(), ApiError> {
    let views = state.projection.views();
    let ledger = views.ledger();
    let model = spec.code_model.as_str();
    let known = ledger.scheme(model);
    let scheme = spec.format.resolve(known).map_err(|scheme| {
        ApiError::FormatMismatch(format!(
            "the request asks for {}, but model {model} has the scheme {scheme}",
            spec.format
        ))
    })?;
    if known.is_none() {
        if let Some((other, s)) = ledger.meets(model, scheme) {
            return Err(namespace_conflict(model, scheme, other, s));
        }
    }
    spec.validate_in(scheme)
        .map_err(|e| ApiError::Unprocessable {
            field: e.field.to_owned(),
            message: e.message,
        })?;
    if let Some(number) = spec.number {
        let last = number + (spec.count - 1);
        if let Some(hit) = ledger.overlap(model, number, last) {
            return Err(ApiError::Conflict {
                code: codes::RANGE_CONFLICT,
                message: format!(
                    "numbers {number}..={last} overlap {}..={} issued to task {}",
                    hit.first, hit.last, hit.task
                ),
            });
        }
    }
    Ok(())
}

/// 409: serials of `model` in `scheme` could be those of `other` in `other_scheme`.
pub fn namespace_conflict(
    model: &str,
    scheme: Format,
    other: &str,
    other_scheme: Format,
) -> ApiError {
    ApiError::Conflict {
        code: codes::NAMESPACE_CONFLICT,
        message: format!(
            "serials of model {model} ({scheme}) could be those of model {other} \
             ({other_scheme}); choose a width that gives another serial length"
        ),
    }
}

fn mismatch() -> ApiError {
    ApiError::IdempotencyMismatch("Idempotency-Key was already used with a different body".into())
}

/// Request serials: the task is accepted once JetStream has the request.
#[utoipa::path(
    post,
    path = "/generate_sn",
    tag = "tasks",
    request_body = GenerateBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key + same body = same task")),
    responses(
        (status = 202, description = "Accepted; Location: /tasks/{id}", body = AcceptedBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "Overlaps an issued range (`range_conflict`), or the model's serials could be another model's (`namespace_conflict`)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid, the format differs from the model's scheme (`format_mismatch`), or the key was used with another body", body = ErrorBody),
        (status = 503, description = "NATS unreachable, or the views still catching up with the stream; Retry-After", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
// No span of its own: the HTTP server span (`http::observe`) is the request's, and gets the
// task id below; one span less per request is measurable at thousands of requests a second.
pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body).await?;
    let spec =
        GenerateSpec::from_json(&value, state.max_count).map_err(|e| ApiError::Unprocessable {
            field: e.field.to_owned(),
            message: e.message,
        })?;
    let key = intake::idempotency_key(&headers)?;
    if !state.projection.caught_up() {
        return Err(ApiError::CatchingUp);
    }
    let task_id = intake::task_id_for(key.as_deref());
    tracing::Span::current().record("task_id", tracing::field::display(task_id));

    // A replay of an idempotent request answers from the views.
    if key.is_some() {
        if let Some(view) = state.projection.views().task(&task_id) {
            return match &view.request {
                Some(earlier) if same_request(&spec, earlier) => {
                    Ok(intake::accepted(task_id, view.state))
                }
                _ => Err(mismatch()),
            };
        }
    }
    check_against_views(&state, &spec)?;
    let event = Event::new(
        SOURCE,
        EventData::Requested(GenerateRequested {
            task_id,
            code_model: spec.code_model.clone(),
            number: spec.number,
            count: spec.count,
            format: spec.format,
            requested_at: OffsetDateTime::now_utc(),
            idempotency_key: key.clone(),
        }),
    );
    let accepted = intake::submit(&state, event).await?;
    if accepted.duplicate {
        // Another gateway (or an earlier try) sent this key inside the duplicate window: the
        // stored request decides whether this body is the same.
        state
            .projection
            .wait_for(accepted.sequence, Duration::from_secs(2))
            .await;
        if let Some(view) = state.projection.views().task(&task_id) {
            if !view
                .request
                .as_ref()
                .is_some_and(|r| same_request(&spec, r))
            {
                return Err(mismatch());
            }
            return Ok(intake::accepted(task_id, view.state));
        }
    }
    metrics::counter!("sn_requests_accepted_total").increment(1);
    // Debug, not info: at thousands of requests a second a line each costs more than it
    // tells; the counter above counts them and the request's spans still reach the traces.
    tracing::debug!(
        code_model = %spec.code_model,
        number = spec.number,
        count = spec.count,
        sequence = accepted.sequence,
        "request accepted"
    );
    Ok(intake::accepted(task_id, TaskState::Pending))
}
