//! The gateway: the HTTP API of the serial-number service.
//!
//! Writes go out as `GenerateRequested` events (`intake`); every read is served from views
//! folded from the `SN` stream (`projection`). `broker` is the only door to NATS.
//!
//! A request flows down, never back up: `http` (router, middleware) -> `routes` (one module
//! per group of routes) -> `intake`, `download`, `projection`, `broker`, with the response
//! types in `api` and the OpenAPI document derived from them in `openapi`.

pub mod api;
mod app;
pub mod broker;
pub mod config;
pub mod download;
mod error;
mod extract;
mod http;
mod intake;
pub mod openapi;
pub mod projection;
#[cfg(test)]
mod router_tests;
mod routes;
mod starting;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

pub use crate::app::AppState;
use crate::broker::NatsBroker;
use crate::config::Config;
pub use crate::error::ApiError;
pub use crate::http::router;
use crate::projection::{Projection, Snapshots};

pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    js: jetstream::Context,
    connections: common::nats::Connections,
    snapshots: Option<Snapshots>,
    shutdown: CancellationToken,
}

impl Application {
    /// Checks the settings (no token and no `AUTH=off` is refused), binds the HTTP port,
    /// connects to NATS and makes sure the stream exists. While it waits for NATS, the port
    /// already answers: `/healthz` 200, everything else 503.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        let api_token = config.write_token()?;
        let keys = config.keys.keyring()?;
        if api_token.is_none() {
            tracing::warn!("AUTH=off and no API_TOKEN: writes are open to anyone");
        }
        let credentials = config.nats.credentials()?;
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot bind {}", config.http_addr))?;
        let (listener, starting) = starting::answer(listener)?;
        let (client, connections) =
            common::nats::connect(&config.nats.nats_url, "gateway", &credentials, &shutdown)
                .await?;
        let js = jetstream::new(client.clone());
        common::nats::ensure_stream_retrying(&js, config.nats.stream(), &shutdown).await?;
        starting.stop();
        let snapshots = match config.snapshot_every {
            0 => None,
            every => match Snapshots::open(&js, config.nats.stream_replicas, every).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "views snapshots off");
                    None
                }
            },
        };
        http::init_metrics();
        let state = AppState {
            projection: Arc::new(Projection::default()),
            broker: Arc::new(
                NatsBroker::new(
                    client,
                    js.clone(),
                    std::time::Duration::from_secs(config.publish_deadline_secs),
                )
                .await?,
            ),
            api_token: api_token.map(Arc::from),
            max_count: config.max_count,
            keys: Arc::new(keys),
            shutdown: shutdown.clone(),
        };
        Ok(Application {
            listener,
            state,
            js,
            connections,
            snapshots,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves HTTP and follows the stream until shutdown, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            js,
            connections,
            snapshots,
            shutdown,
        } = self;
        let (views, stop) = (state.projection.clone(), shutdown.clone());
        let projection = tokio::spawn(async move {
            let follow = |views| projection::run(views, js, connections, stop.clone());
            match snapshots {
                Some(snapshots) => {
                    snapshots.restore(&views).await;
                    tokio::join!(
                        follow(views.clone()),
                        snapshots.keep(views.clone(), stop.clone())
                    );
                }
                None => follow(views).await,
            }
        });
        let app = router(state);
        let stop = shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("HTTP server failed")?;
        shutdown.cancel();
        projection.await.ok();
        Ok(())
    }
}
