//! The headers and publish message of one event.

use async_nats::jetstream::message::PublishMessage;
use async_nats::{header, HeaderMap};
use bytes::Bytes;

use crate::events::CONTENT_TYPE;
use crate::telemetry;

/// Parsed once, not on every publish.
const CONTENT_TYPE_HEADER: header::HeaderName = header::HeaderName::from_static("Content-Type");

/// The headers every event carries: dedup id, content type and the current trace context.
pub fn event_headers(event_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::NATS_MESSAGE_ID, event_id);
    headers.insert(CONTENT_TYPE_HEADER, CONTENT_TYPE);
    telemetry::inject_current(&mut headers);
    headers
}

/// A publish of one event, ready to send: `Nats-Msg-Id` set, optionally a compare-and-set on
/// the subject's last sequence.
pub fn event_publish(
    event_id: &str,
    payload: Bytes,
    expected_last_subject_seq: Option<u64>,
) -> PublishMessage {
    let mut publish = PublishMessage::build()
        .payload(payload)
        .headers(event_headers(event_id));
    if let Some(seq) = expected_last_subject_seq {
        publish = publish.expected_last_subject_sequence(seq);
    }
    publish
}
