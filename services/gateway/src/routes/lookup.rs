//! `GET /serials/{serial}`: which model, number and task issued a serial; `GET /ledger`: the
//! issued ranges per model.

use axum::extract::State;
use axum::Json;
use common::serial::SerialFormatter;
use serde_json::json;

use crate::extract::ApiPath;
use crate::projection::State as TaskState;
use crate::{ApiError, AppState};

/// Which model, number and task issued a serial.
#[utoipa::path(
    get,
    path = "/serials/{serial}",
    tag = "serials",
    params(("serial" = String, Path, description = "A serial as printed")),
    responses(
        (status = 200, body = crate::openapi::SerialInfo),
        (status = 404, description = "Never issued", body = crate::openapi::ErrorBody),
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let never = || ApiError::NotFound(format!("serial {serial:?} was never issued"));
    if serial.is_empty() || serial.len() > 80 {
        return Err(never());
    }
    let views = state.projection.views();
    for model in views.models_prefixing(&serial) {
        let rest = &serial[model.len()..];
        if rest.is_empty() || rest.len() > 21 {
            continue;
        }
        // Every split of the rest into number (+ check digit) that some width allows.
        for check in [false, true] {
            let digits = if check { &rest[..rest.len() - 1] } else { rest };
            let Ok(number) = digits.parse::<u64>() else {
                continue;
            };
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Some(hit) = views.overlap(model, number, number) else {
                continue;
            };
            let Some(task) = views.task(&hit.task) else {
                continue;
            };
            if !matches!(task.state, TaskState::Started | TaskState::Success) {
                continue;
            }
            // The task's own format must produce exactly this serial.
            if SerialFormatter::new(model, task.format).parse(&serial) != Some(number) {
                continue;
            }
            return Ok(Json(json!({
                "serial": serial,
                "code_model": model,
                "number": number,
                "task_id": task.id,
                "issued_at": task.started_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            })));
        }
    }
    Err(never())
}

/// Issued ranges per model.
#[utoipa::path(get, path = "/ledger", tag = "serials", responses((status = 200, body = crate::openapi::LedgerBody)))]
pub async fn ledger(State(state): State<AppState>) -> Json<serde_json::Value> {
    let views = state.projection.views();
    let mut models: std::collections::BTreeMap<&str, Vec<serde_json::Value>> = Default::default();
    for (model, r) in views.ledger() {
        models
            .entry(model)
            .or_default()
            .push(json!({"first": r.first, "last": r.last, "task_id": r.task}));
    }
    for ranges in models.values_mut() {
        ranges.sort_by_key(|r| r["first"].as_u64());
    }
    Json(json!({ "models": models }))
}
