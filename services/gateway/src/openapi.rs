//! The OpenAPI document (`/openapi.json`), generated from the handlers' annotations and the
//! types they exchange, and the interactive page that renders it (`/docs`, embedded assets).

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::api::{State, TaskError, TaskView};
use crate::routes;

/// The serial scheme of a task's model.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FormatDoc {
    /// Digits of the zero-padded number.
    #[schema(minimum = 1, maximum = 20, default = 8)]
    width: u8,
    /// Check digit appended to the serial (needs an all-digit `code_model`).
    #[schema(default = "none")]
    check_digit: CheckDigitDoc,
    order: OrderDoc,
    /// Random order: the id of the master key the model's key comes from.
    key_id: Option<u32>,
    /// Random order: 1 in this many of the width's numbers is ever issued.
    one_in: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OrderDoc {
    /// Number n is written as n.
    Sequential,
    /// Number n is written as a keyed permutation of it (FF1 under SERIAL_KEY).
    Random,
}

/// A model's scheme as `GET /models` shows it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SchemeView {
    width: u8,
    check_digit: CheckDigitDoc,
    order: OrderDoc,
    /// Random order: the id of the master key (8 hex digits).
    key_id: Option<String>,
    /// Random order: the share of the width's numbers ever issued, as `1/N`.
    density: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CheckDigitDoc {
    None,
    Gs1,
    Luhn,
}

/// A model's serial scheme (`PUT /models/{code_model}`), or the fields of it a request names.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SchemeDoc {
    /// Digits of the zero-padded number (6 to 19 in random order).
    #[schema(minimum = 1, maximum = 20, default = 8)]
    width: Option<u8>,
    /// Check digit appended to the serial (needs an all-digit `code_model`).
    #[schema(default = "none")]
    check_digit: Option<CheckDigitDoc>,
    /// `random` writes each number as a keyed permutation of it (needs SERIAL_KEY).
    #[schema(default = "sequential")]
    order: Option<OrderDoc>,
    /// Random order only: the share of the width's numbers ever issued, `"1/N"` or a
    /// fraction such as 0.0001; a guessed serial is valid with at most that probability.
    #[schema(value_type = Option<String>, example = "1/10000")]
    density: Option<String>,
}

/// A model: its scheme, what it issued and what is left.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ModelBody {
    code_model: String,
    /// Null until the model is declared or first used.
    scheme: Option<SchemeView>,
    /// Numbers issued.
    issued: u64,
    /// Issued ranges.
    range_count: u64,
    /// Numbers still free at the scheme's width.
    remaining: Option<u64>,
    /// Where the next automatic range starts looking.
    next_automatic: u64,
    /// `GET /models/{code_model}` only: a page of issued ranges.
    ranges: Option<Vec<IssuedRangeDoc>>,
    /// `GET /models/{code_model}` only: `cursor` of the next page of ranges.
    next_cursor: Option<u64>,
}

/// `GET /models`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ModelList {
    models: Vec<ModelBody>,
}

/// Body of `POST /generate_sn`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code_model": "0111", "number": 1, "count": 10}))]
#[allow(dead_code)]
pub struct GenerateBody {
    /// Product model code.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$", example = "0111")]
    code_model: String,
    /// First number; omitted or null = the next free range of the model.
    #[schema(minimum = 0, nullable)]
    number: Option<u64>,
    /// How many serials (at most `MAX_COUNT`).
    #[schema(minimum = 1, example = 10)]
    count: u64,
    /// Omitted: the model's scheme (width 8, no check digit for a new model). Each field
    /// given must equal the model's scheme (else 422 `format_mismatch`).
    format: Option<SchemeDoc>,
}

/// `202 Accepted`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AcceptedBody {
    id: uuid::Uuid,
    state: State,
}

/// Every error.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `not_found`, `range_conflict`,
    /// `namespace_conflict`, `scheme_conflict`, `format_mismatch`, `payload_too_large`,
    /// `unsupported_media_type`, `invalid_field`, `idempotency_key_reused`, `unavailable`,
    /// `internal`.
    code: String,
    message: String,
    /// The offending field, for 422.
    field: Option<String>,
}

/// `GET /tasks`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskPage {
    items: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// `GET /serials/{serial}`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SerialInfo {
    serial: String,
    code_model: String,
    number: u64,
    task_id: uuid::Uuid,
    /// When the range holding it was reserved (RFC 3339).
    issued_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct IssuedRangeDoc {
    first: u64,
    last: u64,
    task_id: uuid::Uuid,
}

/// `GET /ledger`: issued ranges per model.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct LedgerBody {
    models: std::collections::BTreeMap<String, Vec<IssuedRangeDoc>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Serial numbers",
        description = "Issues product serial numbers per model, in ranges, never the same twice. \
            Writes go onto a NATS JetStream stream; every read is folded from it.",
    ),
    paths(
        routes::generate::generate,
        routes::tasks::get_task,
        routes::tasks::list,
        routes::serials::download,
        routes::lookup::lookup,
        routes::lookup::ledger,
        routes::models::declare,
        routes::models::list,
        routes::models::get_model,
        routes::live::events,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
    ),
    components(schemas(
        GenerateBody, FormatDoc, CheckDigitDoc, AcceptedBody, ErrorBody, ErrorDetail, TaskView,
        TaskError, State, TaskPage, SerialInfo, LedgerBody, IssuedRangeDoc, SchemeDoc, ModelBody,
        ModelList, OrderDoc, SchemeView
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "tasks", description = "Requesting serials and following the tasks"),
        (name = "serials", description = "Issued serials and ranges"),
        (name = "models", description = "Models and their serial schemes"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

const DOCS_INDEX: &str = include_str!("../docs-ui/index.html");
const DOCS_JS: &str = include_str!("../docs-ui/docs.js");
const DOCS_CSS: &str = include_str!("../docs-ui/docs.css");

pub async fn docs_index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DOCS_INDEX,
    )
}

pub async fn docs_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        DOCS_JS,
    )
}

pub async fn docs_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        DOCS_CSS,
    )
}
