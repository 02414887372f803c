//! The router and what wraps every request: the HTTP span (with the caller's trace context),
//! request metrics, the bearer-token check on writes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics::{Label, SharedString};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use subtle::ConstantTimeEq;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::AppState;
use crate::error::ApiError;
use crate::routes;

/// Installs the process-wide Prometheus recorder (once).
pub fn init_metrics() {
    common::metrics::install(describe);
}

/// HELP texts, and series registered at zero so dashboards see them from the start.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "sn_http_requests_total",
        "HTTP requests, by route, method and status"
    );
    describe_histogram!(
        "sn_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by route and method"
    );
    describe_counter!(
        "sn_requests_accepted_total",
        "Requests acknowledged by JetStream and answered 202"
    );
    describe_gauge!("sn_tasks", "Tasks in the views, by state");
    describe_counter!("sn_projection_events_total", "Events folded into the views");
    describe_counter!(
        "sn_download_batches_total",
        "Batches read for downloads, by where from: the stream, or the projection's live feed (followed tasks)"
    );
    describe_gauge!(
        "sn_projection_lag_events",
        "Events in the stream not yet folded"
    );
    describe_gauge!(
        "sn_projection_position",
        "Stream sequence the views reflect"
    );
    metrics::counter!("sn_requests_accepted_total").increment(0);
    metrics::counter!("sn_projection_events_total").increment(0);
    metrics::gauge!("sn_projection_lag_events").set(0.0);
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/generate_sn", post(routes::generate::generate))
        .route("/tasks", get(routes::tasks::list))
        .route("/tasks/{id}", get(routes::tasks::get_task))
        .route("/tasks/{id}/serials", get(routes::serials::download))
        .route("/serials/{serial}", get(routes::lookup::lookup))
        .route("/ledger", get(routes::lookup::ledger))
        .route("/models", get(routes::models::list))
        .route(
            "/models/{code_model}",
            get(routes::models::get_model).put(routes::models::declare),
        )
        .route("/events", get(routes::live::events))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/docs", get(crate::openapi::docs_index))
        .route("/docs/", get(crate::openapi::docs_index))
        .route("/docs/docs.js", get(crate::openapi::docs_js))
        .route("/docs/docs.css", get(crate::openapi::docs_css))
        .route("/ui", get(routes::live::ui_index))
        .route("/ui/", get(routes::live::ui_index))
        .route("/ui/app.js", get(routes::live::ui_app))
        .route("/ui/style.css", get(routes::live::ui_style))
        .route("/ui/theme.css", get(routes::live::ui_theme))
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 7235 section 2.1), and one or more spaces may follow it.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// With `API_TOKEN` set, writes need `Authorization: Bearer <token>`; reads stay open.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.api_token else {
        return next.run(req).await;
    };
    if !matches!(
        *req.method(),
        Method::POST | Method::DELETE | Method::PUT | Method::PATCH
    ) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

struct HttpExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The server span of each request (OpenTelemetry HTTP conventions) and its metrics.
async fn observe(req: Request, next: Next) -> Response {
    // Built once, then shared by the span and both metrics' labels.
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |p| Arc::from(p.as_str()));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "http request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        task_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HttpExtractor(req.headers()));
    let _ = span.set_parent(parent);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let labels = [
        Label::new("route", SharedString::from_shared(route)),
        Label::new("method", method_label(&method)),
        Label::new(
            "status",
            SharedString::from_shared(Arc::from(status.as_str())),
        ),
    ];
    metrics::counter!("sn_http_requests_total", labels.iter()).increment(1);
    metrics::histogram!("sn_http_request_duration_seconds", labels[..2].iter())
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label value, without a copy for the methods the API has.
fn method_label(method: &Method) -> SharedString {
    match method.as_str() {
        "GET" => SharedString::const_str("GET"),
        "POST" => SharedString::const_str("POST"),
        "HEAD" => SharedString::const_str("HEAD"),
        other => SharedString::from_owned(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(bearer(value), Some("t0k"), "{value}");
        }
        assert_eq!(bearer("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer("Bearert0k"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
