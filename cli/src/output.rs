//! Where results go: the raw JSON views on stdout with `--json`, readable text otherwise
//! (`render` builds it). Progress bars and notes go to stderr, never stdout.

use std::io::{self, IsTerminal, Write};

use serde_json::Value;

use crate::error::Error;

/// How this run prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Progress bars only for a person at a terminal.
    pub fn progress_visible(&self) -> bool {
        !self.json && io::stdout().is_terminal() && io::stderr().is_terminal()
    }

    /// One JSON document, indented, on stdout.
    pub fn document(&self, value: &Value) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        self.text(&text)
    }

    /// Text on stdout, a newline added when missing.
    pub fn text(&self, text: &str) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes()).map_err(Error::Stdout)?;
        if !text.ends_with('\n') {
            out.write_all(b"\n").map_err(Error::Stdout)?;
        }
        out.flush().map_err(Error::Stdout)
    }

    /// One line of a stream (`watch`), flushed at once so a pipe sees it live.
    pub fn line(&self, line: &[u8]) -> Result<(), Error> {
        let mut out = io::stdout().lock();
        out.write_all(line).map_err(Error::Stdout)?;
        out.write_all(b"\n").map_err(Error::Stdout)?;
        out.flush().map_err(Error::Stdout)
    }

    /// The view as JSON, or its text form.
    pub fn view(&self, json: &Value, text: impl FnOnce() -> String) -> Result<(), Error> {
        if self.json {
            self.document(json)
        } else {
            self.text(&text())
        }
    }
}
