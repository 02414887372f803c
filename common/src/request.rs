//! What a valid request for serials is. The gateway rejects bad input with these checks before
//! anything reaches the stream; the generator runs the same checks again, as the authority.

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serial::ff1;
use crate::serial::{CheckDigit, Format, FormatRequest, Order, MAX_WIDTH};

/// The default limit on `count` (the `MAX_COUNT` setting of both services).
pub const DEFAULT_MAX_COUNT: u64 = 10_000_000;

/// A request for `count` serials of `code_model`, starting at `number` (or the next free one),
/// in the model's scheme (`format` names the fields the client gave).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerateSpec {
    pub code_model: String,
    pub number: Option<u64>,
    pub count: u64,
    pub format: FormatRequest,
}

/// A rejected field: `field` names it the way the client spelled it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// True for `[A-Za-z0-9_-]{1,32}`.
pub fn valid_model(code: &str) -> bool {
    (1..=32).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl GenerateSpec {
    /// Reads and checks a request body already parsed as JSON. Unknown fields are ignored, as
    /// the old API did.
    pub fn from_json(body: &Value, max_count: u64) -> Result<GenerateSpec, FieldError> {
        let obj = body
            .as_object()
            .ok_or_else(|| err("body", "must be a JSON object"))?;
        let code_model = match obj.get("code_model") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(err("code_model", "must be a string")),
            None => return Err(err("code_model", "is required")),
        };
        let count = match obj.get("count") {
            None | Some(Value::Null) => return Err(err("count", "is required")),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| err("count", "must be a positive integer"))?,
        };
        let number = match obj.get("number") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| err("number", "must be a non-negative integer or null"))?,
            ),
        };
        let format = match obj.get("format") {
            None | Some(Value::Null) => FormatRequest::default(),
            Some(Value::Object(f)) => FormatRequest {
                width: match f.get("width") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(parse_width(v, "format.width")?),
                },
                check_digit: match f.get("check_digit") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(parse_check_digit(v, "format.check_digit")?),
                },
                order: match f.get("order") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(parse_order(v, "format.order")?),
                },
                one_in: match f.get("density") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(parse_density(v, "format.density")?),
                },
            },
            Some(_) => return Err(err("format", "must be an object")),
        };
        let spec = GenerateSpec {
            code_model,
            number,
            count,
            format,
        };
        spec.validate(max_count)?;
        Ok(spec)
    }

    /// The rules every request obeys, wherever it came from, whatever the model's scheme.
    pub fn validate(&self, max_count: u64) -> Result<(), FieldError> {
        if !valid_model(&self.code_model) {
            return Err(err(
                "code_model",
                "must be 1 to 32 characters of A-Z a-z 0-9 _ -",
            ));
        }
        if self.count == 0 {
            return Err(err("count", "must be a positive integer"));
        }
        if self.count > max_count {
            return Err(err("count", format!("must be at most {max_count}")));
        }
        if let Some(w) = self.format.width {
            if !(1..=MAX_WIDTH).contains(&w) {
                return Err(err(
                    "format.width",
                    format!("must be an integer from 1 to {MAX_WIDTH}"),
                ));
            }
        }
        if self
            .format
            .check_digit
            .is_some_and(|c| c != CheckDigit::None)
        {
            check_digit_model(&self.code_model, "format.check_digit")?;
        }
        if let Some(n) = self.number {
            if u128::from(n) + u128::from(self.count) - 1 > u128::from(u64::MAX) {
                return Err(err(
                    "number",
                    format!(
                        "range {n} + {} serials goes past the largest number, {}",
                        self.count,
                        u64::MAX
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The rules that depend on the scheme the request is written in: the range fits its
    /// width (and its density).
    pub fn validate_in(&self, scheme: Format) -> Result<(), FieldError> {
        check_scheme(scheme, "format")?;
        let capacity = scheme.capacity();
        let end = u128::from(self.number.unwrap_or(0)) + u128::from(self.count);
        if let (Some(one_in), true) = (scheme.one_in.map(NonZeroU64::get), end > capacity) {
            let field = if self.number.is_some() {
                "number"
            } else {
                "count"
            };
            return Err(err(
                field,
                format!(
                    "numbers up to {} at 1 in {one_in} issued need a width of {} digits, not {}",
                    end - 1,
                    width_for(end, one_in),
                    scheme.width
                ),
            ));
        }
        match self.number {
            Some(n) if u128::from(n) + u128::from(self.count) > capacity => Err(err(
                "number",
                format!(
                    "range {n}..={} does not fit in {} digits",
                    u128::from(n) + u128::from(self.count) - 1,
                    scheme.width
                ),
            )),
            // Automatic ranges start at 1.
            None if u128::from(self.count) >= capacity => Err(err(
                "count",
                format!(
                    "{} serials do not fit in {} digits",
                    self.count, scheme.width
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Reads a model's scheme (`PUT /models/{code_model}`): `width` and `check_digit`, each
/// optional (defaults 8 and none).
pub fn scheme_from_json(code_model: &str, body: &Value) -> Result<Format, FieldError> {
    if !valid_model(code_model) {
        return Err(err(
            "code_model",
            "must be 1 to 32 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let obj = body
        .as_object()
        .ok_or_else(|| err("body", "must be a JSON object"))?;
    let d = Format::default();
    let width = match obj.get("width") {
        None | Some(Value::Null) => d.width,
        Some(v) => parse_width(v, "width")?,
    };
    let check_digit = match obj.get("check_digit") {
        None | Some(Value::Null) => d.check_digit,
        Some(v) => parse_check_digit(v, "check_digit")?,
    };
    if check_digit != CheckDigit::None {
        check_digit_model(code_model, "check_digit")?;
    }
    let order = match obj.get("order") {
        None | Some(Value::Null) => d.order,
        Some(v) => parse_order(v, "order")?,
    };
    let one_in = match obj.get("density") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_density(v, "density")?),
    };
    let scheme = Format {
        width,
        check_digit,
        order,
        key_id: None,
        one_in,
    };
    check_scheme(scheme, "")?;
    Ok(scheme)
}

/// What a scheme needs of itself: a random order 6 to 19 digits wide (FF1's smallest domain,
/// and numbers that fit 64 bits), a density only with a random order and with room for at
/// least one number. `prefix` is where the fields sit (`format` in a request).
pub fn check_scheme(scheme: Format, prefix: &str) -> Result<(), FieldError> {
    let name = |field: &'static str| -> &'static str {
        match (prefix, field) {
            ("", f) => f,
            (_, "width") => "format.width",
            (_, "order") => "format.order",
            _ => "format.density",
        }
    };
    if scheme.order == Order::Random && !(ff1::MIN_DIGITS..=ff1::MAX_DIGITS).contains(&scheme.width)
    {
        return Err(err(
            name("width"),
            format!(
                "the random order needs a width of {} to {} digits",
                ff1::MIN_DIGITS,
                ff1::MAX_DIGITS
            ),
        ));
    }
    if let Some(one_in) = scheme.one_in.map(NonZeroU64::get) {
        if scheme.order != Order::Random {
            return Err(err(name("density"), "needs the random order"));
        }
        if scheme.capacity() == 0 {
            return Err(err(
                name("width"),
                format!(
                    "1 in {one_in} issued needs a width of at least {} digits",
                    width_for(1, one_in)
                ),
            ));
        }
    }
    Ok(())
}

/// The smallest width whose numbers, 1 in `one_in` of them issued, reach `numbers`.
fn width_for(numbers: u128, one_in: u64) -> u32 {
    let need = numbers.saturating_mul(u128::from(one_in));
    (1..=38)
        .find(|w| 10u128.checked_pow(*w).is_some_and(|c| c >= need))
        .unwrap_or(39)
}

fn parse_order(v: &Value, field: &'static str) -> Result<Order, FieldError> {
    v.as_str()
        .and_then(Order::parse)
        .ok_or_else(|| err(field, "must be one of sequential, random"))
}

/// `density`: the share of the width's numbers ever issued, as a number in (0, 1] or
/// `"1/N"`; returned as N ("1 in N").
fn parse_density(v: &Value, field: &'static str) -> Result<NonZeroU64, FieldError> {
    let bad = || err(field, "must be a fraction such as 0.0001 or \"1/10000\"");
    let one_in = match v {
        Value::String(s) => s
            .strip_prefix("1/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= 1_000_000_000_000_000_000)
            .ok_or_else(bad)?,
        Value::Number(n) => {
            let d = n
                .as_f64()
                .filter(|d| *d > 0.0 && *d <= 1.0)
                .ok_or_else(bad)?;
            let inverse = (1.0 / d).round();
            if inverse > 1e18 {
                return Err(bad());
            }
            inverse as u64
        }
        _ => return Err(bad()),
    };
    NonZeroU64::new(one_in).ok_or_else(bad)
}

fn parse_width(v: &Value, field: &'static str) -> Result<u8, FieldError> {
    v.as_u64()
        .filter(|w| (1..=u64::from(MAX_WIDTH)).contains(w))
        .map(|w| w as u8)
        .ok_or_else(|| err(field, format!("must be an integer from 1 to {MAX_WIDTH}")))
}

fn parse_check_digit(v: &Value, field: &'static str) -> Result<CheckDigit, FieldError> {
    v.as_str()
        .and_then(CheckDigit::parse)
        .ok_or_else(|| err(field, "must be one of none, gs1, luhn"))
}

fn check_digit_model(code_model: &str, field: &'static str) -> Result<(), FieldError> {
    if code_model.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(err(field, "needs an all-digit code_model"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parsed and checked as the gateway does for a model without a scheme yet.
    fn check(body: Value) -> Result<GenerateSpec, FieldError> {
        let spec = GenerateSpec::from_json(&body, 10_000_000)?;
        spec.validate_in(spec.format.or_default())?;
        Ok(spec)
    }

    #[test]
    fn old_body_is_accepted_with_defaults() {
        let spec = check(json!({"code_model":"0111","number":1,"count":10})).unwrap();
        assert_eq!(
            spec,
            GenerateSpec {
                code_model: "0111".into(),
                number: Some(1),
                count: 10,
                format: FormatRequest::default()
            }
        );
        let spec = check(json!({"code_model":"A_b-9","count":1,"format":{"width":3}})).unwrap();
        assert_eq!(spec.number, None);
        assert_eq!(spec.format.width, Some(3));
        assert_eq!(spec.format.check_digit, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"number":1,"count":1}), "code_model"),
            (json!({"code_model":"","count":1}), "code_model"),
            (json!({"code_model":"a.b","count":1}), "code_model"),
            (json!({"code_model":"x".repeat(33),"count":1}), "code_model"),
            (json!({"code_model":5,"count":1}), "code_model"),
            (json!({"code_model":"0111"}), "count"),
            (json!({"code_model":"0111","count":0}), "count"),
            (json!({"code_model":"0111","count":-3}), "count"),
            (json!({"code_model":"0111","count":1.5}), "count"),
            (json!({"code_model":"0111","count":10_000_001}), "count"),
            (json!({"code_model":"0111","count":1,"number":-1}), "number"),
            (
                json!({"code_model":"0111","count":1,"number":"1"}),
                "number",
            ),
            (
                json!({"code_model":"0111","count":1,"format":{"width":0}}),
                "format.width",
            ),
            (
                json!({"code_model":"0111","count":1,"format":{"width":21}}),
                "format.width",
            ),
            (
                json!({"code_model":"0111","count":1,"format":{"check_digit":"md5"}}),
                "format.check_digit",
            ),
            (
                json!({"code_model":"AB","count":1,"format":{"check_digit":"gs1"}}),
                "format.check_digit",
            ),
            (json!({"code_model":"0111","count":1,"format":7}), "format"),
            (
                json!({"code_model":"0111","number":99_999_999,"count":2}),
                "number",
            ),
            (
                json!({"code_model":"0111","count":11,"format":{"width":1}}),
                "count",
            ),
            (json!([1, 2]), "body"),
            (
                json!({"code_model":"X","number":u64::MAX - 1,"count":3,"format":{"width":20}}),
                "number",
            ),
            (
                json!({"code_model":"X","number":u64::MAX,"count":2}),
                "number",
            ),
        ];
        for (body, field) in cases {
            let e = check(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.field, field, "{body}");
        }
    }

    #[test]
    fn widest_range_fits_exactly() {
        assert!(check(json!({"code_model":"0111","number":99_999_990,"count":10})).is_ok());
        assert!(check(json!({"code_model":"9","number":0,"count":10,"format":{"width":1,"check_digit":"luhn"}})).is_ok());
        assert!(check(
            json!({"code_model":"X","number":u64::MAX - 2,"count":3,"format":{"width":20}})
        )
        .is_ok());
    }

    #[test]
    fn a_random_scheme_needs_its_width_and_a_density_its_order() {
        let f = scheme_from_json("0111", &json!({"order":"random","density":"1/10000"})).unwrap();
        assert_eq!(
            (f.order, f.one_in, f.width),
            (Order::Random, NonZeroU64::new(10_000), 8)
        );
        assert_eq!(f.capacity(), 10_000);
        let f = scheme_from_json("0111", &json!({"order":"random","density":0.001})).unwrap();
        assert_eq!(f.one_in, NonZeroU64::new(1000));
        for (body, field, says) in [
            (json!({"order":"random","width":5}), "width", "6 to 19"),
            (json!({"order":"random","width":20}), "width", "6 to 19"),
            (json!({"density":"1/10"}), "density", "random"),
            (
                json!({"order":"random","width":6,"density":"1/10000000"}),
                "width",
                "7 digits",
            ),
            (json!({"order":"shuffled"}), "order", "sequential, random"),
            (json!({"order":"random","density":2}), "density", "fraction"),
            (
                json!({"order":"random","density":"1/0"}),
                "density",
                "fraction",
            ),
        ] {
            let e = scheme_from_json("0111", &body).unwrap_err();
            assert_eq!(e.field, field, "{body}");
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
        // A request past what a sparse scheme issues names the width it would need.
        let spec = GenerateSpec::from_json(&json!({"code_model":"0111","count":20000}), 10_000_000)
            .unwrap();
        let sparse =
            scheme_from_json("0111", &json!({"order":"random","density":"1/10000"})).unwrap();
        let e = spec.validate_in(sparse).unwrap_err();
        assert!(e.message.contains("width of 9 digits"), "{}", e.message);
    }

    #[test]
    fn a_scheme_is_read_with_defaults_and_checked() {
        let f = scheme_from_json("0111", &json!({"check_digit":"gs1"})).unwrap();
        assert_eq!((f.width, f.check_digit), (8, CheckDigit::Gs1));
        assert_eq!(
            scheme_from_json("0111", &json!({})).unwrap(),
            Format::default()
        );
        for (model, body, field) in [
            ("AB", json!({"check_digit":"luhn"}), "check_digit"),
            ("0111", json!({"width":0}), "width"),
            ("0111", json!({"width":"8"}), "width"),
            ("0111", json!({"check_digit":"md5"}), "check_digit"),
            ("a.b", json!({}), "code_model"),
            ("0111", json!([]), "body"),
        ] {
            assert_eq!(
                scheme_from_json(model, &body).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }
}
