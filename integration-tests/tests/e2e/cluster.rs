//! Clustered JetStream and graceful rollouts: R3 stream across three nats-servers, a node
//! killed mid-run; SIGTERM on a generator mid-task; SIGTERM on a gateway mid-download.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_survives_a_node_loss_with_no_duplicate() {
    let mut nodes = spawn_nats_cluster();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    // Each service lists every node, starting from a different one.
    let list = |first: usize| {
        (0..3)
            .map(|i| urls[(first + i) % 3].clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let env = [("STREAM_REPLICAS", "3"), ("ACK_WAIT_SECS", "3")];
    let gw = spawn_gateway(&list(0), &env);
    let dirs = [tempdir(), tempdir()];
    let _g1 = spawn_generator(&list(1), dirs[0].path(), &env);
    let _g2 = spawn_generator(&list(2), dirs[1].path(), &env);
    wait_for("the R3 stream and a ready gateway", T, || async {
        let r = gw.http.get(gw.url("/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let js = nodes[0].js().await;
    let info = js
        .get_stream("SN")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);

    // A 503 (a stream leader being elected) is the documented answer to retry.
    let accepted = |body: Value| {
        let gw = &gw;
        async move {
            let r = wait_for("a request accepted by the cluster", T, || async {
                let r = post(gw, &body).await;
                (r.status() == 202).then_some(r)
            })
            .await;
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut ids = Vec::new();
    for i in 0..12u64 {
        ids.push(accepted(json!({"code_model":"CLU","count": 20_000 + i})).await);
    }
    // Lose the node one generator is attached to, mid-run.
    wait_for("some progress", T, || async {
        let v = task(&gw, &ids[0]).await;
        (v["generated"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    nodes[2].stop();
    // Keep submitting while the node is gone (503s are allowed to be retried).
    for i in 0..4u64 {
        ids.push(accepted(json!({"code_model":"CLU","count": 1_000 + i})).await);
    }
    let mut views = Vec::new();
    for id in &ids {
        let v = finished(&gw, id, T).await;
        assert_eq!(v["state"], "SUCCESS", "{v}");
        views.push(v);
    }
    let mut all = std::collections::HashMap::new();
    for v in &views {
        let got = serials(&gw, v["id"].as_str().unwrap()).await;
        assert_eq!(got.len() as u64, v["count"].as_u64().unwrap(), "{v}");
        for s in got {
            if let Some(other) = all.insert(s.clone(), v.clone()) {
                panic!("duplicate serial {s} in {v} and {other}");
            }
        }
    }
    let expected: u64 = views.iter().map(|v| v["count"].as_u64().unwrap()).sum();
    assert_eq!(all.len() as u64, expected);

    // The node comes back and catches up with the stream.
    nodes[2].start();
    let last = stream_last_seq(&js).await;
    let back = nodes[2].js().await;
    wait_for("the restarted node to catch up", T, || async {
        let mut s = back.get_stream("SN").await.ok()?;
        let info = s.info().await.ok()?;
        let cluster = info.cluster.as_ref()?;
        let all_current = cluster.replicas.iter().all(|r| r.current);
        (all_current && cluster.replicas.len() == 2 && info.state.last_sequence >= last)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_generator_hands_its_task_to_another_replica() {
    let nats = spawn_nats();
    let dirs = [tempdir(), tempdir()];
    let env = [("BATCH_SIZE", "1000"), ("BATCHES_PER_FLUSH", "1")];
    let mut first = spawn_generator(&nats.url(), dirs[0].path(), &env);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    first.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"ROLL","count": 2_000_000})).await;
    wait_for("the task to be under way", T, || async {
        let v = task(&gw, &id).await;
        assert_ne!(
            v["state"], "SUCCESS",
            "finished before the SIGTERM; make it larger"
        );
        (v["generated"].as_u64().unwrap_or(0) >= 20_000).then_some(())
    })
    .await;
    let status = first.proc.sigterm(Duration::from_secs(30));
    assert!(status.success(), "generator exit status {status:?}");
    assert_ne!(
        task(&gw, &id).await["state"],
        "SUCCESS",
        "it handed the task back, not finished it"
    );

    let _second = spawn_generator(&nats.url(), dirs[1].path(), &env);
    let v = finished(&gw, &id, T).await;
    assert_eq!(v["state"], "SUCCESS", "{v}");
    let all = serials(&gw, &id).await;
    assert_eq!(all.len(), 2_000_000);
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 2_000_000);
    assert_eq!(all.last().unwrap(), "ROLL02000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_gateway_lets_a_download_in_flight_finish() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"DRAIN","count": 1_000_000})).await;
    assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");

    let mut response = gw
        .http
        .get(gw.url(&format!("/tasks/{id}/serials")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.chunk().await.unwrap().unwrap().to_vec();
    gw.proc.terminate();
    // New connections are refused once the gateway stops listening...
    wait_for("the gateway to stop accepting", T, || async {
        http_client()
            .get(gw.url("/healthz"))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ...while the download in flight runs to its end.
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, 1_000_000, "the download in flight was cut short");
    let status = gw.proc.wait(Duration::from_secs(30));
    assert!(status.success(), "gateway exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_ride_through_the_loss_of_the_stream_leader() {
    let mut nodes = spawn_nats_cluster();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let list = |first: usize| {
        (0..3)
            .map(|i| urls[(first + i) % 3].clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let env = [("STREAM_REPLICAS", "3")];
    let gw = spawn_gateway(&list(0), &env);
    let dir = tempdir();
    let _g = spawn_generator(&list(1), dir.path(), &env);
    wait_for("the R3 stream and a ready gateway", T, || async {
        let r = gw.http.get(gw.url("/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let first = submit(&gw, json!({"code_model":"LEAD","count":10})).await;
    assert_eq!(finished(&gw, &first, T).await["state"], "SUCCESS");

    // The node that leads SN goes away: every POST meanwhile is accepted on its first try,
    // the gateway retrying its publish (same message id) through the election.
    let leader = wait_for("the stream's leader", T, || async {
        for n in &nodes {
            let js = async_nats::jetstream::new(async_nats::connect(n.url()).await.ok()?);
            let info = js.get_stream("SN").await.ok()?.info().await.ok()?.clone();
            if let Some(name) = info.cluster.and_then(|c| c.leader) {
                return name.strip_prefix('n')?.parse::<usize>().ok();
            }
        }
        None
    })
    .await;
    nodes[leader].stop();
    let mut ids = Vec::new();
    for i in 0..30u64 {
        let body = json!({"code_model":"LEAD","count": 1 + i});
        let r = post(&gw, &body).await;
        assert_eq!(r.status(), 202, "POST {i} after the leader was lost");
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        assert_eq!(finished(&gw, id, T).await["state"], "SUCCESS");
    }
}
