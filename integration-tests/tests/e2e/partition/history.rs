//! The client side of a partition test and the check of its history, Jepsen-style.
//!
//! `Workload` runs a few concurrent clients that POST tasks (small, big, explicit ranges that
//! may overlap; three models) to both gateways with an `Idempotency-Key` each, and records
//! every answer with when it was sent and answered. `check` runs once the network is healed:
//! it settles every unanswered request by retrying it with its key, then checks, from the
//! stream and from the HTTP answers, that every accepted task ended, that nothing accepted
//! is missing, that no serial was issued twice and that every SUCCESS task holds exactly its
//! range.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::NsCluster;
use crate::harness::*;

pub const MODELS: [&str; 3] = ["PA", "PB", "PC"];

/// A small deterministic generator (splitmix64): the same scenario posts the same requests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One POST and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: String,
    pub body: Value,
    pub gateway: usize,
    pub sent: Instant,
    pub answered: Instant,
    /// The HTTP status, or `None` when no answer came (connection error, timeout).
    pub status: Option<u16>,
    pub id: Option<String>,
}

/// A request body: mostly small automatic ranges, some big ones, some explicit ranges in a
/// narrow window so that they overlap each other now and then.
fn request(rng: &mut Rng, model: &str) -> Value {
    match rng.below(100) {
        0..=3 => json!({"code_model": model, "count": 100_000}),
        4..=17 => json!({
            "code_model": model,
            "number": 60_000_000 + rng.below(40) * 5_000,
            "count": 5_000 + rng.below(3) * 2_500,
        }),
        _ => json!({"code_model": model, "count": 1 + rng.below(3_000)}),
    }
}

/// Concurrent clients posting until stopped.
pub struct Workload {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// `clients` loops, each posting every `pace` to one gateway (client `c` to gateway
    /// `c % 2`: a client stuck behind a cut-off gateway does not hold the others up).
    pub fn start(cluster: &NsCluster, scenario: &str, clients: usize, pace: Duration) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let urls: Vec<String> = cluster
            .gateways
            .iter()
            .map(|g| g.url("/generate_sn"))
            .collect();
        let handles = (0..clients)
            .map(|c| {
                let (stop, log, urls) = (stop.clone(), log.clone(), urls.clone());
                let scenario = scenario.to_owned();
                tokio::spawn(async move {
                    let http = http_client();
                    let seed = scenario.bytes().fold(c as u64, |h, b| h * 31 + b as u64);
                    let mut rng = Rng::new(seed);
                    let mut tick = tokio::time::interval(pace);
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let gateway = c % urls.len();
                        let model = MODELS[(c + i) % MODELS.len()];
                        let key = format!("{scenario}-{c}-{i}");
                        let body = request(&mut rng, model);
                        let sent = Instant::now();
                        let (status, id) = post_with_key(&http, &urls[gateway], &key, &body).await;
                        log.lock().unwrap().push(Attempt {
                            key,
                            body,
                            gateway,
                            sent,
                            answered: Instant::now(),
                            status,
                            id,
                        });
                        i += 1;
                    }
                })
            })
            .collect();
        Workload { stop, log, handles }
    }

    /// The attempts so far that `pick` selects.
    pub fn count(&self, pick: impl Fn(&Attempt) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|a| pick(a)).count()
    }

    /// The attempts answered so far.
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the clients (each finishes the request in flight) and returns the history.
    pub async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.await.unwrap();
        }
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

async fn post_with_key(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> (Option<u16>, Option<String>) {
    match http
        .post(url)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let id = match r.json::<Value>().await {
                Ok(v) if status == 202 => v["id"].as_str().map(str::to_owned),
                _ => None,
            };
            (Some(status), id)
        }
        Err(_) => (None, None),
    }
}

/// What a checked history held.
#[derive(Debug, Default)]
pub struct Summary {
    pub posts: usize,
    /// Answered 202 at once.
    pub accepted: usize,
    /// Answered neither 202 nor 409 at first (503, no answer), settled afterwards.
    pub unsettled: usize,
    /// Answered 409 (an explicit range overlapping an issued one).
    pub refused: usize,
    pub tasks: usize,
    pub success: usize,
    pub failures: BTreeMap<String, usize>,
    pub serials: usize,
}

/// A task's events as read from the stream.
#[derive(Default)]
struct StreamTask {
    key: Option<String>,
    batches: BTreeMap<u64, Vec<String>>,
}

const SETTLE: Duration = Duration::from_secs(120);

/// Checks the history once the network is healed (see the module's doc). `extra` are task
/// ids accepted outside the workload (posted by the scenario itself).
pub async fn check(cluster: &NsCluster, history: Vec<Attempt>, extra: &[String]) -> Summary {
    let gw = &cluster.gateways[0];
    let mut summary = Summary {
        posts: history.len(),
        ..Summary::default()
    };
    // 1. Settle every request that got no clear answer: its key, retried, gives one task or
    //    a refusal, as it would for a client.
    let mut by_key: HashMap<String, Result<String, u16>> = HashMap::new();
    for a in &history {
        let settled = match (a.status, &a.id) {
            (Some(202), Some(id)) => {
                summary.accepted += 1;
                Ok(id.clone())
            }
            (Some(409), _) => {
                summary.refused += 1;
                Err(409)
            }
            (Some(s), _) if s != 503 => panic!("unexpected answer {s} to {} {}", a.key, a.body),
            _ => {
                summary.unsettled += 1;
                settle(gw, &a.key, &a.body).await
            }
        };
        assert!(by_key.insert(a.key.clone(), settled).is_none());
    }
    let mut ids: Vec<String> = by_key.values().filter_map(|r| r.clone().ok()).collect();
    ids.extend(extra.iter().cloned());
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "two keys were given one task");
    summary.tasks = ids.len();

    // 2. Every accepted task ends, on both gateways alike.
    cluster.wait_replicas_current(SETTLE).await;
    let deadline = Instant::now() + SETTLE;
    let mut views = Vec::new();
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = finished(gw, id, left.max(Duration::from_secs(1))).await;
        let other = &cluster.gateways[1];
        wait_for(
            &format!("the other gateway to agree on {id}"),
            SETTLE,
            || async {
                let w = task(other, id).await;
                (w["state"] == v["state"] && w["generated"] == v["generated"]).then_some(())
            },
        )
        .await;
        views.push(v);
    }

    // 3. From the stream: every accepted task was stored (nothing acknowledged is lost), a
    //    key names one task, a repeated batch is the same batch, no serial is in two batches.
    let js = async_nats::jetstream::new(cluster.observer().await);
    let mut stream: HashMap<String, StreamTask> = HashMap::new();
    let mut owner: HashMap<String, (String, u64)> = HashMap::new();
    for (subject, event) in read_stream(&js).await {
        let data = &event["data"];
        let kind = subject.split('.').nth(2).unwrap_or_default();
        let Some(task_id) = data["task_id"].as_str() else {
            continue;
        };
        match kind {
            "requested" => {
                let t = stream.entry(task_id.to_owned()).or_default();
                t.key = data["idempotency_key"].as_str().map(str::to_owned);
            }
            "generated" => {
                let batch = data["batch"].as_u64().unwrap();
                let serials: Vec<String> = data["serials"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect();
                let t = stream.entry(task_id.to_owned()).or_default();
                if let Some(earlier) = t.batches.get(&batch) {
                    assert_eq!(
                        earlier, &serials,
                        "batch {batch} of task {task_id} stored twice with other serials"
                    );
                    continue;
                }
                for s in &serials {
                    let here = (task_id.to_owned(), batch);
                    if let Some(other) = owner.insert(s.clone(), here.clone()) {
                        panic!("serial {s} issued twice: task/batch {other:?} and {here:?}");
                    }
                }
                t.batches.insert(batch, serials);
            }
            _ => {}
        }
    }
    summary.serials = owner.len();
    for id in &ids {
        assert!(
            stream.contains_key(id),
            "task {id} was accepted (202) but its request is not in the stream"
        );
    }
    let mut keys: HashMap<&str, &str> = HashMap::new();
    for (id, t) in &stream {
        if let Some(key) = &t.key {
            if let Some(other) = keys.insert(key, id) {
                panic!("key {key} names two tasks: {id} and {other}");
            }
            // A key the client was finally refused for may still have been stored by its
            // first, unanswered try; then that task must have been refused too.
            if let Some(Err(status)) = by_key.get(key) {
                let v = task(gw, id).await;
                assert_eq!(
                    v["state"], "FAILURE",
                    "key {key} answered {status}, yet its task ran: {v}"
                );
            }
        }
    }

    // 4. Every SUCCESS task holds exactly its range, as downloaded and as in the stream.
    let mut downloaded: HashSet<String> = HashSet::new();
    for v in &views {
        let id = v["id"].as_str().unwrap();
        match v["state"].as_str().unwrap() {
            "SUCCESS" => {
                summary.success += 1;
                let got = serials(gw, id).await;
                let model = v["code_model"].as_str().unwrap();
                let count = v["count"].as_u64().unwrap() as usize;
                assert_eq!(got.len(), count, "task {v}");
                let first: u64 = got[0].strip_prefix(model).unwrap().parse().unwrap();
                if let Some(n) = v["number"].as_u64() {
                    assert_eq!(first, n, "an explicit range starts where it was asked: {v}");
                }
                for (i, s) in got.iter().enumerate() {
                    assert_eq!(
                        *s,
                        format!("{model}{:08}", first + i as u64),
                        "task {id} serial {i}"
                    );
                }
                assert_eq!(v["first_serial"].as_str(), got.first().map(String::as_str));
                assert_eq!(v["last_serial"].as_str(), got.last().map(String::as_str));
                let in_stream: Vec<&String> = stream[id].batches.values().flatten().collect();
                assert!(
                    in_stream.iter().copied().eq(got.iter()),
                    "task {id}: the download differs from the stream's batches"
                );
                for s in got {
                    assert!(downloaded.insert(s.clone()), "serial {s} downloaded twice");
                }
            }
            "FAILURE" => {
                let code = v["error"]["code"].as_str().unwrap_or("?").to_owned();
                *summary.failures.entry(code).or_default() += 1;
            }
            other => panic!("task {id} ended {other}"),
        }
    }
    summary
}

/// Retries a request with its key until it is accepted or refused.
async fn settle(gw: &Service, key: &str, body: &Value) -> Result<String, u16> {
    let http = gw.http.clone();
    let url = gw.url("/generate_sn");
    wait_for(&format!("request {key} to settle"), SETTLE, || async {
        match post_with_key(&http, &url, key, body).await {
            (Some(202), Some(id)) => Some(Ok(id)),
            (Some(409), _) => Some(Err(409)),
            _ => None,
        }
    })
    .await
}

/// Every message of the stream, in order, checking that no sequence is missing. An ordered
/// consumer that stalls (its server's routes still settling after a heal) is made anew
/// from the next sequence, a few times at most.
async fn read_stream(js: &async_nats::jetstream::Context) -> Vec<(String, Value)> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;
    let (stream, last) = wait_for("the stream's last sequence", SETTLE, || async {
        let mut stream = js.get_stream("SN").await.ok()?;
        let last = stream.info().await.ok()?.state.last_sequence;
        Some((stream, last))
    })
    .await;
    let mut out = Vec::new();
    let mut next = 1;
    let mut stalls = 0;
    while next <= last {
        // Creating a consumer needs the cluster's metadata leader, which a heal may have
        // sent into an election ("JetStream system temporarily unavailable").
        let config = OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next,
            },
            ..Default::default()
        };
        let mut messages = wait_for("an ordered consumer on the stream", SETTLE, || async {
            let consumer = stream.create_consumer(config.clone()).await.ok()?;
            consumer.messages().await.ok()
        })
        .await;
        while next <= last {
            match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let seq = m.info().unwrap().stream_sequence;
                    assert_eq!(seq, next, "the stream has no message {next} (last {last})");
                    out.push((
                        m.subject.to_string(),
                        serde_json::from_slice(&m.payload).unwrap(),
                    ));
                    next += 1;
                }
                other => {
                    stalls += 1;
                    eprintln!("reading the stream stalled at {next} of {last}: {other:?}");
                    assert!(stalls < 5, "reading the stream stalled {stalls} times");
                    break;
                }
            }
        }
    }
    out
}
