//! How the log takes one write or flush at a time, and how it remembers that it failed.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// The first error sled gave once the log was open (a full disk, an I/O error). It stays:
/// after an I/O error sled 0.34 fails every later call too, and a log that cannot record
/// must not be trusted with work until the process starts again on a repaired disk.
#[derive(Default)]
pub(super) struct Fault {
    pub(super) reason: OnceLock<String>,
    pub(super) raised: tokio_util::sync::CancellationToken,
}

/// Turns to write or flush, one at a time. sled 0.34 can deadlock when a flush runs while
/// other threads write (seen under load: every writer and the flush parked for ever), so
/// writes and flushes take turns. Unlike a plain mutex, a wait for a turn ends once the log
/// has failed: a flush sled never answers keeps its turn for ever.
#[derive(Default)]
pub(super) struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

/// A turn on the [`Gate`], given back when dropped.
pub(super) struct Turn<'a>(&'a Gate);

impl Gate {
    /// Waits for a turn; `None` once `failed` says the log failed.
    pub(super) fn enter(&self, failed: impl Fn() -> bool) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            if failed() {
                return None;
            }
            busy = self
                .free
                .wait_timeout(busy, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.free.notify_one();
    }
}

impl Fault {
    pub(super) fn is_raised(&self) -> bool {
        self.reason.get().is_some()
    }
}
