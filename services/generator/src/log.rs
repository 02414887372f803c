//! The append-only event log in sled: the only module that touches sled.
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

use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use common::events::write_serials;
use common::ledger::Range;
use common::request::valid_model;
use common::serial::ff1::MAX_DIGITS;
use common::serial::{CheckDigit, Format, Order, SerialFormatter, MAX_WIDTH};
use uuid::Uuid;

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
/// - 2: random-order batches stored with their serials as numbers ([`WITH_IMAGES`]).
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

/// One logged event: the subject it goes to, its event id (`Nats-Msg-Id`) and its
/// CloudEvent JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub subject: String,
    pub id: String,
    pub payload: bytes::Bytes,
    /// Set for a generated batch: where its serials sit in `payload`, and how to write them
    /// again. The log then stores the batch without them (a few hundred bytes instead of a
    /// few hundred KiB), and reading it back gives the same payload byte for byte.
    pub serials: Option<SerialsAt>,
}

/// The serials of a generated batch, as a position in its payload and the range they render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialsAt {
    /// The bytes between the event's `"serials":[` and `]`.
    pub bytes: std::ops::Range<usize>,
    pub code_model: String,
    pub format: Format,
    pub first: u64,
    pub count: u64,
}

/// Marks an entry stored without its serials. A stored CloudEvent starts with `{`.
const WITHOUT_SERIALS: u8 = 1;
/// Marks a random-order batch stored with its serials as numbers: each serial's digits are
/// its number's image under the model's permutation, kept in as few bytes as the width needs
/// (see [`image_bytes`]). They are written again from the images alone, without the model's
/// key, and a 10,000-serial batch takes about 40 KiB instead of 170 (small enough for sled
/// to keep inline in its log rather than in a file of its own).
const WITH_IMAGES: u8 = 2;
/// No event is larger (NATS's default message limit; batches stay under 256 KiB): an entry
/// that would re-render to more is corrupt, and is not given the memory it asks for.
const MAX_EVENT_BYTES: u128 = 1 << 20;

fn put_str(v: &mut Vec<u8>, field: &str) {
    v.extend_from_slice(&(field.len() as u16).to_be_bytes());
    v.extend_from_slice(field.as_bytes());
}

fn check_code(c: CheckDigit) -> u8 {
    match c {
        CheckDigit::None => 0,
        CheckDigit::Gs1 => 1,
        CheckDigit::Luhn => 2,
    }
}

fn check_of(code: u8) -> Option<CheckDigit> {
    Some(match code {
        0 => CheckDigit::None,
        1 => CheckDigit::Gs1,
        2 => CheckDigit::Luhn,
        _ => return None,
    })
}

/// Reads a stored entry front to back; every read past the end is `Corrupt`.
struct Reader<'a> {
    rest: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.rest.len() < n {
            return Err(LogError::Corrupt(self.seq));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, LogError> {
        Ok(seq_of(self.take(8)?))
    }

    fn str(&mut self) -> Result<String, LogError> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let text = self.take(len)?;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| LogError::Corrupt(self.seq))
    }
}

impl Entry {
    /// A random-order batch: stored as [`WITH_IMAGES`], which logs before version 2 lack.
    fn is_random(&self) -> bool {
        self.serials
            .as_ref()
            .is_some_and(|s| s.format.order == Order::Random)
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.subject.len() + self.id.len());
        put_str(&mut v, &self.subject);
        put_str(&mut v, &self.id);
        let Some(s) = &self.serials else {
            v.extend_from_slice(&self.payload);
            return v;
        };
        let random = s.format.order == Order::Random;
        v.push(if random { WITH_IMAGES } else { WITHOUT_SERIALS });
        v.push(s.format.width);
        v.push(check_code(s.format.check_digit));
        v.extend_from_slice(&s.first.to_be_bytes());
        v.extend_from_slice(&s.count.to_be_bytes());
        put_str(&mut v, &s.code_model);
        if random {
            let key_id = s.format.key_id.map_or(0, NonZeroU32::get);
            v.extend_from_slice(&key_id.to_be_bytes());
            let one_in = s.format.one_in.map_or(0, NonZeroU64::get);
            v.extend_from_slice(&one_in.to_be_bytes());
        }
        v.extend_from_slice(&(s.bytes.start as u64).to_be_bytes());
        v.extend_from_slice(&self.payload[..s.bytes.start]);
        if random {
            put_images(&self.payload[s.bytes.clone()], s, &mut v);
        }
        v.extend_from_slice(&self.payload[s.bytes.end..]);
        v
    }

    fn decode(seq: u64, raw: &[u8]) -> Result<Entry, LogError> {
        let corrupt = || LogError::Corrupt(seq);
        let mut r = Reader { rest: raw, seq };
        let subject = r.str()?;
        let id = r.str()?;
        let random = r.rest.first() == Some(&WITH_IMAGES);
        if !random && r.rest.first() != Some(&WITHOUT_SERIALS) {
            return Ok(Entry {
                subject,
                id,
                payload: bytes::Bytes::copy_from_slice(r.rest),
                serials: None,
            });
        }
        r.take(1)?;
        let width = r.u8()?;
        let check_digit = check_of(r.u8()?).ok_or_else(corrupt)?;
        let mut format = Format::new(width, check_digit);
        let (first, count) = (r.u64()?, r.u64()?);
        let code_model = r.str()?;
        if random {
            format.order = Order::Random;
            format.key_id = NonZeroU32::new(u32::from_be_bytes(
                r.take(4)?.try_into().map_err(|_| corrupt())?,
            ));
            format.one_in = NonZeroU64::new(r.u64()?);
        }
        let head = usize::try_from(r.u64()?).map_err(|_| corrupt())?;
        let head = r.take(head)?;
        let images = if random {
            let len = u128::from(count) * image_bytes(width) as u128;
            if len > MAX_EVENT_BYTES || width > MAX_DIGITS {
                return Err(corrupt());
            }
            Some(r.take(len as usize)?)
        } else {
            None
        };
        let tail = r.rest;
        // Only what the generator can have written: a valid model (all digits under a check
        // digit), a width it accepts, numbers within u64, and a size an event can have.
        let serial_len = format.serial_len(&code_model);
        let digits_only = code_model.bytes().all(|b| b.is_ascii_digit());
        let size = u128::from(count) * (serial_len as u128 + 3) + (head.len() + tail.len()) as u128;
        if !valid_model(&code_model)
            || (check_digit != CheckDigit::None && !digits_only)
            || !(1..=20).contains(&width)
            || u128::from(first) + u128::from(count) > u128::from(u64::MAX) + 1
            || size > MAX_EVENT_BYTES
        {
            return Err(corrupt());
        }
        let mut payload =
            Vec::with_capacity(head.len() + tail.len() + count as usize * (serial_len + 3));
        payload.extend_from_slice(head);
        let start = payload.len();
        match images {
            // Each image is written as a sequential scheme writes that number: the same
            // digits, and the check digit computed over them.
            Some(images) => {
                let formatter = SerialFormatter::new(&code_model, Format::new(width, check_digit));
                write_images(&formatter, images, width, &mut payload).ok_or_else(corrupt)?;
            }
            None => {
                let formatter = SerialFormatter::new(&code_model, format);
                write_serials(&formatter, first, count, &mut payload);
            }
        }
        let bytes = start..payload.len();
        payload.extend_from_slice(tail);
        Ok(Entry {
            subject,
            id,
            payload: payload.into(),
            serials: Some(SerialsAt {
                bytes,
                code_model,
                format,
                first,
                count,
            }),
        })
    }
}

/// Bytes of one image of a `width`-digit random-order serial: enough for `10^width - 1`.
fn image_bytes(width: u8) -> usize {
    let top = 10u64.saturating_pow(u32::from(width)) - 1;
    (64 - top.leading_zeros() as usize).div_ceil(8)
}

/// Appends the image of each serial in `serials` (a batch's `"a","b",...`, every serial
/// `model + width digits + optional check digit`): its digits as a number, in
/// [`image_bytes`] bytes, big-endian.
fn put_images(serials: &[u8], s: &SerialsAt, v: &mut Vec<u8>) {
    let len = s.format.serial_len(&s.code_model);
    let digits = s.code_model.len()..s.code_model.len() + usize::from(s.format.width);
    let n = image_bytes(s.format.width);
    v.reserve(n * s.count as usize);
    // Each serial sits in quotes, the next one three bytes (`","`) after it.
    for quoted in serials.chunks(len + 3) {
        let image = quoted[1..][digits.clone()]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        v.extend_from_slice(&image.to_be_bytes()[8 - n..]);
    }
}

/// Writes the serials of `images` (as [`put_images`] stored them) the way a generated event
/// carries them; `None` for an image wider than `width` digits.
fn write_images(
    formatter: &SerialFormatter,
    images: &[u8],
    width: u8,
    out: &mut Vec<u8>,
) -> Option<()> {
    let n = image_bytes(width);
    let top = 10u64.checked_pow(u32::from(width))?;
    for (i, bytes) in images.chunks(n).enumerate() {
        let mut word = [0u8; 8];
        word[8 - n..].copy_from_slice(bytes);
        let image = u64::from_be_bytes(word);
        if image >= top {
            return None;
        }
        out.extend_from_slice(if i == 0 { b"\"" } else { b"\",\"" });
        formatter.write(image, out);
    }
    if !images.is_empty() {
        out.push(b'"');
    }
    Some(())
}

/// A reservation as the ledger snapshot keeps it: the range, where in the stream it was
/// reserved, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRange {
    pub range: Range,
    /// Stream sequence of the reservation event.
    pub seq: u64,
    /// Reserved for a request without a first number.
    pub automatic: bool,
}

/// A model's scheme as the ledger snapshot keeps it, with the stream sequence that fixed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScheme {
    pub model: String,
    pub scheme: Format,
    pub seq: u64,
}

/// What the ledger snapshot holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SavedLedger {
    pub ranges: Vec<(String, StoredRange)>,
    pub schemes: Vec<StoredScheme>,
    /// The stream position the snapshot reflects.
    pub position: u64,
    /// The creation time (Unix nanoseconds) of the stream it was folded from; `None` in a
    /// log that never recorded it.
    pub stream: Option<i128>,
}

/// A reservation granted to a task, logged with the task's first entries: the published
/// `reserved` event (a copy for audits) and, when this replica granted it at its ack, the
/// range for the ledger snapshot.
#[derive(Debug, Clone)]
pub struct Granted {
    pub entry: Entry,
    pub range: Option<(String, StoredRange)>,
}

/// The ledger snapshot's key and value for one range.
fn ledger_kv(model: &str, r: &StoredRange) -> (Vec<u8>, [u8; 33]) {
    let mut k = Vec::with_capacity(model.len() + 10);
    k.push(LEDGER);
    k.extend_from_slice(model.as_bytes());
    k.push(0);
    k.extend_from_slice(&r.range.first.to_be_bytes());
    let mut v = [0u8; 33];
    v[..8].copy_from_slice(&r.range.last.to_be_bytes());
    v[8..24].copy_from_slice(r.range.task.as_bytes());
    v[24..32].copy_from_slice(&r.seq.to_be_bytes());
    v[32] = u8::from(r.automatic);
    (k, v)
}

/// Reads a range written by [`ledger_kv`] (under its own prefix or the quarantine's).
fn range_of(k: &[u8], v: &[u8]) -> Result<(String, StoredRange), LogError> {
    let corrupt = || LogError::Corrupt(0);
    let sep = k.iter().skip(1).position(|&b| b == 0).ok_or_else(corrupt)? + 1;
    let model = std::str::from_utf8(&k[1..sep])
        .map_err(|_| corrupt())?
        .to_owned();
    if k.len() != sep + 9 || !(v.len() == 32 || v.len() == 33) {
        return Err(corrupt());
    }
    let last = u64::from_be_bytes(v[..8].try_into().map_err(|_| corrupt())?);
    let task = Uuid::from_slice(&v[8..24]).map_err(|_| corrupt())?;
    let range = StoredRange {
        range: Range {
            first: seq_of(k),
            last,
            task,
        },
        seq: seq_of(&v[..32]),
        automatic: v.get(32).is_none_or(|&b| b != 0),
    };
    Ok((model, range))
}

/// The ledger snapshot's key and value for one scheme: width, check digit, stream sequence,
/// then order, key id and density (absent in older logs: a sequential scheme).
fn scheme_kv(s: &StoredScheme) -> (Vec<u8>, [u8; 31]) {
    let mut k = Vec::with_capacity(s.model.len() + 1);
    k.push(SCHEME);
    k.extend_from_slice(s.model.as_bytes());
    let mut v = [0u8; 31];
    v[0] = s.scheme.width;
    v[1] = check_code(s.scheme.check_digit);
    v[2..10].copy_from_slice(&s.seq.to_be_bytes());
    v[10] = u8::from(s.scheme.order == Order::Random);
    v[11] = u8::from(s.scheme.key_id.is_some());
    v[12..16].copy_from_slice(&s.scheme.key_id.map_or(0, |k| k.get()).to_be_bytes());
    v[16] = u8::from(s.scheme.one_in.is_some());
    v[17..25].copy_from_slice(&s.scheme.one_in.map_or(0, |n| n.get()).to_be_bytes());
    (k, v)
}

/// Reads a value written by [`scheme_kv`] (or its older, 10-byte form).
fn scheme_of(v: &[u8]) -> Option<(Format, u64)> {
    if !(v.len() == 10 || v.len() == 31) || !(1..=MAX_WIDTH).contains(&v[0]) {
        return None;
    }
    let mut scheme = Format::new(v[0], check_of(v[1])?);
    if v.len() == 31 {
        scheme.order = if v[10] == 1 {
            Order::Random
        } else {
            Order::Sequential
        };
        let key_id = u32::from_be_bytes([v[12], v[13], v[14], v[15]]);
        scheme.key_id = std::num::NonZeroU32::new(key_id).filter(|_| v[11] == 1);
        scheme.one_in = std::num::NonZeroU64::new(seq_of(&v[17..25])).filter(|_| v[16] == 1);
    }
    Some((scheme, seq_of(&v[2..10])))
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
}

/// A flush still unanswered after this long fails the log: sled 0.34 can stop for good after
/// a failed write without reporting it (a value large enough to be written as a file of its
/// own, which a full disk refuses, leaves the I/O buffer it was reserved in never written,
/// and every flush waiting for that buffer). No healthy disk takes this long.
const FLUSH_DEADLINE: Duration = Duration::from_secs(30);

/// The first error sled gave once the log was open (a full disk, an I/O error). It stays:
/// after an I/O error sled 0.34 fails every later call too, and a log that cannot record
/// must not be trusted with work until the process starts again on a repaired disk.
#[derive(Default)]
struct Fault {
    reason: OnceLock<String>,
    raised: tokio_util::sync::CancellationToken,
}

/// Turns to write or flush, one at a time. sled 0.34 can deadlock when a flush runs while
/// other threads write (seen under load: every writer and the flush parked for ever), so
/// writes and flushes take turns. Unlike a plain mutex, a wait for a turn ends once the log
/// has failed: a flush sled never answers keeps its turn for ever.
#[derive(Default)]
struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

/// A turn on the [`Gate`], given back when dropped.
struct Turn<'a>(&'a Gate);

impl Gate {
    /// Waits for a turn; `None` once `failed` says the log failed.
    fn enter(&self, failed: impl Fn() -> bool) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            if failed() {
                return None;
            }
            busy = self
                .free
                .wait_timeout(busy, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.free.notify_one();
    }
}

impl Fault {
    fn is_raised(&self) -> bool {
        self.reason.get().is_some()
    }
}

/// One single-key write: a key and its value.
type Write = (sled::IVec, sled::IVec);

/// The writes of [`EventLog::save_ledger`], in order: the schemes and ranges, then the
/// position.
fn ledger_writes(
    ranges: &[(String, StoredRange)],
    schemes: &[StoredScheme],
    stream_seq: Option<u64>,
) -> Vec<Write> {
    let mut writes: Vec<Write> = schemes
        .iter()
        .map(|s| {
            let (k, v) = scheme_kv(s);
            (k.into(), v[..].into())
        })
        .collect();
    writes.extend(ranges.iter().map(|(model, r)| {
        let (k, v) = ledger_kv(model, r);
        (k.into(), v[..].into())
    }));
    if let Some(seq) = stream_seq {
        writes.push((LEDGER_SEQ.into(), seq.to_be_bytes()[..].into()));
    }
    writes
}

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
    pub fn open(dir: &Path) -> Result<EventLog, LogError> {
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
            Some(raw) => Ok(Some(Entry::decode(seq, &raw)?)),
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
            Ok((seq, Entry::decode(seq, &v)?))
        })
    }

    /// Saves reservations, and the stream position the follower reached when given: the
    /// ranges first, the position last, so a crash between them leaves the position where it
    /// was and the snapshot never moves past a range it lacks.
    pub fn save_ledger(
        &self,
        ranges: &[(String, StoredRange)],
        schemes: &[StoredScheme],
        stream_seq: Option<u64>,
    ) -> Result<(), LogError> {
        self.write(|| {
            for (k, v) in ledger_writes(ranges, schemes, stream_seq) {
                self.tree
                    .insert(k, v)
                    .map_err(self.io("save the ledger in"))?;
            }
            Ok(())
        })
    }

    /// Records the stream the ledger snapshot is folded from (see [`SavedLedger::stream`]).
    pub fn save_stream(&self, created: i128) -> Result<(), LogError> {
        self.write(|| {
            self.tree
                .insert(STREAM_ID, &created.to_be_bytes()[..])
                .map_err(self.io("save the stream identity in"))?;
            Ok(())
        })
    }

    /// Sets the ledger snapshot aside because it was folded from another stream: its ranges
    /// move under the quarantine prefix (to be checked against the stream found now, see
    /// [`EventLog::quarantined`]), and the snapshot starts again empty, for the stream
    /// created at `created`. Quarantine first, so a crash between leaves them in both places.
    pub fn quarantine_ledger(&self, saved: &SavedLedger, created: i128) -> Result<(), LogError> {
        self.write(|| {
            for (model, r) in &saved.ranges {
                let (mut k, v) = ledger_kv(model, r);
                k[0] = QUARANTINE;
                self.tree
                    .insert(k, &v[..])
                    .map_err(self.io("quarantine the ledger in"))?;
            }
            let old: Vec<sled::IVec> = [LEDGER, SCHEME]
                .into_iter()
                .flat_map(|p| self.tree.scan_prefix([p]).keys())
                .collect::<Result<_, _>>()
                .map_err(self.io("read"))?;
            for k in old {
                self.tree
                    .remove(k)
                    .map_err(self.io("quarantine the ledger in"))?;
            }
            self.tree
                .remove(LEDGER_SEQ)
                .map_err(self.io("quarantine the ledger in"))?;
            self.tree
                .insert(STREAM_ID, &created.to_be_bytes()[..])
                .map_err(self.io("save the stream identity in"))?;
            Ok(())
        })
    }

    /// The reservations set aside by [`EventLog::quarantine_ledger`] and not yet found again.
    pub fn quarantined(&self) -> Result<Vec<(String, StoredRange)>, LogError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([QUARANTINE]) {
            let (k, v) = kv.map_err(self.io("read"))?;
            out.push(range_of(&k, &v)?);
        }
        Ok(out)
    }

    /// Forgets the quarantined reservations: the stream holds them all.
    pub fn release_quarantine(&self) -> Result<(), LogError> {
        self.write(|| {
            let keys: Vec<sled::IVec> = self
                .tree
                .scan_prefix([QUARANTINE])
                .keys()
                .collect::<Result<_, _>>()
                .map_err(self.io("read"))?;
            for k in keys {
                self.tree
                    .remove(k)
                    .map_err(self.io("release the quarantine in"))?;
            }
            Ok(())
        })
    }

    /// The ledger snapshot.
    pub fn load_ledger(&self) -> Result<SavedLedger, LogError> {
        let corrupt = || LogError::Corrupt(0);
        let mut saved = SavedLedger::default();
        for kv in self.tree.scan_prefix([LEDGER]) {
            let (k, v) = kv.map_err(self.io("read"))?;
            saved.ranges.push(range_of(&k, &v)?);
        }
        for kv in self.tree.scan_prefix([SCHEME]) {
            let (k, v) = kv.map_err(self.io("read"))?;
            let model = std::str::from_utf8(&k[1..]).map_err(|_| corrupt())?;
            if !valid_model(model) {
                return Err(corrupt());
            }
            let (scheme, seq) = scheme_of(&v).ok_or_else(corrupt)?;
            saved.schemes.push(StoredScheme {
                model: model.to_owned(),
                scheme,
                seq,
            });
        }
        saved.position = match self.tree.get(LEDGER_SEQ).map_err(self.io("read"))? {
            Some(v) if v.len() == 8 => seq_of(&v),
            _ => 0,
        };
        saved.stream = match self.tree.get(STREAM_ID).map_err(self.io("read"))? {
            Some(v) => Some(i128::from_be_bytes(
                v.as_ref().try_into().map_err(|_| corrupt())?,
            )),
            None => None,
        };
        Ok(saved)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens a log again once the handle before it is gone. sled lets go of its file lock
    /// only when its own threads drop their last reference, a moment after ours.
    fn reopen(dir: &Path) -> EventLog {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match EventLog::open(dir) {
                Ok(log) => return log,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn entry(s: &str) -> Entry {
        Entry {
            subject: s.into(),
            id: format!("id-{s}"),
            payload: bytes::Bytes::from(format!("{{\"x\":\"{s}\"}}")),
            serials: None,
        }
    }

    /// The subjects of read entries, in order.
    fn subjects(entries: Vec<(u64, Entry)>) -> Vec<String> {
        entries.into_iter().map(|(_, e)| e.subject).collect()
    }

    #[tokio::test]
    async fn append_is_ordered_pending_until_published_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let task = Uuid::new_v4();
        let other = Uuid::new_v4();
        {
            let log = EventLog::open(dir.path()).unwrap();
            let a = log.append(task, &[entry("a"), entry("b")], true).unwrap();
            log.append(other, &[entry("c")], true).unwrap();
            log.flush().await.unwrap();
            log.mark_published(&a[..1]).unwrap();
            log.flush().await.unwrap();
        }
        let log = reopen(dir.path());
        let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
        assert_eq!(all, ["a", "b", "c"]);
        let pending = subjects(log.pending().unwrap());
        assert_eq!(pending, ["b", "c"]);
        let mine: Vec<_> = log
            .task_entries(task)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(mine, [entry("a"), entry("b")]);
    }

    /// Appends `written` to a new log, checks that each entry is stored in at most
    /// `stored_at_most(entry)` bytes, and opens the log again.
    async fn stored_and_reopened(
        written: &[Entry],
        stored_at_most: impl Fn(&Entry) -> usize,
    ) -> (tempfile::TempDir, EventLog) {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EventLog::open(dir.path()).unwrap();
            let seqs = log.append(Uuid::new_v4(), written, true).unwrap();
            log.flush().await.unwrap();
            for (seq, entry) in seqs.iter().zip(written) {
                let stored = log.tree.get(key(EVENT, *seq)).unwrap().unwrap();
                assert!(
                    stored.len() <= stored_at_most(entry),
                    "{} of {} bytes stored",
                    stored.len(),
                    entry.payload.len()
                );
            }
        }
        let log = reopen(dir.path());
        (dir, log)
    }

    fn batch(format: Format, first: u64, count: u64) -> Entry {
        batch_with(&SerialFormatter::new("0111", format), first, count)
    }

    fn batch_with(formatter: &SerialFormatter, first: u64, count: u64) -> Entry {
        let task = Uuid::new_v4();
        let format = formatter.format();
        let b = common::events::GeneratedBatch {
            source: "/sn/generator",
            task_id: task,
            code_model: "0111",
            batch: 3,
            first_number: first,
            count,
            formatter,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        };
        let mut payload = Vec::new();
        let bytes = b.encode(time::OffsetDateTime::now_utc(), &mut payload);
        Entry {
            subject: common::subjects::generated("0111", task),
            id: b.id(),
            payload: payload.into(),
            serials: Some(SerialsAt {
                bytes,
                code_model: "0111".into(),
                format,
                first,
                count,
            }),
        }
    }

    #[tokio::test]
    async fn a_batch_is_stored_as_its_range_and_read_back_byte_for_byte() {
        let formats =
            [CheckDigit::None, CheckDigit::Gs1, CheckDigit::Luhn].map(|check_digit| Format {
                width: 6,
                check_digit,
                ..Format::default()
            });
        // Across a change of length (999,999 -> 1,000,000 overflows width 6), and empty.
        let widest = Format {
            width: 20,
            check_digit: CheckDigit::None,
            ..Format::default()
        };
        let written: Vec<Entry> = formats
            .iter()
            .map(|&f| batch(f, 995_000, 10_000))
            // Empty, and the last numbers there are.
            .chain([
                batch(Format::default(), 1, 0),
                batch(widest, u64::MAX - 2, 3),
            ])
            .collect();
        // A few hundred bytes each, whatever the batch's size.
        let (_dir, log) = stored_and_reopened(&written, |_| 1023).await;
        let read: Vec<Entry> = log.iter().map(|r| r.unwrap().1).collect();
        assert_eq!(read, written);
        assert!(read[0].payload.len() > 100_000);
        let pending: Vec<Entry> = log.pending().unwrap().into_iter().map(|(_, e)| e).collect();
        assert_eq!(pending, written);
    }

    #[test]
    fn a_log_written_by_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A new log records the version that wrote it, and opens again.
        drop(EventLog::open(dir.path()).unwrap());
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(
            log.tree.get(VERSION).unwrap().as_deref(),
            Some(&LOG_VERSION.to_be_bytes()[..])
        );
        // As a later build would leave it.
        log.tree
            .insert(VERSION, &(LOG_VERSION + 1).to_be_bytes())
            .unwrap();
        log.tree.flush().unwrap();
        drop(log);
        let err = EventLog::open(dir.path())
            .err()
            .expect("a newer log is refused");
        assert!(matches!(err, LogError::Newer { found, .. } if found == LOG_VERSION + 1));
        assert!(err.to_string().contains("newer generator"), "{err}");
    }

    #[tokio::test]
    async fn a_random_order_batch_is_stored_as_numbers_and_read_back_byte_for_byte() {
        let keys = common::serial::Keyring::parse(Some("a master key of the log tests")).unwrap();
        let written: Vec<Entry> = [
            (6, CheckDigit::Gs1),
            (8, CheckDigit::None),
            (19, CheckDigit::Luhn),
        ]
        .into_iter()
        .map(|(width, check_digit)| {
            let format = Format {
                order: Order::Random,
                key_id: keys.current().ok(),
                one_in: NonZeroU64::new(10),
                ..Format::new(width, check_digit)
            };
            let formatter = SerialFormatter::keyed("0111", format, &keys).unwrap();
            batch_with(&formatter, 90_000, 10_000)
        })
        .chain([batch_with(
            &SerialFormatter::keyed(
                "0111",
                Format {
                    order: Order::Random,
                    key_id: keys.current().ok(),
                    ..Format::new(8, CheckDigit::None)
                },
                &keys,
            )
            .unwrap(),
            1,
            0,
        )])
        .collect();
        // The digits as numbers, and the event around them.
        let (_dir, log) = stored_and_reopened(&written, |entry| {
            let s = entry.serials.as_ref().unwrap();
            s.count as usize * image_bytes(s.format.width) + 1024
        })
        .await;
        let read: Vec<Entry> = log.iter().map(|r| r.unwrap().1).collect();
        assert_eq!(read, written);
        assert!(read[0].payload.len() > 100_000);
        // An image wider than the width (six digits, three bytes) reads as corrupt.
        let entry = &written[0];
        let head = entry.serials.as_ref().unwrap().bytes.start;
        let images_at =
            2 + entry.subject.len() + 2 + entry.id.len() + 3 + 16 + 2 + 4 + 4 + 8 + 8 + head;
        let mut bad = entry.encode();
        bad[images_at..images_at + 3].copy_from_slice(&[0xff; 3]);
        assert!(matches!(Entry::decode(9, &bad), Err(LogError::Corrupt(9))));
        bad[images_at..images_at + 3].copy_from_slice(&[0x0f, 0x42, 0x3f]);
        assert!(Entry::decode(9, &bad).is_ok(), "999,999 is six digits");
    }

    #[tokio::test]
    async fn an_older_log_is_stamped_with_this_version_at_its_first_random_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.tree.insert(VERSION, &1u32.to_be_bytes()).unwrap();
        drop(log);
        let version = |log: &EventLog| log.tree.get(VERSION).unwrap().unwrap().to_vec();
        // Opened, and given a sequential batch: still readable by the older build.
        let log = reopen(dir.path());
        log.append(Uuid::new_v4(), &[batch(Format::default(), 1, 10)], true)
            .unwrap();
        assert_eq!(version(&log), 1u32.to_be_bytes());
        // A random-order batch needs this version, and the log says so from then on.
        let keys = common::serial::Keyring::parse(Some("a master key of the log tests")).unwrap();
        let format = Format {
            order: Order::Random,
            key_id: keys.current().ok(),
            ..Format::default()
        };
        let formatter = SerialFormatter::keyed("0111", format, &keys).unwrap();
        log.append(Uuid::new_v4(), &[batch_with(&formatter, 1, 10)], true)
            .unwrap();
        assert_eq!(version(&log), LOG_VERSION.to_be_bytes());
    }

    #[test]
    fn a_damaged_entry_reads_as_corrupt() {
        let entry = batch(Format::default(), 1, 10);
        let good = entry.encode();
        let marker = 4 + entry.subject.len() + entry.id.len();
        assert_eq!(good[marker], WITHOUT_SERIALS);
        // Cut inside a field, or a count no batch has.
        for cut in [1, marker + 5, marker + 25] {
            assert!(matches!(
                Entry::decode(9, &good[..cut]),
                Err(LogError::Corrupt(9))
            ));
        }
        let count = marker + 3 + 8;
        let mut huge = good.clone();
        huge[count..count + 8].copy_from_slice(&(1u64 << 20).to_be_bytes());
        assert!(matches!(Entry::decode(9, &huge), Err(LogError::Corrupt(9))));
        // A check digit under a model that is not all digits, and a model no request has.
        let mut lettered = batch(Format::default(), 1, 10);
        lettered.serials.as_mut().unwrap().code_model = "A-7".into();
        let mut bad = lettered.encode();
        bad[marker + 2] = 1;
        assert!(matches!(Entry::decode(9, &bad), Err(LogError::Corrupt(9))));
        lettered.serials.as_mut().unwrap().code_model = "a b".into();
        assert!(matches!(
            Entry::decode(9, &lettered.encode()),
            Err(LogError::Corrupt(9))
        ));
    }

    #[tokio::test]
    async fn ledger_snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let r = StoredRange {
            range: Range {
                first: 1,
                last: 10,
                task: Uuid::new_v4(),
            },
            seq: 3,
            automatic: true,
        };
        let s = StoredRange {
            range: Range {
                first: 11,
                last: 20,
                task: Uuid::new_v4(),
            },
            seq: 7,
            automatic: false,
        };
        let scheme = StoredScheme {
            model: "0111".into(),
            scheme: Format {
                order: Order::Random,
                key_id: std::num::NonZeroU32::new(0xdead_beef),
                one_in: std::num::NonZeroU64::new(10_000),
                ..Format::new(9, CheckDigit::Luhn)
            },
            seq: 2,
        };
        log.save_ledger(
            &[("0111".into(), r), ("A_b".into(), s)],
            std::slice::from_ref(&scheme),
            Some(42),
        )
        .unwrap();
        log.save_stream(-5).unwrap();
        let saved = log.load_ledger().unwrap();
        assert_eq!(saved.position, 42);
        assert_eq!(saved.stream, Some(-5));
        assert_eq!(saved.schemes, [scheme]);
        assert_eq!(
            saved.ranges,
            [("0111".to_string(), r), ("A_b".to_string(), s)]
        );
    }

    #[tokio::test]
    async fn a_quarantined_snapshot_is_set_aside_whole_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let r = first_ten(Uuid::new_v4());
        let scheme = StoredScheme {
            model: "0111".into(),
            scheme: Format::default(),
            seq: 5,
        };
        log.save_ledger(
            &[("0111".into(), r)],
            std::slice::from_ref(&scheme),
            Some(9),
        )
        .unwrap();
        log.save_stream(1).unwrap();
        let saved = log.load_ledger().unwrap();
        log.quarantine_ledger(&saved, 2).unwrap();
        // The snapshot is empty, for the new stream; the old ranges wait apart.
        let now = log.load_ledger().unwrap();
        assert_eq!(
            (
                now.ranges.len(),
                now.schemes.len(),
                now.position,
                now.stream
            ),
            (0, 0, 0, Some(2))
        );
        assert_eq!(log.quarantined().unwrap(), [("0111".to_string(), r)]);
        // A new stream's range at the same first number does not hide the old one.
        let other = StoredRange {
            range: Range {
                task: Uuid::new_v4(),
                ..r.range
            },
            ..r
        };
        log.save_ledger(&[("0111".into(), other)], &[], Some(3))
            .unwrap();
        assert_eq!(log.quarantined().unwrap(), [("0111".to_string(), r)]);
        log.release_quarantine().unwrap();
        assert!(log.quarantined().unwrap().is_empty());
        assert_eq!(
            log.load_ledger().unwrap().ranges,
            [("0111".to_string(), other)]
        );
    }

    #[tokio::test]
    async fn a_range_saved_before_the_automatic_flag_reads_as_automatic() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let r = first_ten(Uuid::new_v4());
        let (k, v) = ledger_kv(
            "0111",
            &StoredRange {
                automatic: false,
                ..r
            },
        );
        log.tree.insert(k, &v[..32]).unwrap();
        // A scheme saved before orders and densities: width, check digit, sequence.
        let mut old = vec![9, 1];
        old.extend_from_slice(&7u64.to_be_bytes());
        log.tree.insert(b"s0111", old).unwrap();
        let saved = log.load_ledger().unwrap();
        assert_eq!(saved.ranges, [("0111".to_string(), r)]);
        assert_eq!(
            saved.schemes,
            [StoredScheme {
                model: "0111".into(),
                scheme: Format::new(9, CheckDigit::Gs1),
                seq: 7
            }]
        );
    }

    /// Numbers 1 to 10 reserved for `task` at stream sequence 5.
    fn first_ten(task: Uuid) -> StoredRange {
        StoredRange {
            range: Range {
                first: 1,
                last: 10,
                task,
            },
            seq: 5,
            automatic: true,
        }
    }

    /// A log holding just these writes: what a crash right after them leaves behind, as sled
    /// recovers a prefix of its writes.
    fn log_of(writes: &[(sled::IVec, sled::IVec)]) -> (tempfile::TempDir, EventLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        for (k, v) in writes {
            log.tree.insert(k, v.clone()).unwrap();
        }
        (dir, log)
    }

    #[tokio::test]
    async fn every_prefix_of_an_append_is_a_log_a_restart_handles() {
        let task = Uuid::new_v4();
        let range = first_ten(task);
        let granted = Granted {
            entry: entry("reserved"),
            range: Some(("0111".into(), range)),
        };
        let entries = [entry("batch 0"), entry("batch 1"), entry("completed")];
        let (_dir, planner) = log_of(&[]);
        let (writes, _) = planner
            .append_writes(task, Some(&granted), &entries, true)
            .unwrap();
        let in_order = ["reserved", "batch 0", "batch 1", "completed"];
        for n in 0..=writes.len() {
            let (_dir, log) = log_of(&writes[..n]);
            // Nothing logged is left unpublished for ever: every entry but the reservation's
            // copy (published before it was logged) is pending, so a restart publishes it.
            let logged: Vec<_> = log
                .iter()
                .map(|r| r.unwrap().1.subject)
                .filter(|s| s != "reserved")
                .collect();
            assert_eq!(logged, subjects(log.pending().unwrap()), "after {n} writes");
            // Every logged entry is in the task's index (a redelivery finds it), and the
            // index is the start of the task's entries: never its last event without every
            // entry before it, which a redelivery would replay as the whole task.
            let indexed = subjects(log.task_entries(task).unwrap());
            let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
            assert_eq!(indexed, all, "after {n} writes");
            assert_eq!(indexed, in_order[..indexed.len()], "after {n} writes");
            if !indexed.is_empty() {
                assert_eq!(
                    log.load_ledger().unwrap().ranges,
                    [("0111".to_string(), range)]
                );
            }
        }
        assert_eq!(
            subjects(log_of(&writes).1.task_entries(task).unwrap()),
            in_order
        );

        // The snapshot: a position moved forward only with every range saved with it.
        let before = ledger_writes(&[], &[], Some(3));
        let ranges = [
            ("0111".to_string(), range),
            (
                "A_b".to_string(),
                StoredRange {
                    range: Range {
                        first: 1,
                        last: 2,
                        task: Uuid::new_v4(),
                    },
                    seq: 7,
                    automatic: false,
                },
            ),
        ];
        let schemes = [StoredScheme {
            model: "A_b".into(),
            scheme: Format::default(),
            seq: 6,
        }];
        let save = ledger_writes(&ranges, &schemes, Some(7));
        for n in 0..=save.len() {
            let writes: Vec<_> = before.iter().chain(&save[..n]).cloned().collect();
            let saved = log_of(&writes).1.load_ledger().unwrap();
            assert!(
                saved.position == 3 || (saved.ranges == ranges && saved.schemes == schemes),
                "after {n} writes: {saved:?}"
            );
        }
        let saved = log_of(&save).1.load_ledger().unwrap();
        assert_eq!((saved.ranges, saved.position), (ranges.to_vec(), 7));
    }

    #[tokio::test]
    async fn a_granted_reservation_is_logged_before_the_entries_it_comes_with() {
        let dir = tempfile::tempdir().unwrap();
        let task = Uuid::new_v4();
        let range = first_ten(task);
        {
            let log = EventLog::open(dir.path()).unwrap();
            let granted = Granted {
                entry: entry("reserved"),
                range: Some(("0111".into(), range)),
            };
            let seqs = log
                .append_with(task, Some(&granted), &[entry("batch"), entry("done")], true)
                .unwrap();
            assert_eq!(
                seqs.len(),
                2,
                "the sequences of the entries, not the reservation"
            );
            // Without a range (granted by the follower's fold): only the copy is logged.
            let copy = Granted {
                entry: entry("other"),
                range: None,
            };
            log.append_with(Uuid::new_v4(), Some(&copy), &[], false)
                .unwrap();
            log.flush().await.unwrap();
        }
        let log = reopen(dir.path());
        let mine = subjects(log.task_entries(task).unwrap());
        assert_eq!(mine, ["reserved", "batch", "done"]);
        // Published already: never republished.
        let pending = subjects(log.pending().unwrap());
        assert_eq!(pending, ["batch", "done"]);
        let all: Vec<_> = log.iter().map(|r| r.unwrap().1.subject).collect();
        assert_eq!(all, ["reserved", "batch", "done", "other"]);
        assert_eq!(
            log.load_ledger().unwrap().ranges,
            [("0111".to_string(), range)]
        );
    }

    /// A folder on a tmpfs of `size` (`mount -o size=`), unmounted on drop; `None` where
    /// mounting is not permitted (not root, no CAP_SYS_ADMIN).
    struct Tmpfs(Option<tempfile::TempDir>);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            mounted.then_some(Tmpfs(Some(dir)))
        }

        fn path(&self) -> &Path {
            self.0.as_ref().expect("mounted").path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            if let Some(dir) = self.0.take() {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(dir.path())
                    .status();
            }
        }
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_log_for_good_and_says_why() {
        // Entries of the size the generator logs, and ones large enough for sled to write
        // as files of their own.
        for size in [1024, 64 * 1024] {
            let Some(disk) = Tmpfs::mount("2m") else {
                eprintln!("skipped: cannot mount a tmpfs here (needs root)");
                return;
            };
            fill_up(disk.path(), size).await;
        }
    }

    /// Appends entries of `size` bytes, one flush each (as with BATCHES_PER_FLUSH=1), until
    /// the log fails; then checks how it failed.
    async fn fill_up(dir: &Path, size: usize) {
        let mut log = EventLog::open(dir).unwrap();
        // Values this large may leave sled silent rather than failing: given up on sooner.
        log.flush_deadline = Duration::from_secs(3);
        assert!(log.fault().is_none());
        let big = |i: usize| Entry {
            payload: bytes::Bytes::from(vec![b'x'; size]),
            ..entry(&format!("e{i}"))
        };
        // Up to ten times what the disk holds.
        let mut failed = None;
        for i in 0..(20 << 20) / size {
            let written = match log.append(Uuid::new_v4(), &[big(i)], true) {
                Ok(_) => log.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                failed = Some(e);
                break;
            }
        }
        // It says so, rather than leaving a flush waiting for ever (see `FLUSH_DEADLINE`).
        let e = failed.expect("a 2 MiB disk fills up");
        assert!(matches!(e, LogError::Io { .. }), "{e}");
        let why = log.fault().expect("the failure is kept").to_owned();
        eprintln!("entries of {size} bytes: {why}");
        assert!(why.contains("event log"), "{why}");
        assert!(
            futures::FutureExt::now_or_never(log.failed()).is_some(),
            "waiters are told"
        );
        // The first reason stays, whatever fails next.
        let _ = log.append(Uuid::new_v4(), &[big(0)], true);
        let _ = log.flush().await;
        assert_eq!(log.fault(), Some(why.as_str()));
    }
}
