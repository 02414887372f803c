//! The generator: consumes requests from the `SN` stream, reserves a range on the model's
//! ledger, generates the serials in batches, appends every event to its sled log and then
//! publishes it.
//!
//! Flow: `intake` (durable pull consumer) -> `task` (one request) -> `reserve` (CAS on the
//! ledger subject, planned on and decided by `ledger`, which follows the stream) -> batches
//! through `outbox` (log, flush, publish, await acks). Each part is given the handles it uses
//! (`task::Worker`: the `log`, the `ledger`, the `stream` port, the keys and limits); none
//! reaches into shared state. `admin` serves health and metrics.

mod admin;
pub mod config;
mod exhausted;
mod intake;
mod ledger;
pub mod log;
mod outbox;
mod reserve;
mod stream;
mod task;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::Ledger;
use crate::log::{EventLog, StoredRange};
use crate::stream::JetStream;
use crate::task::Worker;

pub const SOURCE: &str = "/sn/generator";

/// The connection to NATS, for what reads deliveries rather than stored messages.
#[derive(Clone)]
pub(crate) struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// Changes when the client reconnects (see `common::nats::Connections`).
    pub connections: common::nats::Connections,
}

/// Whether this replica takes work; if not, why (what `/readyz` answers).
pub(crate) fn readiness(
    log: &EventLog,
    ledger: &Ledger,
    client: &async_nats::Client,
) -> Result<(), String> {
    if let Some(fault) = log.fault() {
        return Err(format!(
            "the event log failed ({fault}): this replica takes no work until it is \
             restarted on a working disk"
        ));
    }
    ledger.readiness()?;
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err("not connected to NATS".into());
    }
    Ok(())
}

pub struct Application {
    worker: Worker,
    nats: Nats,
    admin: tokio::net::TcpListener,
    shutdown: CancellationToken,
    /// Ranges the log held that must be found in the stream before this replica issues
    /// anything (see `ledger::verify_saved_ranges`).
    unverified: Option<Vec<(String, StoredRange)>>,
}

impl Application {
    /// Opens the log, connects to NATS, makes sure the stream exists and binds the admin port.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        let keys = config.keys.keyring()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let log = EventLog::open(&config.data_dir, Arc::new(task::Serials))?;
        let admin = tokio::net::TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("cannot bind admin address {}", config.admin_addr))?;
        // Live (`/healthz`) while NATS and the stream are awaited; ready only once running.
        let (admin, starting) = admin::answer_while_starting(admin)?;
        let credentials = config.nats.credentials()?;
        let (client, connections) =
            common::nats::connect(&config.nats.nats_url, "generator", &credentials, &shutdown)
                .await?;
        let js = jetstream::new(client.clone());
        let stream =
            common::nats::ensure_stream_retrying(&js, config.nats.stream(), &shutdown).await?;
        drop(starting);
        let info = stream.cached_info();
        let restored = ledger::restore(
            &log,
            info.created.unix_timestamp_nanos(),
            info.state.last_sequence,
        )?;
        let ledger = Ledger::new(
            restored.fold,
            restored.position,
            info.config.num_replicas <= 1,
        );
        admin::init_metrics();
        metrics::gauge!("sn_ledger_saved_position").set(restored.position as f64);
        let worker = Worker {
            log,
            ledger: Arc::new(ledger),
            stream: Arc::new(JetStream(js.clone())),
            keys: Arc::new(keys),
            max_count: config.max_count,
            work: config.work,
        };
        Ok(Application {
            worker,
            nats: Nats {
                client,
                js,
                connections,
            },
            admin,
            shutdown,
            unverified: restored.unverified,
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
            worker,
            nats,
            admin,
            shutdown,
            unverified,
        } = self;
        let health = admin::Health {
            log: worker.log.clone(),
            ledger: worker.ledger.clone(),
            client: nats.client.clone(),
        };
        let admin = tokio::spawn(admin::serve(admin, health, shutdown.clone()));
        let follower = ledger::follow::Follower {
            ledger: worker.ledger.clone(),
            log: worker.log.clone(),
            js: nats.js.clone(),
            connections: nats.connections.clone(),
        };
        let follower = tokio::spawn(ledger::follow::run(follower, shutdown.clone()));
        let exhausted = tokio::spawn(exhausted::run(
            worker.clone(),
            nats.client.clone(),
            shutdown.clone(),
        ));
        let verified = match unverified {
            Some(saved) => {
                ledger::verify_saved_ranges(&worker.ledger, &worker.log, &shutdown, &saved).await
            }
            None => true,
        };
        if !verified {
            follower.await.ok();
            exhausted.await.ok();
            admin.await.ok();
            return Ok(());
        }
        let republished = outbox::republish_pending(
            &*worker.stream,
            &worker.log,
            worker.work.max_inflight,
            &shutdown,
        )
        .await;
        if let Err(e) = republished {
            // Not fatal: each of those tasks is still unacknowledged, so its request comes
            // back and the task path republishes its pending entries.
            tracing::warn!(error = %e, "cannot republish pending events yet");
        }
        intake::run(worker.clone(), nats, shutdown.clone()).await;
        follower.await.ok();
        exhausted.await.ok();
        admin.await.ok();
        if let Some(fault) = worker.log.fault() {
            anyhow::bail!("stopped with a failed event log: {fault}");
        }
        worker.log.flush().await?;
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
    let log = match EventLog::open(dir, Arc::new(task::Serials)) {
        Ok(log) => log,
        Err(_) => {
            snapshot = tempfile::tempdir()?;
            copy_dir(dir, snapshot.path())?;
            EventLog::open(snapshot.path(), Arc::new(task::Serials))?
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
