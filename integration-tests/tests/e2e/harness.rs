//! Real processes for black-box tests: a `nats-server` per test on free ports with a
//! temporary store, and the real `gateway` / `generator` binaries as children. Everything is
//! killed on drop. Waiting is always a bounded poll, never a bare sleep.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;
use tempfile::TempDir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it yields `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/e2e-<hash> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

fn log_file(name: &str) -> (Stdio, Stdio, PathBuf) {
    let dir = bin_dir().join("itest-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}-{}.log", std::process::id(), free_port()));
    let f = std::fs::File::create(&path).unwrap();
    (Stdio::from(f.try_clone().unwrap()), Stdio::from(f), path)
}

/// A child process killed on drop.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str) -> Proc {
        let (out, err, log) = log_file(name);
        let child = cmd
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            log,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        self.terminate();
        self.wait(timeout)
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&mut self) {
        let c = self.child.as_ref().expect("process already stopped");
        signal(c.id() as i32, "TERM");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("process already stopped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "process did not stop within {timeout:?}; log {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn signal(pid: i32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Spawns `cmd` (for instance a binary run inside a network namespace with `ip netns exec`,
/// which execs it: the child is the binary itself) as a child killed on drop, its output in a
/// log file named after `name`.
pub fn spawn_command(cmd: Command, name: &str) -> Proc {
    Proc::spawn(cmd, name)
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `nats-server` with JetStream on a free port and a temporary store.
pub struct Nats {
    pub port: u16,
    pub store: PathBuf,
    extra: Vec<String>,
    proc: Option<Proc>,
    _dir: Option<TempDir>,
}

impl Nats {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "nats-server already running");
        let mut cmd = Command::new(nats_server());
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(&self.store)
        .args(&self.extra);
        self.proc = Some(Proc::spawn(cmd, "nats"));
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "nats-server did not start"
        );
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    pub async fn js(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats_server() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into())
}

/// The nats-server program the tests run: `NATS_SERVER_BIN`, or `nats-server` on PATH.
pub fn nats_server_program() -> String {
    nats_server()
}

pub fn spawn_nats() -> Nats {
    spawn_nats_with_config("")
}

/// A server with extra lines of configuration (e.g. `max_payload: 2048`).
pub fn spawn_nats_with_config(conf: &str) -> Nats {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = Vec::new();
    if !conf.is_empty() {
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).unwrap();
        extra = vec!["-c".to_owned(), path.display().to_string()];
    }
    let mut nats = Nats {
        port: free_port(),
        store: dir.path().join("js"),
        extra,
        proc: None,
        _dir: Some(dir),
    };
    nats.start();
    nats
}

/// Three clustered servers on loopback; returns them in start order.
pub fn spawn_nats_cluster() -> Vec<Nats> {
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = cluster_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Nats> = (0..3)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            Nats {
                port: free_port(),
                store: dir.path().join("js"),
                extra: vec![
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "sn".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", cluster_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                ],
                proc: None,
                _dir: Some(dir),
            }
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    nodes
}

/// A running service binary and the address of its HTTP side.
pub struct Service {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        let http = self.http.clone();
        wait_for("service readiness", Duration::from_secs(20), || {
            let (url, http) = (url.clone(), http.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }
}

pub fn http_client() -> reqwest::Client {
    common::telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn spawn_gateway(nats_url: &str, env: &[(&str, &str)]) -> Service {
    let port = free_port();
    let mut cmd = Command::new(binary("gateway"));
    cmd.env("NATS_URL", nats_url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info,gateway=debug")
        .env_remove("API_TOKEN")
        // Writes open unless a test passes API_TOKEN (a token set is always required).
        .env("AUTH", "off")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc::spawn(cmd, "gateway");
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "gateway did not listen; log {}",
        proc.log.display()
    );
    Service {
        proc,
        addr: ([127, 0, 0, 1], port).into(),
        http: http_client(),
    }
}

pub fn spawn_generator(nats_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Service {
    let port = free_port();
    let mut cmd = Command::new(binary("generator"));
    cmd.env("NATS_URL", nats_url)
        .env("ADMIN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "info,generator=debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc::spawn(cmd, "generator");
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "generator did not listen; log {}",
        proc.log.display()
    );
    Service {
        proc,
        addr: ([127, 0, 0, 1], port).into(),
        http: http_client(),
    }
}

/// POSTs a JSON body to /generate_sn.
pub async fn post(gw: &Service, body: &Value) -> reqwest::Response {
    gw.http
        .post(gw.url("/generate_sn"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs and expects 202; returns the task id.
pub async fn submit(gw: &Service, body: Value) -> String {
    let r = post(gw, &body).await;
    assert_eq!(r.status(), 202, "POST {body}: {:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

pub async fn task(gw: &Service, id: &str) -> Value {
    get_json(gw, &format!("/tasks/{id}")).await
}

/// Waits until the task is SUCCESS or FAILURE; returns its view.
pub async fn finished(gw: &Service, id: &str, timeout: Duration) -> Value {
    let id = id.to_owned();
    wait_for(&format!("task {id} to finish"), timeout, || {
        let id = id.clone();
        async move {
            let r = gw
                .http
                .get(gw.url(&format!("/tasks/{id}")))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            matches!(v["state"].as_str(), Some("SUCCESS" | "FAILURE")).then_some(v)
        }
    })
    .await
}

/// Downloads a task's serials; a 503 (with Retry-After) is retried, as a client would.
pub async fn serials(gw: &Service, id: &str) -> Vec<String> {
    let url = gw.url(&format!("/tasks/{id}/serials"));
    let r = wait_for("the serials download", Duration::from_secs(60), || async {
        let r = gw.http.get(&url).send().await.unwrap();
        (r.status() != 503).then_some(r)
    })
    .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap().lines().map(str::to_owned).collect()
}

/// The stream's last sequence (0 when empty or missing).
pub async fn stream_last_seq(js: &jetstream::Context) -> u64 {
    match js.get_stream("SN").await {
        Ok(mut s) => s.info().await.unwrap().state.last_sequence,
        Err(_) => 0,
    }
}

/// Every message of the stream: (subject, payload JSON, headers), in order.
pub async fn stream_messages(
    js: &jetstream::Context,
) -> Vec<(String, Value, Option<async_nats::HeaderMap>)> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    use futures::StreamExt;
    let last = stream_last_seq(js).await;
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    let stream = js.get_stream("SN").await.unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .unwrap()
    {
        let m = m.unwrap();
        let seq = m.info().unwrap().stream_sequence;
        out.push((
            m.subject.to_string(),
            serde_json::from_slice(&m.payload).unwrap(),
            m.headers.clone(),
        ));
        if seq >= last {
            break;
        }
    }
    out
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// Checks the Prometheus text exposition format line by line; returns samples by series.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
            }
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            typed.contains(name) || typed.contains(base),
            "sample before its TYPE: {line:?}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

pub fn sum(samples: &HashMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// A service's `/metrics`, by series.
pub async fn scrape(s: &Service) -> HashMap<String, f64> {
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    parse_prometheus(&r.text().await.unwrap())
}

/// A `nats-server` that is not started yet (its port chosen): for services that must start
/// before NATS does. `start()` runs it.
pub fn unstarted_nats() -> Nats {
    let dir = tempfile::tempdir().unwrap();
    Nats {
        port: free_port(),
        store: dir.path().join("js"),
        extra: Vec::new(),
        proc: None,
        _dir: Some(dir),
    }
}

/// The repository's root (where `k8s/` and `scripts/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a binary of the workspace to its end (bounded) with `env`; its exit status and
/// stderr. For settings a binary must refuse before it starts anything.
pub fn run_to_exit(name: &str, env: &[(&str, &str)], timeout: Duration) -> (ExitStatus, String) {
    run_args_to_exit(name, &[], env, timeout)
}

/// [`run_to_exit`] with command-line arguments.
pub fn run_args_to_exit(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String) {
    let mut cmd = Command::new(binary(name));
    cmd.args(args)
        .env_remove("API_TOKEN")
        .env_remove("AUTH")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// Waits until the service's log holds `text` (a line is written a moment after what it tells).
pub async fn wait_for_log(s: &Service, text: &str, timeout: Duration) {
    let path = s.proc.log.clone();
    wait_for(&format!("{text:?} in {}", path.display()), timeout, || {
        let path = path.clone();
        async move {
            let log = std::fs::read_to_string(&path).ok()?;
            log.contains(text).then_some(())
        }
    })
    .await;
}

/// GETs `path` of a service and reads the body as JSON.
pub async fn get_json(s: &Service, path: &str) -> Value {
    s.http
        .get(s.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
