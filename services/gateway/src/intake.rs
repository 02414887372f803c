//! Putting a request on the stream, whatever its kind: publish the request event, wait for
//! JetStream's ack, answer 202 with the task's location. A new task kind builds its event and
//! calls [`submit`]; nothing here knows about serials.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::Event;
use uuid::Uuid;

use crate::api::{AcceptedBody, State};

use crate::app::AppState;
use crate::broker::{Accepted, BrokerError};
use crate::error::ApiError;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Deterministic task ids for idempotency keys: the same key gives the same task on every
/// gateway replica, and the request's `Nats-Msg-Id` follows from it.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f2d_0f0e_54a1_4c1b_9d0b_2a47_7c1d_5e01);

pub fn task_id_for(key: Option<&str>) -> Uuid {
    match key {
        Some(k) => Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, k.as_bytes()),
        None => Uuid::new_v4(),
    }
}

/// Reads the `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::Unprocessable {
            field: "Idempotency-Key".into(),
            message: "must be 1 to 255 visible ASCII characters".into(),
        }),
    }
}

/// Publishes `event` and waits for the stream's acknowledgement.
pub async fn submit(state: &AppState, event: Event) -> Result<Accepted, ApiError> {
    let subject = event.nats_subject();
    let _span = tracing::info_span!(
        "publish",
        otel.name = format!("send {subject}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = %subject,
        messaging.message.id = %event.id,
        task_id = tracing::field::display(event.task_id().map(|t| t.to_string()).unwrap_or_default()),
    );
    let accepted = async {
        state
            .broker
            .publish(subject, event)
            .await
            .map_err(|e| match e {
                BrokerError::Disconnected => ApiError::Unavailable,
                BrokerError::Other(m) => {
                    tracing::warn!(error = %m, "publish not acknowledged");
                    ApiError::Unconfirmed
                }
            })
    };
    tracing::Instrument::instrument(accepted, _span.clone()).await
}

/// `202 Accepted` with `Location: /tasks/<id>`.
pub fn accepted(id: Uuid, state: State) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(AcceptedBody { id, state })).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/tasks/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
