//! The gateway's configuration: one clap struct, every flag also an environment variable.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};
use common::nats::NatsArgs;
use common::request::DEFAULT_MAX_COUNT;
use common::telemetry::TelemetryArgs;

/// The command line: the service by default, or one of its subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP API of the serial-number service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when GET /healthz on HTTP_ADDR's port (on 127.0.0.1 for a wildcard address)
    /// answers 200 within 2 s, else 1: a container healthcheck without a shell or curl.
    Healthcheck,
}

#[derive(Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP API of the serial-number service"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Writes (POST, PUT, DELETE, PATCH) need `Authorization: Bearer <token>`. Required
    /// unless AUTH=off.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// `off` lets the gateway start without API_TOKEN, its writes then open to anyone
    /// (development only). A token that is set is always required, whatever this says.
    #[arg(long, env = "AUTH", value_enum, default_value_t = Auth::Token)]
    pub auth: Auth,
    /// Most serials one task may ask for.
    #[arg(long, env = "MAX_COUNT", default_value_t = DEFAULT_MAX_COUNT)]
    pub max_count: u64,
    /// Events folded between two snapshots of the views (object store `SN_VIEWS`); a gateway
    /// starts from the latest snapshot. 0 turns snapshots off: every start folds the stream.
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 100_000)]
    pub snapshot_every: u64,
    #[command(flatten)]
    pub keys: common::serial::keys::KeyArgs,
    /// How long a request's publish is retried (same message id, so never stored twice)
    /// while JetStream does not acknowledge it (a stream leader being elected, a reconnect)
    /// before the client gets 503.
    #[arg(long, env = "PUBLISH_DEADLINE_SECS", default_value_t = 15)]
    pub publish_deadline_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats", &self.nats)
            .field("telemetry", &self.telemetry)
            .field("http_addr", &self.http_addr)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("max_count", &self.max_count)
            .field("snapshot_every", &self.snapshot_every)
            .field("keys", &self.keys)
            .field("publish_deadline_secs", &self.publish_deadline_secs)
            .finish()
    }
}

/// Whether writes may go without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    /// Writes need the bearer token of API_TOKEN; no token, no start.
    Token,
    /// No token needed when API_TOKEN is unset.
    Off,
}

impl Config {
    /// The token writes need, or `None` when auth was turned off explicitly. Fails closed: an
    /// unset or empty API_TOKEN without AUTH=off is an error.
    pub fn write_token(&self) -> Result<Option<String>, MissingToken> {
        match (
            self.api_token.as_deref().filter(|t| !t.is_empty()),
            self.auth,
        ) {
            (Some(token), _) => Ok(Some(token.to_owned())),
            (None, Auth::Off) => Ok(None),
            (None, Auth::Token) => Err(MissingToken),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "API_TOKEN is not set: set it to the bearer token that writes must carry, or set AUTH=off \
     to run with writes open to anyone (development only)"
)]
pub struct MissingToken;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("gateway").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_service_is_the_default_and_healthcheck_reads_the_same_settings() {
        let run = Cli::try_parse_from(["gateway", "--http-addr", "0.0.0.0:8181"]).unwrap();
        assert!(run.command.is_none());
        assert_eq!(run.run.http_addr.port(), 8181);
        let check =
            Cli::try_parse_from(["gateway", "--http-addr", "0.0.0.0:8181", "healthcheck"]).unwrap();
        assert!(matches!(check.command, Some(Command::Healthcheck)));
        assert_eq!(check.run.http_addr.port(), 8181);
    }

    #[test]
    fn no_token_refuses_unless_auth_is_off() {
        assert!(parse(&[]).write_token().is_err());
        assert!(parse(&["--api-token", ""]).write_token().is_err());
        assert_eq!(parse(&["--auth", "off"]).write_token().unwrap(), None);
        // A token given is required even with AUTH=off.
        assert_eq!(
            parse(&["--auth", "off", "--api-token", "s"])
                .write_token()
                .unwrap()
                .as_deref(),
            Some("s")
        );
        assert_eq!(
            parse(&["--api-token", "s"])
                .write_token()
                .unwrap()
                .as_deref(),
            Some("s")
        );
    }
}
