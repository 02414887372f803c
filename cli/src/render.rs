//! The readable text forms of views and events: pure functions from a value to a string.

use std::fmt::Write;

use common::events::EventData;
use common::serial::CheckDigit;
use common::Event;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::views::{Accepted, SerialView, TaskPage, TaskView};

/// Label-value lines with the values aligned; rows without a value are left out.
fn fields(rows: &[(&str, Option<String>)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        if let Some(value) = value {
            let _ = writeln!(out, "{label:width$}  {value}");
        }
    }
    out
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

fn numbers(view: &TaskView) -> String {
    match view.numbers() {
        Some((first, last)) => format!("{first}..={last}"),
        None => "next free".to_owned(),
    }
}

fn check_digit(c: CheckDigit) -> &'static str {
    match c {
        CheckDigit::None => "none",
        CheckDigit::Gs1 => "gs1",
        CheckDigit::Luhn => "luhn",
    }
}

pub fn accepted(a: &Accepted) -> String {
    format!(
        "task {} accepted ({})\nfollow it with: snctl task {}\n",
        a.id,
        a.state.as_str(),
        a.id
    )
}

pub fn task(view: &TaskView) -> String {
    let serials = match (&view.first_serial, &view.last_serial) {
        (Some(first), Some(last)) => Some(format!("{first}..{last}")),
        _ => None,
    };
    fields(&[
        ("task", Some(view.id.to_string())),
        ("state", Some(view.state.as_str().to_owned())),
        ("model", Some(view.code_model.clone())),
        ("numbers", Some(numbers(view))),
        (
            "generated",
            Some(format!("{}/{}", view.generated, view.count)),
        ),
        ("serials", serials),
        (
            "format",
            view.format.map(|f| {
                format!(
                    "width {}, check digit {}",
                    f.width,
                    check_digit(f.check_digit)
                )
            }),
        ),
        ("created", view.created_at.clone()),
        ("started", view.started_at.clone()),
        ("finished", view.finished_at.clone()),
        (
            "error",
            view.error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message)),
        ),
    ])
}

pub fn tasks(page: &TaskPage) -> String {
    if page.items.is_empty() {
        return "no tasks\n".to_owned();
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|v| {
            vec![
                v.id.to_string(),
                v.state.as_str().to_owned(),
                v.code_model.clone(),
                numbers(v),
                format!("{}/{}", v.generated, v.count),
                v.created_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "STATE", "MODEL", "NUMBERS", "GENERATED", "CREATED"],
        &rows,
    );
    if let Some(cursor) = &page.next_cursor {
        let _ = writeln!(out, "more: snctl tasks --cursor {cursor}");
    }
    out
}

pub fn serial(view: &SerialView) -> String {
    fields(&[
        ("serial", Some(view.serial.clone())),
        ("model", Some(view.code_model.clone())),
        ("number", Some(view.number.to_string())),
        ("task", Some(view.task_id.to_string())),
        ("issued", view.issued_at.clone()),
    ])
}

/// A model's scheme as one phrase: `width 8, check digit none`.
fn scheme(model: &Value) -> String {
    match &model["scheme"] {
        Value::Null => "no scheme yet".into(),
        s => {
            let mut text = format!(
                "width {}, check digit {}",
                s["width"],
                s["check_digit"].as_str().unwrap_or("?")
            );
            if s["order"] == "random" {
                text.push_str(", random order");
            }
            if let Some(d) = s["density"].as_str() {
                text.push_str(&format!(", density {d}"));
            }
            text
        }
    }
}

/// One line per model: code, scheme, issued, remaining.
pub fn models(models: &[Value]) -> String {
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m["code_model"].as_str().unwrap_or("?").to_owned(),
                scheme(m),
                m["issued"].to_string(),
                m["remaining"].to_string(),
            ]
        })
        .collect();
    table(&["MODEL", "SCHEME", "ISSUED", "REMAINING"], &rows)
}

/// One model and its first issued ranges.
pub fn model(m: &Value) -> String {
    let ranges = m["ranges"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "{}..={} ({})",
                        r["first"],
                        r["last"],
                        r["task_id"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n           ")
        })
        .filter(|s| !s.is_empty());
    fields(&[
        ("model", m["code_model"].as_str().map(str::to_owned)),
        ("scheme", Some(scheme(m))),
        ("issued", Some(m["issued"].to_string())),
        ("remaining", Some(m["remaining"].to_string())),
        ("ranges", ranges),
    ])
}

/// One line per event: time, model, task, kind, then what the event says.
pub fn event(ev: &Event) -> String {
    let time = ev.time.format(&Rfc3339).unwrap_or_default();
    let what = match &ev.data {
        EventData::Requested(d) => {
            let from = d
                .number
                .map_or_else(|| "the next free number".to_owned(), |n| n.to_string());
            format!("requested  {} serials from {from} ({})", d.count, d.format)
        }
        EventData::Reserved(d) => format!("reserved   {}..={}", d.first, d.last),
        EventData::Declared(d) => format!("declared   {}", d.scheme),
        EventData::Generated(d) => format!(
            "generated  batch {}: {} serials from {}",
            d.batch, d.count, d.first_number
        ),
        EventData::Completed(d) => format!(
            "completed  {} serials {}..{} in {} batches",
            d.count, d.first_serial, d.last_serial, d.batches
        ),
        EventData::Failed(d) => format!("failed     {}: {}", d.code, d.message),
    };
    // A failure message could hold a line break; the stream stays one event per line.
    let task = ev
        .task_id()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into());
    format!("{time}  {}  {task}  {what}", ev.data.code_model()).replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::events::{RangeReserved, TaskFailed};
    use uuid::Uuid;

    fn view() -> TaskView {
        serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "state": "STARTED", "code_model": "0111", "number": 1,
            "count": 10, "generated": 4, "first_serial": null, "last_serial": null,
            "error": null, "created_at": "2026-01-01T00:00:00Z",
            "format": {"width": 8, "check_digit": "gs1"}
        }))
        .unwrap()
    }

    #[test]
    fn a_task_reads_as_aligned_fields() {
        let text = task(&view());
        assert!(text.contains("state      STARTED\n"), "{text}");
        assert!(text.contains("numbers    1..=10\n"), "{text}");
        assert!(text.contains("generated  4/10\n"), "{text}");
        assert!(
            text.contains("format     width 8, check digit gs1\n"),
            "{text}"
        );
        assert!(!text.contains("error"), "{text}");
        assert!(!text.contains("serials"), "{text}");
    }

    #[test]
    fn the_table_aligns_columns_and_names_the_next_page() {
        let page = TaskPage {
            items: vec![view()],
            next_cursor: Some("42".into()),
        };
        let text = tasks(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID                                    STATE    MODEL"));
        assert_eq!(lines[0].find("STATE"), lines[1].find("STARTED"));
        assert_eq!(lines[2], "more: snctl tasks --cursor 42");
    }

    #[test]
    fn models_read_as_a_table_and_a_model_as_fields() {
        let m = serde_json::json!({
            "code_model": "0111", "scheme": {"width": 8, "check_digit": "gs1"},
            "issued": 10, "remaining": 99_999_990u64, "range_count": 1,
            "ranges": [{"first": 1, "last": 10, "task_id": Uuid::nil()}]
        });
        let table = models(std::slice::from_ref(&m));
        assert!(table.starts_with("MODEL"), "{table}");
        assert!(
            table.contains("0111   width 8, check digit gs1  10 "),
            "{table}"
        );
        let one = model(&m);
        assert!(
            one.contains("scheme     width 8, check digit gs1\n"),
            "{one}"
        );
        assert!(
            one.contains(&format!("ranges     1..=10 ({})", Uuid::nil())),
            "{one}"
        );
    }

    #[test]
    fn events_read_as_one_line() {
        let task_id = Uuid::nil();
        let ev = Event::new(
            "t",
            EventData::Reserved(RangeReserved {
                task_id,
                code_model: "0111".into(),
                first: 1,
                last: 10,
                scheme: None,
                automatic: true,
            }),
        );
        let line = event(&ev);
        assert!(
            line.ends_with(&format!("  0111  {task_id}  reserved   1..=10")),
            "{line}"
        );
        let ev = Event::new(
            "t",
            EventData::Failed(TaskFailed {
                task_id,
                code_model: "0111".into(),
                code: "range_conflict".into(),
                message: "overlap".into(),
            }),
        );
        assert!(event(&ev).ends_with("failed     range_conflict: overlap"));
        assert!(!event(&ev).contains('\n'));
    }
}
