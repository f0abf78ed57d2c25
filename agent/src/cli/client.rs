//! A small blocking HTTP client for CLI commands.

use std::time::Duration;

use reqwest::blocking::{Body, Client, Response};
use reqwest::Method;

use super::HttpOpts;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
}

pub struct Api {
    client: Client,
    base: String,
    opts: HttpOpts,
}

impl Api {
    pub fn new(opts: &HttpOpts) -> Self {
        let addr = opts.http_addr.trim_end_matches('/');
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(660))
            .build()
            .unwrap_or_else(|_| Client::new());
        Self {
            client,
            base,
            opts: opts.clone(),
        }
    }

    fn transport(&self, method: &Method, path: &str, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            method: method.clone(),
            url: format!("{}/v1/{path}", self.base),
            source,
        }
    }

    /// Send a request to `/v1/<path>` with query pairs; returns the raw response.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        self.send_body(method, path, query, body.map(Body::from))
    }

    /// [`Self::send`] with any body (a file, streamed).
    pub fn send_body(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Response, ClientError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        if let Some(dc) = &self.opts.datacenter {
            q.push(("dc", dc.clone()));
        }
        if self.opts.stale && method == Method::GET {
            q.push(("stale", String::new()));
        }
        let mut req = self
            .client
            .request(method.clone(), format!("{}/v1/{path}", self.base))
            .query(&q);
        if let Some(t) = &self.opts.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let req = req
            .build()
            .map_err(|source| self.transport(&method, path, source))?;
        let url = req.url().to_string();
        self.client
            .execute(req)
            .map_err(|source| ClientError::Transport {
                method,
                url,
                source,
            })
    }

    /// Like [`send`](Self::send) but any non-2xx answer except 404 is an error.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let resp = self.send(method.clone(), path, query, body)?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        let url = resp.url().to_string();
        let bytes = resp.bytes().map_err(|source| ClientError::Transport {
            method,
            url,
            source,
        })?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        Ok(Some(bytes.to_vec()))
    }
}
