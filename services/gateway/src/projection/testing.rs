//! Events for the projection's tests: one task's life in model `0111`, and views holding a
//! mix of tasks in every state.

use common::events::{
    EventData, GenerateRequested, RangeReserved, SerialsGenerated, TaskCompleted, TaskFailed,
};
use common::{Event, Format};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Views;

pub fn ev(data: EventData) -> Event {
    Event::new("/test", data)
}

pub fn requested(id: Uuid, number: Option<u64>, count: u64) -> Event {
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

pub fn reserved(id: Uuid, first: u64, last: u64) -> Event {
    ev(EventData::Reserved(RangeReserved {
        task_id: id,
        code_model: "0111".into(),
        first,
        last,
        scheme: Some(Format::default()),
        automatic: true,
    }))
}

pub fn batch(id: Uuid, batch: u64, count: u64) -> Event {
    ev(EventData::Generated(SerialsGenerated {
        task_id: id,
        code_model: "0111".into(),
        batch,
        first_number: 1 + batch * 10,
        count,
        serials: vec![],
    }))
}

pub fn completed(id: Uuid, count: u64) -> Event {
    ev(EventData::Completed(TaskCompleted {
        task_id: id,
        code_model: "0111".into(),
        count,
        first_serial: "011100000001".into(),
        last_serial: format!("0111{count:08}"),
        batches: 2,
    }))
}

/// Views after a mix of tasks in every state, with a key, a void reservation and a
/// skipped sequence.
pub fn mixed() -> (Views, Vec<Uuid>) {
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
