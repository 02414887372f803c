//! `GET /serials/{serial}`: which model, number and task issued a serial; `GET /ledger`: the
//! issued ranges per model.

use axum::extract::State;
use axum::Json;

use crate::api::{ErrorBody, IssuedRange, LedgerBody, SerialInfo};
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::projection::State as TaskState;

/// Which model, number and task issued a serial.
#[utoipa::path(
    get,
    path = "/serials/{serial}",
    tag = "serials",
    params(("serial" = String, Path, description = "A serial as printed")),
    responses(
        (status = 200, body = SerialInfo),
        (status = 400, description = "Not a serial: empty, longer than 53 characters, or a character outside A-Z a-z 0-9 _ -", body = ErrorBody),
        (status = 404, description = "Never issued", body = ErrorBody),
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<SerialInfo>, ApiError> {
    // The longest serial: a 32-character code, 20 digits and a check digit.
    const LONGEST: usize = 53;
    let valid = serial
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if serial.is_empty() || serial.len() > LONGEST || !valid {
        return Err(ApiError::BadRequest(format!(
            "a serial is 1 to {LONGEST} characters of A-Z a-z 0-9 _ -"
        )));
    }
    let views = state.projection.views();
    // The models that prefix the serial, looked up by key; the namespace rule lets at most
    // one of them write this string.
    let Some((model, number, range)) = views.ledger().lookup(&serial, &state.keys) else {
        return Err(ApiError::NotFound(format!(
            "serial {serial:?} was never issued"
        )));
    };
    // Reserved is not yet issued: a task that failed before writing its serials (a missing
    // key, deliveries run out) issued only what it generated, from the range's start.
    let task = views.task(&range.task);
    let issued = task.is_some_and(|t| match t.state {
        TaskState::Started | TaskState::Success => true,
        TaskState::Failure => number - range.first < t.generated,
        TaskState::Pending => false,
    });
    if !issued {
        return Err(ApiError::NotFound(format!(
            "serial {serial:?} was never issued"
        )));
    }
    let issued_at = task.and_then(|t| t.started_at).and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    Ok(Json(SerialInfo {
        code_model: model.to_owned(),
        issued_at,
        number,
        serial,
        task_id: range.task,
    }))
}

/// Issued ranges per model.
#[utoipa::path(get, path = "/ledger", tag = "serials", responses((status = 200, body = LedgerBody)))]
pub async fn ledger(State(state): State<AppState>) -> Json<LedgerBody> {
    let views = state.projection.views();
    let mut models: std::collections::BTreeMap<String, Vec<IssuedRange>> = Default::default();
    for (model, r) in views.ledger().ranges() {
        models.entry(model.to_owned()).or_default().push(r.into());
    }
    for ranges in models.values_mut() {
        ranges.sort_by_key(|r| r.first);
    }
    Json(LedgerBody { models })
}
