//! A small blocking HTTP client for CLI commands, and the HTTP options
//! every command that talks to an agent takes.

use std::time::Duration;

use clap::Args;
use reqwest::blocking::{Body, Client, Response};
use reqwest::Method;

/// Help heading of [`HttpOpts`], listed first as Consul lists them.
const HTTP_OPTIONS: &str = "HTTP API Options";

/// Connection options shared by every command that talks to an agent.
#[derive(Args, Debug, Clone)]
pub struct HttpOpts {
    /// The `address` and port of the agent's HTTP API: an IP address or DNS
    /// name, and the port. This can also be specified via the
    /// CONSUL_HTTP_ADDR environment variable.
    #[arg(
        long = "http-addr",
        env = "CONSUL_HTTP_ADDR",
        default_value = "127.0.0.1:8500",
        value_name = "address",
        hide_env = true,
        help_heading = HTTP_OPTIONS
    )]
    pub http_addr: String,
    /// ACL token to use in the request. This can also be specified via the
    /// CONSUL_HTTP_TOKEN environment variable. If unspecified, the query
    /// will default to the token of the agent at the HTTP address.
    #[arg(
        long = "token",
        env = "CONSUL_HTTP_TOKEN",
        value_name = "value",
        hide_env = true,
        help_heading = HTTP_OPTIONS
    )]
    pub token: Option<String>,
    /// Name of the datacenter to query. If unspecified, this will default
    /// to the datacenter of the queried agent.
    #[arg(long = "datacenter", help_heading = HTTP_OPTIONS)]
    pub datacenter: Option<String>,
    /// Permit any server (non-leader) to respond to this request. This
    /// allows for lower latency and higher throughput, but can result in
    /// stale data. This option has no effect on non-read operations.
    #[arg(long = "stale", help_heading = HTTP_OPTIONS)]
    pub stale: bool,
}

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
