//! Ranges of issued numbers that never overlap: the rule "the first reservation in stream
//! order wins", written once and held by both services' ledgers and the snapshot checks.

use std::collections::BTreeMap;

use uuid::Uuid;

/// Numbers `first..=last` issued to `task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub task: Uuid,
}

impl Range {
    /// How many numbers the range holds.
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Ranges of numbers that never overlap, by first number: the rule "the first reservation in
/// stream order wins" in one place. Insert ranges in stream order; one that overlaps a range
/// already held is refused and the held one kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeSet(BTreeMap<u64, Range>);

impl RangeSet {
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Holds `range`, unless it overlaps a range held already: then that earlier one wins and
    /// is returned, and the set is unchanged.
    pub fn insert(&mut self, range: Range) -> Result<(), Range> {
        if let Some(hit) = self.overlap(range.first, range.last) {
            return Err(hit);
        }
        self.0.insert(range.first, range);
        Ok(())
    }

    /// A held range overlapping `[first, last]`, if any.
    pub fn overlap(&self, first: u64, last: u64) -> Option<Range> {
        // Ranges are disjoint, so only the one starting closest below `last` can reach `first`.
        self.0
            .range(..=last)
            .next_back()
            .map(|(_, r)| *r)
            .filter(|r| r.last >= first)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every range, by first number.
    pub fn iter(&self) -> impl Iterator<Item = &Range> {
        self.0.values()
    }

    /// The ranges starting after `after` (all of them for `None`), by first number.
    pub fn after(&self, after: Option<u64>) -> impl Iterator<Item = &Range> {
        let lower = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        self.0
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, r)| r)
    }

    /// The first number of the first gap of `count` free numbers at or above `from`, all
    /// below `capacity`.
    pub fn gap_from(&self, from: u64, count: u64, capacity: u128) -> Option<u64> {
        let mut at = u128::from(from);
        if let Some((_, r)) = self.0.range(..=from).next_back() {
            at = at.max(u128::from(r.last) + 1);
        }
        let start = u64::try_from(at).ok()?;
        for r in self.0.range(start..).map(|(_, r)| r) {
            if u128::from(r.first) >= at + u128::from(count) {
                break;
            }
            at = u128::from(r.last) + 1;
        }
        (at + u128::from(count) <= capacity).then_some(at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, last: u64) -> Range {
        Range {
            first,
            last,
            task: Uuid::new_v4(),
        }
    }

    #[test]
    fn a_range_set_keeps_the_first_of_overlapping_ranges() {
        let mut set = RangeSet::new();
        let a = range(10, 20);
        assert_eq!(set.insert(a), Ok(()));
        // Later and overlapping at either end, or inside: the earlier one wins.
        for (first, last) in [(5, 10), (20, 25), (12, 13), (1, 100)] {
            let later = range(first, last);
            assert_eq!(set.insert(later), Err(a), "{first}..={last}");
        }
        assert_eq!(set.insert(range(21, 30)), Ok(()));
        assert_eq!(set.len(), 2);
        assert_eq!(set.overlap(1, 9), None);
        assert_eq!(set.overlap(30, 40).map(|r| r.first), Some(21));
        assert_eq!(
            set.after(Some(10)).map(|r| r.first).collect::<Vec<_>>(),
            [21]
        );
        assert_eq!(set.gap_from(1, 9, 100), Some(1));
        assert_eq!(set.gap_from(1, 10, 100), Some(31));
        assert_eq!(set.gap_from(95, 10, 100), None);
    }
}
