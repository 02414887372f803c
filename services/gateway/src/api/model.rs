//! Models, their schemes and the ranges they issued: `/models`, `/ledger`,
//! `/serials/{serial}`.

use std::collections::BTreeMap;

use common::serial::keys::key_id_text;
use common::serial::{CheckDigit, Order};
use common::Format;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schema::{CheckDigitDoc, OrderDoc};

/// A model's scheme as `GET /models` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemeView {
    #[schema(value_type = CheckDigitDoc)]
    pub check_digit: CheckDigit,
    /// Random order: the share of the width's numbers ever issued, as `1/N`.
    pub density: Option<String>,
    /// Random order: the id of the master key (8 hex digits).
    pub key_id: Option<String>,
    #[schema(value_type = OrderDoc)]
    pub order: Order,
    pub width: u8,
}

impl From<Format> for SchemeView {
    fn from(s: Format) -> SchemeView {
        SchemeView {
            check_digit: s.check_digit,
            density: s.one_in.map(|n| format!("1/{n}")),
            key_id: s.key_id.map(|k| key_id_text(k.get())),
            order: s.order,
            width: s.width,
        }
    }
}

/// A model: its scheme, what it issued and what is left.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelBody {
    pub code_model: String,
    /// Numbers issued.
    pub issued: u64,
    /// Where the next automatic range starts looking.
    pub next_automatic: u64,
    /// `GET /models/{code_model}` only: `cursor` of the next page of ranges.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub next_cursor: Option<Option<u64>>,
    /// Issued ranges.
    pub range_count: u64,
    /// `GET /models/{code_model}` only: a page of issued ranges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<IssuedRange>>,
    /// Numbers still free at the scheme's width.
    pub remaining: Option<u64>,
    /// Null until the model is declared or first used.
    pub scheme: Option<SchemeView>,
}

impl ModelBody {
    /// A model nothing was issued to yet, with the scheme it was declared with, if any.
    pub fn unused(code_model: String, scheme: Option<SchemeView>) -> ModelBody {
        ModelBody {
            code_model,
            issued: 0,
            next_automatic: 1,
            next_cursor: None,
            range_count: 0,
            ranges: None,
            remaining: None,
            scheme,
        }
    }
}

/// `GET /models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelBody>,
}

/// Numbers `first..=last` issued to a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedRange {
    pub first: u64,
    pub last: u64,
    pub task_id: Uuid,
}

impl From<&common::ledger::Range> for IssuedRange {
    fn from(r: &common::ledger::Range) -> IssuedRange {
        IssuedRange {
            first: r.first,
            last: r.last,
            task_id: r.task,
        }
    }
}

/// `GET /ledger`: issued ranges per model.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerBody {
    pub models: BTreeMap<String, Vec<IssuedRange>>,
}

/// `GET /serials/{serial}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SerialInfo {
    pub code_model: String,
    /// When the range holding it was reserved (RFC 3339).
    pub issued_at: Option<String>,
    pub number: u64,
    pub serial: String,
    pub task_id: Uuid,
}
