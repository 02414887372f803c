//! Retry pacing: a delay that doubles after every failure up to a ceiling.
//!
//! Every loop that waits for NATS, JetStream or a consumer to come back uses one [`Backoff`],
//! so the pacing is the same everywhere and a success puts it back to its first step.
//!
//! ```
//! use std::time::Duration;
//! use common::backoff::Backoff;
//!
//! let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
//! assert_eq!(b.next_delay(), Duration::from_millis(100));
//! assert_eq!(b.next_delay(), Duration::from_millis(200));
//! assert_eq!(b.next_delay(), Duration::from_millis(300));
//! b.reset();
//! assert_eq!(b.next_delay(), Duration::from_millis(100));
//! ```

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A doubling delay between `first` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The pacing of reconnect loops: 200 ms, doubling to 2 s.
    pub fn reconnect() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// The delay to wait now; the one after it is twice as long, up to the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }

    /// Sleeps for [`Backoff::next_delay`]; false when `cancel` fired first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::reconnect();
        let steps: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(steps, [200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_cancelled_wait_says_so() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.wait(&cancel).await);
    }
}
