//! A run of consecutive serials, as a generated batch carries them.
//!
//! Consecutive numbers share all but their last digit or two, so only the first serial of a
//! run is formatted from scratch. Each next one is a copy of the one before with its ASCII
//! digits incremented in place (carrying past a 9) and its check digit moved by what the
//! changed digits weigh, instead of summing the whole serial again.

use super::ff1::Permutation;
use super::{check_from_sum, CheckDigit, SerialFormatter};

impl SerialFormatter {
    /// Appends the serials of the `count` numbers from `first` on to `out`, with `sep` between
    /// two: the same bytes as `write` for each number in turn, without allocating per serial.
    pub fn write_range(&self, first: u64, count: u64, sep: &[u8], out: &mut Vec<u8>) {
        if let Some(permutation) = &self.permutation {
            self.write_permuted(permutation, first, count, sep, out);
            return;
        }
        let end = u128::from(first) + u128::from(count);
        debug_assert!(end <= u128::from(u64::MAX) + 1, "a range past u64::MAX");
        let mut number = u128::from(first);
        while number < end {
            if number > u128::from(first) {
                out.extend_from_slice(sep);
            }
            // The numbers from here on that have as many digits as this one: serials of one
            // length. A number wider than the format is written in full, as `write` does.
            let digits = u32::from(self.format.width).max(digit_count(number));
            let run_end = end.min(10u128.pow(digits));
            let (from, len) = (number as u64, (run_end - number) as u64);
            self.write_run(from, len, sep, out);
            number = run_end;
        }
    }

    /// `count` serials from `first` on, all as long as the first one.
    fn write_run(&self, first: u64, count: u64, sep: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.write(first, out);
        match out.len() - start + sep.len() {
            0..=16 => self.fill::<16>(start, count, sep, out),
            17..=32 => self.fill::<32>(start, count, sep, out),
            33..=64 => self.fill::<64>(start, count, sep, out),
            // Longer than any valid model makes (32 characters): one at a time.
            _ => (1..count).for_each(|i| {
                out.extend_from_slice(sep);
                self.write(first + i, out);
            }),
        }
    }

    /// Appends the `count - 1` serials after the one written at `out[start..]`.
    ///
    /// `block` holds the separator and the serial; it is copied out whole, `N` bytes at a
    /// time (a few moves, where a copy of the serial's own length would be a `memcpy` call),
    /// the next copy overwriting the spare tail. The last digit and the check digit are then
    /// written into `out` directly: `block` changes only when the last digit wraps, once in
    /// ten serials. (Patching `block` byte by byte for every serial and reading it back whole
    /// stalls the CPU on store forwarding, which cost more than the rest of the loop.)
    fn fill<const N: usize>(&self, start: usize, count: u64, sep: &[u8], out: &mut Vec<u8>) {
        let rest = usize::try_from(count - 1).expect("a run fits in memory");
        if rest == 0 {
            return;
        }
        let check = self.format.check_digit;
        let has_check = usize::from(check != CheckDigit::None);
        let len = out.len() - start;
        let stride = sep.len() + len;
        let mut block = [0u8; N];
        block[..sep.len()].copy_from_slice(sep);
        block[sep.len()..stride].copy_from_slice(&out[start..]);
        let digits = sep.len() + self.model.len()..stride - has_check;
        let last = digits.end - 1;
        let weights = check.weights();
        // The last digit sits at an even position, the ones before it start at an odd one.
        let [even, odd] = weights;
        let mut digit = usize::from(block[last] - b'0');
        let mut sum_before_last = check.sum(&block[sep.len()..digits.end]) - even[digit];

        let mut at = out.len();
        out.resize(at + rest * stride + N, 0);
        for _ in 0..rest {
            digit += 1;
            if digit == 10 {
                digit = 0;
                let before_last = &mut block[digits.start..last];
                let carried_out = !increment(before_last, &[odd, even], &mut sum_before_last);
                debug_assert!(!carried_out, "a run ends before a number gains a digit");
            }
            out[at..at + N].copy_from_slice(&block);
            out[at + last] = b'0' + digit as u8;
            if has_check == 1 {
                out[at + stride - 1] = check_from_sum(sum_before_last + even[digit]);
            }
            at += stride;
        }
        out.truncate(at);
    }
}

impl SerialFormatter {
    /// Random order: the serials of the `count` numbers from `first` on, each written from
    /// its image under `permutation`. No two neighbours share digits, so each serial is
    /// written whole: the numbers are permuted [`GROUP`] at a time, and each image fills the
    /// digits and the check digit of one template (separator, model code, digits, check
    /// digit), two digits at a time, the model code's share of the check sum added once.
    fn write_permuted(
        &self,
        permutation: &Permutation,
        first: u64,
        count: u64,
        sep: &[u8],
        out: &mut Vec<u8>,
    ) {
        let check = self.format.check_digit;
        let width = usize::from(self.format.width);
        let has_check = check != CheckDigit::None;
        let mut block = Vec::with_capacity(sep.len() + self.format.serial_len(&self.model));
        block.extend_from_slice(sep);
        block.extend_from_slice(self.model.as_bytes());
        let digits_at = block.len();
        block.resize(digits_at + width + usize::from(has_check), b'0');
        let model_sum = check.sum_from(self.model.as_bytes(), width);
        let pair_sums = check.pair_sums();
        let [even, _] = check.weights();
        out.reserve(
            usize::try_from(count)
                .unwrap_or(0)
                .saturating_mul(block.len()),
        );

        let mut numbers = [0u64; GROUP];
        // Numbers of a random-order scheme are below 10^19; a range past u64 stops there.
        let end = first.saturating_add(count);
        let mut from = first;
        while from < end {
            let n = (end - from).min(GROUP as u64) as usize;
            let group = &mut numbers[..n];
            for (slot, number) in group.iter_mut().zip(from..) {
                *slot = number;
            }
            permutation.apply_all(group);
            for &image in group.iter() {
                let digits = &mut block[digits_at..digits_at + width];
                let sum = write_digits(image, digits, &pair_sums, &even);
                if has_check {
                    *block.last_mut().expect("the check digit's place") =
                        check_from_sum(model_sum + sum);
                }
                // The first serial goes without the separator.
                let skip = if from == first { sep.len() } else { 0 };
                out.extend_from_slice(&block[skip..]);
                from += 1;
            }
        }
    }
}

/// How many numbers a random-order range permutes at a time.
const GROUP: usize = 64;

/// "00", "01", ..., "99": two ASCII digits at a time.
const PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// Writes `n` (below `10^digits.len()`) into `digits`, zero-padded, and returns what its
/// digits add to the check sum: `pair_sums` for each pair from the right, `even` for a lone
/// leftmost digit (at an even position when the length is odd).
fn write_digits(mut n: u64, digits: &mut [u8], pair_sums: &[u32; 100], even: &[u32; 10]) -> u32 {
    let mut sum = 0;
    let mut i = digits.len();
    while i >= 2 {
        let pair = (n % 100) as usize;
        n /= 100;
        digits[i - 2..i].copy_from_slice(&PAIRS[pair]);
        sum += pair_sums[pair];
        i -= 2;
    }
    if i == 1 {
        let digit = (n % 10) as usize;
        digits[0] = b'0' + digit as u8;
        sum += even[digit];
    }
    sum
}

/// Decimal digits of `n`, none for 0 (which `write` pads to the width).
fn digit_count(n: u128) -> u32 {
    n.checked_ilog10().map_or(0, |log| log + 1)
}

/// Adds one to the ASCII number `digits` in place and moves `sum` by what the changed digits
/// weigh now against before (`weights[parity][digit]`, parity counted from the rightmost
/// digit). False when the carry runs out of the leftmost digit.
fn increment(digits: &mut [u8], weights: &[[u32; 10]; 2], sum: &mut u32) -> bool {
    for (i, d) in digits.iter_mut().rev().enumerate() {
        let w = &weights[i % 2];
        if *d == b'9' {
            *d = b'0';
            *sum = *sum + w[0] - w[9];
        } else {
            let v = usize::from(*d - b'0');
            *d += 1;
            *sum = *sum + w[v + 1] - w[v];
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::{Format, MAX_WIDTH};
    use super::*;

    /// `write` one number at a time: what `write_range` must reproduce byte for byte.
    fn one_by_one(f: &SerialFormatter, first: u64, count: u64, sep: &[u8]) -> Vec<u8> {
        let mut out = b"prefix:".to_vec();
        for i in 0..count {
            if i > 0 {
                out.extend_from_slice(sep);
            }
            f.write(first + i, &mut out);
        }
        out
    }

    fn assert_range_matches(model: &str, width: u8, first: u64, count: u64) {
        for check_digit in [CheckDigit::None, CheckDigit::Gs1, CheckDigit::Luhn] {
            let f = SerialFormatter::new(
                model,
                Format {
                    width,
                    check_digit,
                    ..Format::default()
                },
            );
            for sep in [&b""[..], b"\",\""] {
                let mut fast = b"prefix:".to_vec();
                f.write_range(first, count, sep, &mut fast);
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(one_by_one(&f, first, count, sep)).unwrap(),
                    "{model} width {width} {check_digit:?} from {first}, {count} serials"
                );
            }
        }
    }

    #[test]
    fn range_matches_one_by_one_across_carries() {
        assert_range_matches("0111", 8, 99, 3);
        assert_range_matches("0111", 8, 999_999, 3);
        assert_range_matches("0111", 8, 9_999_990, 20);
        assert_range_matches("0111", 8, 0, 1_234);
        assert_range_matches("AB_x", 3, 0, 1_000);
        assert_range_matches("7", 1, 0, 10);
        assert_range_matches("Z", 13, 1_999_999_999_990, 25);
    }

    #[test]
    fn range_matches_one_by_one_for_every_number_of_small_widths() {
        for width in 1..=4 {
            assert_range_matches("0111", width, 0, 10u64.pow(width.into()) + 11);
        }
    }

    #[test]
    fn range_outgrowing_the_width_writes_the_wider_numbers_in_full() {
        // 10^width and beyond no longer fit; `write` writes them in full, and so must the range.
        assert_range_matches("0111", 2, 95, 10);
        assert_range_matches("0111", 2, 990, 20);
        assert_range_matches("9", 1, 0, 120);
        assert_range_matches("0111", 8, 99_999_998, 4);
    }

    #[test]
    fn range_of_a_model_code_with_letters_and_punctuation() {
        // No check digit for such codes (requests are refused), so only the plain form.
        for (model, width, first, count) in [("A-7", 8, 1, 25), ("a_B-", 2, 0, 120)] {
            let f = SerialFormatter::new(
                model,
                Format {
                    width,
                    check_digit: CheckDigit::None,
                    ..Format::default()
                },
            );
            let mut fast = b"prefix:".to_vec();
            f.write_range(first, count, b"\n", &mut fast);
            assert_eq!(fast, one_by_one(&f, first, count, b"\n"), "{model}");
        }
    }

    #[test]
    fn range_at_the_width_limit() {
        assert_range_matches("X", MAX_WIDTH, u64::MAX - 10, 11);
        assert_range_matches("X", MAX_WIDTH, 9_999_999_999_999_999_990, 11);
        assert_range_matches("X", MAX_WIDTH, u64::MAX, 1);
    }

    #[test]
    fn empty_range_writes_nothing() {
        let f = SerialFormatter::new("0111", Format::default());
        let mut out = b"kept".to_vec();
        f.write_range(u64::MAX, 0, b",", &mut out);
        assert_eq!(out, b"kept");
    }

    #[test]
    fn every_block_size_and_the_fallback_match_one_by_one() {
        // Serial plus separator of 12 to 16 bytes, 28 to 32, 59 to 63, and 61 to 65 (past 64:
        // one at a time).
        assert_range_matches("0111", 8, 1_999_990, 25);
        assert_range_matches("ABCDEFGHIJKLMNOP", 12, 1_999_990, 25);
        assert_range_matches("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789ab", 20, 1_999_990, 25);
        assert_range_matches("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789abcd", 20, 99, 3);
    }

    #[test]
    fn width_zero_matches_one_by_one() {
        // Not a valid request, but `write` gives 0 no digits at all; the range must agree.
        assert_range_matches("0111", 0, 0, 120);
    }
}
