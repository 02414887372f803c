//! What every handler can reach: the views, the broker, and the settings requests are
//! checked against.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::projection::Projection;

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub projection: Arc<Projection>,
    pub broker: Arc<dyn Broker>,
    pub api_token: Option<Arc<str>>,
    pub max_count: u64,
    /// The master keys of random-order models (`SERIAL_KEY`): declaring one, and looking
    /// up its serials.
    pub keys: Arc<common::serial::Keyring>,
    /// Fired at shutdown: endless responses (event streams) end with it.
    pub shutdown: CancellationToken,
}
