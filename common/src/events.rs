//! The events on the `SN` stream: CloudEvents 1.0, structured JSON mode.
//!
//! Event ids are derived from the task id, the event type and the batch index, so a publish
//! retried after a crash carries the same `Nats-Msg-Id` and every fold can drop a repeat.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::serial::{Format, FormatRequest};
use crate::subjects::{self, Kind};

mod batch;
mod decode;

pub use batch::{write_serials, BorrowedBatch, GeneratedBatch};

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// CloudEvents `type` values.
pub mod types {
    pub const REQUESTED: &str = "sn.generate.requested.v1";
    pub const RESERVED: &str = "sn.range.reserved.v1";
    pub const DECLARED: &str = "sn.model.declared.v1";
    pub const GENERATED: &str = "sn.serials.generated.v1";
    pub const COMPLETED: &str = "sn.task.completed.v1";
    pub const FAILED: &str = "sn.task.failed.v1";
}

/// Machine-readable failure codes carried by `sn.task.failed.v1`.
pub mod codes {
    pub const RANGE_CONFLICT: &str = "range_conflict";
    pub const RANGE_EXHAUSTED: &str = "range_exhausted";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const INTERNAL: &str = "internal";
    pub const FORMAT_MISMATCH: &str = "format_mismatch";
    pub const NAMESPACE_CONFLICT: &str = "namespace_conflict";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateRequested {
    pub task_id: Uuid,
    pub code_model: String,
    pub number: Option<u64>,
    pub count: u64,
    /// The fields of the format the request named; the model's scheme gives the rest.
    /// Absent or null: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub format: FormatRequest,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeReserved {
    pub task_id: Uuid,
    pub code_model: String,
    pub first: u64,
    pub last: u64,
    /// The model's scheme the numbers are written in (absent in reservations written before
    /// schemes were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Format>,
    /// Reserved for a request without a first number (the model's next free range). Absent
    /// in older reservations, which were all read as automatic.
    #[serde(default = "yes")]
    pub automatic: bool,
}

fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}

/// A model's scheme declared before its first use (`PUT /models/{code_model}`). Published on
/// the model's ledger subject, so it is ordered with the model's reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemeDeclared {
    pub code_model: String,
    pub scheme: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialsGenerated {
    pub task_id: Uuid,
    pub code_model: String,
    pub batch: u64,
    pub first_number: u64,
    /// How many serials this batch carries (`serials.len()`), so a fold can count them
    /// without reading them.
    pub count: u64,
    /// Empty when decoded with [`Event::from_json_without_serials`].
    #[serde(default)]
    pub serials: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub task_id: Uuid,
    pub code_model: String,
    pub count: u64,
    pub first_serial: String,
    pub last_serial: String,
    pub batches: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub task_id: Uuid,
    pub code_model: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    Requested(GenerateRequested),
    Reserved(RangeReserved),
    Declared(SchemeDeclared),
    Generated(SerialsGenerated),
    Completed(TaskCompleted),
    Failed(TaskFailed),
}

impl EventData {
    /// The kind of subject the event goes on (a declaration goes on the ledger subject).
    pub fn kind(&self) -> Kind {
        match self {
            EventData::Requested(_) => Kind::Requested,
            EventData::Reserved(_) | EventData::Declared(_) => Kind::Reserved,
            EventData::Generated(_) => Kind::Generated,
            EventData::Completed(_) => Kind::Completed,
            EventData::Failed(_) => Kind::Failed,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::Declared(_) => types::DECLARED,
            other => type_name(other.kind()),
        }
    }

    /// The task the event belongs to; `None` for a declaration, which belongs to its model.
    pub fn task_id(&self) -> Option<Uuid> {
        Some(match self {
            EventData::Requested(d) => d.task_id,
            EventData::Reserved(d) => d.task_id,
            EventData::Declared(_) => return None,
            EventData::Generated(d) => d.task_id,
            EventData::Completed(d) => d.task_id,
            EventData::Failed(d) => d.task_id,
        })
    }

    pub fn code_model(&self) -> &str {
        match self {
            EventData::Requested(d) => &d.code_model,
            EventData::Reserved(d) => &d.code_model,
            EventData::Declared(d) => &d.code_model,
            EventData::Generated(d) => &d.code_model,
            EventData::Completed(d) => &d.code_model,
            EventData::Failed(d) => &d.code_model,
        }
    }

    /// The deterministic event id.
    pub fn event_id(&self) -> String {
        match self {
            EventData::Generated(d) => generated_id(d.task_id, d.batch),
            // A task may reserve again when an earlier overlapping reservation wins in stream
            // order; each range gets its own id so the new one is not dropped as a repeat.
            EventData::Reserved(d) => format!("{}:reserved:{}", d.task_id, d.first),
            // Another scheme declared for the model is another event, void in the fold.
            EventData::Declared(d) => format!(
                "{}:declared:{}:{}:{}:{}:{}",
                d.code_model,
                d.scheme.width,
                d.scheme.check_digit.as_str(),
                d.scheme.order.as_str(),
                d.scheme
                    .key_id
                    .map_or(String::new(), |k| format!("{k:08x}")),
                d.scheme.one_in.map_or(String::new(), |n| n.to_string()),
            ),
            other => format!(
                "{}:{}",
                other.task_id().unwrap_or_default(),
                other.kind().token()
            ),
        }
    }
}

pub fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Requested => types::REQUESTED,
        Kind::Reserved => types::RESERVED,
        Kind::Generated => types::GENERATED,
        Kind::Completed => types::COMPLETED,
        Kind::Failed => types::FAILED,
    }
}

pub fn generated_id(task_id: Uuid, batch: u64) -> String {
    format!("{task_id}:generated:{batch}")
}

/// One CloudEvent. `subject` (the task id) and `type` follow from `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub time: OffsetDateTime,
    pub traceparent: Option<String>,
    pub data: EventData,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot decode event: unknown type {0:?}")]
    UnknownType(String),
    #[error("cannot decode event: specversion {0:?} is not 1.0")]
    SpecVersion(String),
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    subject: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    data: DataOut<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DataOut<'a> {
    Requested(&'a GenerateRequested),
    Reserved(&'a RangeReserved),
    Declared(&'a SchemeDeclared),
    Generated(&'a SerialsGenerated),
    Completed(&'a TaskCompleted),
    Failed(&'a TaskFailed),
}

impl Event {
    /// A new event stamped now, with its deterministic id.
    pub fn new(source: &str, data: EventData) -> Event {
        Event {
            id: data.event_id(),
            source: source.to_owned(),
            time: OffsetDateTime::now_utc(),
            traceparent: None,
            data,
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Event {
        self.traceparent = traceparent;
        self
    }

    pub fn type_name(&self) -> &'static str {
        self.data.type_name()
    }

    pub fn task_id(&self) -> Option<Uuid> {
        self.data.task_id()
    }

    /// The NATS subject this event is published on.
    pub fn nats_subject(&self) -> String {
        let model = self.data.code_model();
        match (self.data.kind(), self.task_id()) {
            (Kind::Reserved, _) | (_, None) => subjects::reserved(model),
            (kind, Some(task)) => subjects::task(kind, model, task),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let data = match &self.data {
            EventData::Requested(d) => DataOut::Requested(d),
            EventData::Reserved(d) => DataOut::Reserved(d),
            EventData::Declared(d) => DataOut::Declared(d),
            EventData::Generated(d) => DataOut::Generated(d),
            EventData::Completed(d) => DataOut::Completed(d),
            EventData::Failed(d) => DataOut::Failed(d),
        };
        // CloudEvents `subject`: the task, or for a declaration the model.
        let task = self.task_id().map(|t| t.to_string());
        let out = EnvelopeOut {
            specversion: SPEC_VERSION,
            id: &self.id,
            source: &self.source,
            ty: self.type_name(),
            subject: task.as_deref().unwrap_or(self.data.code_model()),
            time: self.time,
            datacontenttype: DATA_CONTENT_TYPE,
            traceparent: self.traceparent.as_deref(),
            data,
        };
        // Serialising plain structs into a Vec cannot fail.
        serde_json::to_vec(&out).expect("events serialise")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
        decode::event(bytes, true)
    }

    /// Decodes an event but skips the serial strings of a generated batch (left empty): what
    /// a fold needs, at a fraction of the cost.
    pub fn from_json_without_serials(bytes: &[u8]) -> Result<Event, DecodeError> {
        decode::event(bytes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested() -> GenerateRequested {
        GenerateRequested {
            task_id: Uuid::new_v4(),
            code_model: "0111".into(),
            number: Some(1),
            count: 10,
            format: Format::default().into(),
            requested_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            idempotency_key: None,
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let ev = Event::new("/sn/gateway", EventData::Requested(requested())).with_traceparent(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        let back = Event::from_json(&ev.to_json()).unwrap();
        assert_eq!(back, ev);
        let v: serde_json::Value = serde_json::from_slice(&ev.to_json()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], types::REQUESTED);
        assert_eq!(v["subject"], ev.task_id().unwrap().to_string());
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["format"]["check_digit"], "none");
        assert_eq!(
            ev.nats_subject(),
            format!("sn.0111.requested.{}", ev.task_id().unwrap())
        );
    }

    #[test]
    fn ids_are_deterministic() {
        let r = requested();
        let a = Event::new("a", EventData::Requested(r.clone()));
        let b = Event::new("b", EventData::Requested(r.clone()));
        assert_eq!(a.id, b.id);
        assert_eq!(a.id, format!("{}:requested", r.task_id));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Event::from_json(b"{").is_err());
        assert!(Event::from_json(br#"{"specversion":"1.0","id":"x","source":"s","type":"nope","time":"2026-01-01T00:00:00Z","data":{}}"#).is_err());
        assert!(Event::from_json(br#"{"specversion":"0.3","id":"x","source":"s","type":"sn.task.failed.v1","time":"2026-01-01T00:00:00Z","data":{}}"#).is_err());
    }
}
