//! Opening a NATS connection: credentials and TLS settings checked at start, and retries
//! while the server is not reachable yet.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::NatsError;
use crate::backoff::Backoff;

/// Counts the connections a client has made. A change means the client reconnected, and the
/// server may have lost what belonged to the old connection (ephemeral consumers), so
/// whoever follows the stream through one recreates it from its own position.
pub type Connections = watch::Receiver<u64>;

/// How a client proves who it is to NATS, and which certificates it trusts. At most one way to
/// authenticate: a credentials file (JWT + nkey seed), a user and password, or an nkey seed.
#[derive(Clone, Default)]
pub struct Credentials {
    creds: Option<PathBuf>,
    user: Option<(String, String)>,
    /// The seed itself, read from its file once.
    nkey: Option<String>,
    ca: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("creds", &self.creds)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("nkey", &self.nkey.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl Credentials {
    /// Checks that at most one way to authenticate is given and that every file named is
    /// readable, so a wrong path is reported at start and not as a failed connection.
    pub fn new(
        creds: Option<PathBuf>,
        user: Option<(String, String)>,
        nkey: Option<PathBuf>,
        ca: Option<PathBuf>,
        client_cert: Option<(PathBuf, PathBuf)>,
    ) -> Result<Credentials, NatsError> {
        let ways = [creds.is_some(), user.is_some(), nkey.is_some()];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(NatsError::Settings(
                "give one of NATS_CREDS, NATS_USER/NATS_PASSWORD and NATS_NKEY".into(),
            ));
        }
        let readable = |what: &'static str, path: &PathBuf| {
            std::fs::read(path)
                .map(|_| ())
                .map_err(|source| NatsError::Read {
                    what,
                    path: path.display().to_string(),
                    source,
                })
        };
        if let Some(path) = &creds {
            readable("credentials file", path)?;
        }
        if let Some(path) = &ca {
            readable("CA certificate", path)?;
        }
        if let Some((cert, key)) = &client_cert {
            readable("client certificate", cert)?;
            readable("client key", key)?;
        }
        let nkey = match nkey {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|source| NatsError::Read {
                        what: "nkey seed file",
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Credentials {
            creds,
            user,
            nkey,
            ca,
            client_cert,
        })
    }

    /// Anonymous, no TLS settings.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// `options` with these credentials and certificates. A CA makes TLS required.
    pub async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, NatsError> {
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Read {
                    what: "credentials file",
                    path: path.display().to_string(),
                    source,
                })?;
        }
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &self.nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }
}

/// Connects to `url` with `credentials`, retrying with backoff until it works or `cancel`
/// fires: services may start before NATS does (Kubernetes, compose). Refused credentials are
/// not retried. Once connected, the client reconnects by itself forever.
pub async fn connect(
    url: &str,
    name: &str,
    credentials: &Credentials,
    cancel: &CancellationToken,
) -> Result<(Client, Connections), NatsError> {
    // A comma-separated list of servers, as `NATS_URL` allows.
    let servers = url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NatsError::Url {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    let (connections, watched) = watch::channel(0u64);
    let connections = std::sync::Arc::new(connections);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let connections = connections.clone();
        let options = credentials
            .apply(async_nats::ConnectOptions::new())
            .await?
            .name(name)
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50u64 << attempts.min(5)).min(2_000))
            })
            .event_callback(move |event| {
                let connections = connections.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connections.send_modify(|n| *n += 1);
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            });
        match options.connect(servers.clone()).await {
            Ok(client) => {
                // Seen as read once the first connection is counted: only reconnects are
                // changes to whoever follows.
                let mut watched = watched;
                let _ = tokio::time::timeout(Duration::from_secs(1), watched.wait_for(|n| *n > 0))
                    .await;
                watched.borrow_and_update();
                return Ok((client, watched));
            }
            Err(source)
                if source.kind() == async_nats::ConnectErrorKind::Io
                    || source.kind() == async_nats::ConnectErrorKind::TimedOut =>
            {
                tracing::warn!(%url, error = %source, "NATS not reachable yet");
                if !backoff.wait(cancel).await {
                    return Err(NatsError::Cancelled(url.to_owned()));
                }
            }
            Err(source) => {
                return Err(NatsError::Connect {
                    url: url.to_owned(),
                    source,
                })
            }
        }
    }
}
