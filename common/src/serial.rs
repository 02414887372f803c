//! How a number becomes a serial: `code_model` + zero-padded number + optional check digit.
//!
//! Formatting writes straight into a caller's buffer so the generator never allocates per
//! serial; a batch of consecutive numbers is written as one range (see `range`).

use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, Serialize};

pub mod ff1;
pub mod keys;
mod namespace;
mod range;

pub use keys::{KeyError, Keyring};
pub use namespace::could_meet;

use ff1::Permutation;

pub const DEFAULT_WIDTH: u8 = 8;
pub const MAX_WIDTH: u8 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckDigit {
    #[default]
    None,
    /// GS1 mod-10: weights 3, 1, 3, ... from the rightmost data digit.
    Gs1,
    /// Luhn: every second digit doubled, starting with the rightmost data digit.
    Luhn,
}

impl CheckDigit {
    pub fn parse(s: &str) -> Option<CheckDigit> {
        Some(match s {
            "none" => CheckDigit::None,
            "gs1" => CheckDigit::Gs1,
            "luhn" => CheckDigit::Luhn,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckDigit::None => "none",
            CheckDigit::Gs1 => "gs1",
            CheckDigit::Luhn => "luhn",
        }
    }

    /// The check digit for `digits` (ASCII '0'..='9'), or `None` for `CheckDigit::None`.
    pub fn compute(self, digits: &[u8]) -> Option<u8> {
        (self != CheckDigit::None).then(|| check_from_sum(self.sum(digits)))
    }

    /// The weighted sum the check digit is taken from (0 without a check digit, whose model
    /// code need not be digits).
    fn sum(self, digits: &[u8]) -> u32 {
        self.sum_from(digits, 0)
    }

    /// The sum of `digits` whose rightmost sits at `position` (counted from the rightmost
    /// data digit of the serial).
    fn sum_from(self, digits: &[u8], position: usize) -> u32 {
        if self == CheckDigit::None {
            return 0;
        }
        digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| self.weighted(position + i, u32::from(d - b'0')))
            .sum()
    }

    /// What digit `d` adds to the sum at position `i`, counted from the rightmost data digit.
    fn weighted(self, i: usize, d: u32) -> u32 {
        let even = i.is_multiple_of(2);
        match self {
            CheckDigit::None => 0,
            CheckDigit::Gs1 if even => d * 3,
            CheckDigit::Luhn if even && d * 2 > 9 => d * 2 - 9,
            CheckDigit::Luhn if even => d * 2,
            CheckDigit::Gs1 | CheckDigit::Luhn => d,
        }
    }

    /// What the two digits of `pair` (0 to 99) add to the sum when its right digit sits at
    /// an even position.
    fn pair_sums(self) -> [u32; 100] {
        let [even, odd] = self.weights();
        std::array::from_fn(|pair| even[pair % 10] + odd[pair / 10])
    }

    /// `weighted` for the digits 0 to 9 at an even (`[0]`) and an odd (`[1]`) position.
    fn weights(self) -> [[u32; 10]; 2] {
        let mut table = [[0; 10]; 2];
        for (parity, row) in table.iter_mut().enumerate() {
            for (d, w) in (0..).zip(row.iter_mut()) {
                *w = self.weighted(parity, d);
            }
        }
        table
    }
}

fn check_from_sum(sum: u32) -> u8 {
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// The order a model's numbers are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Number n is written as n.
    #[default]
    Sequential,
    /// Number n is written as `P_k(n)`, a keyed permutation of `[0, 10^width)` (FF1, see
    /// `ff1`): distinct numbers still give distinct serials, and neighbours cannot be guessed.
    Random,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Random => "random",
        }
    }

    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "sequential" => Some(Order::Sequential),
            "random" => Some(Order::Random),
            _ => None,
        }
    }
}

/// A model's serial scheme: how every number of the model is written. Fixed per model by its
/// first declaration or reservation (see `ledger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Format {
    pub width: u8,
    pub check_digit: CheckDigit,
    #[serde(default)]
    pub order: Order,
    /// Random order: the id of the master key the model's key is derived from (see `keys`).
    #[serde(default)]
    pub key_id: Option<NonZeroU32>,
    /// Random order: only 1 in `one_in` of the width's numbers is ever issued, so a guessed
    /// serial is valid with a probability below `1 / one_in`.
    #[serde(default)]
    pub one_in: Option<NonZeroU64>,
}

impl Default for Format {
    fn default() -> Self {
        Format::new(DEFAULT_WIDTH, CheckDigit::None)
    }
}

impl Format {
    /// A sequential scheme.
    pub const fn new(width: u8, check_digit: CheckDigit) -> Format {
        Format {
            width,
            check_digit,
            order: Order::Sequential,
            key_id: None,
            one_in: None,
        }
    }

    /// One past the highest number this scheme issues: `10^width`, or `10^width / one_in`
    /// for a sparse one. As u128 so width 20 fits.
    pub fn capacity(self) -> u128 {
        10u128.pow(u32::from(self.width)) / u128::from(self.one_in.map_or(1, NonZeroU64::get))
    }

    /// Length in bytes of every serial of `model` in this format.
    pub fn serial_len(self, model: &str) -> usize {
        model.len() + usize::from(self.width) + usize::from(self.check_digit != CheckDigit::None)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "width {}, check digit {}",
            self.width,
            self.check_digit.as_str()
        )?;
        if self.order == Order::Random {
            f.write_str(", random order")?;
            if let Some(id) = self.key_id {
                write!(f, " (key {})", keys::key_id_text(id.get()))?;
            }
        }
        if let Some(n) = self.one_in {
            write!(f, ", 1 in {n} issued")?;
        }
        Ok(())
    }
}

/// The `format` a request names: only the fields it gives. A model's scheme supplies the rest,
/// and a field given must equal the scheme's (see [`FormatRequest::resolve`]). Old requests
/// carry both fields; a request without `format` carries neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct FormatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_digit: Option<CheckDigit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// `density` as 1 in this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_in: Option<NonZeroU64>,
}

impl From<Format> for FormatRequest {
    fn from(f: Format) -> Self {
        FormatRequest {
            width: Some(f.width),
            check_digit: Some(f.check_digit),
            order: Some(f.order),
            one_in: f.one_in,
        }
    }
}

impl FormatRequest {
    pub fn is_empty(&self) -> bool {
        *self == FormatRequest::default()
    }

    /// The scheme a request gets: the model's when it has one (every field given must match
    /// it, else `Err` with the model's scheme), else the fields given over the defaults.
    pub fn resolve(self, model_scheme: Option<Format>) -> Result<Format, Format> {
        match model_scheme {
            Some(scheme) => {
                let same = self.width.is_none_or(|w| w == scheme.width)
                    && self.check_digit.is_none_or(|c| c == scheme.check_digit)
                    && self.order.is_none_or(|o| o == scheme.order)
                    && self.one_in.is_none_or(|n| Some(n) == scheme.one_in);
                if same {
                    Ok(scheme)
                } else {
                    Err(scheme)
                }
            }
            None => Ok(self.or_default()),
        }
    }

    /// The fields given over the defaults.
    /// The fields given over the defaults. A random order gets no key id here: whoever fixes
    /// the scheme gives it the current key's (see `keys`).
    pub fn or_default(self) -> Format {
        let d = Format::default();
        Format {
            width: self.width.unwrap_or(d.width),
            check_digit: self.check_digit.unwrap_or(d.check_digit),
            order: self.order.unwrap_or(d.order),
            key_id: None,
            one_in: self.one_in,
        }
    }
}

impl std::fmt::Display for FormatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(w) = self.width {
            parts.push(format!("width {w}"));
        }
        if let Some(c) = self.check_digit {
            parts.push(format!("check digit {}", c.as_str()));
        }
        if let Some(o) = self.order {
            parts.push(format!("{} order", o.as_str()));
        }
        if let Some(n) = self.one_in {
            parts.push(format!("1 in {n} issued"));
        }
        if parts.is_empty() {
            f.write_str("the model's scheme")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

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
