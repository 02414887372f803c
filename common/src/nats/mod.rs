//! Everything a binary needs to talk to NATS and JetStream.
//!
//! [`NatsArgs`] holds the connection, credential and stream settings read from flags and
//! environment variables. [`connect`] opens the connection, waiting for a server that is not
//! up yet; [`ensure_stream`] creates or checks the `SN` stream that carries every event and
//! refuses settings that could delete messages; [`event_publish`] builds the publish of one
//! event with its dedup id and trace headers. Every failure is a [`NatsError`].

mod args;
mod connect;
mod publish;
mod stream;

pub use args::{paired, NatsArgs};
pub use connect::{connect, Connections, Credentials};
pub use publish::{event_headers, event_publish};
pub use stream::{
    ensure_stream, ensure_stream_retrying, last_sequence, stream_config, unsafe_settings,
    StreamSettings, DEFAULT_DUPLICATE_WINDOW,
};

use async_nats::jetstream;

use crate::subjects;

/// Why a NATS connection, its settings or the `SN` stream could not be set up.
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
