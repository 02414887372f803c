//! The generator: consumes requests from the `SN` stream, reserves a range on the model's
//! ledger, generates the serials in batches, appends every event to its sled log and then
//! publishes it.
//!
//! Flow: `intake` (durable pull consumer) -> `task` (one request) -> `reserve` (CAS on the
//! ledger subject, fed by `follower`) -> batches through `outbox` (log, flush, publish,
//! await acks). `admin` serves health and metrics.

mod admin;
pub mod config;
mod exhausted;
mod follower;
mod intake;
pub mod ledger;
pub mod log;
mod outbox;
mod reserve;
mod task;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WorkConfig};
use crate::ledger::Ledger;
use crate::log::EventLog;

pub const SOURCE: &str = "/sn/generator";

/// What every part of the generator shares.
pub(crate) struct Shared {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    /// Changes when the client reconnects (see `common::nats::Connections`).
    pub connections: common::nats::Connections,
    pub log: EventLog,
    pub ledger: RwLock<Ledger>,
    /// Stream sequence the ledger follower has folded up to.
    pub ledger_pos: watch::Sender<u64>,
    pub ledger_ready: AtomicBool,
    /// Raised when a reservation waited too long for the follower: it recreates its consumer
    /// (one lost with a cluster node delivers nothing and reports nothing).
    pub follower_stalled: tokio::sync::Notify,
    /// The stream has one replica: its compare-and-set is checked and stored under one lock,
    /// so an accepted reservation is granted at once (see `reserve`).
    /// Read again whenever the follower (re)starts, so a stream edited to more replicas is
    /// noticed.
    pub single_replica: AtomicBool,
    /// This replica's turn to reserve: taken by the intake loop in delivery order (tokio's
    /// mutex is FIFO) and released once the task has its range, so one replica reserves in
    /// the order requests arrived. Replicas are serialised by JetStream's compare-and-set.
    pub reserve_turn: Arc<tokio::sync::Mutex<()>>,
    /// Tasks running on this replica, from their reservation turn until their events are
    /// out (not while their request is being acknowledged).
    pub running: AtomicUsize,
    pub max_count: u64,
    pub work: WorkConfig,
}

impl Shared {
    pub fn ready(&self) -> bool {
        self.ledger_ready.load(Ordering::Relaxed)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }
}

pub struct Application {
    shared: Arc<Shared>,
    admin: tokio::net::TcpListener,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens the log, connects to NATS, makes sure the stream exists and binds the admin port.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let log = EventLog::open(&config.data_dir)?;
        let admin = tokio::net::TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("cannot bind admin address {}", config.admin_addr))?;
        let (client, connections) =
            common::nats::connect(&config.nats.nats_url, "generator", &shutdown).await?;
        let js = jetstream::new(client.clone());
        let stream =
            common::nats::ensure_stream_retrying(&js, config.nats.stream(), &shutdown).await?;
        let replicas = stream.cached_info().config.num_replicas;

        let (ranges, pos) = log.load_ledger()?;
        let mut ledger = Ledger::default();
        for (model, r) in ranges {
            ledger.apply(
                &model,
                r.seq,
                ledger::Range {
                    first: r.first,
                    last: r.last,
                    task: r.task,
                },
            );
        }
        let shared = Arc::new(Shared {
            js,
            client,
            connections,
            log,
            ledger: RwLock::new(ledger),
            ledger_pos: watch::Sender::new(pos),
            ledger_ready: AtomicBool::new(false),
            follower_stalled: tokio::sync::Notify::new(),
            single_replica: AtomicBool::new(replicas <= 1),
            reserve_turn: Arc::new(tokio::sync::Mutex::new(())),
            running: AtomicUsize::new(0),
            max_count: config.max_count,
            work: config.work,
        });
        admin::init_metrics();
        metrics::gauge!("sn_ledger_saved_position").set(pos as f64);
        Ok(Application {
            shared,
            admin,
            shutdown,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Republishes what the log holds unacknowledged, then follows the ledger and consumes
    /// requests until shutdown.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            shared,
            admin,
            shutdown,
        } = self;
        let admin = tokio::spawn(admin::serve(admin, shared.clone(), shutdown.clone()));
        let follower = tokio::spawn(follower::run(shared.clone(), shutdown.clone()));
        let exhausted = tokio::spawn(exhausted::run(shared.clone(), shutdown.clone()));
        if let Err(e) = outbox::republish_pending(&shared, &shutdown).await {
            // Not fatal: each of those tasks is still unacknowledged, so its request comes
            // back and the task path republishes its pending entries.
            tracing::warn!(error = %e, "cannot republish pending events yet");
        }
        intake::run(shared.clone(), shutdown.clone()).await;
        follower.await.ok();
        exhausted.await.ok();
        admin.await.ok();
        shared.log.flush().await?;
        Ok(())
    }
}

/// `generator log`: the event log as NDJSON, one CloudEvent per line, in log order.
pub fn print_log(dir: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    if !dir.exists() {
        anyhow::bail!("no event log in {}", dir.display());
    }
    // A running generator holds the log's lock: read a copy taken now instead (sled recovers
    // a copy as it would after a crash, up to the last flush).
    let snapshot;
    let log = match EventLog::open(dir) {
        Ok(log) => log,
        Err(_) => {
            snapshot = tempfile::tempdir()?;
            copy_dir(dir, snapshot.path())?;
            EventLog::open(snapshot.path())?
        }
    };
    for entry in log.iter() {
        let (_, entry) = entry?;
        out.write_all(&entry.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
