//! The views the gateway serves, as a pure fold of the `SN` stream.
//!
//! `Views::apply` is idempotent (a repeated event id changes nothing) and tolerant of order
//! within a task (a batch seen before its request still counts; states only move forward).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use common::events::{EventData, GenerateRequested};
use common::ledger::{Applied, Ledger, ModelState, Range, Reservation};
use common::Event;
use common::Format;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Celery's state names, so old clients keep working.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Pending,
    Started,
    Success,
    Failure,
}

impl State {
    pub fn parse(s: &str) -> Option<State> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PENDING" => State::Pending,
            "STARTED" => State::Started,
            "SUCCESS" => State::Success,
            "FAILURE" => State::Failure,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Started => "STARTED",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
        }
    }

    fn is_final(self) -> bool {
        matches!(self, State::Success | State::Failure)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// `GET /tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: Uuid,
    pub state: State,
    pub code_model: String,
    /// The first number: as requested, or as reserved once the generator picked it.
    pub number: Option<u64>,
    pub count: u64,
    pub generated: u64,
    pub first_serial: Option<String>,
    pub last_serial: Option<String>,
    pub error: Option<TaskError>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[schema(value_type = crate::openapi::FormatDoc)]
    pub format: Format,
    #[serde(skip)]
    pub request: Option<GenerateRequested>,
    /// Reserved `[first, last]`.
    #[serde(skip)]
    pub range: Option<(u64, u64)>,
    /// Generated batches the view holds, from the completion event.
    #[serde(skip)]
    pub batches: Option<u64>,
    /// Stream sequence of the task's first event: where its batches start.
    #[serde(skip)]
    pub first_seq: u64,
    #[serde(skip)]
    seen_batches: HashSet<u64>,
}

impl TaskView {
    fn new(id: Uuid, code_model: &str, first_seq: u64) -> TaskView {
        TaskView {
            first_seq,
            id,
            state: State::Pending,
            code_model: code_model.to_owned(),
            number: None,
            count: 0,
            generated: 0,
            first_serial: None,
            last_serial: None,
            error: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            format: Format::default(),
            request: None,
            range: None,
            batches: None,
            seen_batches: HashSet::new(),
        }
    }

    /// SUCCESS or FAILURE.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }

    fn advance(&mut self, to: State) {
        if !self.state.is_final() && to > self.state {
            self.state = to;
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "StoredViews")]
pub struct Views {
    /// Shared with a snapshot being written; a task that changes meanwhile is copied first.
    tasks: HashMap<Uuid, Arc<TaskView>>,
    /// Task ids by the stream sequence of their first event: the order of `GET /tasks`.
    order: BTreeMap<u64, Uuid>,
    /// Schemes and issued ranges per model, folded as the generators fold them.
    ledger: Ledger,
    idempotency: HashMap<String, Uuid>,
    /// Tasks per state, by `State as usize`.
    counts: [u64; 4],
    /// The stream sequence of the last event folded (or skipped).
    position: u64,
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
        let view = match self.tasks.get_mut(&id) {
            Some(v) => Arc::make_mut(v),
            None => {
                self.order.insert(seq, id);
                self.counts[State::Pending as usize] += 1;
                Arc::make_mut(
                    self.tasks
                        .entry(id)
                        .or_insert_with(|| Arc::new(TaskView::new(id, model, seq))),
                )
            }
        };
        let before = (view.state, view.generated);
        match &event.data {
            EventData::Requested(r) => {
                if view.request.is_some() {
                    return None;
                }
                view.count = r.count;
                if view.range.is_none() {
                    // The scheme it will get, as far as the ledger knows now; the reservation
                    // says for certain.
                    view.format = r
                        .format
                        .resolve(self.ledger.scheme(model))
                        .unwrap_or_else(|_| r.format.or_default());
                }
                if view.number.is_none() {
                    view.number = r.number;
                }
                view.created_at = Some(r.requested_at);
                if let Some(key) = &r.idempotency_key {
                    self.idempotency.entry(key.clone()).or_insert(id);
                }
                view.request = Some(r.clone());
            }
            EventData::Reserved(r) => {
                if view.range.is_some() {
                    return None;
                }
                // The first reservation in stream order holds; a later one it voids (an
                // overlap, another scheme, a model whose serials could meet another's) issues
                // nothing, as the generators' ledger decides.
                let applied = self.ledger.reserve(
                    &r.code_model,
                    seq,
                    Reservation {
                        range: Range {
                            first: r.first,
                            last: r.last,
                            task: id,
                        },
                        scheme: r.scheme,
                        automatic: r.automatic,
                    },
                );
                if applied != Applied::Granted {
                    return None;
                }
                view.range = Some((r.first, r.last));
                view.number = Some(r.first);
                if let Some(scheme) = r.scheme {
                    view.format = scheme;
                }
                view.started_at.get_or_insert(event.time);
                view.advance(State::Started);
            }
            // Folded into the ledger above, before any task is looked up.
            EventData::Declared(_) => return None,
            EventData::Generated(g) => {
                if view.state.is_final() || !view.seen_batches.insert(g.batch) {
                    return None;
                }
                view.generated += g.count;
                view.started_at.get_or_insert(event.time);
                view.advance(State::Started);
            }
            EventData::Completed(c) => {
                if view.state.is_final() {
                    return None;
                }
                view.advance(State::Success);
                view.generated = c.count;
                view.count = c.count;
                view.batches = Some(c.batches);
                view.first_serial = Some(c.first_serial.clone());
                view.last_serial = Some(c.last_serial.clone());
                view.finished_at = Some(event.time);
                view.seen_batches = HashSet::new();
            }
            EventData::Failed(f) => {
                if view.state.is_final() {
                    return None;
                }
                view.advance(State::Failure);
                view.error = Some(TaskError {
                    code: f.code.clone(),
                    message: f.message.clone(),
                });
                view.finished_at = Some(event.time);
                view.seen_batches = HashSet::new();
            }
        }
        if view.state != before.0 {
            self.counts[before.0 as usize] -= 1;
            self.counts[view.state as usize] += 1;
        }
        Some(id)
    }

    pub fn task(&self, id: &Uuid) -> Option<&TaskView> {
        self.tasks.get(id).map(|v| &**v)
    }

    pub fn by_idempotency_key(&self, key: &str) -> Option<&TaskView> {
        self.task(self.idempotency.get(key)?)
    }

    /// What a snapshot stores, taken in a moment (the tasks are shared, not copied) so it can
    /// be written without holding up the fold.
    pub fn frozen(&self) -> FrozenViews {
        FrozenViews {
            position: self.position,
            tasks: self.tasks.clone(),
            idempotency: self.idempotency.clone(),
            models: self.ledger.model_states().collect(),
        }
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
    ) -> (Vec<&TaskView>, Option<u64>) {
        let mut items = Vec::new();
        let upper = cursor.unwrap_or(u64::MAX);
        for (seq, id) in self.order.range(..upper).rev() {
            let Some(v) = self.task(id) else {
                continue;
            };
            if state.is_some_and(|s| s != v.state) || code_model.is_some_and(|m| m != v.code_model)
            {
                continue;
            }
            if items.len() == limit {
                return (items, Some(*seq + 1));
            }
            items.push(v);
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
        [
            State::Pending,
            State::Started,
            State::Success,
            State::Failure,
        ]
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

/// A task as a snapshot of the views stores it: every field, the ones the API hides too.
/// Fit for a binary format (no skipped fields; times keep their offset). Of the request only
/// what the view does not already hold is stored.
#[derive(Serialize, Deserialize)]
struct StoredTask<'a> {
    id: Uuid,
    state: State,
    code_model: Cow<'a, str>,
    number: Option<u64>,
    count: u64,
    generated: u64,
    first_serial: Option<Cow<'a, str>>,
    last_serial: Option<Cow<'a, str>>,
    error: Option<Cow<'a, TaskError>>,
    created_at: Option<OffsetDateTime>,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
    format: Format,
    request: Option<StoredRequest<'a>>,
    range: Option<(u64, u64)>,
    batches: Option<u64>,
    first_seq: u64,
    seen_batches: Cow<'a, HashSet<u64>>,
}

/// The request's fields a view does not hold itself: its task id, model and time are the
/// view's `id`, `code_model` and `created_at`.
#[derive(Serialize, Deserialize)]
struct StoredRequest<'a> {
    number: Option<u64>,
    count: u64,
    /// The format fields the request gave (a tuple: the wire form skips absent fields, which
    /// a binary format cannot).
    format: (
        Option<u8>,
        Option<common::CheckDigit>,
        Option<common::serial::Order>,
        Option<std::num::NonZeroU64>,
    ),
    idempotency_key: Option<Cow<'a, str>>,
}

impl<'a> From<&'a TaskView> for StoredTask<'a> {
    fn from(t: &'a TaskView) -> Self {
        StoredTask {
            id: t.id,
            state: t.state,
            code_model: Cow::Borrowed(&t.code_model),
            number: t.number,
            count: t.count,
            generated: t.generated,
            first_serial: t.first_serial.as_deref().map(Cow::Borrowed),
            last_serial: t.last_serial.as_deref().map(Cow::Borrowed),
            error: t.error.as_ref().map(Cow::Borrowed),
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            format: t.format,
            request: t.request.as_ref().map(|r| StoredRequest {
                number: r.number,
                count: r.count,
                format: (
                    r.format.width,
                    r.format.check_digit,
                    r.format.order,
                    r.format.one_in,
                ),
                idempotency_key: r.idempotency_key.as_deref().map(Cow::Borrowed),
            }),
            range: t.range,
            batches: t.batches,
            first_seq: t.first_seq,
            seen_batches: Cow::Borrowed(&t.seen_batches),
        }
    }
}

impl TryFrom<StoredTask<'_>> for TaskView {
    type Error = String;

    fn try_from(t: StoredTask<'_>) -> Result<TaskView, String> {
        let code_model = t.code_model.into_owned();
        let request = match (t.request, t.created_at) {
            (None, _) => None,
            (Some(r), Some(requested_at)) => Some(GenerateRequested {
                task_id: t.id,
                code_model: code_model.clone(),
                number: r.number,
                count: r.count,
                format: common::FormatRequest {
                    width: r.format.0,
                    check_digit: r.format.1,
                    order: r.format.2,
                    one_in: r.format.3,
                },
                requested_at,
                idempotency_key: r.idempotency_key.map(Cow::into_owned),
            }),
            (Some(_), None) => return Err(format!("task {} has a request but no time", t.id)),
        };
        Ok(TaskView {
            id: t.id,
            state: t.state,
            code_model,
            number: t.number,
            count: t.count,
            generated: t.generated,
            first_serial: t.first_serial.map(Cow::into_owned),
            last_serial: t.last_serial.map(Cow::into_owned),
            error: t.error.map(Cow::into_owned),
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            format: t.format,
            request,
            range: t.range,
            batches: t.batches,
            first_seq: t.first_seq,
            seen_batches: t.seen_batches.into_owned(),
        })
    }
}

/// The views as a snapshot stores them, apart from the live ones: see [`Views::frozen`].
pub struct FrozenViews {
    position: u64,
    tasks: HashMap<Uuid, Arc<TaskView>>,
    idempotency: HashMap<String, Uuid>,
    models: Vec<ModelState>,
}

impl FrozenViews {
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// Views as a snapshot stores them: the position, the tasks, the idempotency keys and the
/// models (schemes, cursors: what no task holds). The rest (list order, issued ranges,
/// counts) follows from the tasks.
fn serialize_views<S: serde::Serializer>(
    position: u64,
    tasks: &HashMap<Uuid, Arc<TaskView>>,
    idempotency: &HashMap<String, Uuid>,
    models: &[ModelState],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    struct Tasks<'a>(&'a HashMap<Uuid, Arc<TaskView>>);
    impl Serialize for Tasks<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.values().map(|t| StoredTask::from(&**t)))
        }
    }
    let mut s = serializer.serialize_struct("Views", 4)?;
    s.serialize_field("position", &position)?;
    s.serialize_field("tasks", &Tasks(tasks))?;
    s.serialize_field("idempotency", idempotency)?;
    s.serialize_field("models", models)?;
    s.end()
}

impl Serialize for FrozenViews {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_views(
            self.position,
            &self.tasks,
            &self.idempotency,
            &self.models,
            serializer,
        )
    }
}

impl Serialize for Views {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_views(
            self.position,
            &self.tasks,
            &self.idempotency,
            &self.ledger.model_states().collect::<Vec<_>>(),
            serializer,
        )
    }
}

#[derive(Deserialize)]
struct StoredViews {
    position: u64,
    tasks: StoredTasks,
    idempotency: HashMap<String, Uuid>,
    models: Vec<ModelState>,
}

/// The stored tasks read straight into the map by id: a snapshot holds hundreds of
/// thousands, and a list of them in between would be copied as it grows.
struct StoredTasks(HashMap<Uuid, Arc<TaskView>>);

impl<'de> Deserialize<'de> for StoredTasks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StoredTasks;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of tasks")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                // The length comes from the input: capped, so a damaged one cannot ask for
                // much memory up front; a larger map grows as tasks actually arrive.
                let mut tasks = HashMap::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 18));
                while let Some(task) = seq.next_element::<StoredTask<'static>>()? {
                    let task = TaskView::try_from(task).map_err(serde::de::Error::custom)?;
                    let id = task.id;
                    if tasks.insert(id, Arc::new(task)).is_some() {
                        return Err(serde::de::Error::custom(format!("task {id} appears twice")));
                    }
                }
                Ok(StoredTasks(tasks))
            }
        }
        deserializer.deserialize_seq(Visit)
    }
}

impl TryFrom<StoredViews> for Views {
    type Error = String;

    /// Rebuilds the views, refusing anything a fold could not have produced.
    fn try_from(stored: StoredViews) -> Result<Views, String> {
        let mut views = Views {
            position: stored.position,
            tasks: stored.tasks.0,
            ..Views::default()
        };
        // Schemes in the order they were fixed, as the fold met them.
        let mut models = stored.models;
        models.sort_by_key(|m| (m.scheme.is_none(), m.scheme_seq));
        for m in &models {
            if m.scheme_seq > views.position || views.ledger.restore_model(m).is_err() {
                return Err(format!(
                    "model {} cannot be restored as {m:?}",
                    m.code_model
                ));
            }
        }
        for (&id, task) in &views.tasks {
            if task.first_seq == 0 || task.first_seq > views.position {
                return Err(format!(
                    "task {id} starts at {} of {}",
                    task.first_seq, views.position
                ));
            }
            if views.order.insert(task.first_seq, id).is_some() {
                return Err(format!("two tasks start at {}", task.first_seq));
            }
            if let Some((first, last)) = task.range {
                let model = &task.code_model;
                let applied = views.ledger.reserve(
                    model,
                    task.first_seq,
                    Reservation {
                        range: Range {
                            first,
                            last,
                            task: id,
                        },
                        scheme: views.ledger.scheme(model),
                        // The cursor came with the model.
                        automatic: false,
                    },
                );
                if applied != Applied::Granted {
                    return Err(format!("task {id} holds {first}..={last}, which overlaps"));
                }
            }
            views.counts[task.state as usize] += 1;
        }
        if let Some((key, _)) = stored
            .idempotency
            .iter()
            .find(|(_, id)| !views.tasks.contains_key(id))
        {
            return Err(format!("idempotency key {key:?} names no task"));
        }
        views.idempotency = stored.idempotency;
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::events::{
        GenerateRequested, RangeReserved, SerialsGenerated, TaskCompleted, TaskFailed,
    };

    fn ev(data: EventData) -> Event {
        Event::new("/test", data)
    }

    fn requested(id: Uuid, number: Option<u64>, count: u64) -> Event {
        ev(EventData::Requested(GenerateRequested {
            task_id: id,
            code_model: "0111".into(),
            number,
            count,
            // Requests without a first number name no format either, as most clients send.
            format: if number.is_some() {
                Format::default().into()
            } else {
                Default::default()
            },
            requested_at: OffsetDateTime::now_utc(),
            idempotency_key: Some(format!("key-{id}")),
        }))
    }

    fn reserved(id: Uuid, first: u64, last: u64) -> Event {
        ev(EventData::Reserved(RangeReserved {
            task_id: id,
            code_model: "0111".into(),
            first,
            last,
            scheme: Some(Format::default()),
            automatic: true,
        }))
    }

    fn batch(id: Uuid, batch: u64, count: u64) -> Event {
        ev(EventData::Generated(SerialsGenerated {
            task_id: id,
            code_model: "0111".into(),
            batch,
            first_number: 1 + batch * 10,
            count,
            serials: vec![],
        }))
    }

    fn completed(id: Uuid, count: u64) -> Event {
        ev(EventData::Completed(TaskCompleted {
            task_id: id,
            code_model: "0111".into(),
            count,
            first_serial: "011100000001".into(),
            last_serial: format!("0111{count:08}"),
            batches: 2,
        }))
    }

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

    /// Views after a mix of tasks in every state, with a key, a void reservation and a
    /// skipped sequence.
    fn mixed() -> (Views, Vec<Uuid>) {
        let mut v = Views::default();
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        v.apply(1, &requested(ids[0], None, 20));
        v.apply(2, &requested(ids[1], Some(100), 10));
        v.apply(3, &reserved(ids[0], 1, 20));
        v.apply(4, &batch(ids[0], 0, 10));
        v.apply(5, &reserved(ids[1], 15, 24));
        v.apply(6, &reserved(ids[1], 100, 109));
        v.apply(7, &batch(ids[0], 1, 10));
        v.apply(8, &completed(ids[0], 20));
        v.apply(9, &batch(ids[2], 0, 10));
        v.apply(
            10,
            &ev(EventData::Failed(TaskFailed {
                task_id: ids[3],
                code_model: "0111".into(),
                code: "range_conflict".into(),
                message: "taken".into(),
            })),
        );
        v.skip(11);
        (v, ids)
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_views_and_folds_on_alike() {
        let (v, ids) = mixed();
        let bytes = postcard::to_stdvec(&v).unwrap();
        let mut back: Views = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.position(), 11);
        assert_eq!(back.overlap("0111", 105, 105).map(|r| r.task), Some(ids[1]));
        assert_eq!(back.overlap("0111", 21, 99), None);
        assert_eq!(back.task(&ids[2]).unwrap().generated, 10);
        assert_eq!(back.counts()[&State::Started], 2);
        assert_eq!(back.counts()[&State::Failure], 1);
        assert_eq!(
            back.by_idempotency_key(&format!("key-{}", ids[1]))
                .map(|t| t.id),
            Some(ids[1])
        );
        let listed = |v: &Views| {
            v.list(None, None, None, 10)
                .0
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&back), listed(&v));
        // A frozen copy taken before more is folded still reads back as the views it was
        // taken from: the tasks it shares are copied before they change.
        let frozen = v.frozen();
        let mut v = v;
        v.apply(12, &batch(ids[2], 3, 5));
        let at_11: Views = postcard::from_bytes(&postcard::to_stdvec(&frozen).unwrap()).unwrap();
        assert_eq!(at_11, back);
        assert_eq!(at_11.task(&ids[2]).unwrap().generated, 10);
        assert_eq!(v.task(&ids[2]).unwrap().generated, 15);
        let mut v = at_11;
        // Folding on from the snapshot ends where folding on from the original does, a
        // repeated batch included.
        for (seq, e) in [
            (12, batch(ids[2], 0, 10)),
            (13, batch(ids[2], 1, 5)),
            (14, completed(ids[1], 10)),
        ] {
            assert_eq!(back.apply(seq, &e), v.apply(seq, &e));
        }
        assert_eq!(back, v);
        assert_eq!(back.task(&ids[2]).unwrap().generated, 15);
    }

    #[test]
    fn a_snapshot_no_fold_could_produce_is_refused() {
        let (v, ids) = mixed();
        let json: serde_json::Value = serde_json::to_value(&v).unwrap();
        let damaged = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut j = json.clone();
            f(&mut j);
            serde_json::from_value::<Views>(j).unwrap_err().to_string()
        };
        // The stored task of `id`.
        fn of(j: &mut serde_json::Value, id: Uuid) -> &mut serde_json::Value {
            let tasks = j["tasks"].as_array_mut().unwrap();
            let id = serde_json::to_value(id).unwrap();
            tasks.iter_mut().find(|t| t["id"] == id).unwrap()
        }
        let overlap = damaged(&|j| of(j, ids[1])["range"] = serde_json::json!([5, 30]));
        assert!(overlap.contains("overlaps"), "{overlap}");
        let ahead = damaged(&|j| j["position"] = serde_json::json!(3));
        assert!(ahead.contains("starts at"), "{ahead}");
        let twice = damaged(&|j| {
            let first = j["tasks"][0].clone();
            j["tasks"][1]["id"] = first["id"].clone();
        });
        assert!(
            twice.contains("twice") || twice.contains("overlaps"),
            "{twice}"
        );
        let key = damaged(&|j| {
            j["idempotency"] = serde_json::json!({"k": Uuid::new_v4()});
        });
        assert!(key.contains("names no task"), "{key}");
        assert!(serde_json::from_slice::<Views>(b"{\"position\":1}").is_err());
    }
}
