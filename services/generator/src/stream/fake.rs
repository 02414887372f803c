//! An in-memory [`Stream`] for tests: stores in order, drops a repeated id as a duplicate,
//! checks conditions as JetStream does, and fails or races publishes on demand.

use std::sync::Mutex;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::watch;

use super::{Ack, Expect, PublishError, ReadError, Refusal, Stored, Stream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
}

#[derive(Default)]
struct State {
    /// Sequence `n` at index `n - 1`.
    messages: Vec<Message>,
    /// Publishes still to store before one fails unanswered, at its ack.
    fail_after: Option<usize>,
    /// Stored right before the next conditional publish, whose condition is then not checked:
    /// a clustered server accepting two compare-and-sets expecting the same sequence.
    race: Option<Message>,
}

pub struct FakeStream {
    state: Mutex<State>,
    /// The last sequence stored.
    last: watch::Sender<u64>,
}

impl Default for FakeStream {
    fn default() -> Self {
        FakeStream {
            state: Mutex::default(),
            last: watch::Sender::new(0),
        }
    }
}

impl FakeStream {
    /// Stores a message as another publisher would (no condition, no dedup).
    pub fn store(&self, subject: &str, id: &str, payload: Bytes) -> u64 {
        let mut s = self.lock();
        let seq = push(
            &mut s,
            Message {
                subject: subject.to_owned(),
                id: id.to_owned(),
                payload,
            },
        );
        drop(s);
        self.last.send_replace(seq);
        seq
    }

    /// The publish after the next `n` is not stored and its ack says nothing came back.
    pub fn fail_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    /// Stores `message` right before the next conditional publish, and accepts that publish
    /// whatever it expected.
    pub fn race_next(&self, message: Message) {
        self.lock().race = Some(message);
    }

    /// Every message stored, in order (sequence `n` at index `n - 1`).
    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    /// Watches the last sequence stored.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake stream lock poisoned")
    }

    fn store_checked(
        &self,
        subject: String,
        id: &str,
        payload: Bytes,
        expect: Expect<'_>,
    ) -> Result<Stored, PublishError> {
        let mut s = self.lock();
        if let Some(at) = s.messages.iter().position(|m| m.id == id) {
            return Ok(Stored {
                sequence: at as u64 + 1,
                duplicate: true,
            });
        }
        let raced = match expect {
            Expect::Nothing => None,
            _ => s.race.take(),
        };
        let raced = raced.is_some_and(|m| {
            push(&mut s, m);
            true
        });
        let holds = raced
            || match expect {
                Expect::Nothing => true,
                Expect::LastSubjectSequence(seq) => last_on(&s, &subject) == seq,
                Expect::LastMessageId(previous) => {
                    s.messages.last().is_some_and(|m| m.id == previous)
                }
            };
        if !holds {
            let refusal = match expect {
                Expect::LastMessageId(_) => Refusal::WrongLastMessageId,
                _ => Refusal::WrongLastSequence,
            };
            return Err(PublishError {
                refusal,
                message: "wrong last sequence".into(),
            });
        }
        let sequence = push(
            &mut s,
            Message {
                subject,
                id: id.to_owned(),
                payload,
            },
        );
        drop(s);
        self.last.send_replace(sequence);
        Ok(Stored {
            sequence,
            duplicate: false,
        })
    }
}

fn push(s: &mut State, m: Message) -> u64 {
    s.messages.push(m);
    s.messages.len() as u64
}

fn last_on(s: &State, subject: &str) -> u64 {
    s.messages
        .iter()
        .rposition(|m| m.subject == subject)
        .map_or(0, |at| at as u64 + 1)
}

fn unanswered() -> PublishError {
    PublishError {
        refusal: Refusal::Unanswered,
        message: "timed out".into(),
    }
}

impl Stream for FakeStream {
    fn publish<'a>(
        &'a self,
        subject: String,
        id: &'a str,
        payload: Bytes,
        expect: Expect<'a>,
    ) -> BoxFuture<'a, Result<Ack, PublishError>> {
        async move {
            let fails = {
                let mut s = self.lock();
                let fails = s.fail_after == Some(0);
                s.fail_after = s.fail_after.and_then(|n| n.checked_sub(1));
                fails
            };
            if fails {
                return Ok(async { Err(unanswered()) }.boxed());
            }
            let stored = self.store_checked(subject, id, payload, expect);
            Ok(async move { stored }.boxed())
        }
        .boxed()
    }

    fn last_sequence<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, ReadError>> {
        async move { Ok(last_on(&self.lock(), subject)) }.boxed()
    }

    fn first_message<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, ReadError>> {
        async move {
            let s = self.lock();
            Ok(s.messages
                .iter()
                .find(|m| m.subject == subject)
                .map(|m| m.payload.clone()))
        }
        .boxed()
    }

    fn message(&self, seq: u64) -> BoxFuture<'_, Result<Bytes, ReadError>> {
        async move {
            let s = self.lock();
            seq.checked_sub(1)
                .and_then(|at| s.messages.get(at as usize))
                .map(|m| m.payload.clone())
                .ok_or_else(|| ReadError(format!("no message {seq}")))
        }
        .boxed()
    }
}
