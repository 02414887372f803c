//! The ledger: each model's serial scheme and the ranges of numbers it has issued, folded from
//! the models' ledger subjects (`sn.<model>.reserved`) in stream order.
//!
//! A pure fold (no I/O), the one both services run: the generators plan reservations with it
//! and the gateway answers `/models`, `/ledger` and serial lookups from it. Folded in stream
//! order it is the authority on what was issued:
//! - a model's scheme is fixed by its first declaration or reservation; a later one with
//!   another scheme is void;
//! - a model whose serials could be another model's (see [`could_meet`]) is refused when its
//!   scheme would be fixed: that declaration or reservation is void;
//! - the first reservation of a number holds; a later overlapping one is void (see
//!   [`RangeSet`], which both ledgers and snapshot checks can hold ranges in).
//!
//! A void reservation issues nothing: its task plans again and gets a conflict, a mismatch, or
//! other numbers.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

mod ranges;

pub use ranges::{Range, RangeSet};

use crate::request::check_scheme;
use crate::serial::{
    could_meet, CheckDigit, Format, FormatRequest, Keyring, SerialFormatter, MAX_WIDTH,
};

/// One reservation as the fold reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub range: Range,
    /// The scheme the reservation was made under; `None` for reservations written before
    /// schemes were recorded (they neither fix nor contradict one).
    pub scheme: Option<Format>,
    /// Made for a request without a first number: moves the model's automatic cursor.
    pub automatic: bool,
}

/// What folding a declaration or a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The reservation holds (or the declaration fixed the scheme).
    Granted,
    /// Already folded: changes nothing.
    Repeat,
    Void(Void),
}

/// Why a declaration or reservation is void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Void {
    /// Overlaps a range issued before it.
    Overlap(Range),
    /// The model's scheme, fixed before, is another.
    Scheme(Format),
    /// The scheme would let this model's serials be those of `model`, fixed before.
    Namespace { model: String, scheme: Format },
    /// The task already holds another range, or the range is empty.
    Malformed,
}

/// What a request for numbers gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The task already holds this range, under the model's scheme.
    Held(Range, Format),
    /// Reserve `[first, last]` under `scheme` with a compare-and-set expecting `expected_seq`.
    /// `fixes_scheme`: the model has no scheme yet, this reservation would fix it.
    Reserve {
        first: u64,
        last: u64,
        expected_seq: u64,
        scheme: Format,
        automatic: bool,
        fixes_scheme: bool,
    },
    /// An explicit range overlaps this issued one.
    Conflict(Range),
    /// No free range of that many numbers is left at the scheme's width.
    Exhausted { scheme: Format },
    /// An explicit range past what the scheme's width holds.
    TooWide { scheme: Format },
    /// The request's format differs from the model's scheme.
    FormatMismatch { scheme: Format },
    /// The model has no scheme yet, and the one asked for would meet `model`'s serials.
    NamespaceConflict { model: String, scheme: Format },
    /// The model has no scheme yet, and the one asked for breaks a rule of schemes.
    Invalid(String),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ModelLedger {
    scheme: Option<Format>,
    /// Stream sequence of the declaration or reservation that fixed the scheme.
    scheme_seq: u64,
    ranges: RangeSet,
    by_task: HashMap<Uuid, Range>,
    /// Stream sequence of the last message seen on this model's ledger subject.
    last_seq: u64,
    /// The highest number an automatic reservation took (0: none yet).
    cursor: u64,
    /// Numbers issued.
    issued: u128,
}

/// A model as `/models` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary<'a> {
    pub code_model: &'a str,
    pub scheme: Option<Format>,
    pub issued: u128,
    pub ranges: usize,
    /// Numbers still free at the scheme's width (`None` without a scheme).
    pub remaining: Option<u128>,
    pub cursor: u64,
}

/// What a snapshot keeps of a model besides its ranges (which it keeps with their tasks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelState {
    pub code_model: String,
    pub scheme: Option<Format>,
    pub scheme_seq: u64,
    pub cursor: u64,
    pub last_seq: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Ordered by code, so the models a code is a prefix of are neighbours.
    models: BTreeMap<String, ModelLedger>,
    /// Whether each task's range is indexed by task: what planning needs (`plan`, `held`,
    /// and telling a repeated reservation from an overlapping one). A ledger that only
    /// answers by number (the gateway's, whose task views hold their ranges) goes without,
    /// and sees a repeated reservation as void.
    track_tasks: bool,
}

impl Ledger {
    /// A ledger that plans: ranges indexed by task too.
    pub fn planning() -> Ledger {
        Ledger {
            track_tasks: true,
            ..Ledger::default()
        }
    }

    /// Folds a declaration of `model`'s scheme seen at stream sequence `seq`.
    pub fn declare(&mut self, model: &str, seq: u64, scheme: Format) -> Applied {
        if !valid_scheme(model, scheme) {
            self.entry(model, seq);
            return Applied::Void(Void::Malformed);
        }
        if let Some(void) = self.check_scheme(model, scheme) {
            self.entry(model, seq);
            return Applied::Void(void);
        }
        let m = self.entry(model, seq);
        if m.scheme.is_some() {
            return Applied::Repeat;
        }
        m.scheme = Some(scheme);
        m.scheme_seq = seq;
        Applied::Granted
    }

    /// Folds one reservation seen at stream sequence `seq`. Idempotent: a task already
    /// holding the same range changes nothing.
    pub fn reserve(&mut self, model: &str, seq: u64, r: Reservation) -> Applied {
        let Range { first, last, task } = r.range;
        let track_tasks = self.track_tasks;
        let needs_namespace = {
            let m = self.entry(model, seq);
            if track_tasks {
                if let Some(held) = m.by_task.get(&task) {
                    return if *held == r.range {
                        Applied::Repeat
                    } else {
                        Applied::Void(Void::Malformed)
                    };
                }
            }
            // Nothing a generator of this version publishes: a scheme it would refuse, or a
            // range past what the scheme holds (its serials would be longer than the
            // scheme's, outside the namespace rule). The model's own scheme was checked when
            // it was fixed.
            let fixed = m.scheme;
            let too_wide = r
                .scheme
                .or(fixed)
                .is_some_and(|s| u128::from(last) >= s.capacity());
            let unchecked = r.scheme.filter(|s| Some(*s) != fixed);
            if first > last || too_wide || unchecked.is_some_and(|s| !valid_scheme(model, s)) {
                return Applied::Void(Void::Malformed);
            }
            if let Some(hit) = m.ranges.overlap(first, last) {
                return Applied::Void(Void::Overlap(hit));
            }
            match (fixed, r.scheme) {
                (Some(f), Some(s)) if f != s => return Applied::Void(Void::Scheme(f)),
                (None, Some(_)) => true,
                _ => false,
            }
        };
        if needs_namespace {
            if let Some(void) = r.scheme.and_then(|s| self.check_scheme(model, s)) {
                return Applied::Void(void);
            }
        }
        let m = self.models.get_mut(model).expect("entered above");
        if m.scheme.is_none() && r.scheme.is_some() {
            m.scheme = r.scheme;
            m.scheme_seq = seq;
        }
        // Checked above, before the scheme rules (an overlap is reported first).
        if let Err(hit) = m.ranges.insert(r.range) {
            return Applied::Void(Void::Overlap(hit));
        }
        if track_tasks {
            m.by_task.insert(task, r.range);
        }
        m.issued += u128::from(r.range.count());
        if r.automatic {
            m.cursor = m.cursor.max(last);
        }
        Applied::Granted
    }

    /// Notes that `model`'s ledger subject has reached `seq` (a message that is not a valid
    /// reservation, or one already accounted for).
    pub fn observe(&mut self, model: &str, seq: u64) {
        self.entry(model, seq);
    }

    fn entry(&mut self, model: &str, seq: u64) -> &mut ModelLedger {
        if !self.models.contains_key(model) {
            self.models.insert(model.to_owned(), ModelLedger::default());
        }
        let m = self.models.get_mut(model).expect("inserted above");
        m.last_seq = m.last_seq.max(seq);
        m
    }

    /// Why `model` cannot have `scheme`, if it cannot: another scheme fixed before, or a
    /// model whose serials it could meet.
    fn check_scheme(&self, model: &str, scheme: Format) -> Option<Void> {
        if let Some(fixed) = self.scheme(model) {
            return (fixed != scheme).then_some(Void::Scheme(fixed));
        }
        self.meets(model, scheme).map(|(other, s)| Void::Namespace {
            model: other.to_owned(),
            scheme: s,
        })
    }

    /// A model with a scheme whose serials `model` would meet under `scheme`. Looks only at
    /// the codes that could: `model`'s prefixes, and the codes `model` starts.
    pub fn meets(&self, model: &str, scheme: Format) -> Option<(&str, Format)> {
        let shorter = (1..model.len()).filter_map(|n| {
            let (code, m) = self.models.get_key_value(model.get(..n)?)?;
            Some((code.as_str(), m.scheme?))
        });
        let longer = self
            .models
            .range::<str, _>((std::ops::Bound::Excluded(model), std::ops::Bound::Unbounded))
            .take_while(|(code, _)| code.starts_with(model))
            .filter_map(|(code, m)| Some((code.as_str(), m.scheme?)));
        shorter
            .chain(longer)
            .find(|(code, s)| could_meet(model, scheme, code, *s))
    }

    pub fn scheme(&self, model: &str) -> Option<Format> {
        self.models.get(model)?.scheme
    }

    pub fn held(&self, model: &str, task: Uuid) -> Option<Range> {
        self.models.get(model)?.by_task.get(&task).copied()
    }

    pub fn last_seq(&self, model: &str) -> u64 {
        self.models.get(model).map_or(0, |m| m.last_seq)
    }

    /// The stream sequence of the message that fixed `model`'s scheme.
    pub fn scheme_seq(&self, model: &str) -> u64 {
        self.models.get(model).map_or(0, |m| m.scheme_seq)
    }

    /// An issued range of `model` overlapping `[first, last]`, if any.
    pub fn overlap(&self, model: &str, first: u64, last: u64) -> Option<Range> {
        self.models.get(model)?.ranges.overlap(first, last)
    }

    /// Decides what `task` should reserve: `number` explicit or `None` for the next free
    /// range, in the format the request names (the model's scheme fills in the rest).
    pub fn plan(
        &self,
        model: &str,
        task: Uuid,
        number: Option<u64>,
        count: u64,
        format: FormatRequest,
    ) -> Plan {
        let empty = ModelLedger::default();
        let m = self.models.get(model).unwrap_or(&empty);
        if let (Some(r), Some(scheme)) = (m.by_task.get(&task), m.scheme) {
            // Whether the request still fits it is the caller's to check.
            return Plan::Held(*r, scheme);
        }
        let scheme = match format.resolve(m.scheme) {
            Ok(s) => s,
            Err(scheme) => return Plan::FormatMismatch { scheme },
        };
        if let Some(r) = m.by_task.get(&task) {
            // Reserved before schemes were recorded.
            return Plan::Held(*r, scheme);
        }
        if m.scheme.is_none() {
            if let Err(e) = check_scheme(scheme, "format") {
                return Plan::Invalid(e.to_string());
            }
            if let Some((other, s)) = self.meets(model, scheme) {
                return Plan::NamespaceConflict {
                    model: other.to_owned(),
                    scheme: s,
                };
            }
        }
        let capacity = scheme.capacity().min(u128::from(u64::MAX) + 1);
        let first = match number {
            Some(n) => {
                if u128::from(n) + u128::from(count) > capacity {
                    return Plan::TooWide { scheme };
                }
                n
            }
            None => match first_fit(m, count, capacity) {
                Some(n) => n,
                None => return Plan::Exhausted { scheme },
            },
        };
        let last = first + (count - 1);
        if let Some(hit) = m.ranges.overlap(first, last) {
            return Plan::Conflict(hit);
        }
        Plan::Reserve {
            first,
            last,
            expected_seq: m.last_seq,
            scheme,
            automatic: number.is_none(),
            fixes_scheme: m.scheme.is_none(),
        }
    }

    /// The model, number and range behind `serial`, if it was issued. Looks up the models
    /// that are a prefix of it (at most 32), never every model; the namespace rule lets at
    /// most one of them write it. A random-order model's serial is inverted with its key
    /// from `keys` (not found without it).
    pub fn lookup(&self, serial: &str, keys: &Keyring) -> Option<(&str, u64, Range)> {
        (1..serial.len().min(33)).find_map(|n| {
            let (code, m) = self.models.get_key_value(serial.get(..n)?)?;
            let scheme = m.scheme?;
            let formatter = SerialFormatter::keyed(code, scheme, keys).ok()?;
            let number = formatter.parse(serial)?;
            let range = m.ranges.overlap(number, number)?;
            Some((code.as_str(), number, range))
        })
    }

    /// Every model, ordered by code.
    pub fn models(&self) -> impl Iterator<Item = ModelSummary<'_>> {
        self.models.iter().map(|(code, m)| summary(code, m))
    }

    pub fn model(&self, code: &str) -> Option<ModelSummary<'_>> {
        self.models.get_key_value(code).map(|(c, m)| summary(c, m))
    }

    /// A model's issued ranges, by first number, from `after` on (exclusive).
    pub fn ranges_of(&self, model: &str, after: Option<u64>) -> impl Iterator<Item = &Range> {
        self.models
            .get(model)
            .into_iter()
            .flat_map(move |m| m.ranges.after(after))
    }

    /// Every range with its model, for snapshots.
    pub fn ranges(&self) -> impl Iterator<Item = (&str, &Range)> {
        self.models
            .iter()
            .flat_map(|(model, m)| m.ranges.iter().map(move |r| (model.as_str(), r)))
    }

    /// Every model's state but its ranges, for snapshots.
    pub fn model_states(&self) -> impl Iterator<Item = ModelState> + '_ {
        self.models.iter().map(|(code, m)| ModelState {
            code_model: code.clone(),
            scheme: m.scheme,
            scheme_seq: m.scheme_seq,
            cursor: m.cursor,
            last_seq: m.last_seq,
        })
    }

    /// Restores a model from a snapshot, before its ranges; models with schemes in the order
    /// their schemes were fixed, so the namespace rule decides as it did.
    pub fn restore_model(&mut self, state: &ModelState) -> Result<(), Void> {
        if let Some(scheme) = state.scheme {
            if let Applied::Void(v) = self.declare(&state.code_model, state.scheme_seq, scheme) {
                return Err(v);
            }
        }
        let m = self.entry(&state.code_model, state.last_seq);
        m.cursor = m.cursor.max(state.cursor);
        Ok(())
    }

    /// The highest number an automatic reservation of `model` took (0: none yet).
    pub fn cursor(&self, model: &str) -> u64 {
        self.models.get(model).map_or(0, |m| m.cursor)
    }
}

/// A scheme the rules for requests allow for `model` (see `request::check_scheme`).
fn valid_scheme(model: &str, scheme: Format) -> bool {
    (1..=MAX_WIDTH).contains(&scheme.width)
        && (scheme.check_digit == CheckDigit::None || model.bytes().all(|b| b.is_ascii_digit()))
        && check_scheme(scheme, "").is_ok()
}

fn summary<'a>(code: &'a str, m: &ModelLedger) -> ModelSummary<'a> {
    ModelSummary {
        code_model: code,
        scheme: m.scheme,
        issued: m.issued,
        ranges: m.ranges.len(),
        remaining: m.scheme.map(|s| {
            // Number 0 counts: an explicit range may start there.
            s.capacity()
                .min(u128::from(u64::MAX) + 1)
                .saturating_sub(m.issued)
        }),
        cursor: m.cursor,
    }
}

/// The first number of the first gap of `count` numbers above the model's automatic cursor,
/// or, if none is left up there, the first from 1 on. Numbers stay below `capacity`.
fn first_fit(m: &ModelLedger, count: u64, capacity: u128) -> Option<u64> {
    let above = m.cursor.saturating_add(1).max(1);
    m.ranges
        .gap_from(above, count, capacity)
        .or_else(|| m.ranges.gap_from(1, count, capacity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::CheckDigit;

    const W8: Format = Format::new(8, CheckDigit::None);

    fn w(width: u8) -> Format {
        Format {
            width,
            check_digit: CheckDigit::None,
            ..Format::default()
        }
    }

    fn res(first: u64, last: u64, automatic: bool) -> Reservation {
        Reservation {
            range: Range {
                first,
                last,
                task: Uuid::new_v4(),
            },
            scheme: Some(W8),
            automatic,
        }
    }

    fn any() -> FormatRequest {
        FormatRequest::default()
    }

    fn reserve_at(plan: Plan) -> (u64, u64) {
        match plan {
            Plan::Reserve { first, last, .. } => (first, last),
            other => panic!("not a reservation: {other:?}"),
        }
    }

    #[test]
    fn first_task_of_a_model_starts_at_one_and_next_follows_the_cursor() {
        let mut l = Ledger::planning();
        let t = Uuid::new_v4();
        assert_eq!(
            l.plan("m", t, None, 10, any()),
            Plan::Reserve {
                first: 1,
                last: 10,
                expected_seq: 0,
                scheme: W8,
                automatic: true,
                fixes_scheme: true,
            }
        );
        l.reserve("m", 5, res(1, 10, true));
        l.reserve("m", 9, res(500, 600, false));
        assert_eq!(
            l.plan("m", t, None, 5, any()),
            Plan::Reserve {
                first: 11,
                last: 15,
                expected_seq: 9,
                scheme: W8,
                automatic: true,
                fixes_scheme: false,
            }
        );
        // Past the explicit range when the gap below it is too small.
        assert_eq!(reserve_at(l.plan("m", t, None, 490, any())), (601, 1090));
        assert_eq!(reserve_at(l.plan("m", t, None, 489, any())), (11, 499));
    }

    #[test]
    fn one_high_explicit_range_leaves_automatic_numbering_alone() {
        let mut l = Ledger::planning();
        l.reserve("HIGH", 1, res(99_999_990, 99_999_999, false));
        let t = Uuid::new_v4();
        assert_eq!(reserve_at(l.plan("HIGH", t, None, 1, any())), (1, 1));
        // Exhausted only when no gap of that size is left anywhere at the width.
        l.reserve("HIGH", 2, res(1, 99_999_989, true));
        assert_eq!(
            l.plan("HIGH", t, None, 1, any()),
            Plan::Exhausted { scheme: W8 }
        );
    }

    #[test]
    fn automatic_ranges_fill_gaps_below_the_cursor_only_when_none_is_left_above() {
        let mut l = Ledger::planning();
        l.reserve("m", 1, res(1, 10, true));
        l.reserve("m", 2, res(21, 99_999_990, true));
        let t = Uuid::new_v4();
        assert_eq!(
            reserve_at(l.plan("m", t, None, 9, any())),
            (99_999_991, 99_999_999)
        );
        assert_eq!(reserve_at(l.plan("m", t, None, 10, any())), (11, 20));
        assert_eq!(
            l.plan("m", t, None, 11, any()),
            Plan::Exhausted { scheme: W8 }
        );
    }

    #[test]
    fn overlaps_are_conflicts_and_gaps_are_free() {
        let mut l = Ledger::planning();
        let a = res(1, 1000, false);
        l.reserve("m", 1, a);
        let t = Uuid::new_v4();
        assert_eq!(
            l.plan("m", t, Some(500), 1000, any()),
            Plan::Conflict(a.range)
        );
        assert_eq!(
            l.plan("m", t, Some(1000), 1, any()),
            Plan::Conflict(a.range)
        );
        assert_eq!(
            reserve_at(l.plan("m", t, Some(1001), 1, any())),
            (1001, 1001)
        );
        l.reserve("m", 2, res(2000, 2010, false));
        assert_eq!(
            reserve_at(l.plan("m", t, Some(1001), 999, any())),
            (1001, 1999)
        );
        assert!(
            matches!(l.plan("m", t, Some(1001), 1000, any()), Plan::Conflict(r) if r.first == 2000)
        );
        assert_eq!(
            l.plan("m", t, Some(99_999_999), 2, any()),
            Plan::TooWide { scheme: W8 }
        );
    }

    #[test]
    fn reserve_is_idempotent_and_the_first_in_stream_order_wins() {
        let mut l = Ledger::planning();
        let a = res(1, 10, true);
        assert_eq!(l.reserve("m", 1, a), Applied::Granted);
        assert_eq!(l.reserve("m", 1, a), Applied::Repeat);
        let b = res(5, 20, true);
        assert_eq!(l.reserve("m", 2, b), Applied::Void(Void::Overlap(a.range)));
        assert_eq!(l.ranges().count(), 1);
        assert_eq!(
            l.plan("m", a.range.task, None, 10, any()),
            Plan::Held(a.range, W8)
        );
        assert_eq!(l.last_seq("m"), 2);
        // The void one's task plans past the winner.
        assert_eq!(
            reserve_at(l.plan("m", b.range.task, None, 16, any())),
            (11, 26)
        );
    }

    #[test]
    fn a_model_keeps_the_scheme_its_first_reservation_or_declaration_fixed() {
        let mut l = Ledger::planning();
        let gs1 = Format {
            width: 8,
            check_digit: CheckDigit::Gs1,
            ..Format::default()
        };
        assert_eq!(l.declare("7777", 3, gs1), Applied::Granted);
        assert_eq!(l.declare("7777", 4, gs1), Applied::Repeat);
        assert_eq!(l.declare("7777", 5, w(9)), Applied::Void(Void::Scheme(gs1)));
        let mut other = res(424, 424, false);
        other.scheme = Some(w(9));
        assert_eq!(
            l.reserve("7777", 6, other),
            Applied::Void(Void::Scheme(gs1))
        );
        let t = Uuid::new_v4();
        let nine = FormatRequest {
            width: Some(9),
            ..FormatRequest::default()
        };
        assert_eq!(
            l.plan("7777", t, Some(424), 1, nine),
            Plan::FormatMismatch { scheme: gs1 }
        );
        // No format: the model's.
        assert!(matches!(
            l.plan("7777", t, Some(42), 1, any()),
            Plan::Reserve { scheme, fixes_scheme: false, .. } if scheme == gs1
        ));
        assert_eq!(l.scheme_seq("7777"), 3);
    }

    #[test]
    fn a_model_that_could_meet_another_is_void_in_stream_order() {
        let mut l = Ledger::planning();
        assert_eq!(l.reserve("0111", 1, res(1, 10, true)), Applied::Granted);
        let mut wide = res(1_100_000_001, 1_100_000_001, false);
        wide.scheme = Some(w(10));
        assert_eq!(
            l.reserve("01", 2, wide),
            Applied::Void(Void::Namespace {
                model: "0111".into(),
                scheme: W8
            })
        );
        assert_eq!(l.scheme("01"), None);
        let ten = FormatRequest {
            width: Some(10),
            ..FormatRequest::default()
        };
        assert_eq!(
            l.plan("01", Uuid::new_v4(), None, 1, ten),
            Plan::NamespaceConflict {
                model: "0111".into(),
                scheme: W8
            }
        );
        assert!(
            matches!(l.declare("011", 3, w(9)), Applied::Void(Void::Namespace { model, .. }) if model == "0111")
        );
        // Longer codes are found too.
        assert!(matches!(l.declare("011", 3, w(9)), Applied::Void(_)));
        assert_eq!(l.declare("02", 4, w(10)), Applied::Granted);
        assert_eq!(l.declare("0333", 5, W8), Applied::Granted);
        assert!(
            matches!(l.declare("0", 6, w(11)), Applied::Void(Void::Namespace { model, .. }) if model == "02" || model == "0111")
        );
        assert_eq!(l.declare("A1", 7, W8), Applied::Granted);
        assert_eq!(l.declare("A12", 8, W8), Applied::Granted);
    }

    #[test]
    fn lookup_finds_the_one_model_and_number_behind_a_serial() {
        let mut l = Ledger::planning();
        let a = res(1, 10, true);
        l.reserve("0111", 1, a);
        l.declare("02", 2, w(10));
        let keys = Keyring::default();
        assert_eq!(l.lookup("011100000005", &keys), Some(("0111", 5, a.range)));
        assert_eq!(l.lookup("011100000011", &keys), None);
        assert_eq!(l.lookup("0200000000001", &keys), None);
        assert_eq!(l.lookup("0111é0000005", &keys), None);
        assert_eq!(l.lookup("", &keys), None);
    }

    #[test]
    fn summaries_count_what_is_issued_and_left() {
        let mut l = Ledger::planning();
        l.declare("X", 1, w(2));
        l.reserve("X", 2, {
            let mut r = res(10, 19, false);
            r.scheme = Some(w(2));
            r
        });
        let s = l.model("X").unwrap();
        assert_eq!((s.issued, s.ranges, s.remaining), (10, 1, Some(90)));
        assert_eq!(l.models().count(), 1);
    }
}
