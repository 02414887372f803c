//! One serial string, one issue: a model has one scheme, no two models can write the same
//! string, lookups resolve a string to at most one (model, number), and a generator issues
//! exactly the range its task holds, from the stream it was folded from.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// What a generator logs when the stream lacks reservations its log holds.
const REFUSAL: &str = "lacks reservations this generator's log holds";

/// PUT /models/{model} with a JSON body.
async fn declare(gw: &Service, model: &str, scheme: Value) -> reqwest::Response {
    gw.http
        .put(gw.url(&format!("/models/{model}")))
        .json(&scheme)
        .send()
        .await
        .unwrap()
}

/// The error code of an error answer, with its status.
async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Runs a request to its end and returns its view.
async fn run(gw: &Service, body: Value) -> Value {
    let id = submit(gw, body).await;
    finished(gw, &id, T).await
}

async fn one_serial(gw: &Service, body: Value) -> String {
    let v = run(gw, body.clone()).await;
    assert_eq!(v["state"], "SUCCESS", "{body}: {v}");
    let id = v["id"].as_str().unwrap();
    let all = serials(gw, id).await;
    assert_eq!(all.len(), 1, "{body}");
    all[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_keeps_one_scheme_so_its_numbers_never_write_the_same_string() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;

    // Number 42 with a GS1 check digit fixes model 7777's scheme...
    let gs1 = one_serial(
        &gw,
        json!({"code_model":"7777","number":42,"count":1,"format":{"check_digit":"gs1"}}),
    )
    .await;
    assert_eq!(gs1, "7777000000424");
    // ...so number 424 at width 9, which would write the same string, is refused at once,
    // naming both formats.
    let r = post(
        &gw,
        &json!({"code_model":"7777","number":424,"count":1,"format":{"width":9}}),
    )
    .await;
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "format_mismatch"),
        "{message}"
    );
    assert!(
        message.contains("width 9") && message.contains("gs1"),
        "{message}"
    );
    // Without a format a request gets the model's scheme: the old body keeps working.
    let same_scheme = one_serial(&gw, json!({"code_model":"7777","number":424,"count":1})).await;
    let model_scheme = common::serial::SerialFormatter::new(
        "7777",
        common::Format::new(8, common::CheckDigit::Gs1),
    );
    assert_eq!(same_scheme, model_scheme.to_string(424));
    assert_ne!(same_scheme, gs1);

    // Number 5 at width 7 with GS1 and number 50 at width 8: declared first, the model
    // refuses the second format.
    let r = declare(&gw, "5550", json!({"width":7,"check_digit":"gs1"})).await;
    assert_eq!(r.status(), 201);
    let r = declare(&gw, "5550", json!({"width":7,"check_digit":"gs1"})).await;
    assert_eq!(r.status(), 200, "the same declaration again");
    let (status, code, _) = error_of(declare(&gw, "5550", json!({"width":8})).await).await;
    assert_eq!((status, code.as_str()), (409, "scheme_conflict"));
    assert_eq!(
        one_serial(&gw, json!({"code_model":"5550","number":5,"count":1})).await,
        "555000000050"
    );
    let r = post(
        &gw,
        &json!({"code_model":"5550","number":50,"count":1,"format":{"width":8}}),
    )
    .await;
    assert_eq!(error_of(r).await.1, "format_mismatch");
    let model = get_json(&gw, "/models/5550").await;
    assert_eq!(
        model["scheme"],
        json!({"width":7,"check_digit":"gs1","order":"sequential","key_id":null,"density":null})
    );
    assert_eq!(model["issued"], 1);
    assert_eq!(model["remaining"], 10_000_000 - 1);
    assert_eq!(model["ranges"][0]["first"], 5);

    // Two first requests of a new model in different formats, at once: the first in stream
    // order fixes the scheme, the other ends in FAILURE format_mismatch; never both.
    let bodies = [
        json!({"code_model":"8888","number":1,"count":5,"format":{"width":8}}),
        json!({"code_model":"8888","number":10,"count":5,"format":{"width":9}}),
    ];
    let ids = join_all(bodies.iter().map(|b| submit(&gw, b.clone()))).await;
    let views = join_all(ids.iter().map(|id| finished(&gw, id, T))).await;
    let states: Vec<_> = views.iter().map(|v| v["state"].as_str().unwrap()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "SUCCESS").count(),
        1,
        "{views:?}"
    );
    let failed = views.iter().find(|v| v["state"] == "FAILURE").unwrap();
    assert_eq!(failed["error"]["code"], "format_mismatch", "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_whose_serials_could_meet_are_refused_and_others_never() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;

    let v = run(&gw, json!({"code_model":"0111","number":1,"count":10})).await;
    assert_eq!(v["first_serial"], "011100000001");
    // Model 01 at width 10 would write 011100000001 for number 1100000001.
    let r = post(
        &gw,
        &json!({"code_model":"01","number":1_100_000_001u64,"count":1,"format":{"width":10}}),
    )
    .await;
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (409, "namespace_conflict"));
    assert!(message.contains("0111"), "{message}");
    let (status, code, _) = error_of(declare(&gw, "011", json!({"width":9})).await).await;
    assert_eq!((status, code.as_str()), (409, "namespace_conflict"));

    // Codes whose serials cannot meet are never refused.
    for (model, width) in [("02", 10), ("0333", 8), ("A1", 8), ("A12", 8), ("01", 9)] {
        let r = declare(&gw, model, json!({ "width": width })).await;
        assert_eq!(r.status(), 201, "{model} at width {width}");
    }

    // Two new models that could meet, first used at once and straight from NATS, past the
    // gateway's check: the stream order decides, the later one issues nothing.
    let js = nats.js().await;
    let requests = [("04", 10, 5_500_000_001u64), ("0455", 8, 1)];
    let mut ids = Vec::new();
    for (model, width, number) in requests {
        let id = uuid::Uuid::new_v4();
        publish_request(&js, model, id, json!({"width": width}), number, 1).await;
        ids.push(id.to_string());
    }
    let views = join_all(ids.iter().map(|id| finished(&gw, id, T))).await;
    let ok: Vec<_> = views.iter().filter(|v| v["state"] == "SUCCESS").collect();
    assert_eq!(ok.len(), 1, "{views:?}");
    let failed = views.iter().find(|v| v["state"] == "FAILURE").unwrap();
    assert_eq!(failed["error"]["code"], "namespace_conflict", "{failed}");

    // Every model the ledger admitted writes serials no other can.
    let models = get_json(&gw, "/models").await;
    let with_scheme: Vec<_> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["scheme"].is_null())
        .collect();
    assert_eq!(with_scheme.len(), 7, "{models}");
}

/// Publishes a request event straight onto the stream, as any NATS client could.
async fn publish_request(
    js: &async_nats::jetstream::Context,
    model: &str,
    id: uuid::Uuid,
    format: Value,
    number: u64,
    count: u64,
) {
    let body = json!({
        "specversion": "1.0", "id": format!("{id}:requested"), "source": "/test",
        "type": "sn.generate.requested.v1", "subject": id, "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"task_id": id, "code_model": model, "number": number, "count": count,
                 "format": format, "requested_at": "2026-01-01T00:00:00Z",
                 "idempotency_key": null}
    });
    publish_raw(
        js,
        &format!("sn.{model}.requested.{id}"),
        &format!("{id}:requested:test"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
}

async fn publish_raw(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg_id: &str,
    body: Vec<u8>,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(subject.to_owned(), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_resolves_to_one_model_and_bad_input_is_refused() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let a = run(&gw, json!({"code_model":"0111","number":1,"count":10})).await;
    let b = run(
        &gw,
        json!({"code_model":"01","number":1,"count":10,"format":{"width":4}}),
    )
    .await;
    let lookup = |serial: &str| {
        let url = gw.url(&format!("/serials/{serial}"));
        let http = gw.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = lookup("011100000005").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["code_model"].as_str(), v["number"].as_u64()),
        (Some("0111"), Some(5))
    );
    assert_eq!(v["task_id"], a["id"]);
    let (status, v) = lookup("010007").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["code_model"].as_str(), v["number"].as_u64()),
        (Some("01"), Some(7))
    );
    assert_eq!(v["task_id"], b["id"]);
    assert_eq!(lookup("011100000011").await.0, 404);
    assert_eq!(lookup("019999").await.0, 404);
    // Not ASCII, cut inside a character, too long: a clear 400, never a dropped connection.
    for bad in ["0111%C3%A9", "%C3%A90111", "0111%00", &"9".repeat(80)] {
        let (status, v) = lookup(bad).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_ranges_take_the_next_free_range_past_a_high_explicit_one() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let high = run(
        &gw,
        json!({"code_model":"HIGH","number":99_999_990,"count":10}),
    )
    .await;
    assert_eq!(high["state"], "SUCCESS");
    let next = run(&gw, json!({"code_model":"HIGH","count":1})).await;
    assert_eq!(next["state"], "SUCCESS", "{next}");
    assert_eq!(next["first_serial"], "HIGH00000001");
    // An explicit range just above the automatic cursor is skipped, not overlapped.
    run(&gw, json!({"code_model":"HIGH","number":2,"count":3})).await;
    let after = run(&gw, json!({"code_model":"HIGH","count":2})).await;
    assert_eq!(after["first_serial"], "HIGH00000005", "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_edges_are_refused_before_the_stream_or_end_in_failure() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let js = nats.js().await;
    let before = stream_last_seq(&js).await;

    // Past u64 at the widest width: 422 at once, nothing stored.
    let r = post(
        &gw,
        &json!({"code_model":"X","number":u64::MAX - 1,"count":3,"format":{"width":20}}),
    )
    .await;
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, 422, "{message}");
    // An empty Idempotency-Key.
    let r = gw
        .http
        .post(gw.url("/generate_sn"))
        .header("Idempotency-Key", "")
        .json(&json!({"code_model":"X","count":1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 422);
    assert_eq!(
        stream_last_seq(&js).await,
        before,
        "nothing reached the stream"
    );

    // Invalid requests that reach the generator straight from NATS end in FAILURE.
    let bad_model = uuid::Uuid::new_v4();
    let body = json!({
        "specversion": "1.0", "id": format!("{bad_model}:requested"), "source": "/test",
        "type": "sn.generate.requested.v1", "subject": bad_model,
        "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
        "data": {"task_id": bad_model, "code_model": "bad model!", "number": null,
                 "count": 1, "requested_at": "2026-01-01T00:00:00Z", "idempotency_key": null}
    });
    publish_raw(
        &js,
        &format!("sn.BAD.requested.{bad_model}"),
        "bad-model",
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    let garbage = uuid::Uuid::new_v4();
    publish_raw(
        &js,
        &format!("sn.JUNK.requested.{garbage}"),
        "garbage",
        b"not an event \xff".to_vec(),
    )
    .await;
    for id in [bad_model, garbage] {
        let v = finished(&gw, &id.to_string(), T).await;
        assert_eq!(v["state"], "FAILURE", "{v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_unlike_its_tasks_held_range_issues_nothing() {
    let nats = spawn_nats();
    let (first_dir, second_dir) = (tempdir(), tempdir());
    let mut first = spawn_generator(&nats.url(), first_dir.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let held = run(&gw, json!({"code_model":"FORGE","count":10})).await;
    assert_eq!(held["state"], "SUCCESS");
    let id = held["id"].as_str().unwrap().to_owned();
    assert!(first.proc.sigterm(Duration::from_secs(20)).success());

    // The same task asks for 1,000 numbers (another message id: past the duplicate window),
    // and only a generator with no log of the task is there to take it.
    let js = nats.js().await;
    let task_id: uuid::Uuid = id.parse().unwrap();
    publish_request(&js, "FORGE", task_id, json!(null), 1, 1000).await;
    let _second = spawn_generator(&nats.url(), second_dir.path(), &[]);
    let failed = wait_for("the forged request to be refused", T, || {
        let js = js.clone();
        async move {
            let msgs = stream_messages(&js).await;
            msgs.into_iter()
                .find(|(s, _, _)| s == &format!("sn.FORGE.failed.{task_id}"))
        }
    })
    .await;
    assert_eq!(failed.1["data"]["code"], "invalid_request", "{}", failed.1);
    // Every serial ever published for the task is one of its ten, and the next task follows.
    let next = run(&gw, json!({"code_model":"FORGE","count":5})).await;
    assert_eq!(next["first_serial"], "FORGE00000011");
    let mut numbers: HashMap<String, u64> = HashMap::new();
    for (subject, event, _) in stream_messages(&js).await {
        if subject.starts_with("sn.FORGE.generated.") {
            for s in event["data"]["serials"].as_array().unwrap() {
                *numbers.entry(s.as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    assert_eq!(numbers.len(), 15, "{numbers:?}");
    assert!(numbers.values().all(|n| *n == 1), "{numbers:?}");
    assert_eq!(task(&gw, &id).await["state"], "SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_whose_log_holds_what_a_recreated_stream_lacks_refuses_to_issue() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[("SNAPSHOT_EVERY", "0")]);
    gw.wait_ready().await;
    for _ in 0..3 {
        assert_eq!(
            run(&gw, json!({"code_model":"KEPT","count":10})).await["state"],
            "SUCCESS"
        );
    }
    // Its ledger snapshot is saved a little after each reservation; a clean stop saves it.
    assert!(g.proc.sigterm(Duration::from_secs(20)).success());
    let js = nats.js().await;
    js.delete_stream("SN").await.unwrap();

    let g = spawn_generator(&nats.url(), data.path(), &[]);
    wait_for_log(&g, REFUSAL, T).await;
    let r = g.http.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // A request on the new stream is left for a generator that can issue it.
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"KEPT","count":10})).await;
    let fresh = tempdir();
    let _other = spawn_generator(&nats.url(), fresh.path(), &[]);
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
    let reservations: Vec<_> = stream_messages(&js)
        .await
        .into_iter()
        .filter(|(s, _, _)| s == "sn.KEPT.reserved")
        .collect();
    assert_eq!(reservations.len(), 1, "only the other generator reserved");
    let r = g.http.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "still refusing");

    // Restarted, now that the new stream holds a range with the first number of one the old
    // stream held: it refuses again.
    let mut g = g;
    assert!(g.proc.sigterm(Duration::from_secs(20)).success());
    let again = spawn_generator(&nats.url(), data.path(), &[]);
    wait_for_log(&again, REFUSAL, T).await;
    let r = again.http.get(again.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}
