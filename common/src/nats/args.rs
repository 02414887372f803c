//! The NATS settings of a service, as flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Credentials, NatsError, StreamSettings};

/// Where NATS is, how to authenticate to it, and the settings of the `SN` stream a service
/// creates. `Debug` hides the password, so the whole struct can be logged at start.
#[derive(Clone, Args)]
pub struct NatsArgs {
    /// NATS server(s) to connect to, comma-separated (`tls://` for TLS).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS credentials file (user JWT and nkey seed), as `nsc` writes it.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with NATS_PASSWORD).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password of NATS_USER.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// File holding an nkey seed (`SU...`) to authenticate with.
    #[arg(long, env = "NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// CA certificate (PEM) that signed the NATS servers' certificates; requires TLS.
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with NATS_KEY).
    #[arg(long, env = "NATS_CERT")]
    pub nats_cert: Option<PathBuf>,
    /// Private key (PEM) of NATS_CERT.
    #[arg(long, env = "NATS_KEY")]
    pub nats_key: Option<PathBuf>,
    /// Replicas of the SN stream when this service creates it.
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// JetStream duplicate window of the SN stream, in seconds.
    #[arg(long, env = "DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.nats_url)
            .field("nats_creds", &self.nats_creds)
            .field("nats_user", &self.nats_user)
            .field(
                "nats_password",
                &self.nats_password.as_ref().map(|_| "<redacted>"),
            )
            .field("nats_nkey", &self.nats_nkey)
            .field("nats_ca", &self.nats_ca)
            .field("nats_cert", &self.nats_cert)
            .field("nats_key", &self.nats_key)
            .field("stream_replicas", &self.stream_replicas)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .finish()
    }
}

impl NatsArgs {
    /// How to authenticate and which certificates to trust; refuses half-given settings.
    pub fn credentials(&self) -> Result<Credentials, NatsError> {
        Credentials::new(
            self.nats_creds.clone(),
            paired(
                self.nats_user.clone(),
                self.nats_password.clone(),
                "NATS_USER and NATS_PASSWORD go together",
            )?,
            self.nats_nkey.clone(),
            self.nats_ca.clone(),
            paired(
                self.nats_cert.clone(),
                self.nats_key.clone(),
                "NATS_CERT and NATS_KEY go together",
            )?,
        )
    }

    pub fn stream(&self) -> StreamSettings {
        StreamSettings {
            replicas: self.stream_replicas.max(1),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs.max(1)),
        }
    }
}

/// Two settings that only make sense together: both or neither. One without the other is
/// refused with `message`.
pub fn paired<A, B>(
    a: Option<A>,
    b: Option<B>,
    message: &str,
) -> Result<Option<(A, B)>, NatsError> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(NatsError::Settings(message.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn parse(args: &[&str]) -> NatsArgs {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .nats
    }

    #[test]
    fn paired_settings_are_both_or_neither() {
        assert_eq!(paired(Some(1), Some("a"), "x").unwrap(), Some((1, "a")));
        assert_eq!(paired::<u8, u8>(None, None, "x").unwrap(), None);
        let err = paired(Some(1), None::<u8>, "A and B go together").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid NATS credentials settings: A and B go together"
        );
    }

    #[test]
    fn a_user_without_a_password_is_refused() {
        let args = parse(&["--nats-user", "sn"]);
        let err = args.credentials().unwrap_err();
        assert!(
            err.to_string()
                .contains("NATS_USER and NATS_PASSWORD go together"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let args = parse(&["--nats-cert", "/nonexistent/cert.pem"]);
        let err = args.credentials().unwrap_err();
        assert!(
            err.to_string()
                .contains("NATS_CERT and NATS_KEY go together"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let args = parse(&["--nats-user", "sn", "--nats-password", "s3cret"]);
        let shown = format!("{args:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn stream_settings_are_at_least_one_replica_and_one_second() {
        let args = parse(&["--stream-replicas", "0", "--duplicate-window-secs", "0"]);
        let stream = args.stream();
        assert_eq!(stream.replicas, 1);
        assert_eq!(stream.duplicate_window, Duration::from_secs(1));
    }
}
