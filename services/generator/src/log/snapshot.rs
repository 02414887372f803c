//! The ledger snapshot the log keeps: the reservations and schemes the follower folded, the
//! stream position they reflect and the stream they came from, so a start need not fold the
//! whole stream again; and the reservations set aside when the stream turned out to be
//! another.

use common::ledger::Range;
use common::serial::{Format, Order, MAX_WIDTH};
use uuid::Uuid;

use super::entry::{check_code, check_of};
use super::{seq_of, EventLog, LogError, Write, LEDGER, LEDGER_SEQ, QUARANTINE, SCHEME, STREAM_ID};

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

/// The ledger snapshot's key and value for one range.
pub(super) fn ledger_kv(model: &str, r: &StoredRange) -> (Vec<u8>, [u8; 33]) {
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

/// The writes of [`EventLog::save_ledger`], in order: the schemes and ranges, then the
/// position.
pub(super) fn ledger_writes(
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

impl EventLog {
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
            let (scheme, seq) = scheme_of(&v).ok_or_else(corrupt)?;
            if !self.serials.writes(model, scheme) {
                return Err(corrupt());
            }
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
}
