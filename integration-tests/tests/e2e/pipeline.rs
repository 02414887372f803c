//! The service pair end to end: POST /generate_sn to SUCCESS through JetStream and the log.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn expected(model: &str, first: u64, count: u64) -> Vec<String> {
    (first..first + count)
        .map(|n| format!("{model}{n:08}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_request_body_reaches_success_with_the_expected_serials() {
    // Arrange
    let nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;

    // Act
    let r = post(&gw, &json!({"code_model":"0111","number":1,"count":10})).await;

    // Assert
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["state"], "PENDING");
    assert_eq!(location, format!("/tasks/{id}"));
    let view = finished(&gw, &id, T).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["generated"], 10);
    assert_eq!(view["count"], 10);
    assert_eq!(view["number"], 1);
    assert_eq!(view["code_model"], "0111");
    assert_eq!(view["first_serial"], "011100000001");
    assert_eq!(view["last_serial"], "011100000010");
    assert!(view["error"].is_null());
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(view[field].is_string(), "{field} missing in {view}");
    }
    assert_eq!(serials(&gw, &id).await, expected("0111", 1, 10));

    let csv = gw
        .http
        .get(gw.url(&format!("/tasks/{id}/serials")))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "serial,number");
    assert_eq!(lines[1], "011100000001,1");
    assert_eq!(lines.len(), 11);

    let nd = gw
        .http
        .get(gw.url(&format!("/tasks/{id}/serials")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    let nd = nd.text().await.unwrap();
    let rows: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[9], json!({"serial":"011100000010","number":10}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_with_check_digits_and_large_tasks_come_out_in_order() {
    let nats = spawn_nats();
    let data = tempdir();
    let _generator = spawn_generator(&nats.url(), data.path(), &[("BATCH_SIZE", "1000")]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;

    let gs1 = submit(&gw, json!({"code_model":"629104","number":150021,"count":3,"format":{"width":6,"check_digit":"gs1"}})).await;
    let luhn = submit(&gw, json!({"code_model":"79927","number":39871,"count":1,"format":{"width":5,"check_digit":"luhn"}})).await;
    let big = submit(&gw, json!({"code_model":"BIG","count":25_500})).await;

    assert_eq!(finished(&gw, &gs1, T).await["state"], "SUCCESS");
    assert_eq!(serials(&gw, &gs1).await[0], "6291041500213");
    assert_eq!(finished(&gw, &luhn, T).await["state"], "SUCCESS");
    assert_eq!(serials(&gw, &luhn).await, ["79927398713"]);
    let view = finished(&gw, &big, T).await;
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(view["number"], 1, "first task of a model starts at 1");
    assert_eq!(serials(&gw, &big).await, expected("BIG", 1, 25_500));

    // 26 batches of at most 1000 serials, each its own event.
    let js = nats.js().await;
    let batches = stream_messages(&js)
        .await
        .into_iter()
        .filter(|(s, _, _)| s == &format!("sn.BIG.generated.{big}"))
        .count();
    assert_eq!(batches, 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_cloudevents_on_the_documented_subjects() {
    let nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    // A plain subscription, as `nats sub 'sn.>'` would make.
    let client = nats.client().await;
    let mut sub = client.subscribe("sn.>").await.unwrap();
    client.flush().await.unwrap();

    let id = submit(&gw, json!({"code_model":"0111","number":1,"count":10})).await;

    let mut seen = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(20), sub.next()).await {
        let done = m.subject.as_str().contains(".completed.");
        seen.push(m);
        if done {
            break;
        }
    }
    let subjects: Vec<String> = seen.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        [
            format!("sn.0111.requested.{id}"),
            "sn.0111.reserved".to_string(),
            format!("sn.0111.generated.{id}"),
            format!("sn.0111.completed.{id}"),
        ]
    );
    let types = [
        "sn.generate.requested.v1",
        "sn.range.reserved.v1",
        "sn.serials.generated.v1",
        "sn.task.completed.v1",
    ];
    let mut trace_ids = HashSet::new();
    for (m, ty) in seen.iter().zip(types) {
        let ev: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(ev["specversion"], "1.0");
        assert_eq!(ev["type"], ty);
        assert_eq!(ev["subject"], id.as_str());
        assert_eq!(ev["datacontenttype"], "application/json");
        assert!(ev["source"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(ev["time"].as_str().is_some());
        assert_eq!(ev["data"]["task_id"], id.as_str());
        assert_eq!(ev["data"]["code_model"], "0111");
        let headers = m.headers.as_ref().expect("events carry headers");
        assert_eq!(
            headers.get("Nats-Msg-Id").unwrap().as_str(),
            ev["id"].as_str().unwrap()
        );
        assert_eq!(
            headers.get("Content-Type").unwrap().as_str(),
            "application/cloudevents+json"
        );
        let tp = headers
            .get("traceparent")
            .expect("traceparent header")
            .as_str()
            .to_owned();
        let attr = ev["traceparent"]
            .as_str()
            .expect("traceparent attribute")
            .to_owned();
        trace_ids.insert(tp.split('-').nth(1).unwrap().to_owned());
        trace_ids.insert(attr.split('-').nth(1).unwrap().to_owned());
    }
    assert_eq!(trace_ids.len(), 1, "one trace per task: {trace_ids:?}");
    let data =
        |i: usize| serde_json::from_slice::<Value>(&seen[i].payload).unwrap()["data"].clone();
    assert_eq!(data(0)["number"], 1);
    assert_eq!(data(0)["count"], 10);
    // No format in the request: none on the stream (the model's scheme gives it).
    assert_eq!(data(0)["format"], json!({}));
    assert!(data(0)["idempotency_key"].is_null());
    assert_eq!(
        (data(1)["first"].clone(), data(1)["last"].clone()),
        (json!(1), json!(10))
    );
    assert_eq!(data(2)["batch"], 0);
    assert_eq!(data(2)["first_number"], 1);
    assert_eq!(data(2)["serials"].as_array().unwrap().len(), 10);
    assert_eq!(data(3)["count"], 10);
    assert_eq!(data(3)["batches"], 1);
    assert_eq!(data(3)["last_serial"], "011100000010");
    // A task of one batch, alone on the generator: its completion went out right behind the
    // batch, without waiting for the batch's ack.
    // Counted once the generator has the completion's ack, maybe after the stream showed it.
    let chained = wait_for(
        "the chained publish to be counted",
        Duration::from_secs(20),
        || async {
            scrape(&generator)
                .await
                .get("sn_chained_publishes_total{outcome=\"stored\"}")
                .copied()
        },
    )
    .await;
    assert_eq!(chained, 1.0);
}

/// What a completion sent right behind its batch rests on: JetStream stores a message sent
/// with `Nats-Expected-Last-Msg-Id` only directly behind that message, so never without it.
/// Each pair is sent back to back, the second before the first's ack, as the generator does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_chained_to_another_is_stored_only_right_behind_it() {
    use async_nats::jetstream::context::PublishErrorKind;
    use async_nats::jetstream::message::PublishMessage;
    use async_nats::jetstream::stream::Config;
    let nats = spawn_nats();
    let js = nats.js().await;
    js.create_stream(Config {
        name: "CHAIN".into(),
        subjects: vec!["chain.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let message = |id: &str| {
        PublishMessage::build()
            .payload(id.to_owned().into())
            .message_id(id)
    };
    let send = |subject: &'static str, m: PublishMessage| {
        let js = js.clone();
        async move { js.send_publish(subject, m).await.unwrap() }
    };

    // Right behind: stored.
    let a = send("chain.a", message("a")).await;
    let b = send("chain.b", message("b").expected_last_message_id("a")).await;
    a.await.unwrap();
    assert!(b.await.is_ok());

    // Something else stored in between: refused.
    let c = send("chain.c", message("c")).await;
    let x = send("chain.x", message("x")).await;
    let d = send("chain.d", message("d").expected_last_message_id("c")).await;
    c.await.unwrap();
    x.await.unwrap();
    assert_eq!(
        d.await.unwrap_err().kind(),
        PublishErrorKind::WrongLastMessageId
    );

    // Behind a message the stream refused: refused too.
    let e = send("chain.e", message("e").expected_last_subject_sequence(99)).await;
    let f = send("chain.f", message("f").expected_last_message_id("e")).await;
    assert!(e.await.is_err());
    assert_eq!(
        f.await.unwrap_err().kind(),
        PublishErrorKind::WrongLastMessageId
    );

    // Behind a duplicate (stored earlier, not again now): refused.
    let a2 = send("chain.a", message("a")).await;
    let g = send("chain.g", message("g").expected_last_message_id("a")).await;
    assert!(a2.await.unwrap().duplicate);
    assert_eq!(
        g.await.unwrap_err().kind(),
        PublishErrorKind::WrongLastMessageId
    );

    let subjects: Vec<String> = {
        let mut stream = js.get_stream("CHAIN").await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            out.push(
                stream
                    .get_raw_message(seq)
                    .await
                    .unwrap()
                    .subject
                    .to_string(),
            );
        }
        out
    };
    assert_eq!(subjects, ["chain.a", "chain.b", "chain.c", "chain.x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_puts_nothing_on_the_stream() {
    let nats = spawn_nats();
    let gw = spawn_gateway(&nats.url(), &[("MAX_COUNT", "1000")]);
    gw.wait_ready().await;
    let js = nats.js().await;
    let before = stream_last_seq(&js).await;
    let url = gw.url("/generate_sn");
    let send = |body: Vec<u8>, ct: &'static str| {
        let http = gw.http.clone();
        let url = url.clone();
        async move {
            http.post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let j = "application/json";
    let cases: Vec<(Vec<u8>, &str, u16, Option<&str>)> = vec![
        (b"{not json".to_vec(), j, 400, None),
        (
            br#"{"code_model":"0111","count":1}"#.to_vec(),
            "text/plain",
            415,
            None,
        ),
        (
            format!(
                r#"{{"code_model":"0111","count":1,"pad":"{}"}}"#,
                "x".repeat(70_000)
            )
            .into_bytes(),
            j,
            413,
            None,
        ),
        (
            br#"{"code_model":"0111","count":0}"#.to_vec(),
            j,
            422,
            Some("count"),
        ),
        (
            br#"{"code_model":"0111","count":-5}"#.to_vec(),
            j,
            422,
            Some("count"),
        ),
        (
            br#"{"code_model":"0111","count":1001}"#.to_vec(),
            j,
            422,
            Some("count"),
        ),
        (
            br#"{"code_model":"","count":1}"#.to_vec(),
            j,
            422,
            Some("code_model"),
        ),
        (
            br#"{"code_model":"a.b>","count":1}"#.to_vec(),
            j,
            422,
            Some("code_model"),
        ),
        (br#"{"count":1}"#.to_vec(), j, 422, Some("code_model")),
        (
            br#"{"code_model":"0111","number":99999999,"count":2}"#.to_vec(),
            j,
            422,
            Some("number"),
        ),
        (
            br#"{"code_model":"AB","count":1,"format":{"check_digit":"gs1"}}"#.to_vec(),
            j,
            422,
            Some("format.check_digit"),
        ),
        (
            br#"{"code_model":"0111","count":1,"format":{"width":21}}"#.to_vec(),
            j,
            422,
            Some("format.width"),
        ),
    ];
    for (body, ct, status, field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let r = send(body, ct).await;
        assert_eq!(r.status().as_u16(), status, "{shown}");
        let err: Value = r.json().await.unwrap();
        assert!(
            err["error"]["code"].is_string() && err["error"]["message"].is_string(),
            "{err}"
        );
        if let Some(f) = field {
            assert_eq!(err["error"]["field"], f, "{shown}");
            assert!(
                err["error"]["message"].as_str().unwrap().contains(f),
                "{err}"
            );
        }
    }
    let r = gw
        .http
        .get(gw.url("/tasks/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw
        .http
        .get(gw.url(&format!("/tasks/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        stream_last_seq(&js).await,
        before,
        "bad input reached the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_writes_but_not_reads() {
    let nats = spawn_nats();
    let gw = spawn_gateway(&nats.url(), &[("API_TOKEN", "s3cret")]);
    gw.wait_ready().await;
    let js = nats.js().await;
    let body = json!({"code_model":"0111","count":1});
    let r = post(&gw, &body).await;
    assert_eq!(r.status(), 401);
    let r = gw
        .http
        .post(gw.url("/generate_sn"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    assert_eq!(stream_last_seq(&js).await, 0);
    let r = gw
        .http
        .post(gw.url("/generate_sn"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = gw
        .http
        .get(gw.url(&format!("/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "PENDING");
    // Serials of an unfinished task: 409.
    let r = gw
        .http
        .get(gw.url(&format!("/tasks/{id}/serials")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_gives_503_and_the_gateway_recovers_alone() {
    let mut nats = spawn_nats();
    let data = tempdir();
    let _generator = spawn_generator(&nats.url(), data.path(), &[]);
    // A short publish deadline: the 503 comes after it.
    let gw = spawn_gateway(&nats.url(), &[("PUBLISH_DEADLINE_SECS", "1")]);
    gw.wait_ready().await;
    let before = submit(&gw, json!({"code_model":"OUT","count":5})).await;
    assert_eq!(finished(&gw, &before, T).await["state"], "SUCCESS");

    // A POST sent as NATS goes away may be stored later (the client sends what it buffered
    // once reconnected) although it was answered 503: retried with the same key, it is one
    // task either way.
    let post_keyed = || async {
        gw.http
            .post(gw.url("/generate_sn"))
            .header("idempotency-key", "outage")
            .json(&json!({"code_model":"OUT","count":5}))
            .send()
            .await
            .unwrap()
    };
    nats.stop();
    let r = wait_for("a 503 while NATS is down", T, || async {
        let r = post_keyed().await;
        (r.status() != 202).then_some(r)
    })
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let ready = gw.http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    nats.start();
    let after = wait_for("a 202 once NATS is back", T, || async {
        let r = post_keyed().await;
        (r.status() == 202).then_some(r)
    })
    .await;
    let id = after.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = finished(&gw, &id, T).await;
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(
        view["number"], 6,
        "the model's next free range after the outage"
    );
    let list: Value = gw
        .http
        .get(gw.url("/tasks?code_model=OUT"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_serves_identical_views() {
    let nats = spawn_nats();
    let data = tempdir();
    let _generator = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            submit(
                &gw,
                json!({"code_model": format!("R{}", i % 2), "count": 100 + i}),
            )
            .await,
        );
    }
    // Two one-digit tasks of 9: the second finds no room left and fails.
    ids.push(
        submit(
            &gw,
            json!({"code_model":"R9","count":9,"format":{"width":1}}),
        )
        .await,
    );
    finished(&gw, ids.last().unwrap(), T).await;
    ids.push(
        submit(
            &gw,
            json!({"code_model":"R9","count":9,"format":{"width":1}}),
        )
        .await,
    );
    let mut views = Vec::new();
    for id in &ids {
        views.push(finished(&gw, id, T).await);
    }
    assert_eq!(views.last().unwrap()["state"], "FAILURE");
    assert_eq!(views.last().unwrap()["error"]["code"], "range_exhausted");
    let list_before: Value = gw
        .http
        .get(gw.url("/tasks?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let status = gw.proc.sigterm(Duration::from_secs(20));
    assert!(status.success(), "gateway exit status {status:?}");
    // The stopped gateway stored a snapshot of its views: the next one starts from it and
    // has nothing left to fold.
    let js = nats.js().await;
    let last = stream_last_seq(&js).await;
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let m = scrape(&gw).await;
    assert_eq!(
        m.get("sn_projection_snapshot_position"),
        Some(&(last as f64))
    );
    assert_eq!(sum(&m, "sn_projection_events_total"), 0.0);
    for (id, before) in ids.iter().zip(&views) {
        assert_eq!(&task(&gw, id).await, before);
    }
    let list_after: Value = gw
        .http
        .get(gw.url("/tasks?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list_before, list_after);
    assert_eq!(list_after["items"].as_array().unwrap().len(), 7);

    // A task after the snapshot is folded on top of it; a gateway that folds the whole
    // stream (snapshots off) serves exactly the same.
    ids.push(submit(&gw, json!({"code_model":"R0","count":7})).await);
    finished(&gw, ids.last().unwrap(), T).await;
    let folded = sum(&scrape(&gw).await, "sn_projection_events_total");
    assert!(
        (4.0..last as f64).contains(&folded),
        "{folded} events folded"
    );
    let cold = spawn_gateway(&nats.url(), &[("SNAPSHOT_EVERY", "0")]);
    cold.wait_ready().await;
    assert_eq!(
        sum(&scrape(&cold).await, "sn_projection_events_total"),
        stream_last_seq(&js).await as f64
    );
    for id in &ids {
        assert_eq!(task(&cold, id).await, task(&gw, id).await);
    }
    let list = |s: &Service| s.http.get(s.url("/tasks?limit=100")).send();
    let cold_list: Value = list(&cold).await.unwrap().json().await.unwrap();
    assert_eq!(
        cold_list,
        list(&gw).await.unwrap().json::<Value>().await.unwrap()
    );
    assert_eq!(cold_list["items"].as_array().unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_is_damaged_or_of_a_deleted_stream_is_not_used() {
    let nats = spawn_nats();
    let js = nats.js().await;
    // No generator: the tasks stay PENDING, which is enough to be seen or not.
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"SNAP","count":5})).await;
    assert!(gw.proc.sigterm(Duration::from_secs(20)).success());
    let store = js.get_object_store("SN_VIEWS").await.unwrap();
    let info = store.info("views").await.unwrap();
    assert_eq!(info.metadata["position"], "1");

    // Damaged: same metadata, a body that does not decode. The gateway folds the stream.
    let mut meta = async_nats::jetstream::object_store::ObjectMetadata::from("views");
    meta.metadata = info.metadata.clone();
    store
        .put(
            meta,
            &mut &br#"{"version":1,"stream":"x","views":{"position":"#[..],
        )
        .await
        .unwrap();
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    assert_eq!(task(&gw, &id).await["state"], "PENDING");
    let m = scrape(&gw).await;
    assert_eq!(sum(&m, "sn_projection_events_total"), 1.0);
    assert!(!m.contains_key("sn_projection_snapshot_position"), "{m:?}");
    // Stopping stores a good snapshot in place of the damaged one, though the damaged one's
    // metadata claims the same position.
    let damaged = store.info("views").await.unwrap().nuid;
    assert!(gw.proc.sigterm(Duration::from_secs(20)).success());
    let good = store.info("views").await.unwrap();
    assert_ne!(good.nuid, damaged);
    assert_eq!(good.metadata["position"], "1");

    // The stream is deleted and created anew, and holds as many events as the snapshot
    // reflects: only the stream's identity tells the snapshot is not of this stream.
    js.delete_stream("SN").await.unwrap();
    let mut fresh = spawn_gateway(&nats.url(), &[("SNAPSHOT_EVERY", "0")]);
    fresh.wait_ready().await;
    let new_id = submit(&fresh, json!({"code_model":"SNAP","count":5})).await;
    assert!(fresh.proc.sigterm(Duration::from_secs(20)).success());
    assert_eq!(stream_last_seq(&js).await, 1);
    assert_eq!(store.info("views").await.unwrap().nuid, good.nuid);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let r = gw
        .http
        .get(gw.url(&format!("/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(task(&gw, &new_id).await["state"], "PENDING");
    let m = scrape(&gw).await;
    assert!(!m.contains_key("sn_projection_snapshot_position"), "{m:?}");
}

/// Waits until 100,000 serials of the task are out and it has not finished.
async fn under_way(gw: &Service, id: &str) {
    wait_for("the task to be under way", T, || async {
        let v = task(gw, id).await;
        assert_ne!(
            v["state"], "SUCCESS",
            "finished before the kill; make the task larger"
        );
        (v["generated"].as_u64().unwrap_or(0) >= 100_000).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_generator_finishes_a_million_serials_after_restart() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), &[("ACK_WAIT_SECS", "5")]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"0111","count":1_000_000})).await;

    // Kill it mid-task: once some batches are out, before the completion.
    under_way(&gw, &id).await;
    generator.proc.kill9();
    let _generator = spawn_generator(&nats.url(), data.path(), &[("ACK_WAIT_SECS", "5")]);

    let view = finished(&gw, &id, Duration::from_secs(120)).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["generated"], 1_000_000);
    let all = serials(&gw, &id).await;
    assert_eq!(all.len(), 1_000_000);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 1_000_000);
    assert_eq!(all[0], "011100000001");
    assert_eq!(all[999_999], "011101000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_resumed_elsewhere_under_another_batch_size_keeps_its_batches() {
    let nats = spawn_nats();
    let (first_disk, second_disk) = (tempdir(), tempdir());
    let mut first = spawn_generator(
        &nats.url(),
        first_disk.path(),
        &[("ACK_WAIT_SECS", "3"), ("BATCH_SIZE", "1000")],
    );
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"0112","count":1_000_000})).await;
    under_way(&gw, &id).await;
    first.proc.kill9();
    // Another replica, on a disk of its own, set to another batch size.
    let _second = spawn_generator(
        &nats.url(),
        second_disk.path(),
        &[("ACK_WAIT_SECS", "3"), ("BATCH_SIZE", "700")],
    );

    let view = finished(&gw, &id, Duration::from_secs(120)).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["generated"], 1_000_000);
    // The download fails on batches that are not one run of the task's numbers.
    let all = serials(&gw, &id).await;
    assert_eq!(all.len(), 1_000_000);
    let misplaced = (1..).zip(&all).find(|(n, s)| **s != format!("0112{n:08}"));
    assert_eq!(misplaced, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_log_prints_every_event_and_both_services_stop_cleanly() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), &[("BATCH_SIZE", "100")]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let a = submit(&gw, json!({"code_model":"LOG","count":250})).await;
    finished(&gw, &a, T).await;
    // Nine one-digit serials, then nine more that cannot fit: a FAILURE in the log too.
    let nine = json!({"code_model":"LOG1","count":9,"format":{"width":1}});
    let b = submit(&gw, nine.clone()).await;
    finished(&gw, &b, T).await;
    let c = submit(&gw, nine).await;
    assert_eq!(finished(&gw, &c, T).await["state"], "FAILURE");

    assert!(gw.proc.sigterm(Duration::from_secs(20)).success());
    assert!(generator.proc.sigterm(Duration::from_secs(20)).success());

    let out = std::process::Command::new(binary("generator"))
        .args(["log", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let js = nats.js().await;
    let published: Vec<Value> = stream_messages(&js)
        .await
        .into_iter()
        .filter(|(s, _, _)| !s.contains(".requested."))
        .map(|(_, v, _)| v)
        .collect();
    // Every event the generator published is in its log, in the same order.
    let ids = |v: &[Value]| {
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&lines), ids(&published));
    // Batches are kept without their serials and written again when read: the same events.
    assert!(
        lines == published,
        "the log's events differ from the published ones"
    );
    assert_eq!(
        lines.len(),
        (1 + 3 + 1) + (1 + 1 + 1) + 1,
        "two full tasks and a failure"
    );
    assert_eq!(lines.last().unwrap()["type"], "sn.task.failed.v1");
    assert!(lines.iter().all(|e| e["specversion"] == "1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_a_task_and_ends_at_shutdown() {
    let nats = spawn_nats();
    let data = tempdir();
    let _generator = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let mut events = gw
        .http
        .get(gw.url("/events?code_model=SSE"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));

    let id = submit(&gw, json!({"code_model":"SSE","count":10})).await;
    let mut text = String::new();
    let mut states = Vec::new();
    while !states.iter().any(|s| s == "SUCCESS") {
        let chunk = tokio::time::timeout(T, events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        states = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap())
            .inspect(|v| assert_eq!(v["id"], id.as_str()))
            .map(|v| v["state"].as_str().unwrap().to_owned())
            .collect();
    }
    assert!(text.contains("event: task"));
    // Each event is the view when it was sent: states only move forward.
    let rank = |s: &str| {
        ["PENDING", "STARTED", "SUCCESS"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    assert!(
        states.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{states:?}"
    );

    // A client still listening does not hold the gateway open.
    let status = gw.proc.sigterm(Duration::from_secs(20));
    assert!(status.success(), "gateway exit status {status:?}");
    let rest =
        tokio::time::timeout(T, async { while let Ok(Some(_)) = events.chunk().await {} }).await;
    assert!(rest.is_ok(), "the event stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_read_answers_when_the_task_ends() {
    let nats = spawn_nats();
    let data = tempdir();
    let _generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"LONG","count": 1_000_000})).await;
    // One read, no polling: it returns once the task is over.
    let view: Value = gw
        .http
        .get(gw.url(&format!("/tasks/{id}?wait=60")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["generated"], 1_000_000);
    let r = gw
        .http
        .get(gw.url(&format!("/tasks/{id}?wait=61")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_download_streams_a_task_from_pending_to_its_end() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let get = |id: &str, query: &str| {
        gw.http
            .get(gw.url(&format!("/tasks/{id}/serials{query}")))
            .send()
    };
    // No generator yet: every task stays PENDING.
    let id = submit(&gw, json!({"code_model":"FOL","number":6,"count":250_000})).await;
    // Two one-digit tasks of 9: whichever runs second finds no room and fails.
    let tight = [
        submit(
            &gw,
            json!({"code_model":"FOL1","count":9,"format":{"width":1}}),
        )
        .await,
        submit(
            &gw,
            json!({"code_model":"FOL1","count":9,"format":{"width":1}}),
        )
        .await,
    ];
    assert_eq!(get(&id, "").await.unwrap().status(), 409);
    assert_eq!(get(&id, "?follow=maybe").await.unwrap().status(), 422);
    let big = get(&id, "?follow=true").await.unwrap();
    assert_eq!(big.status(), 200);
    let mut small = Vec::new();
    for t in &tight {
        let r = get(t, "?follow=1").await.unwrap();
        assert_eq!(r.status(), 200);
        small.push(r);
    }
    // Answered while PENDING: the serials can only come as the generator makes them.
    assert_eq!(task(&gw, &id).await["state"], "PENDING");

    let mut generator = spawn_generator(&nats.url(), data.path(), &[("BATCH_SIZE", "1000")]);
    let body = big.text().await.unwrap();
    assert_eq!(
        body.lines().collect::<Vec<_>>(),
        expected("FOL", 6, 250_000)
    );
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
    let mut outcomes = Vec::new();
    for r in small {
        outcomes.push(r.text().await.map(|b| b.lines().count()).ok());
    }
    outcomes.sort();
    // The failed task's body ends in an error, never as an empty or short download.
    assert_eq!(outcomes, [None, Some(9)]);
    // Each batch was read once: 250 of the big task, 1 of the small one. The follows began
    // before any batch was stored, so batches came from the projection's live feed too.
    let m = scrape(&gw).await;
    let feed = sum(&m, "sn_download_batches_total{read=\"feed\"");
    let stream = sum(&m, "sn_download_batches_total{read=\"stream\"");
    assert_eq!(feed + stream, 251.0, "feed {feed}, stream {stream}");
    assert!(feed > 0.0, "no batch came from the live feed");

    // A follow still waiting when the gateway stops fails its body and does not hold the
    // gateway up.
    assert!(generator.proc.sigterm(Duration::from_secs(20)).success());
    let waiting = submit(&gw, json!({"code_model":"FOL2","count":5})).await;
    let r = get(&waiting, "?follow=true").await.unwrap();
    assert_eq!(r.status(), 200);
    let status = gw.proc.sigterm(Duration::from_secs(20));
    assert!(status.success(), "gateway exit status {status:?}");
    assert!(r.bytes().await.is_err());
}
