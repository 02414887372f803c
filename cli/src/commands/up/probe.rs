//! Is it up yet? The checks `snctl up` makes before it starts NATS and before it calls the
//! stack ready. Each one polls within a deadline.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::error::Error;

const POLL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether something accepts connections on `addr` right now.
pub async fn listening(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Waits until something accepts connections on `addr`.
pub async fn accepting(addr: &str, within: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    while !listening(addr).await {
        if Instant::now() > deadline {
            return Err(anyhow!("nothing listens on {addr} after {} s", within.as_secs()).into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Waits until every URL answers 2xx, one after the other.
pub async fn ready(urls: &[String], within: Duration) -> Result<(), Error> {
    common::telemetry::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")?;
    let deadline = Instant::now() + within;
    for url in urls {
        loop {
            let ok = http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(anyhow!("{url} did not answer within {} s", within.as_secs()).into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}
