//! What a deployment relies on: the gateway fails closed without a token, the bearer scheme
//! is case-insensitive, both services are live while they wait for NATS at start, and their
//! `healthcheck` subcommands (Compose's healthchecks) tell a live service from none.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_token_refuses_to_start_unless_auth_is_off() {
    // Arrange: nothing listens on this NATS port; the refusal must come before any wait.
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());

    // Act
    let (status, stderr) = run_to_exit(
        "gateway",
        &[("NATS_URL", &nats_url), ("HTTP_ADDR", &http)],
        Duration::from_secs(10),
    );
    let (empty, empty_stderr) = run_to_exit(
        "gateway",
        &[
            ("NATS_URL", &nats_url),
            ("HTTP_ADDR", &http),
            ("API_TOKEN", ""),
        ],
        Duration::from_secs(10),
    );

    // Assert
    assert!(!status.success(), "started without a token: {stderr}");
    assert!(
        stderr.contains("API_TOKEN is not set") && stderr.contains("AUTH=off"),
        "unclear message: {stderr}"
    );
    assert!(!empty.success(), "started with an empty token");
    assert!(
        empty_stderr.contains("API_TOKEN is not set"),
        "{empty_stderr}"
    );

    // With AUTH=off it starts (and, without NATS, waits: it is alive, not ready).
    let gw = spawn_gateway(&nats_url, &[("AUTH", "off")]);
    let r = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_a_set_token_is_always_required() {
    // Arrange: AUTH=off (the harness's default) does not open writes when a token is set.
    let nats = spawn_nats();
    let gw = spawn_gateway(&nats.url(), &[("API_TOKEN", "s3cret"), ("AUTH", "off")]);
    gw.wait_ready().await;
    let body = json!({"code_model": "0111", "number": 1, "count": 1});
    let send = |auth: Option<&'static str>| {
        let mut r = gw.http.post(gw.url("/generate_sn")).json(&body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };

    // Act + Assert
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("Bearer wrong")).await, 401);
    assert_eq!(send(Some("Basic s3cret")).await, 401);
    assert_eq!(send(Some("Bearer s3cret")).await, 202);
    assert_eq!(send(Some("bearer s3cret")).await, 202);
    assert_eq!(send(Some("BEARER s3cret")).await, 202);
    // Reads stay open.
    let r = gw.http.get(gw.url("/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Polls `url` until it answers `want`, for at most a second from `since`.
async fn answers_within_a_second(http: &reqwest::Client, url: &str, want: u16, since: Instant) {
    let status = wait_for(url, Duration::from_secs(1), || async {
        let r = http.get(url).send().await.ok()?;
        Some(r.status().as_u16())
    })
    .await;
    assert_eq!(status, want, "{url}");
    assert!(
        since.elapsed() < Duration::from_secs(1),
        "{url} took {:?}",
        since.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_are_live_but_not_ready_while_nats_is_not_there() {
    // Arrange: a NATS port that nothing listens on yet.
    let mut nats = unstarted_nats();
    let data = tempdir();

    // Act: each service has bound its port (the harness waits for that) and waits for NATS.
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    let bound = Instant::now();

    // Assert: alive at once, not ready.
    answers_within_a_second(&gw.http, &gw.url("/healthz"), 200, bound).await;
    answers_within_a_second(&generator.http, &generator.url("/healthz"), 200, bound).await;
    let r = gw.http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = gw.http.post(gw.url("/generate_sn")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a write before NATS is there");
    let r = generator.http.get(generator.url("/readyz")).send().await;
    assert_eq!(r.unwrap().status(), 503);

    // Then NATS comes: both become ready, and the real API answers on the same port.
    nats.start();
    gw.wait_ready().await;
    generator.wait_ready().await;
    let id = submit(&gw, json!({"code_model": "0111", "number": 1, "count": 3})).await;
    let view = finished(&gw, &id, T).await;
    assert_eq!(view["state"], "SUCCESS", "{view}");
    let r = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `<bin> healthcheck` with its listen address in `var`: the exit status and how long it took.
fn healthcheck(bin: &str, var: &str, addr: &str) -> (ExitStatus, Duration) {
    let start = Instant::now();
    let (status, stderr) = run_args_to_exit(bin, &["healthcheck"], &[(var, addr)], T);
    assert!(stderr.is_empty(), "{bin} healthcheck wrote: {stderr}");
    (status, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_subcommands_exit_0_for_a_live_service_and_1_for_none() {
    // Arrange: both services up; the healthchecks get wildcard addresses, as in Compose.
    let nats = spawn_nats();
    let data = tempdir();
    let mut generator = spawn_generator(&nats.url(), data.path(), &[]);
    let mut gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    let services = [
        ("gateway", "HTTP_ADDR", gw.addr.port()),
        ("generator", "ADMIN_ADDR", generator.addr.port()),
    ];

    for (bin, var, port) in services {
        // Act + Assert: live.
        let (status, took) = healthcheck(bin, var, &format!("0.0.0.0:{port}"));
        assert_eq!(status.code(), Some(0), "{bin} healthcheck of a live {bin}");
        assert!(took < Duration::from_secs(2), "{bin}: {took:?}");
        // Nothing listens on another port.
        let (status, took) = healthcheck(bin, var, &format!("0.0.0.0:{}", free_port()));
        assert_eq!(
            status.code(),
            Some(1),
            "{bin} healthcheck with nothing there"
        );
        assert!(took < Duration::from_secs(3), "{bin}: {took:?}");
    }

    // Stopped services fail the check on their own ports.
    assert!(gw.proc.sigterm(T).success());
    assert!(generator.proc.sigterm(T).success());
    for (bin, var, port) in services {
        let (status, _) = healthcheck(bin, var, &format!("127.0.0.1:{port}"));
        assert_eq!(
            status.code(),
            Some(1),
            "{bin} healthcheck of a stopped {bin}"
        );
    }
}
