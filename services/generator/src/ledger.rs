//! The ledger: which numbers of each model are taken, folded from `sn.<model>.reserved`.
//!
//! A pure fold (no I/O), applied in stream order. Invariant: the ranges of one model never
//! overlap. The compare-and-set on the ledger subject keeps competing reservations apart, and
//! the fold decides whatever slips through: the first reservation in stream order holds, a
//! later overlapping one is void, and its task reserves again.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub task: Uuid,
}

#[derive(Debug, Default)]
struct ModelLedger {
    /// By first number.
    ranges: BTreeMap<u64, Range>,
    by_task: HashMap<Uuid, Range>,
    /// Stream sequence of the last reservation seen on this model's ledger subject.
    last_seq: u64,
    highest: Option<u64>,
}

/// What a request for numbers gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The task already holds this range (a redelivery, or another replica reserved it).
    Held(Range),
    /// Reserve `[first, last]` with a compare-and-set expecting `expected_seq`.
    Reserve {
        first: u64,
        last: u64,
        expected_seq: u64,
    },
    /// An explicit range overlaps this issued one.
    Conflict(Range),
    /// No room left below `capacity` for the next free range.
    Exhausted { next: u64 },
}

#[derive(Debug, Default)]
pub struct Ledger {
    models: HashMap<String, ModelLedger>,
}

impl Ledger {
    /// Folds one reservation seen at stream sequence `seq`. Idempotent: a task already holding
    /// a range, or a range overlapping one already folded, changes nothing (returns false).
    pub fn apply(&mut self, model: &str, seq: u64, range: Range) -> bool {
        let m = self.models.entry(model.to_owned()).or_default();
        m.last_seq = m.last_seq.max(seq);
        if m.by_task.contains_key(&range.task) || range.first > range.last {
            return false;
        }
        if let Some(hit) = overlap(m, range.first, range.last) {
            tracing::warn!(
                model,
                ?range,
                ?hit,
                "ignoring a reservation that overlaps the ledger"
            );
            return false;
        }
        m.ranges.insert(range.first, range);
        m.by_task.insert(range.task, range);
        m.highest = Some(m.highest.map_or(range.last, |h| h.max(range.last)));
        true
    }

    /// Notes that the model's ledger subject has reached `seq` (a message that is not a
    /// valid reservation, or one this fold has already accounted for).
    pub fn observe(&mut self, model: &str, seq: u64) {
        let m = self.models.entry(model.to_owned()).or_default();
        m.last_seq = m.last_seq.max(seq);
    }

    pub fn held(&self, model: &str, task: Uuid) -> Option<Range> {
        self.models.get(model)?.by_task.get(&task).copied()
    }

    pub fn last_seq(&self, model: &str) -> u64 {
        self.models.get(model).map_or(0, |m| m.last_seq)
    }

    /// Decides what `task` should reserve: `number` explicit or `None` for the next free range;
    /// `capacity` is one past the highest number the task's width can hold.
    pub fn plan(
        &self,
        model: &str,
        task: Uuid,
        number: Option<u64>,
        count: u64,
        capacity: u128,
    ) -> Plan {
        let empty = ModelLedger::default();
        let m = self.models.get(model).unwrap_or(&empty);
        if let Some(r) = m.by_task.get(&task) {
            return Plan::Held(*r);
        }
        let first = match number {
            Some(n) => n,
            None => m.highest.map_or(1, |h| h.saturating_add(1)),
        };
        let end = u128::from(first) + u128::from(count);
        if end > capacity || end - 1 > u128::from(u64::MAX) {
            return Plan::Exhausted { next: first };
        }
        let last = first + (count - 1);
        if let Some(hit) = overlap(m, first, last) {
            return Plan::Conflict(hit);
        }
        Plan::Reserve {
            first,
            last,
            expected_seq: m.last_seq,
        }
    }

    /// Every range, for the snapshot in the log.
    pub fn ranges(&self) -> impl Iterator<Item = (&str, &Range)> {
        self.models
            .iter()
            .flat_map(|(model, m)| m.ranges.values().map(move |r| (model.as_str(), r)))
    }
}

fn overlap(m: &ModelLedger, first: u64, last: u64) -> Option<Range> {
    // Ranges are disjoint, so only the one starting closest below `last` can reach `first`.
    m.ranges
        .range(..=last)
        .next_back()
        .map(|(_, r)| *r)
        .filter(|r| r.last >= first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u128 = 100_000_000;

    fn range(first: u64, last: u64) -> Range {
        Range {
            first,
            last,
            task: Uuid::new_v4(),
        }
    }

    #[test]
    fn first_task_of_a_model_starts_at_one_and_next_follows_the_highest() {
        let mut l = Ledger::default();
        let t = Uuid::new_v4();
        assert_eq!(
            l.plan("m", t, None, 10, CAP),
            Plan::Reserve {
                first: 1,
                last: 10,
                expected_seq: 0
            }
        );
        l.apply("m", 5, range(1, 10));
        l.apply("m", 9, range(500, 600));
        assert_eq!(
            l.plan("m", t, None, 5, CAP),
            Plan::Reserve {
                first: 601,
                last: 605,
                expected_seq: 9
            }
        );
        assert_eq!(
            l.plan("other", t, None, 5, CAP),
            Plan::Reserve {
                first: 1,
                last: 5,
                expected_seq: 0
            }
        );
    }

    #[test]
    fn overlaps_are_conflicts_and_gaps_are_free() {
        let mut l = Ledger::default();
        let a = range(1, 1000);
        l.apply("m", 1, a);
        let t = Uuid::new_v4();
        assert_eq!(l.plan("m", t, Some(500), 1000, CAP), Plan::Conflict(a));
        assert_eq!(l.plan("m", t, Some(1000), 1, CAP), Plan::Conflict(a));
        assert!(matches!(
            l.plan("m", t, Some(1001), 1, CAP),
            Plan::Reserve { first: 1001, .. }
        ));
        l.apply("m", 2, range(2000, 2010));
        assert!(matches!(
            l.plan("m", t, Some(1001), 999, CAP),
            Plan::Reserve { .. }
        ));
        assert!(
            matches!(l.plan("m", t, Some(1001), 1000, CAP), Plan::Conflict(r) if r.first == 2000)
        );
    }

    #[test]
    fn apply_is_idempotent_and_refuses_overlap() {
        let mut l = Ledger::default();
        let a = range(1, 10);
        assert!(l.apply("m", 1, a));
        assert!(!l.apply("m", 1, a));
        assert!(!l.apply("m", 2, range(5, 20)));
        assert_eq!(l.ranges().count(), 1);
        assert_eq!(l.plan("m", a.task, None, 10, CAP), Plan::Held(a));
        assert_eq!(l.last_seq("m"), 2);
    }

    #[test]
    fn a_void_reservation_leaves_its_task_free_to_reserve_again() {
        // Two compare-and-sets accepted for the same numbers (a clustered server may do
        // that): the later one in stream order is void, and its task plans past the winner.
        let mut l = Ledger::default();
        let (a, b) = (range(1, 10), range(1, 10));
        assert!(l.apply("m", 5, a));
        assert!(!l.apply("m", 6, b));
        assert_eq!(l.held("m", b.task), None);
        assert_eq!(
            l.plan("m", b.task, None, 10, CAP),
            Plan::Reserve {
                first: 11,
                last: 20,
                expected_seq: 6
            }
        );
        assert!(matches!(l.plan("m", b.task, Some(1), 10, CAP), Plan::Conflict(r) if r == a));
    }

    #[test]
    fn a_range_past_the_width_is_exhausted() {
        let mut l = Ledger::default();
        l.apply("m", 1, range(1, 95));
        let t = Uuid::new_v4();
        assert_eq!(l.plan("m", t, None, 10, 100), Plan::Exhausted { next: 96 });
        assert!(matches!(
            l.plan("m", t, None, 4, 100),
            Plan::Reserve {
                first: 96,
                last: 99,
                ..
            }
        ));
    }
}
