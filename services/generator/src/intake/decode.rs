//! What a message on the request consumer carries, and the answer to one that is not a
//! valid request.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use common::events::{codes, EventData, GenerateRequested};
use common::request::valid_model;
use common::{subjects, Event};

use crate::task::{self, Worker};

/// The request a message carries; anything else is terminated (never redelivered).
/// A message taken from the request consumer.
pub enum Decoded {
    Request(GenerateRequested),
    /// On a request subject but not a valid request: its task (the model and task of the
    /// subject) ends in FAILURE with `message`.
    Invalid {
        task: Box<GenerateRequested>,
        message: String,
    },
    /// Not on a request subject: nothing to answer.
    Foreign,
}

pub fn decode(msg: &Message) -> Decoded {
    let Some(parsed) = subjects::parse(&msg.subject) else {
        return Decoded::Foreign;
    };
    let Some(task_id) = parsed
        .task
        .filter(|_| parsed.kind == subjects::Kind::Requested)
    else {
        return Decoded::Foreign;
    };
    let problem = match Event::from_json(&msg.payload) {
        Ok(Event {
            data: EventData::Requested(r),
            ..
        }) => {
            if !valid_model(&r.code_model) {
                "code_model: must be 1 to 32 characters of A-Z a-z 0-9 _ -".to_owned()
            } else if r.code_model != parsed.model || r.task_id != task_id {
                format!(
                    "the request for task {} of model {} came on the subject of task {task_id} \
                     of model {}",
                    r.task_id, r.code_model, parsed.model
                )
            } else {
                return Decoded::Request(r);
            }
        }
        Ok(other) => format!("a {} event is not a request", other.type_name()),
        Err(e) => e.to_string(),
    };
    // Answered on the subjects of the model and task the request came on.
    Decoded::Invalid {
        task: Box::new(GenerateRequested {
            task_id,
            code_model: parsed.model.to_owned(),
            number: None,
            count: 0,
            format: Default::default(),
            requested_at: time::OffsetDateTime::now_utc(),
            idempotency_key: None,
        }),
        message: problem,
    }
}

/// Ends the task of a message that is not a valid request in FAILURE (`invalid_request`), so
/// it does not stay PENDING for ever.
pub async fn refuse(w: &Worker, msg: &Message, invalid: &GenerateRequested, message: String) {
    tracing::warn!(subject = %msg.subject, %message, "refusing a message that is not a valid request");
    let answered = match w.log.task_entries(invalid.task_id) {
        Ok(logged)
            if logged
                .iter()
                .any(|(_, e)| subjects::parse(&e.subject).is_some_and(|p| p.kind.is_final())) =>
        {
            Ok(())
        }
        Ok(_) => task::fail(w, invalid, codes::INVALID_REQUEST, message)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answered {
        Ok(()) => {
            let _ = msg.ack_with(AckKind::Ack).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the failure of an invalid request yet");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}
