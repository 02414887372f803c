//! The router answered without sockets: each request goes through `tower::ServiceExt::oneshot`
//! into the same router the server runs, over a projection the test folds events into and a
//! fake broker. Every status code the OpenAPI document lists for a route is produced here;
//! the last test checks that the document lists exactly those in [`COVERED`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use utoipa::OpenApi as _;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use common::events::{
    EventData, GenerateRequested, RangeReserved, SchemeDeclared, SerialsGenerated, TaskCompleted,
};
use common::{subjects, Event, Format};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::app::AppState;
use crate::broker::fake::{Answer, FakeBroker};
use crate::projection::Projection;

const TOKEN: &str = "s3cret";
const MODEL: &str = "0111";

/// Every (method, route, status) the tests below produce.
const COVERED: &[(&str, &str, &[u16])] = &[
    (
        "post",
        "/generate_sn",
        &[202, 400, 401, 409, 413, 415, 422, 503],
    ),
    ("get", "/tasks", &[200, 400, 422]),
    ("get", "/tasks/{id}", &[200, 400, 404, 422, 503]),
    (
        "get",
        "/tasks/{id}/serials",
        &[200, 400, 404, 409, 422, 503],
    ),
    ("get", "/serials/{serial}", &[200, 400, 404]),
    ("get", "/ledger", &[200]),
    ("get", "/models", &[200]),
    ("get", "/models/{code_model}", &[200, 400, 404]),
    (
        "put",
        "/models/{code_model}",
        &[200, 201, 202, 400, 401, 409, 413, 415, 422, 503],
    ),
    ("get", "/events", &[200]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
    ("get", "/metrics", &[200]),
];

struct App {
    router: Router,
    projection: Arc<Projection>,
    broker: Arc<FakeBroker>,
    /// The next stream sequence a folded event takes.
    seq: Mutex<u64>,
}

/// A gateway whose views are caught up (and empty), with writes behind [`TOKEN`].
fn app() -> App {
    let app = starting_app();
    app.projection.set_caught_up();
    app
}

/// A gateway whose views have not caught up with the stream yet.
fn starting_app() -> App {
    let projection = Arc::new(Projection::default());
    let broker = Arc::new(FakeBroker::default());
    let state = AppState {
        projection: projection.clone(),
        broker: broker.clone(),
        api_token: Some(Arc::from(TOKEN)),
        max_count: 1_000_000,
        keys: Arc::new(common::serial::Keyring::default()),
        shutdown: CancellationToken::new(),
    };
    App {
        router: crate::http::router(state),
        projection,
        broker,
        seq: Mutex::new(1),
    }
}

struct Answered {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answered {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The `error.code` of an error body.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl App {
    /// Folds `data` into the views, stored on the fake stream too at the next sequence.
    fn fold(&self, data: EventData) -> u64 {
        let event = Event::new("/test", data);
        let mut seq = self.seq.lock().unwrap();
        let at = *seq;
        *seq += 1;
        self.projection.apply(at, &event);
        at
    }

    /// Stores a generated batch with its serials (as the generator writes it) and folds it.
    fn batch(&self, task: Uuid, batch: u64, first_number: u64, serials: &[&str]) {
        let data = EventData::Generated(SerialsGenerated {
            task_id: task,
            code_model: MODEL.into(),
            batch,
            first_number,
            count: serials.len() as u64,
            serials: serials.iter().map(|s| s.to_string()).collect(),
        });
        let seq = self.fold(data.clone());
        let payload = Event::new("/test", data).to_json();
        let subject = subjects::generated(MODEL, task);
        self.broker.insert(seq, &subject, payload.into());
    }

    /// A task requested with `number..number+count`, reserved, and (with `done`) generated
    /// in one batch of serials "s1", "s2", ... and completed.
    fn task(&self, number: u64, count: u64, done: bool) -> Uuid {
        let id = Uuid::new_v4();
        self.fold(EventData::Requested(GenerateRequested {
            task_id: id,
            code_model: MODEL.into(),
            number: Some(number),
            count,
            format: Format::default().into(),
            requested_at: OffsetDateTime::now_utc(),
            idempotency_key: None,
        }));
        self.fold(EventData::Reserved(RangeReserved {
            task_id: id,
            code_model: MODEL.into(),
            first: number,
            last: number + count - 1,
            scheme: Some(Format::default()),
            automatic: false,
        }));
        if done {
            let serials: Vec<String> = (1..=count).map(|i| format!("s{i}")).collect();
            let serials: Vec<&str> = serials.iter().map(String::as_str).collect();
            self.batch(id, 0, number, &serials);
            self.fold(EventData::Completed(TaskCompleted {
                task_id: id,
                code_model: MODEL.into(),
                count,
                first_serial: "s1".into(),
                last_serial: format!("s{count}"),
                batches: 1,
            }));
        }
        id
    }

    /// Sends one request.
    async fn send(&self, request: Request<Body>) -> Answered {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answered {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answered {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        self.send(request).await
    }

    /// A write with the token and a JSON body.
    async fn write(&self, method: Method, uri: &str, body: Value) -> Answered {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn generate(&self, body: Value) -> Answered {
        self.write(Method::POST, "/generate_sn", body).await
    }

    async fn declare(&self, model: &str, body: Value) -> Answered {
        let uri = format!("/models/{model}");
        self.write(Method::PUT, &uri, body).await
    }
}

#[tokio::test]
async fn generate_answers_202_with_the_task_and_publishes_the_request() {
    let app = app();

    let answered = app
        .generate(json!({"code_model": MODEL, "number": 1, "count": 10}))
        .await;

    assert_eq!(answered.status, StatusCode::ACCEPTED);
    let body = answered.json();
    assert_eq!(body["state"], "PENDING");
    let id = body["id"].as_str().unwrap();
    assert_eq!(answered.headers[header::LOCATION], format!("/tasks/{id}"));
    let published = app.broker.published.lock().unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1.task_id().unwrap().to_string(), id);
}

#[tokio::test]
async fn generate_refuses_what_it_can_tell_is_wrong() {
    let app = app();
    app.task(1, 10, true);

    // 400: not JSON.
    let request = Request::post("/generate_sn")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{nope"))
        .unwrap();
    let malformed = app.send(request).await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );

    // 401: no token.
    let request = Request::post("/generate_sn")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"code_model": MODEL, "count": 1}).to_string(),
        ))
        .unwrap();
    let anonymous = app.send(request).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");

    // 409: overlaps the range issued above.
    let overlap = app
        .generate(json!({"code_model": MODEL, "number": 5, "count": 10}))
        .await;
    assert_eq!(
        (overlap.status, overlap.code()),
        (StatusCode::CONFLICT, "range_conflict".into())
    );

    // 413: a body over the limit.
    let big = "x".repeat(crate::intake::BODY_LIMIT + 1);
    let too_large = app
        .generate(json!({"code_model": MODEL, "count": 1, "pad": big}))
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    // 415: not JSON by its content type.
    let request = Request::post("/generate_sn")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("count=1"))
        .unwrap();
    let text = app.send(request).await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // 422: an invalid field, named in the body.
    let zero = app.generate(json!({"code_model": MODEL, "count": 0})).await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(zero.json()["error"]["field"], "count");

    // 422: a format other than the model's scheme.
    let other = app
        .generate(json!({"code_model": MODEL, "count": 1, "format": {"width": 12}}))
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "format_mismatch".into())
    );

    assert!(app.broker.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_gives_one_task_and_refuses_another_body() {
    let app = app();
    let projection = app.projection.clone();
    app.broker
        .on_stored(move |seq, event| projection.apply(seq, event));
    let keyed = |count: u64| {
        Request::post("/generate_sn")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "order-1")
            .body(Body::from(
                json!({"code_model": MODEL, "count": count}).to_string(),
            ))
            .unwrap()
    };

    let first = app.send(keyed(5)).await;
    let again = app.send(keyed(5)).await;
    let other = app.send(keyed(6)).await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(
        (other.status, other.code()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused".into()
        )
    );
    assert_eq!(app.broker.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn writes_answer_503_with_retry_after_when_they_cannot_be_stored() {
    let request = json!({"code_model": MODEL, "count": 1});

    // The views are still catching up with the stream.
    let catching_up = starting_app().generate(request.clone()).await;
    // NATS is not connected.
    let app2 = app();
    app2.broker.disconnect();
    let disconnected = app2.generate(request.clone()).await;
    // Sent, never acknowledged.
    let app3 = app();
    app3.broker.answer(Answer::NoAck);
    let unconfirmed = app3.generate(request).await;

    for answered in [&catching_up, &disconnected, &unconfirmed] {
        assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answered.code(), "unavailable");
        assert_eq!(answered.headers[header::RETRY_AFTER], "1");
    }
    assert!(unconfirmed.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
}

#[tokio::test]
async fn a_task_is_read_by_id_and_listed() {
    let app = app();
    let done = app.task(1, 2, true);
    let running = app.task(100, 5, false);

    let one = app.get(&format!("/tasks/{done}")).await;
    let waited = app.get(&format!("/tasks/{done}?wait=1")).await;
    let page = app.get("/tasks?limit=1").await;
    let started = app.get("/tasks?state=started").await;

    assert_eq!(one.status, StatusCode::OK);
    let view = one.json();
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(
        (view["count"].clone(), view["generated"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(view["last_serial"], "s2");
    // The fold's own fields stay inside.
    assert!(view.get("range").is_none() && view.get("first_seq").is_none());
    assert_eq!(waited.json(), view);
    assert_eq!(page.status, StatusCode::OK);
    let page = page.json();
    assert_eq!(page["items"][0]["id"], running.to_string());
    assert!(page["next_cursor"].is_string());
    assert_eq!(started.json()["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn task_reads_refuse_bad_ids_and_queries() {
    let app = app();
    let unknown = Uuid::new_v4();

    let malformed = app.get("/tasks/nope").await;
    let missing = app.get(&format!("/tasks/{unknown}")).await;
    let bad_wait = app.get(&format!("/tasks/{unknown}?wait=61")).await;
    let bad_limit = app.get("/tasks?limit=0").await;
    let bad_query = app.get("/tasks?limit=1&limit=2").await;
    app.broker.disconnect();
    let unreachable = app.get(&format!("/tasks/{unknown}")).await;

    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
    assert_eq!(bad_wait.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_wait.json()["error"]["field"], "wait");
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    assert_eq!(unreachable.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_serials_of_a_finished_task_download_in_each_form() {
    let app = app();
    let id = app.task(7, 3, true);
    let uri = |q: &str| format!("/tasks/{id}/serials{q}");

    let text = app.get(&uri("")).await;
    let csv = app.get(&uri("?format=csv")).await;
    let ndjson = app.get(&uri("?format=ndjson")).await;

    assert_eq!(text.status, StatusCode::OK);
    assert_eq!(text.body, b"s1\ns2\ns3\n");
    assert_eq!(
        text.headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{id}.txt\"")
    );
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(csv.body, b"serial,number\ns1,7\ns2,8\ns3,9\n");
    assert_eq!(
        String::from_utf8(ndjson.body).unwrap().lines().next(),
        Some(r#"{"serial":"s1","number":7}"#)
    );
}

#[tokio::test]
async fn a_followed_download_of_a_finished_task_is_the_whole_task() {
    let app = app();
    let id = app.task(1, 2, true);

    let followed = app.get(&format!("/tasks/{id}/serials?follow=true")).await;

    assert_eq!(followed.status, StatusCode::OK);
    assert_eq!(followed.body, b"s1\ns2\n");
}

#[tokio::test]
async fn downloads_refuse_what_cannot_be_served() {
    let app = app();
    let running = app.task(1, 5, false);
    let unknown = Uuid::new_v4();

    let malformed = app.get("/tasks/nope/serials").await;
    let missing = app.get(&format!("/tasks/{unknown}/serials")).await;
    let not_ready = app.get(&format!("/tasks/{running}/serials")).await;
    let bad_follow = app
        .get(&format!("/tasks/{running}/serials?follow=maybe"))
        .await;
    let bad_format = app
        .get(&format!("/tasks/{running}/serials?format=xml"))
        .await;
    app.broker.disconnect();
    let unreachable = app.get(&format!("/tasks/{unknown}/serials")).await;

    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        (not_ready.status, not_ready.code()),
        (StatusCode::CONFLICT, "not_ready".into())
    );
    assert_eq!(bad_follow.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (bad_format.status, bad_format.code()),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    assert_eq!(unreachable.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_json_errors() {
    let app = app();
    let route = app.get("/no/such/route").await;
    let method = app.write(Method::DELETE, "/generate_sn", json!({})).await;

    assert_eq!(
        (route.status, route.code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        (method.status, method.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    assert_eq!(
        method.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn serials_are_looked_up_and_ranges_listed() {
    let app = app();
    let id = app.task(1, 10, true);

    let found = app.get("/serials/011100000003").await;
    let never = app.get("/serials/011100000011").await;
    let invalid = app.get("/serials/a%20b").await;
    let ledger = app.get("/ledger").await;

    assert_eq!(found.status, StatusCode::OK);
    let info = found.json();
    assert_eq!(
        (info["code_model"].clone(), info["number"].clone()),
        (json!(MODEL), json!(3))
    );
    assert_eq!(info["task_id"], id.to_string());
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        ledger.json(),
        json!({"models": {MODEL: [{"first": 1, "last": 10, "task_id": id}]}})
    );
}

#[tokio::test]
async fn a_declaration_answers_as_the_fold_decides() {
    let app = app();
    let projection = app.projection.clone();
    app.broker
        .on_stored(move |seq, event| projection.apply(seq, event));
    let scheme = json!({"width": 6});

    let declared = app.declare("A1", scheme.clone()).await;
    let same = app.declare("A1", scheme.clone()).await;
    let other = app.declare("A1", json!({"width": 7})).await;

    assert_eq!(declared.status, StatusCode::CREATED);
    assert_eq!(declared.json()["scheme"]["width"], 6);
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.json(), declared.json());
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::CONFLICT, "scheme_conflict".into())
    );
}

#[tokio::test]
async fn a_declaration_stored_but_not_yet_folded_is_202() {
    let app = app();
    // The views move past the declaration without folding it (as if it were not decoded
    // yet): the answer cannot say how the fold decides.
    let projection = app.projection.clone();
    app.broker.on_stored(move |seq, _| projection.skip(seq));

    let pending = app.declare("B2", json!({"width": 9})).await;

    assert_eq!(pending.status, StatusCode::ACCEPTED);
    assert_eq!(
        pending.json(),
        json!({
            "code_model": "B2", "issued": 0, "next_automatic": 1, "range_count": 0,
            "remaining": null,
            "scheme": {"check_digit": "none", "density": null, "key_id": null,
                       "order": "sequential", "width": 9},
        })
    );
}

#[tokio::test]
async fn declarations_refuse_what_they_can_tell_is_wrong() {
    let app = app();

    let request = Request::put("/models/C3")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"width": 6}"#))
        .unwrap();
    let anonymous = app.send(request).await;
    let request = Request::put("/models/C3")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{"))
        .unwrap();
    let malformed = app.send(request).await;
    let big = "x".repeat(crate::intake::BODY_LIMIT + 1);
    let too_large = app.declare("C3", json!({"width": 6, "pad": big})).await;
    let request = Request::put("/models/C3")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("width=6"))
        .unwrap();
    let text = app.send(request).await;
    let invalid = app.declare("C3", json!({"width": 0})).await;
    let not_caught_up = starting_app().declare("C3", json!({"width": 6})).await;

    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(not_caught_up.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.broker.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn models_are_listed_and_read_a_page_of_ranges_at_a_time() {
    let app = app();
    app.fold(EventData::Declared(SchemeDeclared {
        code_model: "D4".into(),
        scheme: Format::default(),
    }));
    let first = app.task(1, 10, true);
    app.task(11, 10, true);

    let list = app.get("/models").await;
    let page = app.get(&format!("/models/{MODEL}?limit=1")).await;
    let unknown = app.get("/models/E5").await;
    let bad_limit = app.get(&format!("/models/{MODEL}?limit=x")).await;

    assert_eq!(list.status, StatusCode::OK);
    let models = list.json()["models"].as_array().unwrap().clone();
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|m| m.get("ranges").is_none()));
    let page = page.json();
    assert_eq!(page["issued"], 20);
    assert_eq!(
        page["ranges"],
        json!([{"first": 1, "last": 10, "task_id": first}])
    );
    assert_eq!(page["next_cursor"], 1);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_readiness_metrics_and_events_answer() {
    crate::http::init_metrics();
    let app = app();

    let alive = app.get("/healthz").await;
    let ready = app.get("/readyz").await;
    let metrics = app.get("/metrics").await;
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let events = app.router.clone().oneshot(request).await.unwrap();
    app.broker.disconnect();
    let not_ready = app.get("/readyz").await;

    assert_eq!(alive.json(), json!({"status": "ok"}));
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.json(),
        json!({"nats_connected": true, "position": 0, "projection_caught_up": true, "ready": true})
    );
    assert!(String::from_utf8(metrics.body)
        .unwrap()
        .contains("sn_tasks"));
    assert_eq!(events.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.json()["nats_connected"], false);
}

#[test]
fn the_document_lists_the_statuses_these_tests_produce() {
    let document = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
    let mut listed = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                listed.insert((method.clone(), path.clone(), status.parse::<u16>().unwrap()));
            }
        }
    }
    let covered: BTreeSet<_> = COVERED
        .iter()
        .flat_map(|(method, path, statuses)| {
            statuses
                .iter()
                .map(|s| (method.to_string(), path.to_string(), *s))
        })
        .collect();
    assert_eq!(listed, covered);
}

#[tokio::test]
async fn the_dashboard_and_the_documentation_share_one_theme() {
    let app = app();

    let theme = app.get("/ui/theme.css").await;
    let dashboard = app.get("/ui").await;
    let docs = app.get("/docs").await;

    assert_eq!(theme.status, StatusCode::OK);
    assert_eq!(
        theme.headers[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert!(String::from_utf8(theme.body).unwrap().contains("--panel"));
    for page in [dashboard, docs] {
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains(r#"<link rel="stylesheet" href="/ui/theme.css">"#));
    }
}
