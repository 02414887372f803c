//! `snctl` against the real stack: what a script sees (exit codes, `--json`, one-line errors
//! on stderr) and what a person gets (the downloaded file, lookups, the task table, live
//! events, `snctl up`).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

/// nats-server, generator and gateway, all ready.
struct Stack {
    gw: Service,
    _generator: Service,
    _data: TempDir,
    nats: Nats,
}

async fn stack() -> Stack {
    let nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    Stack {
        gw,
        _generator: generator,
        _data: data,
        nats,
    }
}

/// The gateway's base URL, as `--url` takes it.
fn base(gw: &Service) -> String {
    gw.url("")
}

/// A `snctl` command run in `cwd` (a directory without `.env`) with none of the caller's
/// SN_URL, API_TOKEN or NATS_URL.
fn snctl_command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("snctl"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SN_URL")
        .env_remove("API_TOKEN")
        .env_remove("NATS_URL")
        .stdin(Stdio::null());
    cmd
}

/// How one run of snctl ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The one-line error message on stderr.
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line: {self:?}");
        assert!(lines[0].starts_with("error: "), "{self:?}");
        lines[0]
    }
}

/// Runs snctl to its end, on a blocking thread.
async fn snctl(cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = snctl_command(cwd, args);
    let what = format!("snctl {}", args.join(" "));
    let out = tokio::time::timeout(T, tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {T:?}"))
        .unwrap()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A long-running snctl (`watch`, `up`): asked to stop with SIGTERM when dropped, so its
/// own children are stopped too, and killed if it does not.
struct Running(Option<Child>);

impl Running {
    fn pid(&self) -> String {
        self.0.as_ref().unwrap().id().to_string()
    }

    /// Sends SIGTERM and waits (bounded) for the exit code.
    async fn sigterm(&mut self) -> Option<i32> {
        let mut child = self.0.take().unwrap();
        let status = tokio::task::spawn_blocking(move || terminate(&mut child))
            .await
            .unwrap();
        status.expect("snctl did not stop within a minute of SIGTERM")
    }
}

/// SIGTERM, then up to `T` for an exit; `None` (after a kill) if it did not come.
fn terminate(child: &mut Child) -> Option<Option<i32>> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            terminate(&mut child);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_with_output_downloads_exactly_what_the_gateway_serves() {
    // Arrange
    let s = stack().await;
    let dir = tempdir();
    let url = base(&s.gw);
    let file = dir.path().join("serials.csv");

    // Act
    let run = snctl(
        dir.path(),
        &[
            "--url",
            &url,
            "--json",
            "generate",
            "--model",
            "0111",
            "--number",
            "1",
            "--count",
            "2500",
            "--wait",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;

    // Assert
    assert_eq!(run.code, Some(0), "{run:?}");
    let view = run.json();
    assert_eq!(view["state"], "SUCCESS", "{view}");
    assert_eq!(view["count"], 2500);
    let id = view["id"].as_str().unwrap().to_owned();
    let served =
        s.gw.http
            .get(s.gw.url(&format!("/tasks/{id}/serials")))
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
    assert_eq!(served.status(), 200);
    let served = served.text().await.unwrap();
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, served);
    assert!(
        written.starts_with("serial,number\n011100000001,1\n"),
        "{written:.60}"
    );
    assert_eq!(written.lines().count(), 2501);
    assert!(!dir.path().join("serials.csv.part").exists());

    let run = snctl(dir.path(), &["--url", &url, "--json", "task", &id]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json(), task(&s.gw, &id).await);

    // The same numbers again: the gateway refuses at once.
    let run = snctl(
        dir.path(),
        &[
            "--url", &url, "generate", "--model", "0111", "--number", "1", "--count", "10",
        ],
    )
    .await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.error_line().contains("overlap"), "{run:?}");
}

/// `generate -o` streams the serials into the file while the task runs: its download is
/// open before the task has even started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_with_output_downloads_while_the_task_runs() {
    // Arrange: no generator yet, so the task stays PENDING.
    let nats = spawn_nats();
    let data = tempdir();
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let dir = tempdir();
    let file = dir.path().join("serials.txt");
    let args: Vec<String> = [
        "--url",
        &base(&gw),
        "--json",
        "generate",
        "--model",
        "FO",
        "--count",
        "25000",
        "-o",
        file.to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    let cwd = dir.path().to_owned();

    // Act
    let run = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        snctl(&cwd, &args).await
    });
    let downloads = || async {
        scrape(&gw)
            .await
            .iter()
            .filter(|(k, _)| {
                k.starts_with("sn_http_requests_total{")
                    && k.contains("route=\"/tasks/{id}/serials\"")
                    && k.contains("status=\"200\"")
            })
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    wait_for("snctl's download to be answered 200", T, || async {
        (downloads().await >= 1.0).then_some(())
    })
    .await;
    let _generator = spawn_generator(&nats.url(), data.path(), &[]);
    let run = run.await.unwrap();

    // Assert
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["state"], "SUCCESS", "{run:?}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 25000);
    assert!(
        written.starts_with("FO00000001\nFO00000002\n"),
        "{written:.30}"
    );
    assert!(written.ends_with("FO00025000\n"));
    assert!(!dir.path().join("serials.txt.part").exists());
    // The file came from that followed download: none was asked for again.
    assert_eq!(downloads().await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_tasks_find_what_generate_issued() {
    // Arrange
    let s = stack().await;
    let dir = tempdir();
    let url = base(&s.gw);
    let file = dir.path().join("serials.ndjson");
    let run = snctl(
        dir.path(),
        &[
            "--url",
            &url,
            "generate",
            "--model",
            "A-7",
            "--count",
            "10",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("SUCCESS"), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("wrote 10 serials to {}", file.display())),
        "{run:?}"
    );
    let rows: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 10);

    // Act
    let tasks = snctl(dir.path(), &["--url", &url, "--json", "tasks"]).await;
    let table = snctl(
        dir.path(),
        &[
            "--url", &url, "tasks", "--state", "success", "--model", "A-7",
        ],
    )
    .await;

    // Assert
    assert_eq!(tasks.code, Some(0), "{tasks:?}");
    let items = tasks.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    let view = &items[0];
    let id = view["id"].as_str().unwrap();
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(view["first_serial"], rows[0]["serial"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{table:?}");
    assert!(
        lines[1].starts_with(id) && lines[1].contains("SUCCESS"),
        "{table:?}"
    );

    // Act
    let serial = view["first_serial"].as_str().unwrap();
    let found = snctl(dir.path(), &["--url", &url, "--json", "lookup", serial]).await;
    let text = snctl(dir.path(), &["--url", &url, "lookup", serial]).await;
    let never = snctl(dir.path(), &["--url", &url, "lookup", "A-799999999"]).await;

    // Assert
    assert_eq!(found.code, Some(0), "{found:?}");
    let found = found.json();
    assert_eq!(found["task_id"], id);
    assert_eq!(found["code_model"], "A-7");
    assert_eq!(found["number"], view["number"]);
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(text.stdout.contains(id), "{text:?}");
    assert_eq!(never.code, Some(3), "{never:?}");
    assert!(never.error_line().contains("never issued"), "{never:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_the_servers_message() {
    // Arrange: the gateway checks requests on its own.
    let nats = spawn_nats();
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    let dir = tempdir();
    let url = base(&gw);

    // Act
    let zero = snctl(
        dir.path(),
        &["--url", &url, "generate", "--model", "0111", "--count", "0"],
    )
    .await;
    let check_digit = snctl(
        dir.path(),
        &[
            "--url",
            &url,
            "generate",
            "--model",
            "AB",
            "--count",
            "1",
            "--check-digit",
            "gs1",
        ],
    )
    .await;
    let usage = snctl(dir.path(), &["--url", &url, "generate", "--model", "0111"]).await;
    let unknown = snctl(
        dir.path(),
        &["--url", &url, "task", &Uuid::new_v4().to_string()],
    )
    .await;

    // Assert
    assert_eq!(zero.code, Some(2), "{zero:?}");
    assert!(zero.stdout.is_empty(), "{zero:?}");
    assert_eq!(
        zero.error_line(),
        "error: count: must be a positive integer"
    );
    assert_eq!(check_digit.code, Some(2), "{check_digit:?}");
    assert!(
        check_digit.error_line().contains("format.check_digit"),
        "{check_digit:?}"
    );
    assert_eq!(usage.code, Some(2), "{usage:?}");
    assert!(usage.stderr.contains("--count"), "{usage:?}");
    assert_eq!(unknown.code, Some(3), "{unknown:?}");
    assert!(unknown.error_line().contains("no task"), "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_4_with_one_error_line() {
    // Arrange: nothing listens on these ports.
    let dir = tempdir();
    let url = format!("http://127.0.0.1:{}", free_port());
    let nats_url = format!("nats://127.0.0.1:{}", free_port());

    // Act
    let generate = snctl(
        dir.path(),
        &["--url", &url, "generate", "--model", "0111", "--count", "1"],
    )
    .await;
    let tasks = snctl(dir.path(), &["--url", &url, "--json", "tasks"]).await;
    let watch = snctl(dir.path(), &["--nats-url", &nats_url, "watch"]).await;

    // Assert
    for run in [&generate, &tasks] {
        assert_eq!(run.code, Some(4), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(
            run.error_line()
                .starts_with(&format!("error: cannot reach the server at {url}")),
            "{run:?}"
        );
    }
    assert_eq!(watch.code, Some(4), "{watch:?}");
    assert!(
        watch
            .error_line()
            .starts_with(&format!("error: cannot reach NATS at {nats_url}")),
        "{watch:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_event_of_a_model_as_one_json_line() {
    // Arrange
    let s = stack().await;
    let dir = tempdir();
    let url = base(&s.gw);
    let nats_url = s.nats.url();
    let mut child = snctl_command(
        dir.path(),
        &["--json", "--nats-url", &nats_url, "watch", "--model", "W1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut watch = Running(Some(child));
    // snctl says so once NATS has the subscription: no event after this line is missed.
    let first = tokio::time::timeout(
        T,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stderr).read_line(&mut line).unwrap();
            line
        }),
    )
    .await
    .expect("watch did not subscribe")
    .unwrap();
    assert!(first.starts_with("watching sn.W1.> on "), "{first:?}");

    // Act
    let run = snctl(
        dir.path(),
        &[
            "--url", &url, "--json", "generate", "--model", "W1", "--count", "10", "--wait",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let id = run.json()["id"].as_str().unwrap().to_owned();
    let events: Vec<Value> = tokio::time::timeout(
        T,
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let done = event["type"] == "sn.task.completed.v1";
                events.push(event);
                if done {
                    break;
                }
            }
            events
        }),
    )
    .await
    .expect("no completed event")
    .unwrap();
    let code = watch.sigterm().await;

    // Assert
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types.first(),
        Some(&"sn.generate.requested.v1"),
        "{types:?}"
    );
    assert!(types.contains(&"sn.range.reserved.v1"), "{types:?}");
    assert!(types.contains(&"sn.serials.generated.v1"), "{types:?}");
    assert_eq!(types.last(), Some(&"sn.task.completed.v1"), "{types:?}");
    assert!(
        events.iter().all(|e| e["subject"] == id.as_str()),
        "{events:?}"
    );
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_services_until_sigterm() {
    // Arrange
    let nats = spawn_nats();
    let dir = tempdir();
    let http = free_port();
    let admin = free_port();
    let out_path = dir.path().join("up.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let err = std::fs::File::create(dir.path().join("up.err")).unwrap();
    let child = snctl_command(dir.path(), &["up"])
        .env("NATS_URL", nats.url())
        .env("HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let mut up = Running(Some(child));
    let url = format!("http://127.0.0.1:{http}");

    // Act
    let banner = format!("ready at {url}");
    wait_for("the ready banner of snctl up", T, || {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let ready = text.contains(&banner);
        async move { ready.then_some(()) }
    })
    .await;
    let run = snctl(
        dir.path(),
        &[
            "--url", &url, "--json", "generate", "--model", "U", "--count", "5", "--wait",
        ],
    )
    .await;
    let pid = up.pid();
    let code = up.sigterm().await;

    // Assert
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["state"], "SUCCESS");
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        text.contains(&format!("curl -s -X POST {url}/generate_sn")),
        "{text}"
    );
    assert_eq!(code, Some(0), "snctl up (pid {pid}) exit; output:\n{text}");
    for port in [http, admin] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after snctl up stopped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_while_waited_for_exits_5() {
    // Arrange: the generator allows fewer serials than the gateway, so the request is
    // accepted and then fails.
    let nats = spawn_nats();
    let data = tempdir();
    let generator = spawn_generator(&nats.url(), data.path(), &[("MAX_COUNT", "10")]);
    let gw = spawn_gateway(&nats.url(), &[]);
    gw.wait_ready().await;
    generator.wait_ready().await;
    let dir = tempdir();
    let url = base(&gw);

    // Act
    let run = snctl(
        dir.path(),
        &[
            "--url", &url, "--json", "generate", "--model", "F", "--count", "50", "--wait",
        ],
    )
    .await;

    // Assert
    assert_eq!(run.code, Some(5), "{run:?}");
    let view = run.json();
    assert_eq!(view["state"], "FAILURE", "{view}");
    let id = view["id"].as_str().unwrap();
    assert_eq!(
        run.error_line(),
        format!("error: task {id} failed: invalid_request: count: must be at most 10")
    );

    // The same with -o: the followed download ends in an error with the task, and no file
    // (nor its .part) is left.
    let file = dir.path().join("failed.txt");
    let run = snctl(
        dir.path(),
        &[
            "--url",
            &url,
            "--json",
            "generate",
            "--model",
            "F",
            "--count",
            "50",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, Some(5), "{run:?}");
    let id = run.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        run.error_line(),
        format!("error: task {id} failed: invalid_request: count: must be at most 10")
    );
    assert!(!file.exists());
    assert!(!dir.path().join("failed.txt.part").exists());
}
