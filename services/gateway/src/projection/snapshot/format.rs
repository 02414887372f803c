//! The stored form of the views: what a snapshot holds and how it is read back.
//!
//! A snapshot stores the position, every task with the fields the API hides (the request, the
//! range, the batches seen), the idempotency keys and the models' ledger states. List order,
//! issued ranges and counts are rebuilt from the tasks on reading, and a snapshot no fold
//! could have produced (a task past the position, two tasks holding the same numbers, a key
//! naming no task) is refused. The body is `postcard`, a compact binary serde format: every
//! field is written, in this order, so changing a stored type means bumping
//! [`super::VERSION`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::events::GenerateRequested;
use common::ledger::{Applied, ModelState, Range, Reservation};
use common::Format;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::TaskError;
use crate::projection::fold::{State, Task};
use crate::projection::Views;

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

impl<'a> From<&'a Task> for StoredTask<'a> {
    fn from(t: &'a Task) -> Self {
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

impl TryFrom<StoredTask<'_>> for Task {
    type Error = String;

    fn try_from(t: StoredTask<'_>) -> Result<Task, String> {
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
        Ok(Task {
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

impl Views {
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
}

/// The views as a snapshot stores them, apart from the live ones: see [`Views::frozen`].
pub struct FrozenViews {
    position: u64,
    tasks: HashMap<Uuid, Arc<Task>>,
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
    tasks: &HashMap<Uuid, Arc<Task>>,
    idempotency: &HashMap<String, Uuid>,
    models: &[ModelState],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    struct Tasks<'a>(&'a HashMap<Uuid, Arc<Task>>);
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
struct StoredTasks(HashMap<Uuid, Arc<Task>>);

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
                    let task = Task::try_from(task).map_err(serde::de::Error::custom)?;
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

impl<'de> Deserialize<'de> for Views {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredViews::deserialize(deserializer)?;
        Views::try_from(stored).map_err(serde::de::Error::custom)
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
                // The ledger's own fold decides, as it did when the reservation was made: a
                // range that overlaps one restored before it is refused.
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
    use crate::projection::testing::*;

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
