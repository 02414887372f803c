//! A throw-away stack on loopback: `nats-server -js` on a free port with a temporary store,
//! and the release `generator` and `gateway` binaries as children. Every child is killed
//! and the folder removed on drop (unless kept).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;

use crate::config::Config;

/// Where the binaries the stack runs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub nats_server: String,
    /// JetStream's `sync_interval` for the servers started, when not the default.
    pub nats_sync: Option<String>,
    pub service_log: String,
    pub keep: bool,
    /// Command line the services run under (a profiler), split on whitespace.
    pub wrap: Vec<String>,
}

impl Binaries {
    /// The binaries next to sn-bench (same target dir and profile), unless `--bin-dir`.
    pub fn locate(config: &Config) -> anyhow::Result<Binaries> {
        let dir = match &config.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .context("cannot find sn-bench's own path")?
                .parent()
                .context("sn-bench has no parent folder")?
                .to_path_buf(),
        };
        Ok(Binaries {
            dir,
            nats_server: config.nats_server.clone(),
            nats_sync: config.nats_sync.clone(),
            service_log: config.service_log.clone(),
            keep: config.keep,
            wrap: config
                .wrap
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The command that runs service `name`, under the wrapper if there is one.
    pub fn command(&self, name: &str) -> anyhow::Result<Command> {
        let binary = self.service(name)?;
        Ok(match self.wrap.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        })
    }

    /// How long a service may take to become ready: much longer under a profiler.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(if self.wrap.is_empty() { 30 } else { 600 })
    }

    /// How long a service may take to stop after SIGTERM before it is killed.
    fn grace(&self) -> Duration {
        Duration::from_secs(if self.wrap.is_empty() { 10 } else { 120 })
    }

    pub fn service(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        if !path.exists() {
            bail!(
                "{} is missing: build it first (cargo build --release -p sn-gateway -p sn-generator)",
                path.display()
            );
        }
        Ok(path)
    }

    /// `nats-server --version`, for the report.
    pub fn nats_version(&self) -> Option<String> {
        let out = Command::new(&self.nats_server)
            .arg("--version")
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// `n` distinct free ports: every listener is held until all are picked, so two services
/// started one after the other never get the same port.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A child process, killed (by its pid) on drop.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
    grace: Duration,
}

impl Proc {
    /// Starts `cmd` in a process group of its own, so stopping it also stops whatever it
    /// started (a profiler's child).
    fn spawn(mut cmd: Command, log: PathBuf, grace: Duration) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        Ok(Proc { child, log, grace })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("exited ({status}); log {}", self.log.display());
        }
        Ok(())
    }
}

impl Drop for Proc {
    /// SIGTERM first, so a service (or a profiler wrapping it) can finish its output; SIGKILL
    /// after the grace period.
    fn drop(&mut self) {
        // The group's id is the child's pid (see `spawn`).
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

/// A temporary folder, removed on drop unless the run keeps it.
pub struct Folder {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl Folder {
    pub fn new(prefix: &str, keep: bool) -> anyhow::Result<Folder> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let path = dir.path().to_path_buf();
        if keep {
            eprintln!("  keeping {}", path.display());
            let _ = dir.keep();
            return Ok(Folder { dir: None, path });
        }
        Ok(Folder {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}

/// A `nats-server` with JetStream on a free port.
pub struct Nats {
    pub url: String,
    pub proc: Proc,
}

impl Nats {
    pub fn start(bins: &Binaries, folder: &Path, port: u16) -> anyhow::Result<Nats> {
        let mut cmd = Command::new(&bins.nats_server);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(folder.join("nats"));
        if let Some(sync) = &bins.nats_sync {
            // The flags above still name the store; the file adds only the fsync policy.
            let conf = folder.join("nats.conf");
            std::fs::write(
                &conf,
                format!("jetstream {{\n  sync_interval: {sync}\n}}\n"),
            )
            .with_context(|| format!("cannot write {}", conf.display()))?;
            cmd.arg("-c").arg(conf);
        }
        let proc = Proc::spawn(cmd, folder.join("nats.log"), Duration::from_secs(5))?;
        if !wait_port(port, Duration::from_secs(10)) {
            bail!("nats-server did not listen; log {}", proc.log.display());
        }
        Ok(Nats {
            url: format!("nats://127.0.0.1:{port}"),
            proc,
        })
    }
}

/// A service binary and the base URL of its HTTP side.
pub struct Service {
    pub base: String,
    pub proc: Proc,
}

impl Service {
    pub fn gateway(
        bins: &Binaries,
        nats_url: &str,
        folder: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let mut cmd = bins.command("gateway")?;
        cmd.env("NATS_URL", nats_url)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            // The benchmark's writes carry no token.
            .env("AUTH", "off")
            .envs(env.iter().copied());
        Self::start(bins, cmd, port, folder, "gateway")
    }

    pub fn generator(
        bins: &Binaries,
        nats_url: &str,
        folder: &Path,
        port: u16,
    ) -> anyhow::Result<Service> {
        let mut cmd = bins.command("generator")?;
        cmd.env("NATS_URL", nats_url)
            .env("ADMIN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", folder.join("generator"));
        Self::start(bins, cmd, port, folder, "generator")
    }

    fn start(
        bins: &Binaries,
        mut cmd: Command,
        port: u16,
        folder: &Path,
        name: &str,
    ) -> anyhow::Result<Service> {
        cmd.current_dir(folder)
            // For random-order models (part c with --random-order); unused otherwise.
            .env("SERIAL_KEY", "the master key of sn-bench's stacks")
            .env("RUST_LOG", &bins.service_log)
            .env("LOG_FORMAT", "text")
            .env_remove("API_TOKEN")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        let proc = Proc::spawn(cmd, folder.join(format!("{name}.log")), bins.grace())?;
        Ok(Service {
            base: format!("http://127.0.0.1:{port}"),
            proc,
        })
    }

    /// Polls `/readyz` until it answers 200, for at most `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        common::telemetry::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.base);
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            self.proc
                .check_alive()
                .with_context(|| format!("service of {}", self.base))?;
            if started.elapsed() > timeout {
                bail!(
                    "{} not ready after {timeout:?}; log {}",
                    self.base,
                    self.proc.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// nats-server, generator and gateway, ready to take requests.
pub struct Stack {
    pub gateway: Service,
    pub generator: Service,
    pub nats: Nats,
    // Dropped last: the processes above are gone before their folder is removed.
    pub folder: Folder,
}

impl Stack {
    pub async fn start(bins: &Binaries) -> anyhow::Result<Stack> {
        let folder = Folder::new("sn-bench-", bins.keep)?;
        let [nats_port, admin_port, http_port] = free_ports()?;
        let nats = Nats::start(bins, folder.path(), nats_port)?;
        let mut generator = Service::generator(bins, &nats.url, folder.path(), admin_port)?;
        let mut gateway = Service::gateway(bins, &nats.url, folder.path(), http_port, &[])?;
        generator.wait_ready(bins.ready_timeout()).await?;
        gateway.wait_ready(bins.ready_timeout()).await?;
        Ok(Stack {
            gateway,
            generator,
            nats,
            folder,
        })
    }
}
