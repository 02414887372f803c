//! The four states a task goes through, as the HTTP API spells them (Celery's names).
//!
//! A task is `PENDING` once accepted, `STARTED` when the generator picks it up, and ends in
//! `SUCCESS` or `FAILURE`, which never change again. The gateway's views, the CLI's `--state`
//! filter and its readers of the API all use this one enum.

use serde::{Deserialize, Serialize};

/// A task's state. Serialized in upper case (`"SUCCESS"`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
#[value(rename_all = "UPPERCASE")]
pub enum State {
    Pending,
    Started,
    Success,
    Failure,
}

impl State {
    /// Every state, in the order a task goes through them.
    pub const ALL: [State; 4] = [
        State::Pending,
        State::Started,
        State::Success,
        State::Failure,
    ];

    /// Reads a state name in any case (`"success"`, `"SUCCESS"`); `None` for anything else.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Started => "STARTED",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
        }
    }

    /// `SUCCESS` and `FAILURE` never change again.
    pub fn is_final(self) -> bool {
        matches!(self, State::Success | State::Failure)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ignores_case_and_rejects_other_names() {
        assert_eq!(State::parse("success"), Some(State::Success));
        assert_eq!(State::parse("Started"), Some(State::Started));
        assert_eq!(State::parse("RETRY"), None);
        assert_eq!(State::parse(""), None);
    }

    #[test]
    fn serde_and_as_str_agree() {
        for state in State::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn only_success_and_failure_are_final() {
        let finals: Vec<State> = State::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [State::Success, State::Failure]);
    }
}
