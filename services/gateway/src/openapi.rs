//! The OpenAPI document (`/openapi.json`), generated from the handlers' annotations and the
//! types they exchange, and the interactive page that renders it (`/docs`, embedded assets).

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use crate::api::schema::{CheckDigitDoc, FormatDoc, GenerateBody, OrderDoc, SchemeDoc};
use crate::api::{
    AcceptedBody, ErrorBody, ErrorDetail, Health, IssuedRange, LedgerBody, ModelBody, ModelList,
    Readiness, SchemeView, SerialInfo, State, TaskError, TaskPage, TaskView,
};
use crate::routes;

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
        TaskError, State, TaskPage, SerialInfo, LedgerBody, IssuedRange, SchemeDoc, ModelBody,
        ModelList, OrderDoc, SchemeView, Health, Readiness
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
