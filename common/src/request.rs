//! What a valid request for serials is. The gateway rejects bad input with these checks before
//! anything reaches the stream; the generator runs the same checks again, as the authority.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serial::{CheckDigit, Format, FormatRequest, MAX_WIDTH};

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
    /// width.
    pub fn validate_in(&self, scheme: Format) -> Result<(), FieldError> {
        let capacity = scheme.capacity();
        match self.number {
            Some(n) if u128::from(n) + u128::from(self.count) > capacity => Err(err(
                "number",
                format!(
                    "range {n}..={} does not fit in {} digits",
                    u128::from(n) + u128::from(self.count) - 1,
                    scheme.width
                ),
            )),
            None if u128::from(self.count) > capacity => Err(err(
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
    Ok(Format { width, check_digit })
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
