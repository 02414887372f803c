//! The snapshot store: a JetStream object store next to the `SN` stream, holding one object
//! (the latest snapshot), read at start and written as the views move on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::object_store::{self, InfoErrorKind, ObjectMetadata, ObjectStore};
use async_nats::jetstream::{self, stream::StorageType};
use common::subjects;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use super::format::FrozenViews;
use super::VERSION;
use crate::projection::{Projection, Views};

/// How often the writer checks whether enough has been folded since the last snapshot.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The least time between two snapshots while running, however busy the stream.
const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a read may wait for the next chunk before the snapshot is given up.
const READ_IDLE: Duration = Duration::from_secs(10);
/// How long a snapshot written at shutdown may take.
const SHUTDOWN_SAVE: Duration = Duration::from_secs(10);
/// Chunks well under NATS's default 1 MB message limit.
const CHUNK: usize = 512 * 1024;

#[derive(Serialize)]
struct Out<'a> {
    version: u32,
    stream: &'a str,
    views: &'a FrozenViews,
}

#[derive(Deserialize)]
struct In {
    version: u32,
    stream: String,
    views: Views,
}

/// The snapshot store of one gateway.
pub struct Snapshots {
    js: jetstream::Context,
    store: ObjectStore,
    /// The `SN` stream these views are folded from: its creation time in unix nanoseconds.
    stream: String,
    /// Events folded between two snapshots.
    every: u64,
    /// The stored snapshot (by its object nuid) this gateway read back whole or wrote
    /// itself: only that one is trusted to be as far along as its metadata says.
    known: std::sync::Mutex<Option<String>>,
}

impl Snapshots {
    /// Opens (creating if needed) the snapshot bucket; `every` events folded between snapshots.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        every: u64,
    ) -> anyhow::Result<Snapshots> {
        let config = object_store::Config {
            bucket: subjects::VIEWS_BUCKET.to_owned(),
            description: Some("snapshots of the gateway's views of the SN stream".to_owned()),
            storage: StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        let store = match js.create_object_store(config).await {
            Ok(store) => store,
            // Created by another gateway with other settings: use it as it is.
            Err(_) => js
                .get_object_store(subjects::VIEWS_BUCKET)
                .await
                .context("cannot open the views snapshot bucket")?,
        };
        let stream = stream_id(js).await?;
        Ok(Snapshots {
            js: js.clone(),
            store,
            stream,
            every: every.max(1),
            known: Default::default(),
        })
    }

    /// The latest snapshot of this stream's views, if there is a usable one.
    pub async fn load(&self) -> anyhow::Result<Option<Views>> {
        let info = match self.store.info(subjects::VIEWS_OBJECT).await {
            Ok(info) => info,
            Err(e) if e.kind() == InfoErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if info.deleted {
            return Ok(None);
        }
        if let Some(why) = self.unusable(&info.metadata) {
            tracing::info!(why, "not starting from the stored views snapshot");
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let mut object = self.store.get(subjects::VIEWS_OBJECT).await?;
        // The size is the object's own word: a start, not a promise.
        let mut bytes = Vec::with_capacity(info.size.min(64 << 20));
        loop {
            let read = tokio::time::timeout(READ_IDLE, object.read_buf(&mut bytes))
                .await
                .context("the snapshot stopped arriving")??;
            if read == 0 {
                break;
            }
        }
        let read = started.elapsed();
        let size = bytes.len();
        let stored: In = tokio::task::spawn_blocking(move || postcard::from_bytes(&bytes))
            .await?
            .context("the snapshot does not decode")?;
        tracing::info!(
            bytes = size,
            read_ms = read.as_millis() as u64,
            decode_ms = (started.elapsed() - read).as_millis() as u64,
            "views snapshot read"
        );
        if stored.version != VERSION || stored.stream != self.stream {
            anyhow::bail!("the snapshot's body is not of this version and stream");
        }
        let last = self.last_sequence().await?;
        if stored.views.position() > last {
            anyhow::bail!(
                "the snapshot is at {} but the stream ends at {last}",
                stored.views.position()
            );
        }
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.nuid);
        Ok(Some(stored.views))
    }

    /// Why a snapshot with this metadata cannot be used, if it cannot.
    fn unusable(&self, metadata: &HashMap<String, String>) -> Option<&'static str> {
        if metadata.get("version") != Some(&VERSION.to_string()) {
            Some("it is of another version")
        } else if metadata.get("stream") != Some(&self.stream) {
            Some("it was folded from another SN stream")
        } else {
            None
        }
    }

    /// Writes a snapshot of `projection`'s views unless a snapshot at least as far along is
    /// already stored; returns the position stored.
    pub async fn save(&self, projection: &Arc<Projection>) -> anyhow::Result<u64> {
        if stream_id(&self.js).await? != self.stream {
            anyhow::bail!("the SN stream was recreated since these views were folded");
        }
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stored = match self.store.info(subjects::VIEWS_OBJECT).await {
            Ok(info) if !info.deleted && Some(&info.nuid) == known.as_ref() => info
                .metadata
                .get("position")
                .and_then(|p| p.parse::<u64>().ok()),
            _ => None,
        };
        if stored.is_some_and(|p| p >= projection.position()) {
            return Ok(stored.unwrap_or_default());
        }
        let (projection, stream) = (projection.clone(), self.stream.clone());
        let (position, bytes) = tokio::task::spawn_blocking(move || {
            // Taken under the lock in a moment; written after it is released.
            let views = projection.views().frozen();
            let bytes = postcard::to_stdvec(&Out {
                version: VERSION,
                stream: &stream,
                views: &views,
            });
            (views.position(), bytes)
        })
        .await?;
        let bytes = bytes?;
        let meta = ObjectMetadata {
            name: subjects::VIEWS_OBJECT.to_owned(),
            description: Some(format!("views at SN sequence {position}")),
            chunk_size: Some(CHUNK),
            metadata: HashMap::from([
                ("version".to_owned(), VERSION.to_string()),
                ("stream".to_owned(), self.stream.clone()),
                ("position".to_owned(), position.to_string()),
            ]),
            headers: None,
        };
        let written = self
            .store
            .put(meta, &mut bytes.as_slice())
            .await
            .context("cannot store the views snapshot")?;
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some(written.nuid);
        tracing::info!(position, bytes = bytes.len(), "views snapshot stored");
        metrics::gauge!("sn_projection_snapshot_position").set(position as f64);
        metrics::counter!("sn_projection_snapshots_stored_total").increment(1);
        Ok(position)
    }

    /// Restores `projection` from the latest usable snapshot, if there is one.
    pub async fn restore(&self, projection: &Projection) {
        match self.load().await {
            Ok(Some(views)) => {
                let (position, tasks) = (views.position(), views.len());
                projection.restore(views);
                metrics::gauge!("sn_projection_snapshot_position").set(position as f64);
                tracing::info!(position, tasks, "started from the views snapshot");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "views snapshot unusable; folding the whole stream"
                );
            }
        }
    }

    /// Stores a snapshot whenever `every` more events have been folded (at most once a
    /// minute), and once more at shutdown if anything was folded since the last one.
    pub async fn keep(&self, projection: Arc<Projection>, cancel: CancellationToken) {
        let mut saved = projection.position();
        let mut last_save: Option<tokio::time::Instant> = None;
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = check.tick() => {}
            }
            let due = last_save.is_none_or(|at| at.elapsed() >= MIN_INTERVAL);
            if due
                && projection.caught_up()
                && projection.position() >= saved.saturating_add(self.every)
            {
                last_save = Some(tokio::time::Instant::now());
                match self.save(&projection).await {
                    Ok(position) => saved = position,
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "no views snapshot stored"),
                }
            }
        }
        let connected =
            self.js.client().connection_state() == async_nats::connection::State::Connected;
        if connected && projection.caught_up() && projection.position() > saved {
            match tokio::time::timeout(SHUTDOWN_SAVE, self.save(&projection)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "no views snapshot stored"),
                Err(_) => tracing::warn!("no views snapshot stored: it took too long"),
            }
        }
    }

    async fn last_sequence(&self) -> anyhow::Result<u64> {
        let mut stream = self.js.get_stream(subjects::STREAM).await?;
        Ok(stream.info().await?.state.last_sequence)
    }
}

/// The identity of the `SN` stream: its creation time, in unix nanoseconds.
async fn stream_id(js: &jetstream::Context) -> anyhow::Result<String> {
    let mut stream = js.get_stream(subjects::STREAM).await?;
    Ok(stream
        .info()
        .await?
        .created
        .unix_timestamp_nanos()
        .to_string())
}
