//! One error type for every handler, turned into `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{field}: {message}")]
    Unprocessable { field: String, message: String },
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// The request's format differs from the model's scheme.
    #[error("{0}")]
    FormatMismatch(String),
    /// Writes wait until the views have caught up with the stream, so that no check (an
    /// idempotency key, a model's scheme, an overlap) runs against stale views.
    #[error("the gateway is catching up with the stream, try again shortly")]
    CatchingUp,
    #[error("NATS is unreachable, try again shortly")]
    Unavailable,
    /// Sent, but no acknowledgement came back: it may still have been stored.
    #[error(
        "NATS did not acknowledge the request in time; it may still be stored, so retry with \
         the same Idempotency-Key to be sure of one task"
    )]
    Unconfirmed,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. }
            | ApiError::IdempotencyMismatch(_)
            | ApiError::FormatMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable | ApiError::Unconfirmed | ApiError::CatchingUp => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable { .. } => "invalid_field",
            ApiError::IdempotencyMismatch(_) => "idempotency_key_reused",
            ApiError::FormatMismatch(_) => common::events::codes::FORMAT_MISMATCH,
            ApiError::Unavailable | ApiError::Unconfirmed | ApiError::CatchingUp => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            // Logged once here; the client sees no internals.
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                field: match &self {
                    ApiError::Unprocessable { field, .. } => Some(field.clone()),
                    _ => None,
                },
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::Unavailable | ApiError::Unconfirmed | ApiError::CatchingUp => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
