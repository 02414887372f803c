//! Random-order models: serials no one can guess from their neighbours, unique by
//! construction, across replicas and crashes, and still found by lookup.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::harness::*;

const T: Duration = Duration::from_secs(300);
const KEY: &str = "the master key of the random-order tests";

async fn declare(gw: &Service, model: &str, scheme: Value) -> (u16, Value) {
    let r = gw
        .http
        .put(gw.url(&format!("/models/{model}")))
        .json(&scheme)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_random_order_serials_across_two_generators_and_a_kill() {
    let nats = spawn_nats();
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let keyed = [("SERIAL_KEY", KEY)];
    let mut a = spawn_generator(&nats.url(), dir_a.path(), &keyed);
    let _b = spawn_generator(&nats.url(), dir_b.path(), &keyed);
    let gw = spawn_gateway(&nats.url(), &keyed);
    gw.wait_ready().await;

    // 10 digits, 1 in 1,000 of them ever issued: ten million numbers for this model.
    let (status, model) = declare(
        &gw,
        "RND",
        json!({"width":10,"order":"random","density":"1/1000"}),
    )
    .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["scheme"]["order"], "random");
    assert_eq!(model["remaining"], 10_000_000);
    let key_id = model["scheme"]["key_id"].as_str().unwrap().to_owned();

    let ids =
        join_all((0..10).map(|_| submit(&gw, json!({"code_model":"RND","count":100_000})))).await;
    // Kill one generator while the work is under way, then bring it back on its log.
    wait_for("some serials to be out", T, || async {
        let views = join_all(ids.iter().map(|id| task(&gw, id))).await;
        let generated: u64 = views
            .iter()
            .map(|v| v["generated"].as_u64().unwrap_or(0))
            .sum();
        (generated > 0).then_some(())
    })
    .await;
    a.proc.kill9();
    let _a = spawn_generator(&nats.url(), dir_a.path(), &keyed);

    let mut all = Vec::with_capacity(1_000_000);
    let mut ranges = Vec::new();
    for id in &ids {
        let v = finished(&gw, id, T).await;
        assert_eq!(v["state"], "SUCCESS", "{v}");
        let serials = serials(&gw, id).await;
        assert_eq!(serials.len(), 100_000);
        assert_eq!(
            serials.first().map(String::as_str),
            v["first_serial"].as_str()
        );
        assert_eq!(
            serials.last().map(String::as_str),
            v["last_serial"].as_str()
        );
        let first = v["number"].as_u64().unwrap();
        ranges.push((first, first + 99_999, id.clone()));
        all.push((serials, first));
    }

    // No serial twice.
    let mut seen = HashSet::with_capacity(1_000_000);
    for (serials, _) in &all {
        for s in serials {
            assert_eq!(s.len(), 13, "{s}");
            assert!(seen.insert(s.clone()), "{s} issued twice");
        }
    }
    assert_eq!(seen.len(), 1_000_000);

    // Neighbours are not neighbours: consecutive numbers whose serials are consecutive too
    // happen at the rate of chance (2 in 10^10 a pair), so essentially never.
    let value = |s: &str| s[3..].parse::<u64>().unwrap();
    let adjacent = all
        .iter()
        .flat_map(|(serials, _)| serials.windows(2))
        .filter(|w| value(&w[0]).abs_diff(value(&w[1])) == 1)
        .count();
    assert!(adjacent <= 2, "{adjacent} consecutive pairs");
    // And they are spread over the whole width, not a corner of it.
    let (low, high) = seen
        .iter()
        .map(|s| value(s))
        .fold((u64::MAX, 0), |(l, h), v| (l.min(v), h.max(v)));
    assert!(low < 100_000_000 && high > 9_900_000_000, "{low}..{high}");

    // Every serial resolves to its number and task: all of them by inverting the permutation
    // with the same key, as the gateway does, and a sample through the API.
    let keys = common::serial::Keyring::parse(Some(KEY)).unwrap();
    let scheme = common::Format {
        order: common::serial::Order::Random,
        key_id: std::num::NonZeroU32::new(u32::from_str_radix(&key_id, 16).unwrap()),
        one_in: std::num::NonZeroU64::new(1000),
        ..common::Format::new(10, common::CheckDigit::None)
    };
    let f = common::serial::SerialFormatter::keyed("RND", scheme, &keys).unwrap();
    for (serials, first) in &all {
        for (i, s) in serials.iter().enumerate() {
            assert_eq!(f.parse(s), Some(first + i as u64), "{s}");
        }
    }
    for (serials, first) in &all {
        for i in [0usize, 4_321, 99_999] {
            let r = gw
                .http
                .get(gw.url(&format!("/serials/{}", serials[i])))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["number"], first + i as u64);
            let task = ranges.iter().find(|(lo, _, _)| lo == first).unwrap();
            assert_eq!(v["task_id"], task.2.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_order_without_a_key_is_refused_where_it_would_be_used() {
    let nats = spawn_nats();
    let keyless_dir = tempdir();
    let _keyless = spawn_generator(&nats.url(), keyless_dir.path(), &[]);
    let keyless_gw = spawn_gateway(&nats.url(), &[]);
    keyless_gw.wait_ready().await;

    // Declaring one without SERIAL_KEY: 422 naming the key.
    let (status, body) = declare(&keyless_gw, "NOKEY", json!({"order":"random"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SERIAL_KEY"),
        "{body}"
    );
    // Widths FF1 cannot take, densities the width cannot hold: 422 naming what is needed.
    let keyed_gw = spawn_gateway(&nats.url(), &[("SERIAL_KEY", KEY)]);
    keyed_gw.wait_ready().await;
    let (status, body) = declare(&keyed_gw, "NARROW", json!({"order":"random","width":4})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("width")),
        "{body}"
    );
    let (status, body) = declare(
        &keyed_gw,
        "SPARSE",
        json!({"order":"random","width":6,"density":"1/10000000"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("7 digits"),
        "{body}"
    );

    // A random-order model declared with a key, met by a generator without one: FAILURE
    // invalid_request naming the missing key, and no numbers taken.
    let (status, _) = declare(&keyed_gw, "KEYED", json!({"order":"random","width":8})).await;
    assert_eq!(status, 201);
    let id = submit(&keyed_gw, json!({"code_model":"KEYED","count":5})).await;
    let v = finished(&keyed_gw, &id, T).await;
    assert_eq!(v["state"], "FAILURE", "{v}");
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SERIAL_KEY"),
        "{v}"
    );
    // A first request in random order reaching a generator without a key: the same.
    let id = submit(
        &keyed_gw,
        json!({"code_model":"FIRST","count":5,"format":{"order":"random"}}),
    )
    .await;
    let v = finished(&keyed_gw, &id, T).await;
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    let models = get_json(&keyed_gw, "/models").await;
    assert!(
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["issued"] == 0),
        "{models}"
    );
}
