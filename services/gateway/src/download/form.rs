//! The forms a download is rendered in: one serial per line, CSV `serial,number`, or NDJSON.

use axum::http::{header, HeaderMap};
use common::events::BorrowedBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Text,
    Csv,
    Ndjson,
}

impl Form {
    /// `?format=csv|ndjson|text` (for links, which cannot set headers) wins over `Accept`;
    /// any other `format` is refused (`None`) rather than quietly served as text.
    pub fn pick(format: Option<&str>, headers: &HeaderMap) -> Option<Form> {
        match format {
            Some("csv") => return Some(Form::Csv),
            Some("ndjson") => return Some(Form::Ndjson),
            Some("text") | Some("txt") => return Some(Form::Text),
            Some(_) => return None,
            None => {}
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Some(if accept.contains("text/csv") {
            Form::Csv
        } else if accept.contains("application/x-ndjson") {
            Form::Ndjson
        } else {
            Form::Text
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Form::Text => "text/plain; charset=utf-8",
            Form::Csv => "text/csv; charset=utf-8",
            Form::Ndjson => "application/x-ndjson",
        }
    }

    /// The file name extension of a download in this form.
    pub fn extension(self) -> &'static str {
        match self {
            Form::Text => "txt",
            Form::Csv => "csv",
            Form::Ndjson => "ndjson",
        }
    }

    /// What comes before the first serial.
    pub fn header(self) -> Option<&'static [u8]> {
        match self {
            Form::Csv => Some(b"serial,number\n"),
            _ => None,
        }
    }

    /// Renders one batch's serials (written byte by byte: this runs once per serial).
    pub fn render(self, batch: &BorrowedBatch<'_>, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        for (i, serial) in batch.serials.iter().enumerate() {
            let n = number.format(batch.first_number + i as u64);
            match self {
                Form::Text => out.extend_from_slice(serial.as_bytes()),
                Form::Csv => {
                    out.extend_from_slice(serial.as_bytes());
                    out.push(b',');
                    out.extend_from_slice(n.as_bytes());
                }
                Form::Ndjson => {
                    out.extend_from_slice(b"{\"serial\":\"");
                    out.extend_from_slice(serial.as_bytes());
                    out.extend_from_slice(b"\",\"number\":");
                    out.extend_from_slice(n.as_bytes());
                    out.push(b'}');
                }
            }
            out.push(b'\n');
        }
    }
}
