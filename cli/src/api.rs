//! The gateway's HTTP API as typed calls. Each answer keeps the raw JSON next to its typed
//! view, so `--json` prints exactly what the server said; each failure becomes an
//! [`ApiError`] carrying the server's own message.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::views::{Accepted, SerialView, TaskPage, TaskView};

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for an ordinary JSON call (a long poll adds its own wait).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A 4xx answer: the request was refused as it stands.
    #[error("{}", with_field(.message, .field.as_deref()))]
    Rejected {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// A 5xx answer.
    #[error("server error ({status}): {message}")]
    Server {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("cannot read the server's answer to {what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// `field: message`, unless the message already names the field.
fn with_field(message: &str, field: Option<&str>) -> String {
    match field {
        Some(f) if !message.starts_with(f) => format!("{f}: {message}"),
        _ => message.to_owned(),
    }
}

impl ApiError {
    /// Worth another try soon: the server is restarting, overloaded or lost NATS.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Server { status, .. } => matches!(
                *status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An answer: the JSON as received and its typed reading.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub json: Value,
    pub view: T,
}

/// Query of `GET /tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery<'a> {
    pub state: Option<&'a str>,
    pub code_model: Option<&'a str>,
    pub limit: Option<u32>,
    pub cursor: Option<&'a str>,
}

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    /// Fails unless `base` is a plain `http://` URL (the client speaks no TLS).
    pub fn new(base: Url, token: Option<String>) -> Result<Api, String> {
        if base.scheme() != "http" || base.cannot_be_a_base() {
            return Err(format!("--url must be an http:// URL, not {base}"));
        }
        // reqwest brings no TLS crypto provider in this workspace; it needs one installed.
        common::telemetry::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("snctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api { http, base, token })
    }

    /// `base` with `segments` appended, each percent-encoded as needed.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` checked that the URL can be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `POST /generate_sn`.
    pub async fn generate(
        &self,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Reply<Accepted>, ApiError> {
        let mut req = self.http.post(self.url(&["generate_sn"])).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        self.json("the request", req.timeout(CALL_TIMEOUT)).await
    }

    /// `GET /tasks/{id}`; with `wait`, a long poll that answers early once the task ends.
    pub async fn task(
        &self,
        id: Uuid,
        wait: Option<Duration>,
    ) -> Result<Reply<TaskView>, ApiError> {
        let mut url = self.url(&["tasks", &id.to_string()]);
        let mut timeout = CALL_TIMEOUT;
        if let Some(wait) = wait {
            url.query_pairs_mut()
                .append_pair("wait", &wait.as_secs().max(1).to_string());
            timeout += wait;
        }
        self.json("the task query", self.http.get(url).timeout(timeout))
            .await
    }

    /// `GET /tasks`.
    pub async fn tasks(&self, query: &TaskQuery<'_>) -> Result<Reply<TaskPage>, ApiError> {
        let mut url = self.url(&["tasks"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(state) = query.state {
                pairs.append_pair("state", state);
            }
            if let Some(model) = query.code_model {
                pairs.append_pair("code_model", model);
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = query.cursor {
                pairs.append_pair("cursor", cursor);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.json("the task list", self.http.get(url).timeout(CALL_TIMEOUT))
            .await
    }

    /// `GET /models`, or `GET /models/{code}` with a code.
    pub async fn models(&self, code: Option<&str>) -> Result<Value, ApiError> {
        let url = match code {
            Some(c) => self.url(&["models", c]),
            None => self.url(&["models"]),
        };
        let reply: Reply<Value> = self
            .json("the models", self.http.get(url).timeout(CALL_TIMEOUT))
            .await?;
        Ok(reply.json)
    }

    /// `PUT /models/{code}`.
    pub async fn declare(&self, code: &str, scheme: &Value) -> Result<Value, ApiError> {
        let req = self.http.put(self.url(&["models", code])).json(scheme);
        let reply: Reply<Value> = self
            .json("the declaration", req.timeout(CALL_TIMEOUT))
            .await?;
        Ok(reply.json)
    }

    /// `GET /serials/{serial}`.
    pub async fn lookup(&self, serial: &str) -> Result<Reply<SerialView>, ApiError> {
        let req = self.http.get(self.url(&["serials", serial]));
        self.json("the lookup", req.timeout(CALL_TIMEOUT)).await
    }

    /// `GET /tasks/{id}/serials` in the form `accept` names; the body is left unread for the
    /// caller to stream.
    /// `follow`: also while the task runs; the body then streams each batch as it is stored
    /// and ends with the task (in an error if it fails).
    pub async fn serials(
        &self,
        id: Uuid,
        accept: &str,
        follow: bool,
    ) -> Result<Response, ApiError> {
        let mut url = self.url(&["tasks", &id.to_string(), "serials"]);
        if follow {
            url.query_pairs_mut().append_pair("follow", "true");
        }
        self.send(self.http.get(url).header(ACCEPT, accept)).await
    }

    /// The error for a connection that failed or broke off.
    pub fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        ApiError::Unreachable {
            url: self.base.to_string(),
            reason: root_cause(e),
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response, ApiError> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let response = req.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(refusal(response).await)
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        req: RequestBuilder,
    ) -> Result<Reply<T>, ApiError> {
        let response = self.send(req).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let invalid = |e: serde_json::Error| ApiError::Invalid {
            what: what.to_owned(),
            reason: e.to_string(),
        };
        let json: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        let view = T::deserialize(&json).map_err(invalid)?;
        Ok(Reply { json, view })
    }
}

/// Turns a non-2xx answer into an error, reading `{"error": {"code", "message", "field"}}`
/// when the body has it and falling back to the text or the status otherwise.
async fn refusal(response: Response) -> ApiError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let error = body.as_ref().map(|b| &b["error"]);
    let field_str = |name: &str| error.and_then(|e| e[name].as_str()).map(str::to_owned);
    let message = field_str("message").unwrap_or_else(|| {
        let text = text.trim();
        if text.is_empty() || text.len() > 300 {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        } else {
            text.to_owned()
        }
    });
    if status.is_client_error() {
        ApiError::Rejected {
            status,
            code: field_str("code").unwrap_or_default(),
            message,
            field: field_str("field"),
        }
    } else {
        ApiError::Server {
            status,
            message,
            retry_after,
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The innermost cause of a transport error ("Connection refused (os error 111)"), which
/// says more than reqwest's own "error sending request".
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_and_encoded() {
        let api = Api::new("http://h:1/prefix/".parse().unwrap(), None).unwrap();
        assert_eq!(
            api.url(&["serials", "a/b c"]).as_str(),
            "http://h:1/prefix/serials/a%2Fb%20c"
        );
        let api = Api::new("http://h:1".parse().unwrap(), None).unwrap();
        assert_eq!(api.url(&["tasks"]).as_str(), "http://h:1/tasks");
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(Api::new("mailto:x@y".parse().unwrap(), None).is_err());
        assert!(Api::new("nats://h:4222".parse().unwrap(), None).is_err());
        assert!(Api::new("https://h".parse().unwrap(), None).is_err());
    }

    #[test]
    fn the_field_is_named_once() {
        assert_eq!(
            with_field("count: must be positive", Some("count")),
            "count: must be positive"
        );
        assert_eq!(
            with_field("must be positive", Some("count")),
            "count: must be positive"
        );
        assert_eq!(with_field("no task", None), "no task");
    }
}
