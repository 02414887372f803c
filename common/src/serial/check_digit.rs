//! The check digits a scheme can append: GS1 mod-10 and Luhn. Both weigh the data digits
//! from the right and pick the digit that brings the sum to a multiple of ten; the weighted
//! sums are exposed to `range`, which keeps them running while it writes many serials.

use serde::{Deserialize, Serialize};

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
    pub(super) fn sum(self, digits: &[u8]) -> u32 {
        self.sum_from(digits, 0)
    }

    /// The sum of `digits` whose rightmost sits at `position` (counted from the rightmost
    /// data digit of the serial).
    pub(super) fn sum_from(self, digits: &[u8], position: usize) -> u32 {
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
    pub(super) fn pair_sums(self) -> [u32; 100] {
        let [even, odd] = self.weights();
        std::array::from_fn(|pair| even[pair % 10] + odd[pair / 10])
    }

    /// `weighted` for the digits 0 to 9 at an even (`[0]`) and an odd (`[1]`) position.
    pub(super) fn weights(self) -> [[u32; 10]; 2] {
        let mut table = [[0; 10]; 2];
        for (parity, row) in table.iter_mut().enumerate() {
            for (d, w) in (0..).zip(row.iter_mut()) {
                *w = self.weighted(parity, d);
            }
        }
        table
    }
}

/// The check digit that brings a weighted sum to a multiple of ten.
pub(super) fn check_from_sum(sum: u32) -> u8 {
    b'0' + ((10 - sum % 10) % 10) as u8
}
