//! Never the same serial twice: concurrency across replicas, crashes, redeliveries, NATS
//! restarts, idempotent requests, the lookup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(120);

/// Downloads every successful task's serials and checks each appears exactly once, with no
/// gap inside a task. Returns the total.
async fn assert_unique(gw: &Service, views: &[Value]) -> usize {
    let mut seen: HashMap<String, String> = HashMap::new();
    for v in views.iter().filter(|v| v["state"] == "SUCCESS") {
        let id = v["id"].as_str().unwrap();
        let all = serials(gw, id).await;
        assert_eq!(
            all.len() as u64,
            v["count"].as_u64().unwrap(),
            "task {id} serial count"
        );
        assert_eq!(all.first().map(String::as_str), v["first_serial"].as_str());
        assert_eq!(all.last().map(String::as_str), v["last_serial"].as_str());
        let model = v["code_model"].as_str().unwrap();
        let first = v["number"].as_u64().unwrap();
        for (i, s) in all.iter().enumerate() {
            assert_eq!(
                s,
                &format!("{model}{:08}", first + i as u64),
                "gap or disorder in {id}"
            );
            if let Some(other) = seen.insert(s.clone(), id.to_owned()) {
                panic!("serial {s} issued to both {other} and {id}");
            }
        }
    }
    seen.len()
}

async fn replicas_issue_each_number_once(replicas: usize) {
    let nats = spawn_nats();
    let dirs: Vec<_> = (0..replicas).map(|_| tempdir()).collect();
    let gens: Vec<_> = dirs
        .iter()
        .map(|d| spawn_generator(&nats.url(), d.path(), &[]))
        .collect();
    let gw = Arc::new(spawn_gateway(&nats.url(), &[]));
    gw.wait_ready().await;
    for g in &gens {
        g.wait_ready().await;
    }

    // 300 auto-allocated requests on one model, and 100 explicit ranges where each overlaps
    // its neighbours, all at once.
    let mut posts = Vec::new();
    for i in 0..300u64 {
        posts.push(json!({"code_model":"AUTO","count": 1 + i % 7}));
    }
    for i in 0..100u64 {
        posts.push(json!({"code_model":"EXP","number": 1 + i * 50,"count": 100}));
    }
    let responses = join_all(posts.iter().map(|body| {
        let gw = gw.clone();
        let body = body.clone();
        async move {
            let r = post(&gw, &body).await;
            let status = r.status().as_u16();
            (body, status, r.json::<Value>().await.unwrap())
        }
    }))
    .await;

    let mut views = Vec::new();
    let mut rejected_at_once = Vec::new();
    for (body, status, answer) in &responses {
        match status {
            202 => views.push((
                body.clone(),
                finished(&gw, answer["id"].as_str().unwrap(), T).await,
            )),
            409 => {
                assert_eq!(answer["error"]["code"], "range_conflict");
                rejected_at_once.push(body.clone());
            }
            other => panic!("unexpected {other} for {body}: {answer}"),
        }
    }
    // Every auto request succeeds, and together they tile 1..=N without a hole.
    let mut auto: Vec<(u64, u64)> = views
        .iter()
        .filter(|(b, _)| b["code_model"] == "AUTO")
        .map(|(_, v)| {
            assert_eq!(v["state"], "SUCCESS", "{v}");
            let first = v["number"].as_u64().unwrap();
            (first, first + v["count"].as_u64().unwrap() - 1)
        })
        .collect();
    assert_eq!(auto.len(), 300);
    auto.sort();
    assert_eq!(auto[0].0, 1);
    for w in auto.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "auto ranges are contiguous");
    }
    // Explicit ones: winners never overlap; each loser overlapped a winner.
    let mut winners: Vec<(u64, u64)> = Vec::new();
    let mut losers: Vec<(u64, u64)> = rejected_at_once
        .iter()
        .map(|b| {
            (
                b["number"].as_u64().unwrap(),
                b["number"].as_u64().unwrap() + 99,
            )
        })
        .collect();
    for (b, v) in views.iter().filter(|(b, _)| b["code_model"] == "EXP") {
        let r = (
            b["number"].as_u64().unwrap(),
            b["number"].as_u64().unwrap() + 99,
        );
        match v["state"].as_str().unwrap() {
            "SUCCESS" => winners.push(r),
            "FAILURE" => {
                assert_eq!(v["error"]["code"], "range_conflict", "{v}");
                assert!(
                    v["error"]["message"].as_str().unwrap().contains("task"),
                    "{v}"
                );
                losers.push(r);
            }
            s => panic!("state {s}"),
        }
    }
    assert_eq!(winners.len() + losers.len(), 100);
    winners.sort();
    for w in winners.windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "two overlapping explicit ranges both won: {w:?}"
        );
    }
    for l in &losers {
        assert!(
            winners.iter().any(|w| w.0 <= l.1 && l.0 <= w.1),
            "{l:?} lost without a conflict"
        );
    }
    let all: Vec<Value> = views.into_iter().map(|(_, v)| v).collect();
    assert_unique(&gw, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_issue_each_number_once() {
    replicas_issue_each_number_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_issue_each_number_once() {
    replicas_issue_each_number_once(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_services_overlap_case_accepts_exactly_one() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let a = post(&gw, &json!({"code_model":"0111","number":1,"count":1000})).await;
    let b = post(&gw, &json!({"code_model":"0111","number":500,"count":1000})).await;
    assert_eq!(a.status(), 202);
    let a = finished(
        &gw,
        a.json::<Value>().await.unwrap()["id"].as_str().unwrap(),
        T,
    )
    .await;
    assert_eq!(a["state"], "SUCCESS");
    let b_ok = match b.status().as_u16() {
        409 => false,
        202 => {
            let v = finished(
                &gw,
                b.json::<Value>().await.unwrap()["id"].as_str().unwrap(),
                T,
            )
            .await;
            assert_eq!(v["error"]["code"], "range_conflict");
            v["state"] == "SUCCESS"
        }
        s => panic!("status {s}"),
    };
    assert!(!b_ok);
    // Now that the ledger view knows, the overlap is refused at once, naming the range.
    let c = post(&gw, &json!({"code_model":"0111","number":500,"count":1000})).await;
    assert_eq!(c.status(), 409);
    let msg = c.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("1..=1000") && msg.contains(a["id"].as_str().unwrap()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_generators_at_random_moments_loses_and_duplicates_nothing() {
    let nats = spawn_nats();
    let dirs = [tempdir(), tempdir()];
    let env = [
        ("ACK_WAIT_SECS", "2"),
        ("BATCH_SIZE", "2000"),
        ("MAX_DELIVER", "100"),
    ];
    let mut gens: Vec<Service> = dirs
        .iter()
        .map(|d| spawn_generator(&nats.url(), d.path(), &env))
        .collect();
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let mut ids = Vec::new();
    for i in 0..24u64 {
        let model = if i % 3 == 0 { "KILLX" } else { "KILL" };
        ids.push(submit(&gw, json!({"code_model": model, "count": 40_000 + i})).await);
    }
    // Several kills at pseudo-random points of progress, alternating replicas, each restarted
    // on its own log.
    let total: u64 = (0..24u64).map(|i| 40_000 + i).sum();
    let generated = || async {
        let list: Value = gw
            .http
            .get(gw.url("/tasks?limit=1000"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(
            list["items"]
                .as_array()?
                .iter()
                .map(|t| t["generated"].as_u64().unwrap_or(0))
                .sum::<u64>(),
        )
    };
    let mut seed = 0x9e37_79b9_u64;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = (total / 8) * (round as u64 + 1) + seed % 20_000;
        wait_for("progress to the next kill point", T, || async {
            generated()
                .await
                .filter(|g| *g >= target.min(total - 1))
                .map(|_| ())
        })
        .await;
        let which = round % 2;
        gens[which].proc.kill9();
        gens[which] = spawn_generator(&nats.url(), dirs[which].path(), &env);
    }
    let mut views = Vec::new();
    for id in &ids {
        let v = finished(&gw, id, T).await;
        assert_eq!(v["state"], "SUCCESS", "{v}");
        views.push(v);
    }
    let total = assert_unique(&gw, &views).await;
    assert_eq!(total as u64, (0..24u64).map(|i| 40_000 + i).sum::<u64>());
}

/// The ledger snapshot in a generator's log is saved a little after its follower folds the
/// reservations, ranges and position in one write, and is durable with the log's next flush.
/// A generator killed once the snapshot is durable restarts with every range another replica
/// holds; one killed right after a burst restarts from a snapshot behind the stream and folds
/// the rest again. Either way the next numbers come after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_killed_around_its_ledger_snapshot_issues_nothing_twice() {
    let nats = spawn_nats();
    let dirs = [tempdir(), tempdir()];
    let mut first = spawn_generator(&nats.url(), dirs[0].path(), &[]);
    let mut second = spawn_generator(&nats.url(), dirs[1].path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    first.wait_ready().await;
    second.wait_ready().await;
    let mut views = Vec::new();
    let burst = |n: usize| {
        let gw = &gw;
        async move {
            let ids =
                join_all((0..n).map(|_| submit(gw, json!({"code_model": "SNAP", "count": 5}))))
                    .await;
            let mut done = Vec::new();
            for id in &ids {
                done.push(finished(gw, id, T).await);
            }
            done
        }
    };
    // Both replicas reserve, then only the second, so the highest ranges are the second's.
    // The first, started again, folds them into its snapshot.
    views.extend(burst(20).await);
    first.proc.sigterm(T);
    views.extend(burst(20).await);
    let mut first = spawn_generator(&nats.url(), dirs[0].path(), &[]);
    first.wait_ready().await;
    let last = nats
        .js()
        .await
        .get_stream("SN")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("sn.SNAP.reserved")
        .await
        .unwrap()
        .sequence as f64;
    wait_for("the snapshot to be saved", T, || async {
        let m = scrape(&first).await;
        (m.get("sn_ledger_position") == Some(&last)
            && m.get("sn_ledger_saved_position") == Some(&last))
        .then_some(())
    })
    .await;
    // With the second gone, a task of another model makes the first flush its log, and with
    // it the snapshot. Killed then, the first restarts from that snapshot alone, past the
    // second's ranges: only the ranges saved with the position keep it off them.
    second.proc.sigterm(T);
    let flush = submit(&gw, json!({"code_model": "FLUSH", "count": 1})).await;
    assert_eq!(finished(&gw, &flush, T).await["state"], "SUCCESS");
    first.proc.kill9();
    let mut first = spawn_generator(&nats.url(), dirs[0].path(), &[]);
    first.wait_ready().await;
    views.extend(burst(20).await);
    // Killed at once after the last task ended: inside the snapshot's save delay.
    first.proc.kill9();
    let first = spawn_generator(&nats.url(), dirs[0].path(), &[]);
    first.wait_ready().await;
    views.extend(burst(20).await);

    assert!(views.iter().all(|v| v["state"] == "SUCCESS"), "{views:?}");
    assert_eq!(assert_unique(&gw, &views).await, 400);
    // Automatic ranges follow one another from 1: nothing skipped, nothing issued twice.
    let mut ranges: Vec<(u64, u64)> = views
        .iter()
        .map(|v| (v["number"].as_u64().unwrap(), v["count"].as_u64().unwrap()))
        .collect();
    ranges.sort_unstable();
    let mut next = 1;
    for (number, count) in ranges {
        assert_eq!(number, next, "{views:?}");
        next = number + count;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_posts_loses_no_accepted_task() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let http = http_client();
    let url = gw.url("/generate_sn");
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let posts = (0..200).map(|i| {
        let (http, url, answered) = (http.clone(), url.clone(), answered.clone());
        async move {
            let key = format!("kill-gw-{i}");
            let r = http
                .post(url)
                .header("idempotency-key", &key)
                .json(&json!({"code_model":"GWK","count":10}))
                .send()
                .await;
            let outcome = match r {
                Ok(r) => Some((r.status().as_u16(), r.json::<Value>().await.ok())),
                Err(_) => None,
            };
            answered.fetch_add(
                usize::from(outcome.is_some()),
                std::sync::atomic::Ordering::SeqCst,
            );
            (key, outcome)
        }
    });
    let all = tokio::spawn(join_all(posts));
    // Kill once some requests were answered, while others are still in flight.
    wait_for("some answered requests", T, || async {
        (answered.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(())
    })
    .await;
    gw.proc.kill9();
    let results = all.await.unwrap();

    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let mut accepted = 0;
    let mut ids = HashSet::new();
    for (key, outcome) in results {
        match outcome {
            Some((202, Some(body))) => {
                accepted += 1;
                let id = body["id"].as_str().unwrap().to_owned();
                assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
                ids.insert(id);
            }
            Some((status, body)) => panic!("unexpected status {status} before the kill: {body:?}"),
            // Dropped connection: the outcome is unknown to the client; retrying with the same
            // key settles it without a second task.
            None => {
                let r = gw
                    .http
                    .post(gw.url("/generate_sn"))
                    .header("idempotency-key", &key)
                    .json(&json!({"code_model":"GWK","count":10}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let id = r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert_eq!(finished(&gw, &id, T).await["state"], "SUCCESS");
                ids.insert(id);
            }
        }
    }
    assert!(accepted >= 1, "no request was accepted before the kill");
    assert!(
        accepted < 200,
        "the kill came after every request was answered"
    );
    assert_eq!(ids.len(), 200, "one task per key");
    let list: Value = gw
        .http
        .get(gw.url("/tasks?code_model=GWK&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        200,
        "no task beyond one per key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_run_loses_nothing_accepted() {
    let mut nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[("ACK_WAIT_SECS", "3")]);
    // A short publish deadline: the 503 comes after it.
    let gw = spawn_gateway(&nats.url(), &[("PUBLISH_DEADLINE_SECS", "1")]);
    gw.wait_ready().await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(submit(&gw, json!({"code_model":"NR","count":50_000})).await);
    }
    nats.stop();
    let r = post(&gw, &json!({"code_model":"NR","count":1})).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    nats.start();
    // Both services reconnect by themselves: new requests are accepted again.
    let r = wait_for("the gateway to accept again", T, || async {
        let r = post(&gw, &json!({"code_model":"NR","count":1})).await;
        (r.status() == 202).then_some(r)
    })
    .await;
    ids.push(
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let mut views = Vec::new();
    for id in &ids {
        let v = finished(&gw, id, T).await;
        assert_eq!(v["state"], "SUCCESS", "{v}");
        views.push(v);
    }
    assert_eq!(assert_unique(&gw, &views).await, 500_001);
}

/// A pull request for requests dies with the connection it was sent on; the generator asks
/// again as soon as it reconnects instead of waiting for that request to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_restart_the_generator_asks_for_requests_again_at_once() {
    let mut nats = spawn_nats();
    let data = tempdir();
    // Far longer than the wait below: only a renewed pull request can take the next task.
    let _g = spawn_generator(&nats.url(), data.path(), &[("PULL_EXPIRES_SECS", "300")]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let before = submit(&gw, json!({"code_model":"PR","count":1})).await;
    assert_eq!(finished(&gw, &before, T).await["state"], "SUCCESS");
    nats.stop();
    nats.start();
    let r = wait_for("the gateway to accept again", T, || async {
        let r = post(&gw, &json!({"code_model":"PR","count":1})).await;
        (r.status() == 202).then_some(r)
    })
    .await;
    let after = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let view = finished(&gw, &after, Duration::from_secs(60)).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
}

/// A backlog is worked off pull request after pull request, each for the free slots only,
/// never waiting for one to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_worked_off_without_waiting_for_a_pull_to_expire() {
    let nats = spawn_nats();
    let data = tempdir();
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let ids = join_all(
        (0..300).map(|_| async { submit(&gw, json!({"code_model":"BL","count":1})).await }),
    )
    .await;
    let _g = spawn_generator(
        &nats.url(),
        data.path(),
        &[("PULL_EXPIRES_SECS", "300"), ("CONCURRENCY", "4")],
    );
    let mut views = Vec::new();
    for id in &ids {
        let v = finished(&gw, id, Duration::from_secs(60)).await;
        assert_eq!(v["state"], "SUCCESS", "{v}");
        views.push(v);
    }
    assert_eq!(assert_unique(&gw, &views).await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_survives_a_gateway_restart() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let send = |gw: &Service, body: Value| {
        let req = gw
            .http
            .post(gw.url("/generate_sn"))
            .header("idempotency-key", "order-42")
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let body = json!({"code_model":"IDEM","count":5});
    let first = send(&gw, body.clone()).await;
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = send(&gw, body.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    let other = send(&gw, json!({"code_model":"IDEM","count":6})).await;
    assert_eq!(other.status(), 422);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"]["code"],
        "idempotency_key_reused"
    );
    finished(&gw, &id, T).await;

    assert!(gw.proc.sigterm(Duration::from_secs(20)).success());
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let replay = send(&gw, body).await;
    assert_eq!(replay.status(), 202);
    let replay = replay.json::<Value>().await.unwrap();
    assert_eq!(replay["id"], id.as_str());
    assert_eq!(replay["state"], "SUCCESS");
    let list: Value = gw
        .http
        .get(gw.url("/tasks?code_model=IDEM"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_the_issuing_task_with_and_without_check_digits() {
    let nats = spawn_nats();
    let data = tempdir();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let plain = submit(&gw, json!({"code_model":"0111","number":1,"count":10})).await;
    let gs1 = submit(&gw, json!({"code_model":"629104","number":150020,"count":3,"format":{"width":6,"check_digit":"gs1"}})).await;
    finished(&gw, &plain, T).await;
    finished(&gw, &gs1, T).await;
    let get = |s: &str| {
        let req = gw.http.get(gw.url(&format!("/serials/{s}")));
        async move { req.send().await.unwrap() }
    };
    let r = get("011100000007").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["code_model"].as_str(),
            v["number"].as_u64(),
            v["task_id"].as_str()
        ),
        (Some("0111"), Some(7), Some(plain.as_str()))
    );
    assert!(v["issued_at"].is_string());
    let r = get("6291041500213").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["task_id"], gs1.as_str());
    for never in ["011100000011", "6291041500214", "nothing", "0111000000071"] {
        let r = get(never).await;
        assert_eq!(r.status(), 404, "{never}");
        assert!(r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never issued"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_keeps_failing_ends_in_failure_after_bounded_deliveries() {
    // A server whose max_payload is below one generated batch: publishing it fails every time.
    let nats = spawn_nats_with_config("max_payload: 4096\n");
    let data = tempdir();
    let g = spawn_generator(
        &nats.url(),
        data.path(),
        &[("MAX_DELIVER", "3"), ("ACK_WAIT_SECS", "2")],
    );
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"POISON","count":5000})).await;
    let v = finished(&gw, &id, T).await;
    assert_eq!(v["state"], "FAILURE", "{v}");
    assert_eq!(v["error"]["code"], "internal");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 deliveries"),
        "{v}"
    );
    // Still serving: a small request on the same server goes through.
    let ok = submit(&gw, json!({"code_model":"POISON","count":5})).await;
    assert_eq!(finished(&gw, &ok, T).await["state"], "SUCCESS");
    drop(g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_finished_request_republishes_and_issues_nothing() {
    let nats = spawn_nats();
    let data = tempdir();
    let mut g = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"REDO","count":10})).await;
    let before = finished(&gw, &id, T).await;
    assert!(g.proc.sigterm(Duration::from_secs(20)).success());
    // Put the same request on the stream again, as a redelivery would bring it back (outside
    // the duplicate window: another message id).
    let js = nats.js().await;
    let msgs = stream_messages(&js).await;
    let (subject, request, _) = msgs
        .iter()
        .find(|(s, _, _)| s.contains(".requested."))
        .unwrap()
        .clone();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "replayed-request");
    js.publish_with_headers(
        subject,
        headers,
        serde_json::to_vec(&request).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reserved_before = msgs
        .iter()
        .filter(|(s, _, _)| s == "sn.REDO.reserved")
        .count();
    let _g = spawn_generator(&nats.url(), data.path(), &[]);
    // The replay republishes the completion (same id): wait until the generator acked it.
    wait_for("the replayed request to be acked", T, || async {
        let mut c = js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                "generator",
                "SN",
            )
            .await
            .ok()?;
        let info = c.info().await.ok()?;
        (info.num_ack_pending == 0
            && info.num_pending == 0
            && info.delivered.stream_sequence > msgs.len() as u64)
            .then_some(())
    })
    .await;
    let after = stream_messages(&js).await;
    assert_eq!(
        after
            .iter()
            .filter(|(s, _, _)| s == "sn.REDO.reserved")
            .count(),
        reserved_before,
        "no new reservation"
    );
    assert_eq!(task(&gw, &id).await, before);
    assert_eq!(serials(&gw, &id).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deliveries_run_out_in_crashes_ends_in_failure() {
    let nats = spawn_nats();
    let data = tempdir();
    // One delivery only: a generator killed mid-task never sees the request again.
    let env = [
        ("MAX_DELIVER", "1"),
        ("ACK_WAIT_SECS", "2"),
        ("BATCH_SIZE", "1000"),
        ("BATCHES_PER_FLUSH", "1"),
    ];
    let mut first = spawn_generator(&nats.url(), data.path(), &env);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let id = submit(&gw, json!({"code_model":"CRASH","count": 3_000_000})).await;
    wait_for("the task to be under way", T, || async {
        let v = task(&gw, &id).await;
        (v["generated"].as_u64().unwrap_or(0) >= 10_000).then_some(())
    })
    .await;
    first.proc.kill9();
    let other_dir = tempdir();
    let second = spawn_generator(&nats.url(), other_dir.path(), &env);
    second.wait_ready().await;
    let v = finished(&gw, &id, T).await;
    assert_eq!(v["state"], "FAILURE", "{v}");
    assert_eq!(v["error"]["code"], "internal");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deliveries"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_ack_wait_is_never_redelivered() {
    let nats = spawn_nats();
    let data = tempdir();
    // One flush and one publish per 20 serials: seconds of work against a 1 s ack wait.
    let env = [
        ("ACK_WAIT_SECS", "1"),
        ("BATCH_SIZE", "20"),
        ("BATCHES_PER_FLUSH", "1"),
    ];
    let generator = spawn_generator(&nats.url(), data.path(), &env);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    let started = std::time::Instant::now();
    let id = submit(&gw, json!({"code_model":"LONG","count": 160_000})).await;
    let v = finished(&gw, &id, T).await;
    assert_eq!(v["state"], "SUCCESS", "{v}");
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the task ended within {:?}, too soon to show anything about a 1 s ack wait",
        started.elapsed()
    );
    let js = nats.js().await;
    let consumer = js
        .get_stream("SN")
        .await
        .unwrap()
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("generator")
        .await
        .unwrap();
    // The request is acked just after the completion is stored.
    let info = wait_for("the request to be acked", T, || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?.clone();
            (info.num_ack_pending == 0).then_some(info)
        }
    })
    .await;
    assert_eq!(info.num_redelivered, 0, "{info:?}");
}
