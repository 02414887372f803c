//! NATS and JetStream glue: connecting (with credentials and TLS, and waiting for a server
//! that is not up yet), the `SN` stream definition, and publishing an event with its dedup id
//! and trace headers.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{header, Client, HeaderMap};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::events::CONTENT_TYPE;
use crate::subjects;

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("invalid NATS_URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("invalid NATS credentials settings: {0}")]
    Settings(String),
    #[error("cannot read NATS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stopped while waiting for NATS at {0}")]
    Cancelled(String),
    #[error("cannot read stream {STREAM}: {0}", STREAM = subjects::STREAM)]
    GetStream(#[source] jetstream::context::GetStreamError),
    #[error("cannot create stream {STREAM}: {0}", STREAM = subjects::STREAM)]
    CreateStream(#[source] jetstream::context::CreateStreamError),
    #[error("cannot update stream {STREAM}: {0}", STREAM = subjects::STREAM)]
    UpdateStream(#[source] jetstream::context::UpdateStreamError),
    #[error("cannot read stream info: {0}")]
    Info(#[source] jetstream::stream::InfoError),
    /// Settings under which JetStream would remove messages of `SN`, ledger ones included,
    /// and a removed reservation could be issued again.
    #[error(
        "stream {STREAM} has {0}: it could drop ledger messages and lead to duplicate serials; \
         remove the setting (e.g. `nats stream edit {STREAM}`) and start again",
        STREAM = subjects::STREAM
    )]
    UnsafeStream(String),
}

/// The settings of `SN` under which JetStream would remove messages: limits on age, count
/// or size, or a retention other than limits.
pub fn unsafe_settings(config: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if !config.max_age.is_zero() {
        out.push(format!("max_age {:?}", config.max_age));
    }
    if config.max_messages > 0 {
        out.push(format!("max_msgs {}", config.max_messages));
    }
    if config.max_messages_per_subject > 0 {
        out.push(format!(
            "max_msgs_per_subject {}",
            config.max_messages_per_subject
        ));
    }
    if config.max_bytes > 0 {
        out.push(format!("max_bytes {}", config.max_bytes));
    }
    if config.retention != stream::RetentionPolicy::Limits {
        out.push(format!("retention {:?}", config.retention));
    }
    out
}

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

/// Settings of the `SN` stream that the services own.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub replicas: usize,
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }
}

pub fn stream_config(settings: StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::STREAM.to_owned(),
        subjects: vec![subjects::ALL.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        allow_direct: true,
        ..Default::default()
    }
}

/// [`ensure_stream`], retried with backoff while JetStream is not available yet (a cluster
/// still electing its leaders answers with timeouts), until `cancel` fires.
pub async fn ensure_stream_retrying(
    js: &jetstream::Context,
    settings: StreamSettings,
    cancel: &CancellationToken,
) -> Result<stream::Stream, NatsError> {
    let mut backoff = Backoff::reconnect();
    loop {
        match ensure_stream(js, settings).await {
            Ok(s) => return Ok(s),
            // An operator's setting: waiting will not change it.
            Err(e @ NatsError::UnsafeStream(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "JetStream not ready yet");
                if !backoff.wait(cancel).await {
                    return Err(e);
                }
            }
        }
    }
}

/// Creates `SN`, or brings an existing one to our subjects and duplicate window. An existing
/// stream keeps its replica count: changing it is an operator's decision.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: StreamSettings,
) -> Result<stream::Stream, NatsError> {
    let wanted = stream_config(settings);
    match js.get_stream(subjects::STREAM).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(NatsError::Info)?
                .config
                .clone();
            let refused = unsafe_settings(&info);
            if !refused.is_empty() {
                return Err(NatsError::UnsafeStream(refused.join(", ")));
            }
            if info.subjects != wanted.subjects || info.duplicate_window != wanted.duplicate_window
            {
                let mut updated = info;
                updated.subjects = wanted.subjects;
                updated.duplicate_window = wanted.duplicate_window;
                js.update_stream(updated)
                    .await
                    .map_err(NatsError::UpdateStream)?;
            }
            Ok(existing)
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(_)
            ) =>
        {
            match js.create_stream(wanted).await {
                Ok(s) => Ok(s),
                // Another replica created it between our two calls.
                Err(_) => js
                    .get_stream(subjects::STREAM)
                    .await
                    .map_err(NatsError::GetStream),
            }
        }
        Err(e) => Err(NatsError::GetStream(e)),
    }
}

/// Parsed once, not on every publish.
const CONTENT_TYPE_HEADER: header::HeaderName = header::HeaderName::from_static("Content-Type");

/// The headers every event carries: dedup id, content type and the current trace context.
pub fn event_headers(event_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::NATS_MESSAGE_ID, event_id);
    headers.insert(CONTENT_TYPE_HEADER, CONTENT_TYPE);
    crate::telemetry::inject_current(&mut headers);
    headers
}

/// A publish of one event, ready to send: `Nats-Msg-Id` set, optionally a compare-and-set on
/// the subject's last sequence.
pub fn event_publish(
    event_id: &str,
    payload: Bytes,
    expected_last_subject_seq: Option<u64>,
) -> PublishMessage {
    let mut publish = PublishMessage::build()
        .payload(payload)
        .headers(event_headers(event_id));
    if let Some(seq) = expected_last_subject_seq {
        publish = publish.expected_last_subject_sequence(seq);
    }
    publish
}

/// The last sequence of the stream (0 when empty).
pub async fn last_sequence(js: &jetstream::Context) -> Result<u64, NatsError> {
    let stream = js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(NatsError::GetStream)?;
    Ok(stream
        .get_info()
        .await
        .map_err(NatsError::Info)?
        .state
        .last_sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_remove_messages_are_named() {
        let ours = stream_config(StreamSettings {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        });
        assert!(unsafe_settings(&ours).is_empty());
        // What a server reports for "no limit".
        let unlimited = stream::Config {
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            ..ours.clone()
        };
        assert!(unsafe_settings(&unlimited).is_empty());
        let limited = stream::Config {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            retention: stream::RetentionPolicy::WorkQueue,
            ..ours
        };
        let named = unsafe_settings(&limited).join(", ");
        assert_eq!(
            named,
            "max_age 3600s, max_bytes 1073741824, retention WorkQueue"
        );
    }
}
