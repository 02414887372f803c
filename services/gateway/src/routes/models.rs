//! `PUT /models/{code_model}`: declare a model's serial scheme before its first use;
//! `GET /models`, `GET /models/{code_model}`: every model's scheme, what it issued, what is
//! left. A scheme is fixed by the model's first declaration or reservation, in the ledger
//! fold (see `common::ledger`); a declaration is an event on the model's ledger subject.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::events::{EventData, SchemeDeclared};
use common::ledger::{Ledger, ModelSummary};
use common::request::scheme_from_json;
use common::serial::Order;
use common::{Event, Format};
use serde::Deserialize;

use super::generate::{json_body, namespace_conflict, SOURCE};
use crate::api::schema::SchemeDoc;
use crate::api::{ErrorBody, IssuedRange, ModelBody, ModelList, SchemeView};
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::intake;

/// How long a declaration waits for the views to fold it before answering.
const FOLD_WAIT: Duration = Duration::from_secs(2);

/// Declare a model's serial scheme.
#[utoipa::path(
    put,
    path = "/models/{code_model}",
    operation_id = "declare_model",
    tag = "models",
    params(("code_model" = String, Path, description = "Product model code")),
    request_body = SchemeDoc,
    responses(
        (status = 200, description = "The model already has this scheme", body = ModelBody),
        (status = 201, description = "Declared", body = ModelBody),
        (status = 202, description = "Stored, not yet folded: decided in stream order like any declaration", body = ModelBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "The model has another scheme (`scheme_conflict`), or its serials could be another model's (`namespace_conflict`)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 503, description = "NATS unreachable, or the views still catching up; Retry-After", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn declare(
    State(state): State<AppState>,
    ApiPath(code_model): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body).await?;
    let mut scheme =
        scheme_from_json(&code_model, &value).map_err(|e| ApiError::Unprocessable {
            field: e.field.to_owned(),
            message: e.message,
        })?;
    if scheme.order == Order::Random {
        // The model's key comes from the current master key, recorded by id.
        let id = state.keys.current().map_err(|e| ApiError::Unprocessable {
            field: "order".into(),
            message: e.to_string(),
        })?;
        scheme.key_id = Some(id);
    }
    if !state.projection.caught_up() {
        return Err(ApiError::CatchingUp);
    }
    if let Some(answer) = settled(state.projection.views().ledger(), &code_model, scheme)? {
        return Ok(answer);
    }
    let event = Event::new(
        SOURCE,
        EventData::Declared(SchemeDeclared {
            code_model: code_model.clone(),
            scheme,
        }),
    );
    let accepted = intake::submit(&state, event).await?;
    // The fold decides: an earlier declaration or reservation of the model, or of a model
    // whose serials this one's could meet, voids this one.
    state
        .projection
        .wait_for(accepted.sequence, FOLD_WAIT)
        .await;
    let views = state.projection.views();
    let ledger = views.ledger();
    match settled(ledger, &code_model, scheme)? {
        Some(_) if ledger.scheme_seq(&code_model) == accepted.sequence => {
            Ok((StatusCode::CREATED, Json(model_body(ledger, &code_model))).into_response())
        }
        Some(answer) => Ok(answer),
        // Not folded yet: stored, and decided in stream order like any other.
        None => Ok((
            StatusCode::ACCEPTED,
            Json(ModelBody::unused(code_model, Some(scheme.into()))),
        )
            .into_response()),
    }
}

/// The answer the ledger already gives a declaration of `scheme` for `model`: 200 when the
/// model has it, 409 when it has another or could meet another model; `None` when open.
fn settled(ledger: &Ledger, model: &str, scheme: Format) -> Result<Option<Response>, ApiError> {
    match ledger.scheme(model) {
        Some(s) if s == scheme => Ok(Some(Json(model_body(ledger, model)).into_response())),
        Some(s) => Err(ApiError::Conflict {
            code: "scheme_conflict",
            message: format!("model {model} has the scheme {s}, not {scheme}"),
        }),
        None => match ledger.meets(model, scheme) {
            Some((other, s)) => Err(namespace_conflict(model, scheme, other, s)),
            None => Ok(None),
        },
    }
}

/// Every model, by code.
#[utoipa::path(
    get,
    path = "/models",
    operation_id = "list_models",
    tag = "models",
    responses((status = 200, body = ModelList))
)]
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let views = state.projection.views();
    // Models that only ever saw void declarations or reservations are not models.
    let models = views
        .ledger()
        .models()
        .filter(|m| m.scheme.is_some() || m.ranges > 0)
        .map(|m| summary(&m))
        .collect();
    Json(ModelList { models })
}

#[derive(Deserialize)]
pub struct RangesQuery {
    limit: Option<usize>,
    /// The first number of the last range of the previous page.
    cursor: Option<u64>,
}

const RANGES_PAGE: usize = 1000;

/// One model: its scheme, counts, and its issued ranges a page at a time.
#[utoipa::path(
    get,
    path = "/models/{code_model}",
    tag = "models",
    params(
        ("code_model" = String, Path, description = "Product model code"),
        ("limit" = Option<usize>, Query, description = "Ranges per page (default and most 1000)"),
        ("cursor" = Option<u64>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = ModelBody),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "Never declared or used", body = ErrorBody),
    )
)]
pub async fn get_model(
    State(state): State<AppState>,
    ApiPath(code_model): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangesQuery>,
) -> Result<Json<ModelBody>, ApiError> {
    let views = state.projection.views();
    let ledger = views.ledger();
    let Some(model) = ledger
        .model(&code_model)
        .filter(|m| m.scheme.is_some() || m.ranges > 0)
    else {
        return Err(ApiError::NotFound(format!(
            "model {code_model:?} was never declared or used"
        )));
    };
    let limit = q.limit.unwrap_or(RANGES_PAGE).clamp(1, RANGES_PAGE);
    let mut ranges: Vec<IssuedRange> = Vec::new();
    let mut next = None;
    for r in ledger.ranges_of(&code_model, q.cursor) {
        if ranges.len() == limit {
            next = ranges.last().map(|r| r.first);
            break;
        }
        ranges.push(r.into());
    }
    Ok(Json(ModelBody {
        ranges: Some(ranges),
        next_cursor: Some(next),
        ..summary(&model)
    }))
}

/// The model as the ledger has it; a model the ledger does not know yet has issued nothing.
fn model_body(ledger: &Ledger, model: &str) -> ModelBody {
    ledger.model(model).map_or_else(
        || ModelBody::unused(model.to_owned(), None),
        |m| summary(&m),
    )
}

fn summary(m: &ModelSummary<'_>) -> ModelBody {
    ModelBody {
        code_model: m.code_model.to_owned(),
        issued: u64::try_from(m.issued).unwrap_or(u64::MAX),
        next_automatic: m.cursor.saturating_add(1),
        next_cursor: None,
        range_count: m.ranges as u64,
        ranges: None,
        remaining: m.remaining.map(|r| u64::try_from(r).unwrap_or(u64::MAX)),
        scheme: m.scheme.map(SchemeView::from),
    }
}
