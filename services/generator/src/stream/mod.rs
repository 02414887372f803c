//! The port to the `SN` stream: what tasks and reservations publish and read back.
//!
//! [`Stream`] holds exactly what they need (a publish, optionally conditional, whose ack is
//! awaited apart so many can be in flight; the last sequence of a subject; the first and the
//! numbered message). [`JetStream`] is the real one; tests run tasks against an in-memory
//! stream (`fake`) that stores, deduplicates by id and checks conditions as JetStream does.
//! The request consumer and the ledger follower read JetStream directly: they are about
//! delivery, not about what is stored.

#[cfg(test)]
pub mod fake;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{self};
use bytes::Bytes;
use common::subjects;
use futures::future::BoxFuture;
use futures::FutureExt;

/// Where the stream stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub sequence: u64,
    /// Stored before, by a publish with the same id (within the stream's duplicate window).
    pub duplicate: bool,
}

/// A condition on a publish: what must be true of the stream for it to be stored.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    Nothing,
    /// The subject's last message is at this sequence (0: the subject has none): a
    /// compare-and-set.
    LastSubjectSequence(u64),
    /// The stream's last message has this id.
    LastMessageId(&'a str),
}

/// Why a publish was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`Expect::LastSubjectSequence`] did not hold.
    WrongLastSequence,
    /// [`Expect::LastMessageId`] did not hold.
    WrongLastMessageId,
    /// No answer (the connection, a stream between leaders): trying again later may work.
    Unanswered,
    /// Refused for good (a payload too large, ...).
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    pub refusal: Refusal,
    pub message: String,
}

impl PublishError {
    /// Whether trying again later may work: the stream was unreachable or slow, not refusing.
    pub fn is_transient(&self) -> bool {
        self.refusal == Refusal::Unanswered
    }
}

/// A read of the stream that failed: the server was unreachable or between leaders.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// The wait for one publish's ack.
pub type Ack = BoxFuture<'static, Result<Stored, PublishError>>;

pub trait Stream: Send + Sync {
    /// Sends one event under `id` (its `Nats-Msg-Id`); the returned future is its ack.
    fn publish<'a>(
        &'a self,
        subject: String,
        id: &'a str,
        payload: Bytes,
        expect: Expect<'a>,
    ) -> BoxFuture<'a, Result<Ack, PublishError>>;

    /// The sequence of the last message on `subject` (0 when it has none).
    fn last_sequence<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, ReadError>>;

    /// The payload of the first message on `subject`, if any.
    fn first_message<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, ReadError>>;

    /// The payload of the message at stream sequence `seq`.
    fn message(&self, seq: u64) -> BoxFuture<'_, Result<Bytes, ReadError>>;
}

/// The `SN` stream on a NATS server.
pub struct JetStream(pub jetstream::Context);

impl JetStream {
    async fn stream(&self) -> Result<jetstream::stream::Stream<()>, ReadError> {
        self.0
            .get_stream_no_info(subjects::STREAM)
            .await
            .map_err(|e| ReadError(e.to_string()))
    }
}

fn publish_error(e: jetstream::context::PublishError) -> PublishError {
    let refusal = match e.kind() {
        PublishErrorKind::WrongLastSequence => Refusal::WrongLastSequence,
        PublishErrorKind::WrongLastMessageId => Refusal::WrongLastMessageId,
        // The connection or a stream between leaders (no answer, no responders), as opposed
        // to a refusal that repeats on every try.
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::StreamNotFound
        | PublishErrorKind::MaxAckPending => Refusal::Unanswered,
        _ => Refusal::Other,
    };
    PublishError {
        refusal,
        message: e.to_string(),
    }
}

impl Stream for JetStream {
    fn publish<'a>(
        &'a self,
        subject: String,
        id: &'a str,
        payload: Bytes,
        expect: Expect<'a>,
    ) -> BoxFuture<'a, Result<Ack, PublishError>> {
        async move {
            let mut publish = common::nats::event_publish(id, payload, None);
            match expect {
                Expect::Nothing => {}
                Expect::LastSubjectSequence(seq) => {
                    publish = publish.expected_last_subject_sequence(seq);
                }
                Expect::LastMessageId(previous) => {
                    publish = publish.expected_last_message_id(previous);
                }
            }
            let ack = self
                .0
                .send_publish(subject, publish)
                .await
                .map_err(publish_error)?;
            let ack: Ack = async move {
                let ack = ack.await.map_err(publish_error)?;
                Ok(Stored {
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })
            }
            .boxed();
            Ok(ack)
        }
        .boxed()
    }

    fn last_sequence<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, ReadError>> {
        async move {
            match self
                .stream()
                .await?
                .get_last_raw_message_by_subject(subject)
                .await
            {
                Ok(m) => Ok(m.sequence),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
                Err(e) => Err(ReadError(e.to_string())),
            }
        }
        .boxed()
    }

    fn first_message<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, ReadError>> {
        async move {
            match self
                .stream()
                .await?
                .direct_get_next_for_subject(subject, None)
                .await
            {
                Ok(m) => Ok(Some(m.payload)),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(ReadError(e.to_string())),
            }
        }
        .boxed()
    }

    fn message(&self, seq: u64) -> BoxFuture<'_, Result<Bytes, ReadError>> {
        async move {
            let raw = self
                .stream()
                .await?
                .get_raw_message(seq)
                .await
                .map_err(|e| ReadError(e.to_string()))?;
            Ok(raw.payload)
        }
        .boxed()
    }
}
