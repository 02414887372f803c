//! One namespace for every model: when could two models' serials be the same string?
//!
//! A serial of model `m` in scheme `s` is `m`, then `s.width` digits, then one check digit if
//! `s` has one. Two different models `a` (shorter or as long) and `b` can write the same string
//! only if
//! - their serials are equally long, and
//! - `a` is a prefix of `b` and the rest of `b` is digits (those positions are number digits
//!   in `a`'s serials; a model's code is compared byte for byte).
//!
//! When both hold, they do meet, with one exception: both schemes have a check digit, of
//! different kinds (GS1 and Luhn), and no number gives the two the same check digit. The rule
//! refuses such a pair all the same; that is the one place it is stricter than necessary
//! (the property test in this module shows it is the only one).

use super::Format;

/// Whether serials of model `a` in scheme `sa` could be the same strings as serials of a
/// different model `b` in scheme `sb`. One model has one scheme, so `a == b` is never asked
/// about; it answers false.
pub fn could_meet(a: &str, sa: Format, b: &str, sb: Format) -> bool {
    if a == b || sa.serial_len(a) != sb.serial_len(b) {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.len() > short.len()
        && long.as_bytes().starts_with(short.as_bytes())
        && long.as_bytes()[short.len()..]
            .iter()
            .all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::serial::{CheckDigit, SerialFormatter};

    /// The one kind of pair [`could_meet`] refuses although no serial of one is a serial of
    /// the other: check digits of two different kinds.
    fn stricter_case(sa: Format, sb: Format) -> bool {
        sa.check_digit != CheckDigit::None
            && sb.check_digit != CheckDigit::None
            && sa.check_digit != sb.check_digit
    }

    /// Every serial a model can ever be given in a scheme: numbers 0 to 10^width - 1.
    fn all_serials(model: &str, s: Format) -> HashSet<String> {
        let f = SerialFormatter::new(model, s);
        (0..10u64.pow(u32::from(s.width)))
            .map(|n| f.to_string(n))
            .collect()
    }

    fn model() -> impl Strategy<Value = String> {
        // Digits mostly, so that prefixes with digit tails come up often; a letter and a
        // dash so that they do not always.
        proptest::collection::vec(prop_oneof![4 => "[0-2]", 1 => "[A-]"], 1..=4)
            .prop_map(|cs| cs.concat())
    }

    fn scheme(model: &str) -> impl Strategy<Value = Format> {
        let digits = model.bytes().all(|b| b.is_ascii_digit());
        let checks = if digits {
            vec![CheckDigit::None, CheckDigit::Gs1, CheckDigit::Luhn]
        } else {
            vec![CheckDigit::None]
        };
        (1u8..=4, proptest::sample::select(checks)).prop_map(|(width, check_digit)| Format {
            width,
            check_digit,
            ..Format::default()
        })
    }

    fn pair() -> impl Strategy<Value = (String, Format, String, Format)> {
        (model(), model()).prop_flat_map(|(a, b)| {
            let (sa, sb) = (scheme(&a), scheme(&b));
            (Just(a), sa, Just(b), sb)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// No pair the rule admits can collide, and where it refuses a pair that cannot
        /// collide, the two have check digits of different kinds.
        #[test]
        fn the_rule_agrees_with_brute_force((a, sa, b, sb) in pair()) {
            prop_assume!(a != b);
            let collide = !all_serials(&a, sa).is_disjoint(&all_serials(&b, sb));
            let refused = could_meet(&a, sa, &b, sb);
            prop_assert_eq!(refused, could_meet(&b, sb, &a, sa), "symmetric");
            if collide {
                prop_assert!(refused, "{a} {sa} and {b} {sb} collide but are admitted");
            }
            if refused && !collide {
                prop_assert!(stricter_case(sa, sb), "{a} {sa} and {b} {sb} refused needlessly");
            }
        }
    }

    #[test]
    fn the_documented_pairs() {
        let w = |width| Format {
            width,
            check_digit: CheckDigit::None,
            ..Format::default()
        };
        // 0111 at width 8 and 01 at width 10 both write 011100000001.
        assert!(could_meet("0111", w(8), "01", w(10)));
        assert!(!could_meet("02", w(10), "0333", w(8)));
        assert!(!could_meet("A1", w(8), "A12", w(8)));
        // A letter after the shorter code can never be a number digit.
        assert!(!could_meet("A", w(9), "AB", w(8)));
        assert!(could_meet("A", w(9), "A1", w(8)));
        let gs1 = Format {
            width: 7,
            check_digit: CheckDigit::Gs1,
            ..Format::default()
        };
        assert!(!could_meet("7777", gs1, "7777", w(8)));
        assert!(!could_meet("777", gs1, "7777", w(8)));
        assert!(could_meet("777", gs1, "7777", w(7)));
    }
}
