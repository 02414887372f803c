//! What a valid request for serials is. The gateway rejects bad input with these checks before
//! anything reaches the stream; the generator runs the same checks again, as the authority.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serial::{CheckDigit, Format, MAX_WIDTH};

/// A request for `count` serials of `code_model`, starting at `number` (or the next free one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerateSpec {
    pub code_model: String,
    pub number: Option<u64>,
    pub count: u64,
    pub format: Format,
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
            None | Some(Value::Null) => Format::default(),
            Some(Value::Object(f)) => {
                let width = match f.get("width") {
                    None | Some(Value::Null) => Format::default().width,
                    Some(v) => v
                        .as_u64()
                        .filter(|w| (1..=u64::from(MAX_WIDTH)).contains(w))
                        .map(|w| w as u8)
                        .ok_or_else(|| {
                            err(
                                "format.width",
                                format!("must be an integer from 1 to {MAX_WIDTH}"),
                            )
                        })?,
                };
                let check_digit = match f.get("check_digit") {
                    None | Some(Value::Null) => CheckDigit::None,
                    Some(Value::String(s)) => CheckDigit::parse(s).ok_or_else(|| {
                        err("format.check_digit", "must be one of none, gs1, luhn")
                    })?,
                    Some(_) => {
                        return Err(err("format.check_digit", "must be one of none, gs1, luhn"))
                    }
                };
                Format { width, check_digit }
            }
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

    /// The rules every request obeys, wherever it came from.
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
        if !(1..=MAX_WIDTH).contains(&self.format.width) {
            return Err(err(
                "format.width",
                format!("must be an integer from 1 to {MAX_WIDTH}"),
            ));
        }
        if self.format.check_digit != CheckDigit::None
            && !self.code_model.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err("format.check_digit", "needs an all-digit code_model"));
        }
        let capacity = self.format.capacity();
        match self.number {
            Some(n) if u128::from(n) + u128::from(self.count) > capacity => Err(err(
                "number",
                format!(
                    "range {n}..={} does not fit in {} digits",
                    u128::from(n) + u128::from(self.count) - 1,
                    self.format.width
                ),
            )),
            None if u128::from(self.count) > capacity => Err(err(
                "count",
                format!(
                    "{} serials do not fit in {} digits",
                    self.count, self.format.width
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<GenerateSpec, FieldError> {
        GenerateSpec::from_json(&body, 10_000_000)
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
                format: Format::default()
            }
        );
        let spec = check(json!({"code_model":"A_b-9","count":1,"format":{"width":3}})).unwrap();
        assert_eq!(spec.number, None);
        assert_eq!(spec.format.width, 3);
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
    }
}
