//! Everything a command can end with besides success, and the exit code each one maps to.
//!
//! The codes are part of the interface scripts rely on; `args` documents them in `--help`.

use std::io;

use reqwest::StatusCode;
use uuid::Uuid;

use crate::api::ApiError;

/// The process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// Something on this machine failed: a file, a child process.
    Local = 1,
    /// Wrong usage (clap uses 2 as well), or the server called the request invalid.
    BadInput = 2,
    /// The server refused the request: unauthorized, not found, conflict.
    Rejected = 3,
    /// The server or NATS cannot be reached, or the server failed.
    Unavailable = 4,
    /// The task that was waited for ended in FAILURE.
    TaskFailed = 5,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    BadInput(String),
    #[error("task {id} failed: {code}: {message}")]
    TaskFailed {
        id: Uuid,
        code: String,
        message: String,
    },
    #[error("cannot reach NATS at {url}: {reason}")]
    NatsUnreachable { url: String, reason: String },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] io::Error),
    /// Local failures, with their context chain on one line.
    #[error("{0:#}")]
    Local(#[from] anyhow::Error),
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Api(e) => api_exit(e),
            Error::BadInput(_) => Exit::BadInput,
            Error::TaskFailed { .. } => Exit::TaskFailed,
            Error::NatsUnreachable { .. } => Exit::Unavailable,
            Error::Stdout(_) | Error::Local(_) => Exit::Local,
        }
    }

    /// True when there is nobody left to tell: stdout was closed by the reader (`| head`).
    pub fn is_quiet(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

fn api_exit(e: &ApiError) -> Exit {
    match e {
        ApiError::Rejected { status, .. } => match *status {
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => Exit::BadInput,
            _ => Exit::Rejected,
        },
        ApiError::Unreachable { .. } | ApiError::Server { .. } | ApiError::Invalid { .. } => {
            Exit::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> Error {
        Error::Api(ApiError::Rejected {
            status: StatusCode::from_u16(status).unwrap(),
            code: "x".into(),
            message: "m".into(),
            field: None,
        })
    }

    #[test]
    fn client_errors_split_into_bad_input_and_rejected() {
        for status in [400, 413, 415, 422] {
            assert_eq!(rejected(status).exit(), Exit::BadInput, "{status}");
        }
        for status in [401, 404, 409] {
            assert_eq!(rejected(status).exit(), Exit::Rejected, "{status}");
        }
    }

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        let closed = Error::Stdout(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed.is_quiet());
        assert_eq!(closed.exit(), Exit::Local);
        assert!(!Error::BadInput("x".into()).is_quiet());
    }
}
