//! Schemas of types the API exchanges that are defined in `common` without a schema (the
//! serial format and its parts), and of the request bodies, which handlers read as JSON
//! values with their own checks (`common::request`) rather than deserialize.

use serde::Serialize;
use utoipa::ToSchema;

/// The serial scheme of a task's model.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FormatDoc {
    /// Digits of the zero-padded number.
    #[schema(minimum = 1, maximum = 20, default = 8)]
    width: u8,
    /// Check digit appended to the serial (needs an all-digit `code_model`).
    #[schema(default = "none")]
    check_digit: CheckDigitDoc,
    order: OrderDoc,
    /// Random order: the id of the master key the model's key comes from.
    key_id: Option<u32>,
    /// Random order: 1 in this many of the width's numbers is ever issued.
    one_in: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderDoc {
    /// Number n is written as n.
    Sequential,
    /// Number n is written as a keyed permutation of it (FF1 under SERIAL_KEY).
    Random,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckDigitDoc {
    None,
    Gs1,
    Luhn,
}

/// A model's serial scheme (`PUT /models/{code_model}`), or the fields of it a request names.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SchemeDoc {
    /// Digits of the zero-padded number (6 to 19 in random order).
    #[schema(minimum = 1, maximum = 20, default = 8)]
    width: Option<u8>,
    /// Check digit appended to the serial (needs an all-digit `code_model`).
    #[schema(default = "none")]
    check_digit: Option<CheckDigitDoc>,
    /// `random` writes each number as a keyed permutation of it (needs SERIAL_KEY).
    #[schema(default = "sequential")]
    order: Option<OrderDoc>,
    /// Random order only: the share of the width's numbers ever issued, `"1/N"` or a
    /// fraction such as 0.0001; a guessed serial is valid with at most that probability.
    #[schema(value_type = Option<String>, example = "1/10000")]
    density: Option<String>,
}

/// Body of `POST /generate_sn`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code_model": "0111", "number": 1, "count": 10}))]
#[allow(dead_code)]
pub struct GenerateBody {
    /// Product model code.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$", example = "0111")]
    code_model: String,
    /// First number; omitted or null = the next free range of the model.
    #[schema(minimum = 0, nullable)]
    number: Option<u64>,
    /// How many serials (at most `MAX_COUNT`).
    #[schema(minimum = 1, example = 10)]
    count: u64,
    /// Omitted: the model's scheme (width 8, no check digit for a new model). Each field
    /// given must equal the model's scheme (else 422 `format_mismatch`).
    format: Option<SchemeDoc>,
}
