//! The gateway's JSON answers as typed values. Reading is lenient (missing fields take
//! defaults, unknown ones are ignored) so an older or newer gateway still reads; `--json`
//! prints the raw answer, never these.

use common::{Format, State};
use serde::Deserialize;
use uuid::Uuid;

/// A task's state as the gateway reported it: one of the states this client knows, or a newer
/// one it does not (read as `Unknown` rather than failing the whole answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum Reported {
    Known(State),
    Unknown,
}

impl From<String> for Reported {
    fn from(name: String) -> Self {
        State::parse(&name).map_or(Reported::Unknown, Reported::Known)
    }
}

impl Reported {
    pub fn as_str(self) -> &'static str {
        match self {
            Reported::Known(state) => state.as_str(),
            Reported::Unknown => "UNKNOWN",
        }
    }

    /// True once the task can no longer change (see [`State::is_final`]).
    pub fn is_final(self) -> bool {
        matches!(self, Reported::Known(state) if state.is_final())
    }
}

/// `202` to `POST /generate_sn`.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    pub id: Uuid,
    pub state: Reported,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// `GET /tasks/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskView {
    pub id: Uuid,
    pub state: Reported,
    #[serde(default)]
    pub code_model: String,
    #[serde(default)]
    pub number: Option<u64>,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub generated: u64,
    #[serde(default)]
    pub first_serial: Option<String>,
    #[serde(default)]
    pub last_serial: Option<String>,
    #[serde(default)]
    pub error: Option<TaskError>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub format: Option<Format>,
}

impl TaskView {
    /// `first..=last` once the first number is known, else `None`.
    pub fn numbers(&self) -> Option<(u64, u64)> {
        let first = self.number?;
        let last = first.checked_add(self.count.checked_sub(1)?)?;
        Some((first, last))
    }
}

/// `GET /tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskPage {
    pub items: Vec<TaskView>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /serials/{serial}`.
#[derive(Debug, Clone, Deserialize)]
pub struct SerialView {
    pub serial: String,
    pub code_model: String,
    pub number: u64,
    pub task_id: Uuid,
    #[serde(default)]
    pub issued_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_view_reads() {
        let id = Uuid::new_v4();
        let v: TaskView = serde_json::from_value(json!({
            "id": id, "state": "SUCCESS", "code_model": "0111", "number": 1, "count": 10,
            "generated": 10, "first_serial": "011100000001", "last_serial": "011100000010",
            "error": null, "created_at": "2026-01-01T00:00:00Z", "started_at": null,
            "finished_at": null, "format": {"width": 8, "check_digit": "gs1"}
        }))
        .unwrap();
        assert_eq!(v.id, id);
        assert_eq!(v.state, Reported::Known(State::Success));
        assert!(v.state.is_final());
        assert_eq!(v.numbers(), Some((1, 10)));
        assert_eq!(v.format.unwrap().width, 8);
    }

    #[test]
    fn the_old_minimal_view_and_new_states_read() {
        let id = Uuid::new_v4();
        let v: TaskView = serde_json::from_value(json!({"id": id, "state": "RETRY"})).unwrap();
        assert_eq!(v.state, Reported::Unknown);
        assert_eq!(v.state.as_str(), "UNKNOWN");
        assert!(!v.state.is_final());
        assert_eq!(v.numbers(), None);
    }
}
