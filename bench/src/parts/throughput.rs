//! Part a: accepted `POST /generate_sn` per second with `concurrency` clients, each on its own
//! keep-alive connection, POSTing back to back for `duration` seconds after a one-second
//! warm-up. Every POST asks for one serial of a model new to this run, from the next free
//! number: the smallest task, so the figure is the gateway's intake (check, publish, wait for
//! JetStream's ack), while the generator processes the same requests on the same cores.
//!
//! The clients are plain hyper connections (no pool, no per-request URL or timer): the
//! figure is the services', so the tool leaves them as much of the shared cores as it can.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{StatusCode, Uri};

use crate::api::{fresh_model, Api, Connection, Endpoint, PostError};
use crate::config::Config;
use crate::figures::{Budget, Figure};
use crate::parts::Target;
use crate::rss::Watch;
use crate::stats::{percentile, sorted};

const WARM_UP: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const RECONNECT_GAP: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Worker {
    latencies_ms: Vec<f64>,
    rejected: u64,
    errors: u64,
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Vec<Figure>> {
    let model = fresh_model();
    let body = Api::body(&model, 1);
    let measured = Duration::from_secs(config.duration.max(1));
    let to = Endpoint::resolve(target.api.base()).await?;
    let start = Instant::now();
    let (from, until) = (start + WARM_UP, start + WARM_UP + measured);

    // The clients share one thread and its own runtime: no work stealing or wake-ups
    // across threads for them, and at most one core.
    let clients = config.concurrency.max(1);
    let (done, all) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("part-a-clients".into())
        .spawn(move || {
            let all = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(clients_all(clients, to, body, from, until)));
            done.send(all).ok();
        })?;

    // What the rest of the stack did during the measured window.
    tokio::time::sleep_until(from.into()).await;
    let done_before = finished(target).await;
    let watch = Watch::start(target.watched(), Duration::from_millis(50));
    tokio::time::sleep_until(until.into()).await;
    let usage = watch.finish();
    let done_after = finished(target).await;

    let all = all.await??;
    let secs = measured.as_secs_f64();
    let accepted = all.latencies_ms.len() as f64;
    let lat = sorted(all.latencies_ms);
    let c = config.concurrency;
    let mut figures = vec![
        Figure::new(
            "a.accepted_per_s",
            format!("a. accepted POST/s (concurrency {c})"),
            "1/s",
            accepted / secs,
        )
        .budget(Budget::AtLeast(10_000.0))
        .old(175.0),
        Figure::new(
            "a.post_p50_ms",
            "a. POST latency p50 under load",
            "ms",
            percentile(&lat, 50.0),
        ),
        Figure::new(
            "a.post_p99_ms",
            "a. POST latency p99 under load",
            "ms",
            percentile(&lat, 99.0),
        )
        .old(380.0),
        Figure::new(
            "a.not_accepted",
            "a. POSTs answered other than 202",
            "count",
            all.rejected as f64,
        ),
        Figure::new(
            "a.errors",
            "a. POSTs or connects that failed",
            "count",
            all.errors as f64,
        ),
    ];
    if let (Some(b), Some(a)) = (done_before, done_after) {
        figures.push(Figure::new(
            "a.tasks_finished_per_s",
            "a. tasks the generator finished per s meanwhile",
            "1/s",
            a.saturating_sub(b) as f64 / secs,
        ));
    }
    for (w, u) in usage {
        figures.push(Figure::new(
            format!("a.cores.{}", w.name),
            format!("a. CPU cores used by {}", w.name),
            "cores",
            u.cpu_s / secs,
        ));
    }
    Ok(figures)
}

/// `n` clients at once, their counts summed.
async fn clients_all(n: usize, to: Endpoint, body: Bytes, from: Instant, until: Instant) -> Worker {
    let mut posting = tokio::task::JoinSet::new();
    for _ in 0..n {
        posting.spawn(client(to.clone(), body.clone(), from, until));
    }
    let mut all = Worker::default();
    while let Some(w) = posting.join_next().await {
        let Ok(w) = w else {
            all.errors += 1;
            continue;
        };
        all.latencies_ms.extend(w.latencies_ms);
        all.rejected += w.rejected;
        all.errors += w.errors;
    }
    all
}

/// How a connection's POSTs ended.
enum Ended {
    /// The window is over.
    Done,
    /// The server closed the connection between two POSTs: open another at once.
    Closed,
    /// A POST failed or got no answer in time: open another after a pause.
    Failed,
}

/// One client: POSTs back to back on its own connection until `until`, counting from `from`.
/// A POST that fails or gets no answer counts as an error, and the client connects again
/// after a pause; a connection the server closed between two POSTs is replaced at once.
async fn client(to: Endpoint, body: Bytes, from: Instant, until: Instant) -> Worker {
    let path = Uri::from_static("/generate_sn");
    let mut w = Worker::default();
    while Instant::now() < until {
        let (mut conn, driver) = match Connection::open(&to).await {
            Ok(opened) => opened,
            Err(_) => {
                w.errors += u64::from(Instant::now() >= from);
                tokio::time::sleep(RECONNECT_GAP).await;
                continue;
            }
        };
        let posts = async {
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return Ended::Done;
                }
                let result = conn.post(&path, body.clone()).await;
                let counted = sent >= from;
                match result {
                    Ok(StatusCode::ACCEPTED) if counted => {
                        w.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3)
                    }
                    Ok(_) if counted => w.rejected += 1,
                    Ok(_) => {}
                    Err(PostError::NotSent) => return Ended::Closed,
                    Err(PostError::Failed(_)) => {
                        w.errors += u64::from(counted);
                        return Ended::Failed;
                    }
                }
            }
        };
        // A gateway that stops answering ends the client a while after the window.
        let posts = tokio::time::timeout_at((until + ANSWER_TIMEOUT).into(), posts);
        let ended = tokio::select! {
            r = posts => r.unwrap_or_else(|_| {
                w.errors += 1;
                Ended::Failed
            }),
            never = driver => match never {},
        };
        match ended {
            Ended::Done | Ended::Closed => {}
            Ended::Failed => tokio::time::sleep(RECONNECT_GAP).await,
        }
    }
    w
}

/// Tasks the gateway shows as finished (SUCCESS or FAILURE), if it tells.
async fn finished(target: &Target) -> Option<u64> {
    let counts = target.api.task_counts().await.ok()?;
    Some(counts.get("SUCCESS").copied().unwrap_or(0) + counts.get("FAILURE").copied().unwrap_or(0))
}

/// Waits until the gateway shows no task PENDING or STARTED: a running stack must finish
/// part a's backlog before the next part measures it.
pub async fn drain(target: &Target, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let counts = target.api.task_counts().await?;
        let open = counts.get("PENDING").copied().unwrap_or(0)
            + counts.get("STARTED").copied().unwrap_or(0);
        if open == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            anyhow::bail!("{open} tasks still open after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use axum::http::{header, HeaderMap};
    use axum::routing::post;

    use super::*;

    const BODY: &[u8] = br#"{"code_model":"Ab12","count":1}"#;

    /// A stand-in gateway on a free port: answers `status` to every POST that arrives as the
    /// real one expects it (JSON, the right Host, the body unchanged), 400 to any other;
    /// counts the POSTs.
    async fn stand_in(status: StatusCode, close: bool) -> (Endpoint, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicU64::new(0));
        let (count, host) = (seen.clone(), addr.clone());
        let app = axum::Router::new().route(
            "/generate_sn",
            post(move |headers: HeaderMap, body: Bytes| async move {
                count.fetch_add(1, Ordering::Relaxed);
                let json = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())
                    == Some(b"application/json".as_slice());
                let to_us =
                    headers.get(header::HOST).map(|v| v.as_bytes()) == Some(host.as_bytes());
                let status = match json && to_us && body.as_ref() == BODY {
                    true => status,
                    false => StatusCode::BAD_REQUEST,
                };
                let connection = if close { "close" } else { "keep-alive" };
                (status, [(header::CONNECTION, connection)], "{}")
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let to = Endpoint::resolve(&format!("http://{addr}")).await.unwrap();
        (to, seen)
    }

    /// A client's window: 300 ms of warm-up, then 300 ms counted.
    fn window() -> (Instant, Instant) {
        let start = Instant::now();
        (
            start + Duration::from_millis(300),
            start + Duration::from_millis(600),
        )
    }

    #[tokio::test]
    async fn a_client_counts_the_202s_answered_after_its_warm_up() {
        let (to, seen) = stand_in(StatusCode::ACCEPTED, false).await;
        let (from, until) = window();
        let w = client(to, Bytes::from_static(BODY), from, until).await;
        assert!(!w.latencies_ms.is_empty());
        assert_eq!((w.rejected, w.errors), (0, 0));
        // The warm-up's POSTs were answered too, and not counted.
        let counted = w.latencies_ms.len() as u64;
        assert!(seen.load(Ordering::Relaxed) > counted, "{counted} counted");
        assert!(Instant::now() >= until);
    }

    #[tokio::test]
    async fn other_answers_count_as_not_accepted() {
        let (to, _) = stand_in(StatusCode::SERVICE_UNAVAILABLE, false).await;
        let (from, until) = window();
        let w = client(to, Bytes::from_static(BODY), from, until).await;
        assert!(w.latencies_ms.is_empty());
        assert!(w.rejected > 0);
        assert_eq!(w.errors, 0);
    }

    #[tokio::test]
    async fn a_connection_closed_after_an_answer_is_replaced_without_an_error() {
        let (to, _) = stand_in(StatusCode::ACCEPTED, true).await;
        let (from, until) = window();
        let w = client(to, Bytes::from_static(BODY), from, until).await;
        assert!(w.latencies_ms.len() > 1);
        assert_eq!((w.rejected, w.errors), (0, 0));
    }

    #[tokio::test]
    async fn only_plain_http_at_the_root_is_a_gateway_address() {
        let to = Endpoint::resolve("http://127.0.0.1").await.unwrap();
        assert_eq!(to.addr.port(), 80);
        let to = Endpoint::resolve("http://127.0.0.1:8080/").await.unwrap();
        assert_eq!(to.addr.port(), 8080);
        for wrong in [
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080/api",
            "127.0.0.1:8080",
        ] {
            assert!(Endpoint::resolve(wrong).await.is_err(), "{wrong}");
        }
    }

    #[tokio::test]
    async fn a_gateway_that_is_not_there_gives_errors_and_the_client_still_ends() {
        // A port that was free a moment ago: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (from, until) = window();
        let to = Endpoint::resolve(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let w = client(to, Bytes::from_static(BODY), from, until).await;
        assert!(w.latencies_ms.is_empty());
        assert_eq!(w.rejected, 0);
        assert!(w.errors > 0);
    }
}
