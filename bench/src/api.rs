//! The gateway's HTTP API as the benchmarks call it: one keep-alive client, POST a task,
//! wait for its end through the long-poll read, stream its serials without holding them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use common::State;
use futures::StreamExt;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// How long one long-poll read may wait on the server (`?wait=`).
pub const LONG_POLL_SECS: u64 = 5;

pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Reads that came back unfinished well before the long-poll deadline: the gateway did
    /// not hold them, so the wait fell back to polling.
    pub early_answers: AtomicU64,
    pub reads: AtomicU64,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Debug, Deserialize)]
pub struct TaskReply {
    pub state: String,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// A downloaded body, counted while it streamed.
#[derive(Debug, Clone, Copy)]
pub struct Download {
    pub bytes: u64,
    pub lines: u64,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Api> {
        // reqwest brings no TLS crypto provider in this workspace; it needs one installed.
        common::telemetry::install_crypto_provider();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            early_answers: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    /// The gateway's address, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `POST /generate_sn` body for `count` serials of `model` from the next free number.
    pub fn body(model: &str, count: u64) -> Bytes {
        Bytes::from(serde_json::json!({"code_model": model, "count": count}).to_string())
    }

    /// Like [`Api::body`], for a new model whose serials are in random order.
    pub fn random_body(model: &str, count: u64) -> Bytes {
        Bytes::from(
            serde_json::json!({"code_model": model, "count": count, "format": {"order": "random"}})
                .to_string(),
        )
    }

    /// POSTs a prepared body and returns the new task's id.
    pub async fn post(&self, body: Bytes) -> anyhow::Result<String> {
        let r = self
            .http
            .post(self.url("/generate_sn"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!(
                "POST /generate_sn answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice::<Accepted>(&bytes)
            .context("POST /generate_sn answer")?
            .id)
    }

    /// Reads the task until it is SUCCESS (or fails), with the long-poll read. A read that
    /// returns unfinished early (a gateway without long-poll) is repeated after `gap`.
    pub async fn wait_success(
        &self,
        id: &str,
        gap: Duration,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = self.url(&format!("/tasks/{id}?wait={LONG_POLL_SECS}"));
        let deadline = Instant::now() + timeout;
        loop {
            let asked = Instant::now();
            let r = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(LONG_POLL_SECS + 5))
                .send()
                .await?;
            let status = r.status();
            let bytes = r.bytes().await?;
            self.reads.fetch_add(1, Ordering::Relaxed);
            if !status.is_success() {
                bail!(
                    "GET /tasks/{id} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            let task: TaskReply =
                serde_json::from_slice(&bytes).context("GET /tasks/{id} answer")?;
            // A state this tool does not know yet is read as unfinished.
            match State::parse(&task.state) {
                Some(State::Success) => return Ok(()),
                Some(State::Failure) => bail!("task {id} failed: {:?}", task.error),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("task {id} still {} after {timeout:?}", task.state);
            }
            if asked.elapsed() < Duration::from_millis(LONG_POLL_SECS * 1000 / 2) {
                self.early_answers.fetch_add(1, Ordering::Relaxed);
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
        }
    }

    /// Streams `GET /tasks/{id}/serials`, counting bytes and lines, never holding the body.
    pub async fn download(&self, id: &str) -> anyhow::Result<Download> {
        self.download_query(id, "").await
    }

    /// [`Api::download`] with a query string (`?follow=true`).
    pub async fn download_query(&self, id: &str, query: &str) -> anyhow::Result<Download> {
        let r = self
            .http
            .get(self.url(&format!("/tasks/{id}/serials{query}")))
            .send()
            .await?;
        if !r.status().is_success() {
            let status = r.status();
            bail!(
                "GET /tasks/{id}/serials answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        let mut body = r.bytes_stream();
        let mut got = Download { bytes: 0, lines: 0 };
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            got.bytes += chunk.len() as u64;
            got.lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(got)
    }

    /// Tasks per state, from the gateway's `/metrics` (`sn_tasks{state="..."}`).
    pub async fn task_counts(&self) -> anyhow::Result<HashMap<String, u64>> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .text()
            .await?;
        Ok(parse_task_counts(&text))
    }
}

/// Where part a's clients connect: the gateway's socket address, resolved once, and the
/// `Host` header its requests carry.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) addr: std::net::SocketAddr,
    host: HeaderValue,
}

impl Endpoint {
    /// `http://host[:port]` (port 80 when left out); no TLS, no path.
    pub async fn resolve(base: &str) -> anyhow::Result<Endpoint> {
        let uri: Uri = base
            .parse()
            .with_context(|| format!("gateway address {base}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("gateway address {base}: part a speaks plain http:// only");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("gateway address {base}: no path or query, the API is at the root");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {base}"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("cannot resolve {base}"))?
            .next()
            .with_context(|| format!("{base} resolves to no address"))?;
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
        })
    }
}

/// How a POST on a [`Connection`] went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The connection was closed before the request went out (e.g. the server closed it
    /// after its last answer): nothing was asked, open another.
    #[error("connection closed before the request was sent")]
    NotSent,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// One HTTP/1.1 keep-alive connection without a pool, URL parsing or timer per request, driven
/// by the task that sends on it: part a's clients, so that the load tool's own CPU stays small
/// beside the services it shares the cores with.
pub struct Connection {
    send: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    /// How long a connect may take.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to `to`. The returned future drives the connection; poll it beside the
    /// requests. It never completes: once the connection is gone, every request fails.
    pub async fn open(
        to: &Endpoint,
    ) -> anyhow::Result<(
        Connection,
        impl std::future::Future<Output = std::convert::Infallible>,
    )> {
        let tcp = tokio::time::timeout(
            Self::CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(to.addr),
        )
        .await
        .with_context(|| format!("no connection to {} in time", to.addr))??;
        tcp.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        let driver = async move {
            conn.await.ok();
            std::future::pending().await
        };
        let host = to.host.clone();
        Ok((Connection { send, host }, driver))
    }

    /// POSTs a prepared JSON body to `path` and reads the answer whole; its status.
    pub async fn post(&mut self, path: &Uri, body: Bytes) -> Result<StatusCode, PostError> {
        if self.send.ready().await.is_err() {
            return Err(PostError::NotSent);
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri(path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(anyhow::Error::from)?;
        let response = match self.send.send_request(request).await {
            Ok(r) => r,
            Err(e) if e.is_canceled() => return Err(PostError::NotSent),
            Err(e) => return Err(PostError::Failed(e.into())),
        };
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(anyhow::Error::from)?;
        }
        Ok(status)
    }
}

fn parse_task_counts(metrics: &str) -> HashMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("sn_tasks{state=\"")?;
            let (state, rest) = rest.split_once('"')?;
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((state.to_owned(), value as u64))
        })
        .collect()
}

/// A model code no earlier run used, so its ledger starts empty: 4 characters like the
/// old service's `0111`, so serials have the usual length (4 + 8 digits).
pub fn fresh_model() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uuid::Uuid::new_v4().as_bytes()[..4]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counts_come_from_the_gauge_lines() {
        let text = "# TYPE sn_tasks gauge\nsn_tasks{state=\"SUCCESS\"} 12\nsn_tasks{state=\"PENDING\"} 0\nother 5\n";
        let counts = parse_task_counts(text);
        assert_eq!(counts["SUCCESS"], 12);
        assert_eq!(counts["PENDING"], 0);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn fresh_models_are_valid_codes() {
        let m = fresh_model();
        assert!(common::request::valid_model(&m));
        assert_eq!(m.len(), 4);
    }
}
