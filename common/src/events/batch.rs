//! The generated batch, the bulk of the stream, encoded and read on a fast path.
//!
//! [`GeneratedBatch::encode`] writes the same JSON as
//! [`Event::to_json`](super::Event::to_json) straight from the numbers, without building a
//! `String` per serial. [`BorrowedBatch::parse`] reads a batch's
//! serials as slices of the payload, for a download that only copies them out.

use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{generated_id, types, DecodeError, DATA_CONTENT_TYPE};
use crate::serial::SerialFormatter;

/// Everything needed to encode one generated batch straight from numbers, without building
/// a `String` per serial.
pub struct GeneratedBatch<'a> {
    pub source: &'a str,
    pub task_id: Uuid,
    pub code_model: &'a str,
    pub batch: u64,
    pub first_number: u64,
    pub count: u64,
    pub formatter: &'a SerialFormatter,
    pub traceparent: Option<&'a str>,
}

impl GeneratedBatch<'_> {
    /// The event id this batch is published under.
    pub fn id(&self) -> String {
        generated_id(self.task_id, self.batch)
    }

    /// Encodes the batch as the same JSON `Event::to_json` would give for it. Model codes and
    /// serials are `[A-Za-z0-9_-]`, so they are written without escaping; the serials go in
    /// as one range (`"a","b",...`), each made from the one before.
    ///
    /// Returns where the serials sit in `out` (the items between the array's brackets), so a
    /// log can keep the batch without them and write them again with [`write_serials`].
    pub fn encode(&self, time: OffsetDateTime, out: &mut Vec<u8>) -> std::ops::Range<usize> {
        use std::io::Write;
        let ts = time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"{{"specversion":"1.0","id":"{}","source":{},"type":"{}","subject":"{}","time":"{}","datacontenttype":"{}","#,
            self.id(),
            serde_json::Value::from(self.source),
            types::GENERATED,
            self.task_id,
            ts,
            DATA_CONTENT_TYPE,
        );
        if let Some(tp) = self.traceparent {
            let _ = write!(out, r#""traceparent":{},"#, serde_json::Value::from(tp));
        }
        let _ = write!(
            out,
            r#""data":{{"task_id":"{}","code_model":"{}","batch":{},"first_number":{},"count":{},"serials":["#,
            self.task_id, self.code_model, self.batch, self.first_number, self.count
        );
        let start = out.len();
        write_serials(self.formatter, self.first_number, self.count, out);
        let serials = start..out.len();
        out.extend_from_slice(b"]}}");
        serials
    }
}

/// Writes `count` serials from `first` on as the items of a JSON array (`"a","b",...`), the
/// way a generated event carries them.
pub fn write_serials(formatter: &SerialFormatter, first: u64, count: u64, out: &mut Vec<u8>) {
    if count > 0 {
        out.push(b'"');
        formatter.write_range(first, count, b"\",\"", out);
        out.push(b'"');
    }
}

/// A generated batch read without copying its serials: what a download streams out.
#[derive(Debug, Deserialize)]
pub struct BorrowedBatch<'a> {
    pub batch: u64,
    pub first_number: u64,
    #[serde(borrow)]
    pub serials: Vec<&'a str>,
}

impl<'a> BorrowedBatch<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<BorrowedBatch<'a>, DecodeError> {
        #[derive(Deserialize)]
        struct Outer<'a> {
            #[serde(rename = "type")]
            ty: &'a str,
            #[serde(borrow)]
            data: BorrowedBatch<'a>,
        }
        let outer: Outer<'a> = serde_json::from_slice(bytes)?;
        if outer.ty != types::GENERATED {
            return Err(DecodeError::UnknownType(outer.ty.to_owned()));
        }
        Ok(outer.data)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, EventData, SerialsGenerated};
    use super::*;
    use crate::serial::Format;

    #[test]
    fn fast_batch_encoding_matches_the_generic_one() {
        let task_id = Uuid::new_v4();
        let f = SerialFormatter::new("0111", Format::default());
        let batch = GeneratedBatch {
            source: "/sn/generator",
            task_id,
            code_model: "0111",
            batch: 2,
            first_number: 21,
            count: 3,
            formatter: &f,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        };
        let time = OffsetDateTime::now_utc();
        let mut buf = Vec::new();
        batch.encode(time, &mut buf);
        let ev = Event::from_json(&buf).unwrap();
        assert_eq!(ev.id, batch.id());
        assert_eq!(ev.time, time);
        let EventData::Generated(g) = &ev.data else {
            panic!("not a batch")
        };
        assert_eq!(g.serials, ["011100000021", "011100000022", "011100000023"]);
        assert_eq!((g.batch, g.first_number, g.count), (2, 21, 3));
        let light = Event::from_json_without_serials(&buf).unwrap();
        let EventData::Generated(g) = &light.data else {
            panic!("not a batch")
        };
        assert!(g.serials.is_empty());
        assert_eq!(g.count, 3);
    }

    #[test]
    fn fast_batch_encoding_is_byte_identical_to_the_generic_one() {
        let f = SerialFormatter::new(
            "0A_1",
            Format {
                width: 3,
                check_digit: crate::serial::CheckDigit::Luhn,
                ..Format::default()
            },
        );
        let batch = GeneratedBatch {
            source: "/sn/\"generator\"",
            task_id: Uuid::new_v4(),
            code_model: "0A_1",
            batch: 0,
            first_number: 97,
            count: 6,
            formatter: &f,
            traceparent: None,
        };
        let time = OffsetDateTime::now_utc();
        let mut fast = Vec::new();

        batch.encode(time, &mut fast);

        let generic = Event {
            id: batch.id(),
            source: batch.source.into(),
            time,
            traceparent: None,
            data: EventData::Generated(SerialsGenerated {
                task_id: batch.task_id,
                code_model: batch.code_model.into(),
                batch: 0,
                first_number: 97,
                count: 6,
                serials: (97..103).map(|n| f.to_string(n)).collect(),
            }),
        };
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(generic.to_json()).unwrap()
        );
    }

    #[test]
    fn a_borrowed_batch_reads_the_serials_json_gives_in_any_spelling() {
        let f = SerialFormatter::new("A-7", Format::default());
        let batch = GeneratedBatch {
            source: "/sn/generator",
            task_id: Uuid::new_v4(),
            code_model: "A-7",
            batch: 1,
            first_number: 99_999_998,
            count: 3,
            formatter: &f,
            traceparent: None,
        };
        let mut written = Vec::new();
        batch.encode(OffsetDateTime::now_utc(), &mut written);
        let b = BorrowedBatch::parse(&written).unwrap();
        assert_eq!(b.serials, ["A-799999998", "A-799999999", "A-7100000000"]);
        assert_eq!((b.batch, b.first_number), (1, 99_999_998));
        let other = |serials: &str| {
            format!(
                r#"{{"type":"{}","data":{{"batch":0,"first_number":1,"serials":{serials}}}}}"#,
                types::GENERATED
            )
        };
        for (serials, want) in [
            (r#"[]"#, vec![]),
            (r#"[ "a" , "b" ]"#, vec!["a", "b"]),
            (r#"["a","","b"]"#, vec!["a", "", "b"]),
            (r#"["a b","c"]"#, vec!["a b", "c"]),
        ] {
            let json = other(serials);
            assert_eq!(
                BorrowedBatch::parse(json.as_bytes()).unwrap().serials,
                want,
                "{serials}"
            );
        }
        // Serials are borrowed from the payload: one that would need unescaping is refused.
        assert!(BorrowedBatch::parse(other(r#"["a\",\"b"]"#).as_bytes()).is_err());
        assert!(BorrowedBatch::parse(other(r#"["a","b""#).as_bytes()).is_err());
    }
}
