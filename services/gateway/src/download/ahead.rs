//! Making the next items of a stream while its reader uses this one.

use futures::stream::BoxStream;
use futures::StreamExt;
use tracing::Instrument;

/// Drives `stream` on a task of its own, up to `depth` items ahead of its reader, so making
/// the next item (a round trip to NATS, rendering a batch) overlaps with using this one. The
/// task ends with the stream or as soon as the reader is gone. Should the task panic, the
/// reader gets `on_panic()` as the last item rather than an end that looks complete.
pub fn run_ahead<T: Send + 'static>(
    mut stream: BoxStream<'static, T>,
    depth: usize,
    on_panic: impl FnOnce() -> T + Send + 'static,
) -> BoxStream<'static, T> {
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    let producer = tokio::spawn(
        async move {
            loop {
                let item = tokio::select! {
                    _ = tx.closed() => break,
                    item = stream.next() => item,
                };
                let Some(item) = item else { break };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    let state = (rx, Some((producer, on_panic)));
    futures::stream::unfold(state, |(mut rx, mut end)| async move {
        if let Some(item) = rx.recv().await {
            return Some((item, (rx, end)));
        }
        let (producer, on_panic) = end.take()?;
        match producer.await {
            Err(e) if e.is_panic() => Some((on_panic(), (rx, None))),
            _ => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

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

    #[tokio::test]
    async fn every_item_arrives_in_order_when_the_reader_is_slower() {
        let items = stream::iter(0..100u32).boxed();
        let got: Vec<_> = run_ahead(items, 2, || u32::MAX).collect().await;
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
