//! Snapshots of the folded views, kept in a JetStream object store next to the `SN` stream.
//!
//! A gateway starts from the latest snapshot and folds only the events after it, so its start
//! does not grow with the stream's history. A snapshot is a cache: it is written from views
//! folded from the stream, names the stream it was folded from (by creation time) and the
//! sequence it reflects, and is ignored, with the whole stream folded instead, when it belongs
//! to another stream, to another snapshot version, or cannot be read.

mod format;
mod store;

pub use store::Snapshots;

/// The body is `postcard` (compact, binary serde) of the version, the stream and the views.
/// Bumped whenever the stored form or the meaning of a fold changes: a snapshot of another
/// version is ignored.
pub const VERSION: u32 = 3;
