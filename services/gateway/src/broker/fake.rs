//! A broker in memory for tests: a stream whose replicas may lag behind its leader, and
//! publishes that are recorded and answered as the test sets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use common::Event;
use futures::future::BoxFuture;

use super::{Accepted, Broker, BrokerError, Replica, Stored};

/// How the fake answers a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Stored at the next sequence.
    Stored,
    /// Stored before: JetStream's duplicate answer.
    Duplicate,
    /// Sent, never acknowledged.
    NoAck,
}

pub struct FakeBroker {
    /// The stream: subject and payload by sequence.
    messages: Mutex<BTreeMap<u64, (String, Bytes)>>,
    /// A direct get (any replica) sees only the sequences below this one.
    pub replica_sees: AtomicU64,
    connected: AtomicBool,
    answer: Mutex<Answer>,
    /// Every event published, with its subject.
    pub published: Mutex<Vec<(String, Event)>>,
    /// Called with each event stored and its sequence, before the publish is answered.
    on_stored: Mutex<Option<OnStored>>,
}

type OnStored = Box<dyn Fn(u64, &Event) + Send + Sync>;

impl Default for FakeBroker {
    fn default() -> Self {
        FakeBroker {
            messages: Mutex::default(),
            replica_sees: AtomicU64::new(u64::MAX),
            connected: AtomicBool::new(true),
            answer: Mutex::new(Answer::Stored),
            published: Mutex::default(),
            on_stored: Mutex::default(),
        }
    }
}

impl FakeBroker {
    /// Stores `payload` on `subject` at stream sequence `seq`.
    pub fn insert(&self, seq: u64, subject: &str, payload: Bytes) {
        self.messages
            .lock()
            .unwrap()
            .insert(seq, (subject.to_owned(), payload));
    }

    /// Runs `f` with each event stored from now on (a test folds it into its views, as the
    /// projection would).
    pub fn on_stored(&self, f: impl Fn(u64, &Event) + Send + Sync + 'static) {
        *self.on_stored.lock().unwrap() = Some(Box::new(f));
    }

    /// From now on the fake is not connected: publishes and reads of the last sequence fail.
    pub fn disconnect(&self) {
        self.connected.store(false, Ordering::SeqCst);
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn last(&self) -> u64 {
        let messages = self.messages.lock().unwrap();
        messages.keys().next_back().copied().unwrap_or(0)
    }

    fn first(&self, subject: &str, seq: u64, below: u64) -> Option<Stored> {
        let messages = self.messages.lock().unwrap();
        messages
            .range(seq..below.max(seq))
            .find(|(_, (s, _))| s == subject)
            .map(|(&seq, (_, payload))| Stored {
                seq,
                payload: payload.clone(),
            })
    }
}

impl Broker for FakeBroker {
    fn publish(
        &self,
        subject: String,
        event: Event,
    ) -> BoxFuture<'_, Result<Accepted, BrokerError>> {
        if !self.connected() {
            return Box::pin(async { Err(BrokerError::Disconnected) });
        }
        let answer = *self.answer.lock().unwrap();
        let result = match answer {
            Answer::Stored => {
                let sequence = self.last() + 1;
                self.insert(sequence, &subject, Bytes::from(event.to_json()));
                if let Some(f) = &*self.on_stored.lock().unwrap() {
                    f(sequence, &event);
                }
                Ok(Accepted {
                    sequence,
                    duplicate: false,
                })
            }
            Answer::Duplicate => Ok(Accepted {
                sequence: self.last(),
                duplicate: true,
            }),
            Answer::NoAck => Err(BrokerError::Other("no ack from JetStream in time".into())),
        };
        self.published.lock().unwrap().push((subject, event));
        let answer = result;
        Box::pin(async move { answer })
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64, BrokerError>> {
        let last = if self.connected() {
            Ok(self.last())
        } else {
            Err(BrokerError::Disconnected)
        };
        Box::pin(async move { last })
    }

    fn next_stored(
        &self,
        subject: &str,
        seq: u64,
        replica: Replica,
    ) -> BoxFuture<'_, Result<Option<Stored>, BrokerError>> {
        let below = match replica {
            Replica::Any => self.replica_sees.load(Ordering::SeqCst),
            Replica::Leader => u64::MAX,
        };
        let found = self.first(subject, seq, below);
        Box::pin(async move { Ok(found) })
    }
}
