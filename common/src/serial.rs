//! How a number becomes a serial: `code_model` + zero-padded number + optional check digit.
//!
//! A model's scheme ([`Format`], in `scheme`) says how its numbers are written: the width,
//! the check digit (`check_digit`) and the order, sequential or a keyed permutation (`ff1`,
//! with the keys of `keys`). [`SerialFormatter`] writes serials of one scheme straight into a
//! caller's buffer so the generator never allocates per serial; a batch of consecutive
//! numbers is written as one range (`range`). `namespace` tells whether two models' serials
//! could ever be the same string.

mod check_digit;
pub mod ff1;
pub mod keys;
mod namespace;
mod range;
mod scheme;

pub use check_digit::CheckDigit;
pub use keys::{KeyError, Keyring};
pub use namespace::could_meet;
pub use scheme::{Format, FormatRequest, Order, DEFAULT_WIDTH, MAX_WIDTH};

use check_digit::check_from_sum;
use ff1::Permutation;

/// Formats serials of one model and format; reused for every number of a task.
#[derive(Debug, Clone)]
pub struct SerialFormatter {
    model: String,
    format: Format,
    /// Random order: the model's permutation.
    permutation: Option<Permutation>,
}

impl SerialFormatter {
    /// The formatter of a sequential scheme (a random one needs its key: see
    /// [`SerialFormatter::keyed`]).
    pub fn new(model: &str, format: Format) -> Self {
        SerialFormatter {
            model: model.to_owned(),
            format,
            permutation: None,
        }
    }

    /// The formatter of any scheme: a random-order one takes the model's key from `keys`.
    pub fn keyed(model: &str, format: Format, keys: &Keyring) -> Result<Self, KeyError> {
        let permutation = match format.order {
            Order::Sequential => None,
            Order::Random => {
                let id = format.key_id.ok_or(KeyError::NoKey)?;
                Some(keys.permutation(id, model, format.width)?)
            }
        };
        Ok(SerialFormatter {
            model: model.to_owned(),
            format,
            permutation,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Gets ready to write `count` serials: a random order whose width allows it tabulates
    /// its permutation's rounds when there are more serials than entries to compute (see
    /// `ff1`), which makes each serial a few table lookups instead of ten AES blocks.
    pub fn prepare_for(&mut self, count: u64) {
        if let Some(p) = &mut self.permutation {
            if p.table_len().is_some_and(|len| count >= len) {
                p.tabulate();
            }
        }
    }

    /// Appends the serial of `number` to `out`. The caller has checked that the number fits
    /// the width (see `request`); a wider number is written in full rather than truncated.
    pub fn write(&self, number: u64, out: &mut Vec<u8>) {
        let written = match &self.permutation {
            Some(p) => p.apply(number),
            None => number,
        };
        self.write_digits(written, out);
    }

    /// Appends the serial whose digits are `n`: the number itself in a sequential scheme, its
    /// image under the permutation in a random-order one.
    fn write_digits(&self, mut n: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.model.as_bytes());
        let mut digits = [b'0'; 20];
        let mut i = digits.len();
        while n > 0 {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let used = digits.len() - i;
        let width = usize::from(self.format.width).max(used);
        out.extend_from_slice(&digits[digits.len() - width..]);
        if let Some(c) = self.format.check_digit.compute(&out[start..]) {
            out.push(c);
        }
    }

    pub fn to_string(&self, number: u64) -> String {
        let mut out = Vec::with_capacity(self.format.serial_len(&self.model));
        self.write(number, &mut out);
        // Only ASCII model bytes and digits were written.
        String::from_utf8(out).expect("serials are ASCII")
    }

    /// The number inside `serial` if it is a serial of this model and format (check digit
    /// verified), else `None`.
    pub fn parse(&self, serial: &str) -> Option<u64> {
        let rest = serial.as_bytes().strip_prefix(self.model.as_bytes())?;
        let check = usize::from(self.format.check_digit != CheckDigit::None);
        if rest.len() != usize::from(self.format.width) + check {
            return None;
        }
        let digits = &rest[..rest.len() - check];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let written: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let number = match &self.permutation {
            Some(p) => p.invert(written),
            None => written,
        };
        (self.to_string(number) == serial).then_some(number)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;

    fn fmt(model: &str, width: u8, check: CheckDigit, n: u64) -> String {
        SerialFormatter::new(model, Format::new(width, check)).to_string(n)
    }

    #[test]
    fn a_random_order_writes_a_permutation_and_parses_it_back() {
        let keys = Keyring::parse(Some("a master key of the tests that is long")).unwrap();
        let format = Format {
            order: Order::Random,
            key_id: Some(keys.current().unwrap()),
            ..Format::new(8, CheckDigit::Gs1)
        };
        let f = SerialFormatter::keyed("0111", format, &keys).unwrap();
        let serials: Vec<String> = (1..=1000).map(|n| f.to_string(n)).collect();
        let distinct: std::collections::HashSet<_> = serials.iter().collect();
        assert_eq!(distinct.len(), 1000);
        let sequential = SerialFormatter::new("0111", Format::new(8, CheckDigit::Gs1));
        let same = (1..=1000)
            .filter(|&n| serials[n as usize - 1] == sequential.to_string(n))
            .count();
        assert!(same < 5, "{same} serials kept their sequential place");
        for (n, s) in (1..=1000).zip(&serials) {
            assert_eq!(s.len(), 13);
            assert_eq!(f.parse(s), Some(n));
        }
        // The range writer agrees with one at a time.
        let mut out = Vec::new();
        f.write_range(1, 1000, b"\n", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), serials.join("\n"));
        // A request naming the order gets it for a new model, and must match an old one's.
        let asked = FormatRequest {
            order: Some(Order::Random),
            one_in: NonZeroU64::new(10),
            ..FormatRequest::default()
        };
        assert_eq!(
            (asked.or_default().order, asked.or_default().one_in),
            (Order::Random, NonZeroU64::new(10))
        );
        assert!(asked.resolve(Some(Format::default())).is_err());
        // No key, or another: refused.
        assert_eq!(
            SerialFormatter::keyed("0111", format, &Keyring::default()).unwrap_err(),
            KeyError::Missing(format.key_id.unwrap())
        );
    }

    #[test]
    fn default_format_pads_to_eight_digits() {
        assert_eq!(fmt("0111", 8, CheckDigit::None, 1), "011100000001");
        assert_eq!(fmt("AB", 3, CheckDigit::None, 999), "AB999");
        assert_eq!(
            fmt("X", 20, CheckDigit::None, u64::MAX),
            "X18446744073709551615"
        );
        assert_eq!(fmt("X", 1, CheckDigit::None, 0), "X0");
    }

    #[test]
    fn gs1_matches_published_examples() {
        // GTIN-13 6291041500213 and GTIN-12 036000291452 (GS1 check digit calculator examples).
        assert_eq!(CheckDigit::Gs1.compute(b"629104150021"), Some(b'3'));
        assert_eq!(CheckDigit::Gs1.compute(b"03600029145"), Some(b'2'));
        assert_eq!(fmt("629104", 6, CheckDigit::Gs1, 150021), "6291041500213");
    }

    #[test]
    fn luhn_matches_published_examples() {
        // The classic 79927398713 and the test card 4111 1111 1111 1111.
        assert_eq!(CheckDigit::Luhn.compute(b"7992739871"), Some(b'3'));
        assert_eq!(CheckDigit::Luhn.compute(b"411111111111111"), Some(b'1'));
        assert_eq!(fmt("79927", 5, CheckDigit::Luhn, 39871), "79927398713");
    }

    #[test]
    fn parse_inverts_write_and_checks_the_digit() {
        let f = SerialFormatter::new(
            "0111",
            Format {
                width: 8,
                check_digit: CheckDigit::Gs1,
                ..Format::default()
            },
        );
        let s = f.to_string(42);
        assert_eq!(f.parse(&s), Some(42));
        let mut bad = s.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(f.parse(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(f.parse("0112000000421"), None);
        assert_eq!(f.parse("01110000004"), None);
    }
}
