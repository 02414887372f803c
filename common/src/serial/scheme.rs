//! A model's serial scheme ([`Format`]: width, check digit, order, density) and the part of
//! one that a request names ([`FormatRequest`]), with the rule that merges the two.

use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, Serialize};

use super::{keys, CheckDigit};

/// Digits of the number part when a request names no width.
pub const DEFAULT_WIDTH: u8 = 8;
/// The widest number part: 20 digits hold every `u64`.
pub const MAX_WIDTH: u8 = 20;

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
