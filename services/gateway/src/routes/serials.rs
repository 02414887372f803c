//! `GET /tasks/{id}/serials`: the serials of a finished task, streamed from the task's
//! generated events in JetStream, one batch at a time, never held whole in memory.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use common::events::BorrowedBatch;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use crate::broker::{run_ahead, BrokerError, Follow};
use crate::extract::{ApiPath, ApiQuery};
use crate::projection::State as TaskState;
use crate::routes::tasks::{find, parse_id};
use crate::{ApiError, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Text,
    Csv,
    Ndjson,
}

impl Form {
    /// `?format=csv|ndjson|text` (for links, which cannot set headers) wins over `Accept`.
    pub fn pick(format: Option<&str>, headers: &HeaderMap) -> Form {
        match format {
            Some("csv") => return Form::Csv,
            Some("ndjson") => return Form::Ndjson,
            Some("text") | Some("txt") => return Form::Text,
            _ => {}
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/csv") {
            Form::Csv
        } else if accept.contains("application/x-ndjson") {
            Form::Ndjson
        } else {
            Form::Text
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Form::Text => "text/plain; charset=utf-8",
            Form::Csv => "text/csv; charset=utf-8",
            Form::Ndjson => "application/x-ndjson",
        }
    }

    /// Renders one batch's serials (written byte by byte: this runs once per serial).
    pub fn render(self, batch: &BorrowedBatch<'_>, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        for (i, serial) in batch.serials.iter().enumerate() {
            let n = number.format(batch.first_number + i as u64);
            match self {
                Form::Text => out.extend_from_slice(serial.as_bytes()),
                Form::Csv => {
                    out.extend_from_slice(serial.as_bytes());
                    out.push(b',');
                    out.extend_from_slice(n.as_bytes());
                }
                Form::Ndjson => {
                    out.extend_from_slice(b"{\"serial\":\"");
                    out.extend_from_slice(serial.as_bytes());
                    out.extend_from_slice(b"\",\"number\":");
                    out.extend_from_slice(n.as_bytes());
                    out.push(b'}');
                }
            }
            out.push(b'\n');
        }
    }
}

/// Puts batches in order and drops repeats (a republished batch appears twice in the stream).
struct Reorder {
    next: u64,
    total: u64,
    waiting: BTreeMap<u64, Bytes>,
}

/// Checks that the batches, in order, are one run of numbers of the task's size: a batch
/// that does not start where the one before ended (or a short total) fails the body.
struct Continuity {
    next_number: Option<u64>,
    serials: u64,
    count: u64,
    /// The first batch's first number.
    first_number: Option<u64>,
}

impl Continuity {
    fn take(&mut self, batch: &BorrowedBatch<'_>) -> Result<(), BrokerError> {
        if let Some(expected) = self.next_number.filter(|&n| n != batch.first_number) {
            return Err(BrokerError::Other(format!(
                "batch {} starts at number {}, not {expected}",
                batch.batch, batch.first_number
            )));
        }
        let len = batch.serials.len() as u64;
        self.first_number.get_or_insert(batch.first_number);
        self.next_number = batch.first_number.checked_add(len);
        self.serials += len;
        Ok(())
    }

    fn end(&self) -> Result<(), BrokerError> {
        if self.serials == self.count {
            Ok(())
        } else {
            Err(BrokerError::Other(format!(
                "the batches hold {} serials, the task {}",
                self.serials, self.count
            )))
        }
    }
}

enum Slot {
    /// The batch is the next one: render it now.
    Now,
    /// Ahead of the next one: kept until its turn.
    Later,
    /// Already rendered or out of range.
    Drop,
}

impl Reorder {
    fn place(&mut self, batch: u64, payload: &Bytes) -> Slot {
        if batch < self.next || batch >= self.total {
            Slot::Drop
        } else if batch == self.next {
            self.next += 1;
            Slot::Now
        } else {
            self.waiting.entry(batch).or_insert_with(|| payload.clone());
            Slot::Later
        }
    }

    /// The next batch, if it arrived early.
    fn pop_ready(&mut self) -> Option<Bytes> {
        let p = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(p)
    }

    fn done(&self) -> bool {
        self.next >= self.total
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct DownloadQuery {
    format: Option<String>,
    follow: Option<String>,
}

/// How many batches make the task, and how its end is checked.
enum Total {
    /// The task is SUCCESS: its completion counted them.
    Known(u64),
    /// The task was still running: asked once its batches have run out (and it has ended).
    AtEnd(Box<dyn Fn() -> Result<Ended, BrokerError> + Send>),
}

/// What the completion of a followed task says.
struct Ended {
    batches: u64,
    count: u64,
    first_number: Option<u64>,
}

/// The serials of a finished task, streamed in order.
#[utoipa::path(
    get,
    path = "/tasks/{id}/serials",
    tag = "serials",
    params(
        ("id" = uuid::Uuid, Path, description = "Task id"),
        ("format" = Option<String>, Query, description = "text, csv or ndjson (else chosen by Accept)"),
        ("follow" = Option<bool>, Query, description = "true: also for a task still PENDING or STARTED; the serials stream as their batches are stored, and the body ends with the task (in an error if it fails)"),
    ),
    responses(
        (status = 200, description = "One serial per line; CSV `serial,number`; or NDJSON", content(
            (String = "text/plain"), (String = "text/csv"), (String = "application/x-ndjson")
        )),
        (status = 400, description = "Malformed id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Unknown task", body = crate::openapi::ErrorBody),
        (status = 409, description = "Task not SUCCESS yet (without follow), or FAILURE", body = crate::openapi::ErrorBody),
        (status = 422, description = "Invalid follow", body = crate::openapi::ErrorBody),
        (status = 503, description = "NATS unreachable", body = crate::openapi::ErrorBody),
    )
)]
#[tracing::instrument(name = "download serials", skip_all, fields(task_id = %raw))]
pub async fn download(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let follow = match q.follow.as_deref() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::Unprocessable {
                field: "follow".into(),
                message: "must be true or false".into(),
            })
        }
    };
    // Subscribed before the lookup, so a change in between is not missed.
    let changes = state.projection.subscribe();
    let view = find(&state, id).await?;
    let followed = follow && !view.is_final();
    if view.state != TaskState::Success && !followed {
        return Err(ApiError::Conflict {
            code: "not_ready",
            message: format!(
                "task {id} is {}; serials are served once it is SUCCESS (or as they come, with \
                 ?follow=true, while it runs)",
                view.state.as_str()
            ),
        });
    }
    let form = Form::pick(q.format.as_deref(), &headers);
    let (total, follow) = if followed {
        let ended = {
            let projection = state.projection.clone();
            move || projection.views().task(&id).is_some_and(|v| v.is_final())
        };
        let at_end = {
            let projection = state.projection.clone();
            move || match projection.views().task(&id) {
                Some(v) if v.state == TaskState::Success => Ok(Ended {
                    batches: v.batches.unwrap_or(0),
                    count: v.count,
                    first_number: v.range.map(|(first, _)| first),
                }),
                Some(v) => Err(BrokerError::Other(format!(
                    "task {id} ended in {}: {}",
                    v.state.as_str(),
                    v.error.as_ref().map_or("", |e| e.message.as_str())
                ))),
                None => Err(BrokerError::Other(format!("task {id} is gone"))),
            }
        };
        let follow = Follow {
            changes,
            feed: {
                let projection = state.projection.clone();
                Box::new(move || projection.subscribe_batches())
            },
            ended: Box::new(ended),
            stop: state.shutdown.clone(),
        };
        (Total::AtEnd(Box::new(at_end)), Some(follow))
    } else {
        (Total::Known(view.batches.unwrap_or(0)), None)
    };
    let source = state
        .broker
        .generated(&view.code_model, id, view.first_seq, follow)
        .await
        .map_err(|e| {
            tracing::warn!(task_id = %id, error = %e, "cannot read the task's batches");
            ApiError::Unavailable
        })?;
    let header_line = match form {
        Form::Csv => Some(Bytes::from_static(b"serial,number\n")),
        _ => None,
    };
    // Rendered a couple of batches ahead of the socket, on a task of its own.
    let continuity = Continuity {
        next_number: view.range.map(|(first, _)| first),
        serials: 0,
        count: view.count,
        first_number: None,
    };
    let lines = run_ahead(
        ordered_lines(source, total, continuity, form).boxed(),
        2,
        || Err(BrokerError::Other("rendering the serials failed".into())),
    );
    let body = stream::iter(header_line.map(Ok::<_, BrokerError>)).chain(lines);
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(form.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{id}.{}\"",
        match form {
            Form::Text => "txt",
            Form::Csv => "csv",
            Form::Ndjson => "ndjson",
        }
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Rendered chunks, one per batch, in batch order, ending after the last batch.
fn ordered_lines(
    source: BoxStream<'static, Result<Bytes, BrokerError>>,
    total: Total,
    continuity: Continuity,
    form: Form,
) -> impl futures::Stream<Item = Result<Bytes, BrokerError>> {
    let (known, at_end) = match total {
        Total::Known(n) => (n, None),
        Total::AtEnd(f) => (u64::MAX, Some(f)),
    };
    let reorder = Reorder {
        next: 0,
        total: known,
        waiting: BTreeMap::new(),
    };
    // `None` once the body has ended, with an error or whole.
    let state = Some((source, reorder, continuity, at_end));
    stream::unfold(state, move |state| async move {
        let (mut source, mut reorder, mut continuity, at_end) = state?;
        if reorder.done() {
            return continuity.end().err().map(|e| (Err(e), None));
        }
        // Fails the body rather than ending it short or wrong, so a partial download never
        // passes for a whole one.
        let fail = |e| Some((Err(e), None));
        loop {
            let payload = match source.next().await {
                Some(Ok(p)) => p,
                Some(Err(e)) => return fail(e),
                // A followed task: its batches ran out once it ended.
                None if at_end.is_some() => {
                    let ended = match at_end.as_ref().map(|f| f()) {
                        Some(Ok(ended)) => ended,
                        Some(Err(e)) => return fail(e),
                        None => return None,
                    };
                    let started_right = match (continuity.first_number, ended.first_number) {
                        (Some(seen), Some(first)) => seen == first,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                    continuity.count = ended.count;
                    let end = if reorder.next != ended.batches {
                        Err(BrokerError::Other(format!(
                            "{} batches arrived, the task has {}",
                            reorder.next, ended.batches
                        )))
                    } else if !started_right {
                        Err(BrokerError::Other(
                            "the batches do not start at the task's first number".into(),
                        ))
                    } else {
                        continuity.end()
                    };
                    return end.err().map(|e| (Err(e), None));
                }
                // Fewer batches than the completion counted.
                None => {
                    return fail(BrokerError::Other(format!(
                        "batch {} is missing",
                        reorder.next
                    )))
                }
            };
            let Ok(batch) = BorrowedBatch::parse(&payload) else {
                continue;
            };
            if !matches!(reorder.place(batch.batch, &payload), Slot::Now) {
                continue;
            }
            if let Err(e) = continuity.take(&batch) {
                return fail(e);
            }
            let mut out = Vec::with_capacity(payload.len());
            form.render(&batch, &mut out);
            while let Some(p) = reorder.pop_ready() {
                let Ok(b) = BorrowedBatch::parse(&p) else {
                    continue;
                };
                if let Err(e) = continuity.take(&b) {
                    return fail(e);
                }
                form.render(&b, &mut out);
            }
            let state = Some((source, reorder, continuity, at_end));
            return Some((Ok(Bytes::from(out)), state));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(batch: u64, first_number: u64, serials: &[&str]) -> Bytes {
        let event = serde_json::json!({
            "type": common::events::types::GENERATED,
            "data": {"batch": batch, "first_number": first_number, "serials": serials},
        });
        Bytes::from(event.to_string())
    }

    async fn lines(batches: Vec<Bytes>, total: u64, count: u64) -> Vec<Result<Bytes, String>> {
        collect(batches, Total::Known(total), Some(1), count).await
    }

    async fn collect(
        batches: Vec<Bytes>,
        total: Total,
        first: Option<u64>,
        count: u64,
    ) -> Vec<Result<Bytes, String>> {
        let continuity = Continuity {
            next_number: first,
            serials: 0,
            count,
            first_number: None,
        };
        let source = stream::iter(batches.into_iter().map(Ok)).boxed();
        ordered_lines(source, total, continuity, Form::Text)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn batches_that_are_not_one_run_of_the_tasks_size_fail_the_body() {
        // Whole, though out of order.
        let whole = lines(
            vec![batch(1, 3, &["c", "d"]), batch(0, 1, &["a", "b"])],
            2,
            4,
        )
        .await;
        assert_eq!(whole, [Ok(Bytes::from("a\nb\nc\nd\n"))]);
        // Batch 1 made with another batch size than batch 0: a gap.
        let gap = lines(vec![batch(0, 1, &["a", "b"]), batch(1, 4, &["d"])], 2, 3).await;
        assert_eq!(gap.len(), 2);
        assert_eq!(gap[0], Ok(Bytes::from("a\nb\n")));
        assert_eq!(gap[1], Err("batch 1 starts at number 4, not 3".into()));
        // Fewer serials than the task counts.
        let short = lines(vec![batch(0, 1, &["a"])], 1, 2).await;
        assert_eq!(short.len(), 2);
        assert!(short[1].is_err());
    }

    /// A followed task (range not known when it started) that ended as `ended` says.
    async fn followed(
        batches: Vec<Bytes>,
        ended: Result<(u64, u64, u64), &'static str>,
    ) -> Vec<Result<Bytes, String>> {
        let at_end = move || {
            ended
                .map(|(batches, count, first)| Ended {
                    batches,
                    count,
                    first_number: Some(first),
                })
                .map_err(|e| BrokerError::Other(e.into()))
        };
        collect(batches, Total::AtEnd(Box::new(at_end)), None, 0).await
    }

    #[tokio::test]
    async fn a_followed_download_ends_as_the_task_does() {
        let two = || vec![batch(0, 5, &["e", "f"]), batch(1, 7, &["g"])];
        let whole = followed(two(), Ok((2, 3, 5))).await;
        assert_eq!(whole, [Ok(Bytes::from("e\nf\n")), Ok(Bytes::from("g\n"))]);
        // The task failed while its serials were streaming.
        let failed = followed(two(), Err("task x ended in FAILURE: boom")).await;
        assert_eq!(
            failed.last(),
            Some(&Err("task x ended in FAILURE: boom".into()))
        );
        // A batch the completion counts never arrived.
        let short = followed(two(), Ok((3, 4, 5))).await;
        assert_eq!(
            short.last(),
            Some(&Err("2 batches arrived, the task has 3".into()))
        );
        // The batches are not the task's range.
        let elsewhere = followed(two(), Ok((2, 3, 1))).await;
        assert!(elsewhere.last().unwrap().is_err(), "{elsewhere:?}");
        // Counted serials differ.
        let count = followed(two(), Ok((2, 4, 5))).await;
        assert!(count.last().unwrap().is_err(), "{count:?}");
    }

    #[tokio::test]
    async fn a_panic_ahead_of_the_reader_ends_the_stream_in_an_error() {
        let items = stream::iter(0..3)
            .map(|i| {
                assert!(i < 2, "bad item");
                Ok::<u32, String>(i)
            })
            .boxed();
        let got: Vec<_> = run_ahead(items, 1, || Err("failed".to_owned()))
            .collect()
            .await;
        assert_eq!(got, [Ok(0), Ok(1), Err("failed".to_owned())]);
    }

    #[test]
    fn reorder_emits_in_order_once() {
        let mut r = Reorder {
            next: 0,
            total: 3,
            waiting: BTreeMap::new(),
        };
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert!(matches!(r.place(1, &b("1")), Slot::Later));
        assert!(matches!(r.place(0, &b("0")), Slot::Now));
        assert_eq!(r.pop_ready(), Some(b("1")));
        assert_eq!(r.pop_ready(), None);
        assert!(matches!(r.place(0, &b("0 again")), Slot::Drop));
        assert!(matches!(r.place(7, &b("bogus")), Slot::Drop));
        assert!(!r.done());
        assert!(matches!(r.place(2, &b("2")), Slot::Now));
        assert!(r.done());
    }
}
