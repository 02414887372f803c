//! The append-only event log in sled: the only module that touches sled.
//!
//! It stores and returns entries (events as published) and the ledger snapshot; it renders
//! no serials (only `entry` reads a random-order batch's digits back as numbers). This module
//! holds the log itself: appends, flushes, what is still to publish, a task's entries, and how
//! the log fails. `entry` is how one entry is stored (a
//! generated batch as its numbers, its serials written again by the [`WriteSerials`] the
//! log was opened with), `snapshot` the ledger snapshot.
//!
//! One tree, keys prefixed:
//! - `e` + seq (u64 BE) -> entry (the event as published: subject + CloudEvent JSON; a
//!   generated batch without its serials, which are written again from its range when read,
//!   or in random order from their digits kept as numbers); big-endian keys make key order
//!   log order.
//! - `p` + seq -> ()  : logged but not yet acknowledged by JetStream (the outbox).
//! - `t` + task (16 bytes) + seq -> ()  : every entry of a task, for resume and replay.
//! - `l` + model + 0 + first (u64 BE) -> last (u64 BE) + task (16 bytes) + stream seq (u64 BE)
//!   + automatic (1 byte; absent in older logs, read as automatic): the ledger snapshot's ranges.
//! - `s` + model -> width, check digit, stream seq (u64 BE), order, key id, density: the
//!   ledger snapshot's schemes.
//! - `q` + the rest of an `l` key -> the `l` value: reservations of a snapshot that was folded
//!   from another stream, kept until the stream found now is checked to hold them.
//! - `m` + name: the ledger's stream position (u64 BE), the identity of the stream the
//!   snapshot was folded from (its creation time, i128 BE nanoseconds), and the version of
//!   the layout the log needs to be read (u32 BE; absent in logs from before it was
//!   recorded, which are version 1).
//!
//! Every write is single-key inserts and removes in a chosen order, never a `sled::Batch`:
//! sled 0.34 writes each batch as two or three I/O buffers of its own (it rolls the buffer
//! before and after the batch's manifest), each written and synced apart, where single-key
//! writes share the buffer the next flush writes once. A crash still leaves a state each
//! reader handles: sled recovers its log in order and stops at the first torn message, so
//! what survives is a prefix of the writes, and the writes of one call are ordered so that
//! every prefix is safe (see [`EventLog::append_with`] and [`EventLog::save_ledger`]; the
//! writes of one call are contiguous, as every write takes its turn on the gate).
//!
//! The first error sled gives (a full disk, an I/O error), or a flush it leaves unanswered,
//! fails the log for good: every later write and flush returns [`LogError::Failed`] at once,
//! and [`EventLog::failed`] tells the replica, which stops taking work (see `intake`).
mod entry;
mod gate;
mod snapshot;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use gate::{Fault, Gate};
use snapshot::ledger_kv;

pub use entry::{Entry, SerialsAt, WriteSerials};
pub use snapshot::{SavedLedger, StoredRange, StoredScheme};

const EVENT: u8 = b'e';
const PENDING: u8 = b'p';
const TASK: u8 = b't';
const LEDGER: u8 = b'l';
const SCHEME: u8 = b's';
const QUARANTINE: u8 = b'q';
/// Under the `m` prefix.
const LEDGER_SEQ: &[u8] = b"mledger_seq";
const STREAM_ID: &[u8] = b"mstream_created";
const VERSION: &[u8] = b"mversion";

/// The layout of the log this build writes. Raise it when a change makes older builds
/// misread the log; a build refuses a log whose version is higher than its own, so a
/// generator rolled back onto a newer log stops with a clear error instead of misreading it.
///
/// - 1: the first recorded layout.
/// - 2: random-order batches stored with their serials as numbers (`entry::WITH_IMAGES`).
pub const LOG_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the event log in {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("cannot {action} the event log: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error(
        "the event log in {path} was written by a newer generator (log version {found}; this \
         one reads up to {LOG_VERSION}): run that version or a later one, do not roll back \
         onto this log"
    )]
    Newer { path: String, found: u32 },
    #[error("event log entry {0} is corrupt")]
    Corrupt(u64),
    #[error("the event log failed earlier: {0}")]
    Failed(String),
}

/// A reservation granted to a task, logged with the task's first entries: the published
/// `reserved` event (a copy for audits) and, when this replica granted it at its ack, the
/// range for the ledger snapshot.
#[derive(Debug, Clone)]
pub struct Granted {
    pub entry: Entry,
    pub range: Option<(String, StoredRange)>,
}

#[derive(Clone)]
pub struct EventLog {
    db: sled::Db,
    tree: sled::Tree,
    /// Held by every write and by flush. sled 0.34 can deadlock when a flush runs while
    /// other threads write (seen under load: every writer and the flush parked for ever), so
    /// writes and flushes take turns.
    gate: Arc<Gate>,
    fault: Arc<Fault>,
    /// A flush unanswered for this long fails the log ([`FLUSH_DEADLINE`]).
    flush_deadline: Duration,
    /// Whether the log records [`LOG_VERSION`]; an older log is stamped with it right before
    /// its first entry only this version reads (a random-order batch), so a build rolled back
    /// is refused only once the log holds something it would misread.
    stamped: Arc<AtomicBool>,
    /// Writes a batch's serials again when it is read.
    serials: Arc<dyn WriteSerials>,
}

/// A flush still unanswered after this long fails the log: sled 0.34 can stop for good after
/// a failed write without reporting it (a value large enough to be written as a file of its
/// own, which a full disk refuses, leaves the I/O buffer it was reserved in never written,
/// and every flush waiting for that buffer). No healthy disk takes this long.
const FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// One single-key write: a key and its value.
type Write = (sled::IVec, sled::IVec);

fn key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn task_key(task: Uuid, seq: u64) -> [u8; 25] {
    let mut k = [TASK; 25];
    k[1..17].copy_from_slice(task.as_bytes());
    k[17..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[key.len() - 8..]);
    u64::from_be_bytes(b)
}

impl EventLog {
    /// Opens the log in `dir`; `serials` writes a batch's serials again when it is read.
    pub fn open(dir: &Path, serials: Arc<dyn WriteSerials>) -> Result<EventLog, LogError> {
        let open = |source| LogError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = sled::Config::new().path(dir).open().map_err(open)?;
        let tree = db.open_tree("log").map_err(open)?;
        let mut stamped = true;
        match tree.get(VERSION).map_err(open)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(&v[..])
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > LOG_VERSION {
                    return Err(LogError::Newer {
                        path: dir.display().to_string(),
                        found,
                    });
                }
                // This build reads an older layout as it is; the log is stamped with this
                // version only when it gets an entry an older build would misread.
                stamped = found == LOG_VERSION;
            }
            None => {
                tree.insert(VERSION, &LOG_VERSION.to_be_bytes())
                    .map_err(open)?;
            }
        }
        Ok(EventLog {
            db,
            tree,
            gate: Default::default(),
            fault: Default::default(),
            flush_deadline: FLUSH_DEADLINE,
            stamped: Arc::new(AtomicBool::new(stamped)),
            serials,
        })
    }

    /// Why the log cannot be used any more, once sled has failed (see [`Fault`]).
    pub fn fault(&self) -> Option<&str> {
        self.fault.reason.get().map(String::as_str)
    }

    /// The error every call returns once the log has failed.
    fn check(&self) -> Result<(), LogError> {
        match self.fault() {
            Some(_) => Err(self.failed_error()),
            None => Ok(()),
        }
    }

    fn failed_error(&self) -> LogError {
        LogError::Failed(self.fault().unwrap_or("a turn was given up").to_owned())
    }

    /// Completes once the log has failed.
    pub fn failed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.fault.raised.clone().cancelled_owned()
    }

    /// The error for a sled failure during `action`, recorded as the log's fault if it is
    /// the first.
    fn io(&self, action: &'static str) -> impl FnOnce(sled::Error) -> LogError + '_ {
        move |source| {
            let e = LogError::Io { action, source };
            if self.fault.reason.set(e.to_string()).is_ok() {
                tracing::error!(error = %e, "the event log failed");
                self.fault.raised.cancel();
                // Never dropped from now on: sled flushes when its last handle goes, and
                // after a failure that flush can wait for ever, keeping the process from
                // exiting.
                std::mem::forget(self.clone());
            }
            e
        }
    }

    /// Appends entries of one task as not-yet-published. Not durable until
    /// [`EventLog::flush`] returns: call it before publishing.
    pub fn append(
        &self,
        task: Uuid,
        entries: &[Entry],
        pending: bool,
    ) -> Result<Vec<u64>, LogError> {
        self.append_with(task, None, entries, pending)
    }

    /// Appends `entries` like [`EventLog::append`], after `granted` when given: the
    /// reservation the task's compare-and-set stored (already published, so never pending)
    /// and the range for the ledger snapshot.
    pub fn append_with(
        &self,
        task: Uuid,
        granted: Option<&Granted>,
        entries: &[Entry],
        pending: bool,
    ) -> Result<Vec<u64>, LogError> {
        self.write(|| {
            let (mut writes, seqs) = self.append_writes(task, granted, entries, pending)?;
            let stamp =
                !self.stamped.load(Ordering::Relaxed) && entries.iter().any(Entry::is_random);
            if stamp {
                writes.insert(0, (VERSION.into(), LOG_VERSION.to_be_bytes()[..].into()));
            }
            for (k, v) in writes {
                self.tree.insert(k, v).map_err(self.io("append to"))?;
            }
            if stamp {
                self.stamped.store(true, Ordering::Relaxed);
            }
            Ok(seqs)
        })
    }

    /// The writes of [`EventLog::append_with`], in the order they are made, so that a crash
    /// after any of them leaves a log a restart handles:
    /// - each entry's keys before the entry itself: its pending marker (an entry is never
    ///   logged without being published some day) and its task index (a task's entries are
    ///   all found when it is redelivered), so a logged entry has both; a marker or an index
    ///   without its entry is skipped by [`EventLog::pending`] and
    ///   [`EventLog::task_entries`];
    /// - entries in sequence order, so a task's index never shows its last event (which
    ///   makes a redelivery replay the task instead of running it) without every entry
    ///   before it;
    /// - the reservation's range and copy first: both already true in the stream, and the
    ///   range saved again by the follower's snapshot if lost.
    fn append_writes(
        &self,
        task: Uuid,
        granted: Option<&Granted>,
        entries: &[Entry],
        pending: bool,
    ) -> Result<(Vec<Write>, Vec<u64>), LogError> {
        let empty = || sled::IVec::from(&[][..]);
        let mut writes = Vec::with_capacity(3 * (entries.len() + 1));
        if let Some(g) = granted {
            let seq = self
                .db
                .generate_id()
                .map_err(self.io("number an entry of"))?;
            if let Some((model, range)) = &g.range {
                let (k, v) = ledger_kv(model, range);
                writes.push((k.into(), v[..].into()));
            }
            writes.push((task_key(task, seq)[..].into(), empty()));
            writes.push((key(EVENT, seq)[..].into(), g.entry.encode().into()));
        }
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            let seq = self
                .db
                .generate_id()
                .map_err(self.io("number an entry of"))?;
            if pending {
                writes.push((key(PENDING, seq)[..].into(), empty()));
            }
            writes.push((task_key(task, seq)[..].into(), empty()));
            writes.push((key(EVENT, seq)[..].into(), entry.encode().into()));
            seqs.push(seq);
        }
        Ok((writes, seqs))
    }

    /// Makes everything appended so far durable.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.check()?;
        // On a thread of its own rather than sled's `flush_async`, whose own thread pool can
        // leave concurrent flushes waiting for ever, or tokio's blocking pool, which would
        // not let the process exit past a flush sled never answers.
        let (tree, gate, fault) = (self.tree.clone(), self.gate.clone(), self.fault.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("log flush".into())
            .spawn(move || {
                if let Some(_turn) = gate.enter(|| fault.is_raised()) {
                    let _ = tx.send(tree.flush());
                }
            })
            .map_err(|e| self.io("flush")(sled::Error::Io(e)))?;
        let flushed = tokio::select! {
            r = rx => r.ok(),
            _ = self.failed() => None,
            _ = tokio::time::sleep(self.flush_deadline) => {
                let stuck = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("sled did not answer within {:?}", self.flush_deadline),
                );
                Some(Err(sled::Error::Io(stuck)))
            }
        };
        match flushed {
            Some(r) => r.map(drop).map_err(self.io("flush")),
            // The log failed while this flush waited.
            None => Err(self.failed_error()),
        }
    }

    /// Records that JetStream acknowledged these entries. One removal at a time, not a
    /// batch: each marker stands alone (a marker left behind only publishes its entry again,
    /// which the stream and every fold drop by id), and sled writes every batch as extra
    /// buffers of its own, each written and synced to disk apart.
    pub fn mark_published(&self, seqs: &[u64]) -> Result<(), LogError> {
        self.write(|| {
            for &seq in seqs {
                self.tree
                    .remove(key(PENDING, seq))
                    .map_err(self.io("mark published in"))?;
            }
            Ok(())
        })
    }

    /// Entries logged but never acknowledged, in log order.
    pub fn pending(&self) -> Result<Vec<(u64, Entry)>, LogError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([PENDING]) {
            let (k, _) = kv.map_err(self.io("read"))?;
            let seq = seq_of(&k);
            if let Some(e) = self.get(seq)? {
                out.push((seq, e));
            }
        }
        Ok(out)
    }

    pub fn is_pending(&self, seq: u64) -> Result<bool, LogError> {
        self.tree
            .contains_key(key(PENDING, seq))
            .map_err(self.io("read"))
    }

    fn get(&self, seq: u64) -> Result<Option<Entry>, LogError> {
        match self.tree.get(key(EVENT, seq)).map_err(self.io("read"))? {
            Some(raw) => Ok(Some(Entry::decode(seq, &raw, &*self.serials)?)),
            None => Ok(None),
        }
    }

    /// Every entry of one task, in log order.
    pub fn task_entries(&self, task: Uuid) -> Result<Vec<(u64, Entry)>, LogError> {
        let mut prefix = [TASK; 17];
        prefix[1..].copy_from_slice(task.as_bytes());
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, _) = kv.map_err(self.io("read"))?;
            let seq = seq_of(&k);
            if let Some(e) = self.get(seq)? {
                out.push((seq, e));
            }
        }
        Ok(out)
    }

    /// The whole log in order, for audits (`generator log`).
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, Entry), LogError>> + '_ {
        self.tree.scan_prefix([EVENT]).map(|kv| {
            let (k, v) = kv.map_err(self.io("read"))?;
            let seq = seq_of(&k);
            Ok((seq, Entry::decode(seq, &v, &*self.serials)?))
        })
    }

    /// Runs one write in its turn on the gate. Nothing the gate guards can be left half done
    /// by a panic or an error in a way that matters: every prefix of a call's writes is a
    /// state a restart handles (see the module's header).
    fn write<T>(&self, f: impl FnOnce() -> Result<T, LogError>) -> Result<T, LogError> {
        self.check()?;
        let Some(_turn) = self.gate.enter(|| self.fault.is_raised()) else {
            return Err(self.failed_error());
        };
        f()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
