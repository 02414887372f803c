//! Starting from the log's ledger snapshot: trusted only for the stream it was folded from,
//! else set aside and checked against the stream once that is folded.

use common::ledger::{Ledger as Fold, Reservation};
use tokio_util::sync::CancellationToken;

use super::Ledger;
use crate::log::{EventLog, LogError, SavedLedger, StoredRange};

/// The ledger a start begins with.
pub struct Restored {
    pub fold: Fold,
    /// The stream position the fold reflects.
    pub position: u64,
    /// Ranges the log held that must be found in the stream before this replica issues
    /// anything: set when the snapshot was folded from another stream than the one found at
    /// start, now or at an earlier start (see [`verify_saved_ranges`]).
    pub unverified: Option<Vec<(String, StoredRange)>>,
}

/// The ledger the log's snapshot gives for the stream found at start (created at `created`,
/// Unix nanoseconds, holding messages up to `last_seq`): the snapshot when it was folded from
/// that stream, else an empty ledger, the snapshot's ranges set aside to be checked.
pub fn restore(log: &EventLog, created: i128, last_seq: u64) -> Result<Restored, LogError> {
    let saved = log.load_ledger()?;
    // Reservations set aside at an earlier start, still to be found in the stream.
    let mut unverified = log.quarantined()?;
    let (fold, position) = match trusted(&saved, created, last_seq) {
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
            (Fold::planning(), 0)
        }
    };
    Ok(Restored {
        fold,
        position,
        unverified: (!unverified.is_empty()).then_some(unverified),
    })
}

/// Whether the ledger snapshot can be trusted for the stream found at start; else what it
/// was folded from instead.
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
fn fold_saved(saved: &SavedLedger) -> Fold {
    let mut fold = Fold::planning();
    let mut schemes: Vec<_> = saved.schemes.iter().collect();
    schemes.sort_by_key(|s| s.seq);
    for s in schemes {
        fold.declare(&s.model, s.seq, s.scheme);
    }
    for (model, r) in &saved.ranges {
        fold.reserve(
            model,
            r.seq,
            Reservation {
                range: r.range,
                scheme: fold.scheme(model),
                automatic: r.automatic,
            },
        );
    }
    fold
}

/// When the ledger snapshot came from another stream (now or at an earlier start): waits
/// until the stream is folded, then checks that it holds every reservation set aside. If it
/// does, they are forgotten; if not, the stream lost reservations that were issued, and
/// issuing from it could issue them again, so this replica refuses to work (not ready), at
/// this start and every later one, until an operator restores the stream or moves the log
/// away. False when it must not work.
pub async fn verify_saved_ranges(
    ledger: &Ledger,
    log: &EventLog,
    shutdown: &CancellationToken,
    saved: &[(String, StoredRange)],
) -> bool {
    if !ledger.wait_ready(shutdown).await {
        return false;
    }
    let missing: Vec<_> = {
        let fold = ledger.read();
        saved
            .iter()
            .filter(|(model, r)| fold.held(model, r.range.task) != Some(r.range))
            .collect()
    };
    if let Some((model, r)) = missing.first() {
        ledger.refuse();
        tracing::error!(
            missing = missing.len(),
            example = %format!("model {model}: {}..={} of task {}", r.range.first, r.range.last, r.range.task),
            "the stream SN lacks reservations this generator's log holds: serials issued \
             before could be issued again, so this replica issues nothing. Restore SN from a \
             backup, or, if its serials were never used, move this DATA_DIR away and restart"
        );
        shutdown.cancelled().await;
        return false;
    }
    if let Err(e) = log.release_quarantine() {
        tracing::warn!(error = %e, "cannot forget the checked reservations; checked again at the next start");
    }
    tracing::info!(
        reservations = saved.len(),
        "the stream holds every reservation the log's snapshot held"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StoredScheme;
    use common::ledger::Range;

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
                    range: Range {
                        first: 1,
                        last: 10,
                        task,
                    },
                    seq: 4,
                    automatic: true,
                },
            )],
            schemes: vec![StoredScheme {
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
        let fold = fold_saved(&saved);
        assert_eq!(fold.scheme("0111").map(|s| s.width), Some(9));
        assert_eq!(fold.held("0111", task).map(|r| r.last), Some(10));
        assert_eq!(fold.cursor("0111"), 10);
    }
}
