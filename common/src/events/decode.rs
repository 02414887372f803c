//! Reading an event in one pass over its bytes.
//!
//! `data` is typed by the envelope's `type`. Every event this system writes puts
//! `specversion` and `type` before `data`, so `data` is decoded straight into its struct as
//! the parser reaches it: a 10,000-serial batch is scanned once, not once to find where `data`
//! ends and again to read it. An event with `data` first is still read, by keeping `data` as
//! raw JSON until the type is known.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{types, DecodeError, Event, EventData, SerialsGenerated, SPEC_VERSION};

/// Decodes one event; `serials: false` leaves a generated batch's serials empty.
pub(super) fn event(bytes: &[u8], serials: bool) -> Result<Event, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let env = de.deserialize_map(EnvelopeVisitor { serials })?;
    de.end()?;
    if env.specversion != SPEC_VERSION {
        return Err(DecodeError::SpecVersion(env.specversion.into_owned()));
    }
    let data = match (env.data, kind_of(&env.ty)) {
        (Data::Decoded(data), _) => data,
        (Data::Raw(raw), Some(kind)) => DataSeed { kind, serials }
            .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))?,
        (_, _) => return Err(DecodeError::UnknownType(env.ty.into_owned())),
    };
    Ok(Event {
        id: env.id,
        source: env.source,
        time: env.time,
        traceparent: env.traceparent,
        data,
    })
}

/// The event types, as `data` is decoded by them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Requested,
    Reserved,
    Declared,
    Generated,
    Completed,
    Failed,
}

fn kind_of(ty: &str) -> Option<Kind> {
    Some(match ty {
        types::REQUESTED => Kind::Requested,
        types::RESERVED => Kind::Reserved,
        types::DECLARED => Kind::Declared,
        types::GENERATED => Kind::Generated,
        types::COMPLETED => Kind::Completed,
        types::FAILED => Kind::Failed,
        _ => return None,
    })
}

/// The envelope members read; the others (`subject`, `datacontenttype`, extensions) are
/// skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Member {
    Specversion,
    Id,
    Source,
    Type,
    Time,
    Traceparent,
    Data,
    #[serde(other)]
    Other,
}

struct Envelope<'de> {
    specversion: Cow<'de, str>,
    id: String,
    source: String,
    ty: Cow<'de, str>,
    time: OffsetDateTime,
    traceparent: Option<String>,
    data: Data<'de>,
}

enum Data<'de> {
    /// Read as it was reached, `type` being known by then.
    Decoded(EventData),
    /// Reached before `type`: read once the type is known.
    Raw(&'de RawValue),
    /// Skipped for an unsupported `specversion` or an unknown `type`, both reported after.
    Skipped,
}

struct EnvelopeVisitor {
    serials: bool,
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut specversion: Option<Cow<'de, str>> = None;
        let mut id = None;
        let mut source = None;
        let mut ty: Option<Cow<'de, str>> = None;
        let mut time = None;
        let mut traceparent = None;
        let mut data = None;
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Specversion => {
                    once(&mut specversion, "specversion", map.next_value::<Text>()?.0)?
                }
                Member::Id => once(&mut id, "id", map.next_value()?)?,
                Member::Source => once(&mut source, "source", map.next_value()?)?,
                Member::Type => once(&mut ty, "type", map.next_value::<Text>()?.0)?,
                Member::Time => once(&mut time, "time", map.next_value::<Rfc3339>()?.0)?,
                Member::Traceparent => once(&mut traceparent, "traceparent", map.next_value()?)?,
                Member::Data => {
                    let value = match (specversion.as_deref(), ty.as_deref().map(kind_of)) {
                        (Some(SPEC_VERSION), Some(Some(kind))) => {
                            Data::Decoded(map.next_value_seed(DataSeed {
                                kind,
                                serials: self.serials,
                            })?)
                        }
                        (Some(_), Some(_)) => {
                            map.next_value::<IgnoredAny>()?;
                            Data::Skipped
                        }
                        _ => Data::Raw(map.next_value()?),
                    };
                    once(&mut data, "data", value)?;
                }
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            specversion: specversion.ok_or_else(|| de::Error::missing_field("specversion"))?,
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            source: source.ok_or_else(|| de::Error::missing_field("source"))?,
            ty: ty.ok_or_else(|| de::Error::missing_field("type"))?,
            time: time.ok_or_else(|| de::Error::missing_field("time"))?,
            traceparent: traceparent.flatten(),
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

/// Stores a member's value, refusing a second one as the derived decoders do.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

/// The `data` of an event of `kind`.
struct DataSeed {
    kind: Kind,
    serials: bool,
}

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = EventData;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventData, D::Error> {
        Ok(match self.kind {
            Kind::Requested => EventData::Requested(Deserialize::deserialize(d)?),
            Kind::Reserved => EventData::Reserved(Deserialize::deserialize(d)?),
            Kind::Declared => EventData::Declared(Deserialize::deserialize(d)?),
            Kind::Generated if self.serials => EventData::Generated(Deserialize::deserialize(d)?),
            Kind::Generated => {
                let s = GeneratedSummary::deserialize(d)?;
                EventData::Generated(SerialsGenerated {
                    task_id: s.task_id,
                    code_model: s.code_model,
                    batch: s.batch,
                    first_number: s.first_number,
                    count: s.count,
                    serials: Vec::new(),
                })
            }
            Kind::Completed => EventData::Completed(Deserialize::deserialize(d)?),
            Kind::Failed => EventData::Failed(Deserialize::deserialize(d)?),
        })
    }
}

/// `sn.serials.generated.v1` data as a fold reads it: everything but the serials themselves.
#[derive(Deserialize)]
struct GeneratedSummary {
    task_id: Uuid,
    code_model: String,
    batch: u64,
    first_number: u64,
    count: u64,
    #[allow(dead_code)]
    serials: IgnoredAny,
}

#[derive(Deserialize)]
struct Rfc3339(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

/// A string borrowed from the input, or owned when it had escapes to undo.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }

        d.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::Format;

    fn generated() -> Event {
        Event::new(
            "/sn/generator",
            EventData::Generated(SerialsGenerated {
                task_id: Uuid::new_v4(),
                code_model: "0111".into(),
                batch: 4,
                first_number: 99,
                count: 2,
                serials: vec!["011100000099".into(), "011100000100".into()],
            }),
        )
        .with_traceparent(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        ))
    }

    /// The event's JSON with its members in the order given (the wire order puts `data` last).
    fn reordered(ev: &Event, order: &[&str]) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_slice(&ev.to_json()).unwrap();
        let members: Vec<String> = order.iter().map(|k| format!("{:?}:{}", k, v[*k])).collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    }

    const DATA_FIRST: &[&str] = &[
        "data",
        "traceparent",
        "time",
        "type",
        "subject",
        "id",
        "source",
        "specversion",
    ];

    #[test]
    fn data_before_type_decodes_as_in_wire_order() {
        let ev = generated();
        let bytes = reordered(&ev, DATA_FIRST);

        let full = Event::from_json(&bytes).unwrap();
        let light = Event::from_json_without_serials(&bytes).unwrap();

        assert_eq!(full, ev);
        assert_eq!(
            light,
            Event::from_json_without_serials(&ev.to_json()).unwrap()
        );
        let EventData::Generated(g) = &light.data else {
            panic!("not a batch")
        };
        assert!(g.serials.is_empty());
        assert_eq!((g.batch, g.count), (4, 2));
    }

    #[test]
    fn every_kind_round_trips_with_escapes_in_the_envelope() {
        let task_id = Uuid::new_v4();
        let failed = Event::new(
            "/sn/\"gen\"",
            EventData::Failed(super::super::TaskFailed {
                task_id,
                code_model: "0111".into(),
                code: "internal".into(),
                message: "line\nbreak".into(),
            }),
        );
        let json = String::from_utf8(failed.to_json()).unwrap();
        // `1.0` and the type written with escapes must still be recognised.
        let escaped = json
            .replace(r#""specversion":"1.0""#, r#""specversion":"1\u002e0""#)
            .replace(r#""type":"sn.task"#, r#""type":"sn\u002etask"#);
        assert_ne!(escaped, json);

        assert_eq!(Event::from_json(escaped.as_bytes()).unwrap(), failed);
        let reserved = Event::new(
            "/sn/generator",
            EventData::Reserved(super::super::RangeReserved {
                task_id,
                code_model: "0111".into(),
                first: 1,
                last: 10,
                scheme: Some(Format::default()),
                automatic: true,
            }),
        );
        assert_eq!(Event::from_json(&reserved.to_json()).unwrap(), reserved);
        let declared = Event::new(
            "/sn/gateway",
            EventData::Declared(super::super::SchemeDeclared {
                code_model: "0111".into(),
                scheme: Format::default(),
            }),
        );
        let json: serde_json::Value = serde_json::from_slice(&declared.to_json()).unwrap();
        assert_eq!(json["subject"], "0111");
        assert_eq!(json["type"], types::DECLARED);
        assert_eq!(declared.nats_subject(), "sn.0111.reserved");
        assert_eq!(Event::from_json(&declared.to_json()).unwrap(), declared);
        // A reservation written before schemes and the automatic flag existed.
        let mut old: serde_json::Value = serde_json::from_slice(&reserved.to_json()).unwrap();
        let data = old["data"].as_object_mut().unwrap();
        data.remove("scheme");
        data.remove("automatic");
        let old = old.to_string();
        let EventData::Reserved(r) = Event::from_json(old.as_bytes()).unwrap().data else {
            panic!("not a reservation")
        };
        assert_eq!((r.scheme, r.automatic), (None, true));
        let requested = Event::new(
            "/sn/gateway",
            EventData::Requested(super::super::GenerateRequested {
                task_id,
                code_model: "0111".into(),
                number: None,
                count: 10,
                format: Default::default(),
                requested_at: OffsetDateTime::UNIX_EPOCH,
                idempotency_key: Some("k".into()),
            }),
        );
        assert_eq!(Event::from_json(&requested.to_json()).unwrap(), requested);
    }

    #[test]
    fn envelope_errors_are_reported_in_either_member_order() {
        let ev = generated();
        let wire = String::from_utf8(ev.to_json()).unwrap();
        let data_first = String::from_utf8(reordered(&ev, DATA_FIRST)).unwrap();
        for json in [wire, data_first] {
            let unknown = json.replace(types::GENERATED, "sn.nope.v1");
            let old = json.replace(r#""specversion":"1.0""#, r#""specversion":"0.3""#);
            let no_id = json.replace(r#""id":"#, r#""not_id":"#);
            let twice = json.replacen(r#""id":"#, r#""id":"x","id":"#, 1);
            let bad_data = json.replace(r#""count":2"#, r#""count":"two""#);

            assert!(matches!(
                Event::from_json(unknown.as_bytes()),
                Err(DecodeError::UnknownType(t)) if t == "sn.nope.v1"
            ));
            assert!(matches!(
                Event::from_json_without_serials(old.as_bytes()),
                Err(DecodeError::SpecVersion(v)) if v == "0.3"
            ));
            for bad in [no_id, twice, bad_data] {
                assert!(matches!(
                    Event::from_json(bad.as_bytes()),
                    Err(DecodeError::Json(_))
                ));
                assert!(Event::from_json_without_serials(bad.as_bytes()).is_err());
            }
            assert!(Event::from_json(format!("{json} x").as_bytes()).is_err());
        }
    }
}
