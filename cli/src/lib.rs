//! `snctl`: the command-line client of the serial-number service.
//!
//! `args` is the command line; `commands` holds one module per subcommand. They talk to the
//! gateway through `api` (typed calls over `views`), wait with `wait` and `retry`, write files
//! with `download`, and print through `output`, `render` and `progress`. `error` decides the exit code.

pub mod api;
pub mod args;
pub mod commands;
pub mod download;
pub mod error;
pub mod output;
pub mod progress;
pub mod render;
pub mod retry;
pub mod views;
pub mod wait;

pub use args::Cli;
pub use error::{Error, Exit};

/// Runs one parsed command line to its end.
pub async fn run(cli: Cli) -> Result<(), Error> {
    commands::run(cli).await
}
