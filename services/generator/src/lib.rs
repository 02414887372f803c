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

use common::ledger::{Ledger, Range, Reservation};

use crate::config::{Config, WorkConfig};
use crate::log::{EventLog, SavedLedger, StoredRange};

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
    /// The stream lacks reservations the log holds: this replica issues nothing.
    pub refusing: AtomicBool,
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
    /// The master keys of random-order models (`SERIAL_KEY`).
    pub keys: common::serial::Keyring,
}

impl Shared {
    /// Whether this replica takes work; if not, why (what `/readyz` answers).
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(fault) = self.log.fault() {
            return Err(format!(
                "the event log failed ({fault}): this replica takes no work until it is \
                 restarted on a working disk"
            ));
        }
        if self.refusing.load(Ordering::Relaxed) {
            return Err("the stream lacks reservations this replica's log holds".into());
        }
        if !self.ledger_ready.load(Ordering::Relaxed) {
            return Err("the ledger has not caught up with the stream yet".into());
        }
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected to NATS".into());
        }
        Ok(())
    }
}

pub struct Application {
    shared: Arc<Shared>,
    admin: tokio::net::TcpListener,
    shutdown: CancellationToken,
    /// Ranges the log held that must be found in the stream before this replica issues
    /// anything: set when its snapshot was folded from another stream than the one found at
    /// start, now or at an earlier start (see `verify_saved_ranges`).
    unverified: Option<Vec<(String, StoredRange)>>,
}

impl Application {
    /// Opens the log, connects to NATS, makes sure the stream exists and binds the admin port.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        let keys = config.keys.keyring()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let log = EventLog::open(&config.data_dir)?;
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
        let replicas = info.config.num_replicas;
        let created = info.created.unix_timestamp_nanos();
        let last_seq = info.state.last_sequence;

        let saved = log.load_ledger()?;
        // Reservations set aside at an earlier start, still to be found in the stream.
        let mut unverified = log.quarantined()?;
        let (ledger, pos) = match trusted(&saved, created, last_seq) {
            Ok(()) => {
                if saved.stream.is_none() {
                    log.save_stream(created)?;
                }
                (fold_saved(&saved), saved.position)
            }
            Err(why) => {
                tracing::warn!(
                    saved_position = saved.position,
                    stream_last_sequence = last_seq,
                    "the log's ledger snapshot was folded from {why}: folding the stream from \
                     its start, and checking that it holds the {} saved reservations",
                    saved.ranges.len()
                );
                log.quarantine_ledger(&saved, created)?;
                unverified.extend(saved.ranges);
                (Ledger::planning(), 0)
            }
        };
        let unverified = (!unverified.is_empty()).then_some(unverified);
        let shared = Arc::new(Shared {
            js,
            client,
            connections,
            log,
            ledger: RwLock::new(ledger),
            ledger_pos: watch::Sender::new(pos),
            ledger_ready: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            follower_stalled: tokio::sync::Notify::new(),
            single_replica: AtomicBool::new(replicas <= 1),
            reserve_turn: Arc::new(tokio::sync::Mutex::new(())),
            running: AtomicUsize::new(0),
            max_count: config.max_count,
            work: config.work,
            keys,
        });
        admin::init_metrics();
        metrics::gauge!("sn_ledger_saved_position").set(pos as f64);
        Ok(Application {
            shared,
            admin,
            shutdown,
            unverified,
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
            unverified,
        } = self;
        let admin = tokio::spawn(admin::serve(admin, shared.clone(), shutdown.clone()));
        let follower = tokio::spawn(follower::run(shared.clone(), shutdown.clone()));
        let exhausted = tokio::spawn(exhausted::run(shared.clone(), shutdown.clone()));
        let verified = match unverified {
            Some(saved) => verify_saved_ranges(&shared, &shutdown, &saved).await,
            None => true,
        };
        if !verified {
            follower.await.ok();
            exhausted.await.ok();
            admin.await.ok();
            return Ok(());
        }
        if let Err(e) = outbox::republish_pending(&shared, &shutdown).await {
            // Not fatal: each of those tasks is still unacknowledged, so its request comes
            // back and the task path republishes its pending entries.
            tracing::warn!(error = %e, "cannot republish pending events yet");
        }
        intake::run(shared.clone(), shutdown.clone()).await;
        follower.await.ok();
        exhausted.await.ok();
        admin.await.ok();
        if let Some(fault) = shared.log.fault() {
            anyhow::bail!("stopped with a failed event log: {fault}");
        }
        shared.log.flush().await?;
        Ok(())
    }
}

/// Whether the ledger snapshot can be trusted for the stream found at start (created at
/// `created`, Unix nanoseconds, holding messages up to `last_seq`); else what it was folded
/// from instead.
fn trusted(saved: &SavedLedger, created: i128, last_seq: u64) -> Result<(), &'static str> {
    match saved.stream {
        Some(s) if s != created => Err("another stream (SN was deleted and made again)"),
        None if saved.position > 0 => Err("a stream it did not record"),
        _ if saved.position > last_seq => {
            Err("a longer stream (SN lost messages, or was made again)")
        }
        _ => Ok(()),
    }
}

/// The ledger the snapshot holds: schemes in the order they were fixed, then the ranges.
fn fold_saved(saved: &SavedLedger) -> Ledger {
    let mut ledger = Ledger::planning();
    let mut schemes: Vec<_> = saved.schemes.iter().collect();
    schemes.sort_by_key(|s| s.seq);
    for s in schemes {
        ledger.declare(&s.model, s.seq, s.scheme);
    }
    for (model, r) in &saved.ranges {
        ledger.reserve(
            model,
            r.seq,
            Reservation {
                range: Range {
                    first: r.first,
                    last: r.last,
                    task: r.task,
                },
                scheme: ledger.scheme(model),
                automatic: r.automatic,
            },
        );
    }
    ledger
}

/// When the ledger snapshot came from another stream (now or at an earlier start): waits
/// until the stream is folded, then checks that it holds every reservation set aside. If it
/// does, they are forgotten; if not, the stream lost reservations that were issued, and
/// issuing from it could issue them again, so this replica refuses to work (not ready), at
/// this start and every later one, until an operator restores the stream or moves the log
/// away. False when it must not work.
async fn verify_saved_ranges(
    shared: &Shared,
    shutdown: &CancellationToken,
    saved: &[(String, StoredRange)],
) -> bool {
    let mut pos = shared.ledger_pos.subscribe();
    loop {
        if shared.ledger_ready.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = pos.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    let missing: Vec<_> = {
        let ledger = shared.ledger.read().expect("ledger lock poisoned");
        saved
            .iter()
            .filter(|(model, r)| {
                ledger.held(model, r.task)
                    != Some(Range {
                        first: r.first,
                        last: r.last,
                        task: r.task,
                    })
            })
            .collect()
    };
    if let Some((model, r)) = missing.first() {
        shared.refusing.store(true, Ordering::Relaxed);
        tracing::error!(
            missing = missing.len(),
            example = %format!("model {model}: {}..={} of task {}", r.first, r.last, r.task),
            "the stream SN lacks reservations this generator's log holds: serials issued \
             before could be issued again, so this replica issues nothing. Restore SN from a \
             backup, or, if its serials were never used, move this DATA_DIR away and restart"
        );
        shutdown.cancelled().await;
        return false;
    }
    if let Err(e) = shared.log.release_quarantine() {
        tracing::warn!(error = %e, "cannot forget the checked reservations; checked again at the next start");
    }
    tracing::info!(
        reservations = saved.len(),
        "the stream holds every reservation the log's snapshot held"
    );
    true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_snapshot_is_trusted_only_for_its_own_stream() {
        let saved = |stream, position| SavedLedger {
            stream,
            position,
            ..SavedLedger::default()
        };
        assert!(trusted(&saved(Some(7), 40), 7, 40).is_ok());
        assert!(trusted(&saved(Some(7), 40), 7, 90).is_ok());
        // A log that never recorded its stream: checked, unless it holds nothing.
        assert!(trusted(&saved(None, 40), 7, 40).is_err());
        assert!(trusted(&saved(None, 0), 7, 0).is_ok());
        // Made again, or lost its tail.
        assert!(trusted(&saved(Some(7), 40), 8, 90).is_err());
        assert!(trusted(&saved(Some(7), 40), 7, 39).is_err());
        assert!(trusted(&saved(None, 40), 7, 39).is_err());
    }

    #[test]
    fn a_saved_ledger_folds_back_with_its_schemes_and_cursor() {
        let task = uuid::Uuid::new_v4();
        let saved = SavedLedger {
            ranges: vec![(
                "0111".into(),
                StoredRange {
                    first: 1,
                    last: 10,
                    task,
                    seq: 4,
                    automatic: true,
                },
            )],
            schemes: vec![log::StoredScheme {
                model: "0111".into(),
                scheme: common::Format {
                    width: 9,
                    check_digit: common::CheckDigit::None,
                    ..common::Format::default()
                },
                seq: 4,
            }],
            position: 4,
            stream: Some(1),
        };
        let ledger = fold_saved(&saved);
        assert_eq!(ledger.scheme("0111").map(|s| s.width), Some(9));
        assert_eq!(ledger.held("0111", task).map(|r| r.last), Some(10));
        assert_eq!(ledger.cursor("0111"), 10);
    }
}
