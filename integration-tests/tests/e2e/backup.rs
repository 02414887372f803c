//! `snctl backup` and `snctl restore`: a stream restored from a backup serves the same views.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// Runs snctl to its end; its exit code and stderr.
fn snctl(nats_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary("snctl"))
        .args(args)
        .args(["--nats-url", nats_url])
        .env_remove("API_TOKEN")
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD")
        .env_remove("NATS_CREDS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

async fn get(gw: &Service, path: &str) -> Value {
    let r = gw.http.get(gw.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

/// What a client can read: the task list, the models, each successful task's serials.
async fn views(gw: &Service, ids: &[String]) -> (Value, Value, Vec<Vec<String>>) {
    let tasks = get(gw, "/tasks?limit=1000").await;
    let models = get(gw, "/models").await;
    let mut downloads = Vec::new();
    for id in ids {
        if task(gw, id).await["state"] == "SUCCESS" {
            downloads.push(serials(gw, id).await);
        }
    }
    (tasks, models, downloads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_stream_serves_the_same_views() {
    // Arrange: a history with a declared model, explicit and automatic ranges, a failure.
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    let r = gw
        .http
        .put(gw.url("/models/0222"))
        .json(&json!({"width": 6}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut ids = Vec::new();
    for body in [
        json!({"code_model": "0111", "number": 1, "count": 50}),
        json!({"code_model": "0222", "count": 7}),
        json!({"code_model": "0111", "count": 3}),
    ] {
        ids.push(submit(&gw, body).await);
    }
    for id in &ids {
        finished(&gw, id, T).await;
    }
    let before = views(&gw, &ids).await;
    assert_eq!(before.2.len(), 3, "every task succeeded: {}", before.0);
    let js = nats.js().await;
    let messages = stream_messages(&js).await;
    gw.proc.kill9();
    generator.proc.kill9();
    let dir = tempdir();
    let file = dir.path().join("sn.ndjson");
    let file_arg = file.display().to_string();

    // Act: back up, lose the stream (and the views' snapshots), restore.
    let (code, stderr) = snctl(&nats.url(), &["backup", &file_arg]);
    assert_eq!(code, Some(0), "backup: {stderr}");
    js.delete_stream("SN").await.unwrap();
    let _ = js.delete_object_store("SN_VIEWS").await;
    assert_eq!(stream_last_seq(&js).await, 0);
    let (code, stderr) = snctl(&nats.url(), &["restore", &file_arg]);
    assert_eq!(code, Some(0), "restore: {stderr}");

    // Assert: the same messages in the same order, and a fresh gateway serves the same views.
    let restored = stream_messages(&js).await;
    assert_eq!(restored.len(), messages.len());
    for ((s1, p1, h1), (s2, p2, h2)) in messages.iter().zip(&restored) {
        assert_eq!((s1, p1), (s2, p2));
        let id = |h: &Option<async_nats::HeaderMap>| {
            h.as_ref()
                .and_then(|h| h.get("Nats-Msg-Id").map(|v| v.to_string()))
        };
        assert_eq!(id(h1), id(h2));
    }
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let after = views(&gw, &ids).await;
    assert_eq!(after.0, before.0, "GET /tasks");
    assert_eq!(after.1, before.1, "GET /models");
    assert_eq!(after.2, before.2, "downloads");

    // A restore into a stream that has messages is refused, and changes nothing.
    let last = stream_last_seq(&js).await;
    let (code, stderr) = snctl(&nats.url(), &["restore", &file_arg]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("exists and is not new"), "{stderr}");
    assert_eq!(stream_last_seq(&js).await, last);
    // A generator with a log from before the loss runs on against the restored stream.
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    generator.wait_ready().await;
    let id = submit(&gw, json!({"code_model": "0111", "count": 2})).await;
    let view = finished(&gw, &id, T).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["first_serial"], "011100000054");
}
