//! The body of every error answer.

use serde::Serialize;
use utoipa::ToSchema;

/// Every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `not_found`, `method_not_allowed`,
    /// `not_ready`, `range_conflict`, `namespace_conflict`, `scheme_conflict`,
    /// `format_mismatch`, `payload_too_large`,
    /// `unsupported_media_type`, `invalid_field`, `idempotency_key_reused`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// The offending field, for 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}
