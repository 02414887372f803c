//! The indexes over the folded tasks and the queries the API asks of them.
//!
//! [`Views::apply`] folds one event of the `SN` stream: a model's declaration or reservation
//! goes to the ledger (`common::ledger`, the same fold the generators run), a task's event
//! moves its [`Task`], and the indexes follow: list order, idempotency keys, tasks per state.
//! The fold is idempotent (a repeated event changes nothing) and tolerant of order within a
//! task (see [`super::fold`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::events::EventData;
use common::ledger::{Applied, Ledger, Range, Reservation};
use common::Event;
use uuid::Uuid;

use super::fold::{State, Task};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Views {
    /// Shared with a snapshot being written; a task that changes meanwhile is copied first.
    pub(super) tasks: HashMap<Uuid, Arc<Task>>,
    /// Task ids by the stream sequence of their first event: the order of `GET /tasks`.
    pub(super) order: BTreeMap<u64, Uuid>,
    /// Schemes and issued ranges per model, folded as the generators fold them.
    pub(super) ledger: Ledger,
    pub(super) idempotency: HashMap<String, Uuid>,
    /// Tasks per state, by `State as usize`.
    pub(super) counts: [u64; 4],
    /// The stream sequence of the last event folded (or skipped).
    pub(super) position: u64,
}

impl Views {
    /// Folds the event found at stream sequence `seq`; returns the task it changed.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Option<Uuid> {
        self.position = self.position.max(seq);
        let model = event.data.code_model();
        let id = match (&event.data, event.task_id()) {
            (EventData::Declared(d), _) => {
                self.ledger.declare(&d.code_model, seq, d.scheme);
                return None;
            }
            (_, Some(id)) => id,
            (_, None) => return None,
        };
        let task = match self.tasks.get_mut(&id) {
            Some(t) => Arc::make_mut(t),
            None => {
                self.order.insert(seq, id);
                self.counts[State::Pending as usize] += 1;
                Arc::make_mut(
                    self.tasks
                        .entry(id)
                        .or_insert_with(|| Arc::new(Task::new(id, model, seq))),
                )
            }
        };
        let before = task.state;
        let changed = match &event.data {
            EventData::Requested(r) => {
                let scheme = r
                    .format
                    .resolve(self.ledger.scheme(model))
                    .unwrap_or_else(|_| r.format.or_default());
                let new = task.requested(r, scheme);
                if let (true, Some(key)) = (new, &r.idempotency_key) {
                    self.idempotency.entry(key.clone()).or_insert(id);
                }
                new
            }
            EventData::Reserved(r) => {
                // The ledger decides whether the reservation holds (a void one issues
                // nothing, and its task stays as it was).
                let reservation = Reservation {
                    range: Range {
                        first: r.first,
                        last: r.last,
                        task: id,
                    },
                    scheme: r.scheme,
                    automatic: r.automatic,
                };
                let granted = task.range.is_none()
                    && self.ledger.reserve(&r.code_model, seq, reservation) == Applied::Granted;
                if granted {
                    task.reserved(r.first, r.last, r.scheme, event.time);
                }
                granted
            }
            // Folded into the ledger above, before any task is looked up.
            EventData::Declared(_) => false,
            EventData::Generated(g) => task.generated(g, event.time),
            EventData::Completed(c) => task.completed(c, event.time),
            EventData::Failed(f) => task.failed(f, event.time),
        };
        if !changed {
            return None;
        }
        if task.state != before {
            self.counts[before as usize] -= 1;
            self.counts[task.state as usize] += 1;
        }
        Some(id)
    }

    pub fn task(&self, id: &Uuid) -> Option<&Task> {
        self.tasks.get(id).map(|t| &**t)
    }

    /// The task, shared: holding it does not hold the views' lock.
    pub fn shared(&self, id: &Uuid) -> Option<Arc<Task>> {
        self.tasks.get(id).cloned()
    }

    pub fn by_idempotency_key(&self, key: &str) -> Option<&Task> {
        self.task(self.idempotency.get(key)?)
    }

    /// An issued range of `model` overlapping `[first, last]`, if any.
    pub fn overlap(&self, model: &str, first: u64, last: u64) -> Option<Range> {
        self.ledger.overlap(model, first, last)
    }

    /// Every model's scheme and issued ranges.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Tasks newest first, from before `cursor` (a stream sequence), filtered.
    pub fn list(
        &self,
        state: Option<State>,
        code_model: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> (Vec<&Task>, Option<u64>) {
        let mut items = Vec::new();
        let upper = cursor.unwrap_or(u64::MAX);
        for (seq, id) in self.order.range(..upper).rev() {
            let Some(t) = self.task(id) else {
                continue;
            };
            if state.is_some_and(|s| s != t.state) || code_model.is_some_and(|m| m != t.code_model)
            {
                continue;
            }
            if items.len() == limit {
                return (items, Some(*seq + 1));
            }
            items.push(t);
        }
        (items, None)
    }

    /// Records a position without an event (an undecodable message was skipped).
    pub fn skip(&mut self, seq: u64) {
        self.position = self.position.max(seq);
    }

    /// The stream sequence these views reflect.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Tasks per state.
    pub fn counts(&self) -> HashMap<State, u64> {
        State::ALL
            .into_iter()
            .map(|s| (s, self.counts[s as usize]))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::testing::*;
    use common::events::TaskFailed;

    #[test]
    fn a_task_moves_from_pending_to_success() {
        let mut v = Views::default();
        let id = Uuid::new_v4();
        v.apply(1, &requested(id, Some(1), 20));
        assert_eq!(v.task(&id).unwrap().state, State::Pending);
        v.apply(2, &reserved(id, 1, 20));
        v.apply(3, &batch(id, 0, 10));
        let t = v.task(&id).unwrap();
        assert_eq!((t.state, t.generated), (State::Started, 10));
        v.apply(4, &batch(id, 1, 10));
        v.apply(5, &completed(id, 20));
        let t = v.task(&id).unwrap();
        assert_eq!(t.state, State::Success);
        assert_eq!(t.generated, 20);
        assert_eq!(t.last_serial.as_deref(), Some("011100000020"));
        assert_eq!(v.overlap("0111", 20, 30).map(|r| r.task), Some(id));
        assert_eq!(v.overlap("0111", 21, 30), None);
        assert_eq!(
            v.by_idempotency_key(&format!("key-{id}")).map(|t| t.id),
            Some(id)
        );
        assert_eq!(v.counts()[&State::Success], 1);
        assert_eq!(v.counts()[&State::Pending], 0);
    }

    #[test]
    fn an_overlapping_later_reservation_is_void_until_its_task_reserves_again() {
        let mut v = Views::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        v.apply(1, &requested(a, None, 10));
        v.apply(2, &requested(b, None, 10));
        v.apply(3, &reserved(a, 1, 10));
        assert_eq!(v.apply(4, &reserved(b, 5, 14)), None);
        let t = v.task(&b).unwrap();
        assert_eq!((t.state, t.range), (State::Pending, None));
        assert_eq!(v.overlap("0111", 11, 14), None);
        v.apply(5, &reserved(b, 11, 20));
        assert_eq!(v.task(&b).unwrap().range, Some((11, 20)));
        assert_eq!(v.overlap("0111", 5, 5).map(|r| r.task), Some(a));
        assert_eq!(v.ledger().ranges().count(), 2);
    }

    #[test]
    fn repeated_events_change_nothing() {
        let events = {
            let id = Uuid::new_v4();
            vec![
                requested(id, None, 20),
                reserved(id, 1, 20),
                batch(id, 0, 10),
                batch(id, 1, 10),
                completed(id, 20),
            ]
        };
        let mut once = Views::default();
        for (i, e) in events.iter().enumerate() {
            once.apply(i as u64 + 1, e);
        }
        let mut twice = Views::default();
        let mut seq = 0;
        for e in events.iter().chain(events.iter()) {
            seq += 1;
            twice.apply(seq, e);
        }
        let id = events[0].task_id().unwrap();
        assert_eq!(once.task(&id), twice.task(&id));
        assert_eq!(twice.len(), 1);
        assert_eq!(twice.list(None, None, None, 10).0.len(), 1);
    }

    #[test]
    fn batches_before_the_request_still_count_and_states_never_go_back() {
        let mut v = Views::default();
        let id = Uuid::new_v4();
        v.apply(1, &batch(id, 0, 10));
        v.apply(2, &completed(id, 20));
        v.apply(3, &batch(id, 1, 10));
        v.apply(4, &requested(id, Some(1), 20));
        let t = v.task(&id).unwrap();
        assert_eq!((t.state, t.generated, t.count), (State::Success, 20, 20));
        v.apply(
            5,
            &ev(EventData::Failed(TaskFailed {
                task_id: id,
                code_model: "0111".into(),
                code: "internal".into(),
                message: "late".into(),
            })),
        );
        assert_eq!(v.task(&id).unwrap().state, State::Success);
    }

    #[test]
    fn list_is_newest_first_with_a_cursor_and_filters() {
        let mut v = Views::default();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            v.apply(i as u64 + 1, &requested(*id, None, 1));
        }
        v.apply(10, &completed(ids[1], 1));
        let (page, cursor) = v.list(None, None, None, 2);
        assert_eq!(
            page.iter().map(|t| t.id).collect::<Vec<_>>(),
            [ids[4], ids[3]]
        );
        let (page, cursor) = v.list(None, None, cursor, 2);
        assert_eq!(
            page.iter().map(|t| t.id).collect::<Vec<_>>(),
            [ids[2], ids[1]]
        );
        let (page, cursor) = v.list(None, None, cursor, 2);
        assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[0]]);
        assert_eq!(cursor, None);
        let (page, _) = v.list(Some(State::Success), None, None, 10);
        assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[1]]);
        assert!(v.list(None, Some("other"), None, 10).0.is_empty());
    }
}
