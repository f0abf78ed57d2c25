//! An async client of the Consul HTTP API, for long-running users: watch
//! plans (in `tribune watch` and inside the agent) and `tribune lock`.
//! One-shot CLI commands use the blocking client in `cli::client`.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Client, Method};

/// Longest a request may take: the longest blocking wait (10m) plus jitter
/// and slack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(660);

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// As Go's client says it: `Get "http://...": dial tcp ...: connect:
    /// connection refused`.
    #[error("{}", crate::goerr::request_error(method, url, source))]
    Transport {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
    #[error("Unexpected response code: {status} ({body})")]
    Status { status: u16, body: String },
    #[error("Unreadable response: {0}")]
    Decode(String),
}

impl ApiClientError {
    /// Worth retrying: the agent is unreachable or answered 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Decode(_) => false,
        }
    }
}

/// A response: status, `X-Consul-Index` (0 when absent) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub index: u64,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `None` for a 404.
    pub fn json(&self) -> Result<Option<serde_json::Value>, ApiClientError> {
        if self.status == 404 {
            return Ok(None);
        }
        serde_json::from_slice(&self.body)
            .map(Some)
            .map_err(|e| ApiClientError::Decode(e.to_string()))
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: Client,
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
}

impl ApiClient {
    /// `addr` is `host:port` or a URL.
    pub fn new(addr: &str, token: Option<String>, datacenter: Option<String>) -> Self {
        let addr = addr.trim_end_matches('/');
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_else(|_| Client::new());
        Self {
            http,
            base,
            token,
            datacenter,
        }
    }

    /// Send a request to `/v1/<path>`; any status is returned as a [`Reply`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ApiClientError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        if let Some(dc) = &self.datacenter {
            q.push(("dc", dc.clone()));
        }
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.base))
            .query(&q);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let req = req.build().map_err(|source| ApiClientError::Transport {
            method: method.clone(),
            url: format!("{}/v1/{path}", self.base),
            source,
        })?;
        let url = req.url().to_string();
        let transport = |source| ApiClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        };
        let resp = self.http.execute(req).await.map_err(transport)?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.bytes().await.map_err(transport)?;
        Ok(Reply {
            status,
            index,
            body,
        })
    }

    /// `GET /v1/<path>` whose body is read as it arrives (the live log):
    /// the response once its head is in; a non-2xx answer is an error.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiClientError> {
        let method = Method::GET;
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.base))
            .query(query)
            // A live stream has no end to wait for.
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let req = req.build().map_err(|source| ApiClientError::Transport {
            method: method.clone(),
            url: format!("{}/v1/{path}", self.base),
            source,
        })?;
        let url = req.url().to_string();
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|source| ApiClientError::Transport {
                method: method.clone(),
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ApiClientError::Status {
            status,
            body: body.trim().to_string(),
        })
    }

    /// Like [`send`](Self::send), but any status other than 2xx and 404 is an error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ApiClientError> {
        let r = self.send(method, path, query, body).await?;
        if r.status == 404 || (200..300).contains(&r.status) {
            return Ok(r);
        }
        Err(ApiClientError::Status {
            status: r.status,
            body: String::from_utf8_lossy(&r.body).trim().to_string(),
        })
    }
}

/// Percent-encode a key for a URL path, keeping `/`.
pub fn key_path(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}
