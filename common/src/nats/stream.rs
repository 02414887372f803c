//! The `SN` stream: its definition, its creation at start, and the check that refuses
//! settings under which JetStream would delete messages.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio_util::sync::CancellationToken;

use super::NatsError;
use crate::backoff::Backoff;
use crate::subjects;

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Settings of the `SN` stream that the services own.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub replicas: usize,
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }
}

pub fn stream_config(settings: StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::STREAM.to_owned(),
        subjects: vec![subjects::ALL.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        allow_direct: true,
        ..Default::default()
    }
}

/// [`ensure_stream`], retried with backoff while JetStream is not available yet (a cluster
/// still electing its leaders answers with timeouts), until `cancel` fires.
pub async fn ensure_stream_retrying(
    js: &jetstream::Context,
    settings: StreamSettings,
    cancel: &CancellationToken,
) -> Result<stream::Stream, NatsError> {
    let mut backoff = Backoff::reconnect();
    loop {
        match ensure_stream(js, settings).await {
            Ok(s) => return Ok(s),
            // An operator's setting: waiting will not change it.
            Err(e @ NatsError::UnsafeStream(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "JetStream not ready yet");
                if !backoff.wait(cancel).await {
                    return Err(e);
                }
            }
        }
    }
}

/// Creates `SN`, or brings an existing one to our subjects and duplicate window. An existing
/// stream keeps its replica count: changing it is an operator's decision.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: StreamSettings,
) -> Result<stream::Stream, NatsError> {
    let wanted = stream_config(settings);
    match js.get_stream(subjects::STREAM).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(NatsError::Info)?
                .config
                .clone();
            let refused = unsafe_settings(&info);
            if !refused.is_empty() {
                return Err(NatsError::UnsafeStream(refused.join(", ")));
            }
            if info.subjects != wanted.subjects || info.duplicate_window != wanted.duplicate_window
            {
                let mut updated = info;
                updated.subjects = wanted.subjects;
                updated.duplicate_window = wanted.duplicate_window;
                js.update_stream(updated)
                    .await
                    .map_err(NatsError::UpdateStream)?;
            }
            Ok(existing)
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(_)
            ) =>
        {
            match js.create_stream(wanted).await {
                Ok(s) => Ok(s),
                // Another replica created it between our two calls.
                Err(_) => js
                    .get_stream(subjects::STREAM)
                    .await
                    .map_err(NatsError::GetStream),
            }
        }
        Err(e) => Err(NatsError::GetStream(e)),
    }
}

/// The settings of `SN` under which JetStream would remove messages: limits on age, count
/// or size, or a retention other than limits.
pub fn unsafe_settings(config: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if !config.max_age.is_zero() {
        out.push(format!("max_age {:?}", config.max_age));
    }
    if config.max_messages > 0 {
        out.push(format!("max_msgs {}", config.max_messages));
    }
    if config.max_messages_per_subject > 0 {
        out.push(format!(
            "max_msgs_per_subject {}",
            config.max_messages_per_subject
        ));
    }
    if config.max_bytes > 0 {
        out.push(format!("max_bytes {}", config.max_bytes));
    }
    if config.retention != stream::RetentionPolicy::Limits {
        out.push(format!("retention {:?}", config.retention));
    }
    out
}

/// The last sequence of the stream (0 when empty).
pub async fn last_sequence(js: &jetstream::Context) -> Result<u64, NatsError> {
    let stream = js
        .get_stream_no_info(subjects::STREAM)
        .await
        .map_err(NatsError::GetStream)?;
    Ok(stream
        .get_info()
        .await
        .map_err(NatsError::Info)?
        .state
        .last_sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_remove_messages_are_named() {
        let ours = stream_config(StreamSettings {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        });
        assert!(unsafe_settings(&ours).is_empty());
        // What a server reports for "no limit".
        let unlimited = stream::Config {
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            ..ours.clone()
        };
        assert!(unsafe_settings(&unlimited).is_empty());
        let limited = stream::Config {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            retention: stream::RetentionPolicy::WorkQueue,
            ..ours
        };
        let named = unsafe_settings(&limited).join(", ");
        assert_eq!(
            named,
            "max_age 3600s, max_bytes 1073741824, retention WorkQueue"
        );
    }
}
