//! The command line: global options, one struct per subcommand, and the exit codes that
//! `--help` documents (their values live in `error::Exit`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use common::nats::{self, Credentials, NatsError};
use common::State;
use reqwest::Url;
use uuid::Uuid;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  local failure (cannot write the output file, cannot start a process, ...)
  2  bad input: wrong usage, or the server refused the request as invalid (400, 413, 415, 422)
  3  the server rejected the request (401 unauthorized, 404 not found, 409 conflict, other 4xx)
  4  the server or NATS is unreachable, or the server failed (5xx, 503 unavailable)
  5  the task ended in FAILURE while snctl waited for it

Errors are one line on stderr: `error: <message>`.";

/// Default NATS server of `watch`; `up` starts one there when nothing listens.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Parser)]
#[command(
    name = "snctl",
    version,
    about = "Command-line client of the serial-number service",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Base URL of the gateway's HTTP API.
    #[arg(
        long,
        global = true,
        env = "SN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: Url,
    /// Bearer token, for a gateway started with API_TOKEN.
    #[arg(long, global = true, env = "API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Machine-readable output: the server's JSON views on stdout, no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// NATS server(s) for `watch`, `up`, `backup` and `restore`, comma-separated [default:
    /// nats://127.0.0.1:4222].
    #[arg(long, global = true, env = "NATS_URL")]
    pub nats_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask for serials; with --wait or -o, follow the task and download its serials.
    Generate(GenerateArgs),
    /// Show one task.
    Task(TaskArgs),
    /// List tasks, newest first.
    Tasks(TasksArgs),
    /// Print live events from NATS, one line each, until Ctrl-C.
    Watch(WatchArgs),
    /// Tell which model, number and task a serial belongs to.
    Lookup(LookupArgs),
    /// List the models and their serial schemes; with CODE, show one; with --declare, fix
    /// CODE's scheme before its first use.
    Models(ModelsArgs),
    /// Run the service locally (nats-server, generator, gateway) until Ctrl-C or SIGTERM.
    Up,
    /// Write every message of the SN stream (subject, headers, payload, in order) to FILE,
    /// as NDJSON.
    Backup(BackupArgs),
    /// Recreate the SN stream from a file `backup` wrote; the stream must not exist or be
    /// empty, and the services should be stopped.
    Restore(RestoreArgs),
}

/// How `backup` and `restore` authenticate to NATS (an admin user: they read or create the
/// whole stream).
#[derive(Debug, Clone, Args)]
pub struct NatsAuthArgs {
    /// NATS credentials file.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with NATS_PASSWORD).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// CA certificate (PEM) of the NATS servers; requires TLS.
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
}

impl NatsAuthArgs {
    pub fn credentials(&self) -> Result<Credentials, NatsError> {
        Credentials::new(
            self.nats_creds.clone(),
            nats::paired(
                self.nats_user.clone(),
                self.nats_password.clone(),
                "NATS_USER and NATS_PASSWORD go together",
            )?,
            None,
            self.nats_ca.clone(),
            None,
        )
    }
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The file to write (replaced once the backup is complete).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub nats: NatsAuthArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A file `snctl backup` wrote.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replicas of the recreated stream [default: as saved].
    #[arg(long)]
    pub replicas: Option<usize>,
    #[command(flatten)]
    pub nats: NatsAuthArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Model code: 1 to 32 characters of A-Z a-z 0-9 _ -.
    #[arg(long, value_name = "CODE")]
    pub model: String,
    /// First number of the range [default: the next free number of the model].
    #[arg(long)]
    pub number: Option<u64>,
    /// How many serials.
    #[arg(long)]
    pub count: u64,
    /// Digits of the number part, 1 to 20 [server default: 8].
    #[arg(long)]
    pub width: Option<u8>,
    /// Check digit appended to each serial [server default: none].
    #[arg(long, value_enum)]
    pub check_digit: Option<CheckDigitArg>,
    /// Wait until the task ends, showing its progress.
    #[arg(long)]
    pub wait: bool,
    /// Download the serials into FILE while they are generated (implies --wait; FILE
    /// appears once all are there): CSV for *.csv, NDJSON for *.ndjson, one serial per line
    /// otherwise.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sending the same key and body again gives the same task instead of a new one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

impl GenerateArgs {
    /// Whether the command follows the task to its end.
    pub fn waits(&self) -> bool {
        self.wait || self.output.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckDigitArg {
    None,
    Gs1,
    Luhn,
}

impl CheckDigitArg {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckDigitArg::None => "none",
            CheckDigitArg::Gs1 => "gs1",
            CheckDigitArg::Luhn => "luhn",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// A model code: show this model (and its issued ranges).
    pub code: Option<String>,
    /// Declare CODE's scheme (--width, --check-digit); the same scheme again is accepted, a
    /// different one refused.
    #[arg(long, requires = "code")]
    pub declare: bool,
    /// With --declare: digits of the number part, 1 to 20 [server default: 8].
    #[arg(long, requires = "declare")]
    pub width: Option<u8>,
    /// With --declare: check digit appended to each serial [server default: none].
    #[arg(long, value_enum, requires = "declare")]
    pub check_digit: Option<CheckDigitArg>,
}

#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Task id (a UUID, as `generate` printed it).
    pub id: Uuid,
}

#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// Only tasks in this state.
    #[arg(long, value_enum, ignore_case = true)]
    pub state: Option<State>,
    /// Only tasks of this model.
    #[arg(long, value_name = "CODE")]
    pub model: Option<String>,
    /// Tasks per page, 1 to 1000 [server default: 50].
    #[arg(long)]
    pub limit: Option<u32>,
    /// Page to show: the cursor a previous page printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Only events of this model.
    #[arg(long, value_name = "CODE")]
    pub model: Option<String>,
    /// Only events of this task.
    #[arg(long, value_name = "ID")]
    pub task: Option<Uuid>,
    /// With --json, print generated batches with their serials (they are left out otherwise).
    #[arg(long, requires = "json")]
    pub serials: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LookupArgs {
    /// The serial, e.g. 011100000001.
    pub serial: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn output_implies_wait() {
        let cli = Cli::try_parse_from([
            "snctl", "generate", "--model", "0111", "--count", "5", "-o", "x.csv",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("not generate")
        };
        assert!(args.waits());
    }

    #[test]
    fn declaring_needs_a_model() {
        assert!(Cli::try_parse_from(["snctl", "models", "--declare"]).is_err());
        assert!(Cli::try_parse_from(["snctl", "models", "--width", "9"]).is_err());
        let cli =
            Cli::try_parse_from(["snctl", "models", "0111", "--declare", "--width", "9"]).unwrap();
        let Command::Models(args) = cli.command else {
            panic!("not models")
        };
        assert!(args.declare);
        assert_eq!(args.width, Some(9));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = Cli::try_parse_from(["snctl", "tasks", "--json", "--state", "success"]).unwrap();
        assert!(cli.global.json);
        let Command::Tasks(args) = cli.command else {
            panic!("not tasks")
        };
        assert_eq!(args.state, Some(State::Success));
    }
}
