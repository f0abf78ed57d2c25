//! The async client: long-running users (watch plans, `lock`, `exec`,
//! tribune-template's consul backend).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Client, Method};

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::tls::{configure, Prepared};

/// A response: status, `X-Consul-Index` (0 when absent) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub index: u64,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `None` for a 404.
    pub fn json(&self) -> Result<Option<serde_json::Value>, Error> {
        if self.status == 404 {
            return Ok(None);
        }
        serde_json::from_slice(&self.body)
            .map(Some)
            .map_err(|e| Error::Decode(e.to_string()))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct Ready {
    http: Client,
    prepared: Prepared,
}

/// An async client of one agent; cheap to clone. As [`crate::Api`], a
/// configuration that cannot be used is reported by every request.
#[derive(Clone)]
pub struct ApiClient {
    ready: Arc<Result<Ready, ConfigError>>,
    config: Arc<Config>,
}

impl ApiClient {
    pub fn new(config: impl Into<Config>) -> Self {
        let config = config.into();
        let ready = Prepared::new(&config).and_then(|prepared| {
            let http = configure!(Client::builder(), &config, &prepared)
                .build()
                .map_err(|e| ConfigError::Tls(crate::goerr::chain_text(&e)))?;
            Ok(Ready { http, prepared })
        });
        ApiClient {
            ready: Arc::new(ready),
            config: Arc::new(config),
        }
    }

    /// Fails at once on a configuration that cannot be used.
    pub fn try_new(config: impl Into<Config>) -> Result<Self, Error> {
        let c = ApiClient::new(config);
        match c.ready.as_ref() {
            Ok(_) => Ok(c),
            Err(e) => Err(Error::Config(e.clone())),
        }
    }

    /// The base URL requests go to (`https://name:port` with a TLS server name).
    pub fn base_url(&self) -> Option<&str> {
        self.ready
            .as_ref()
            .as_ref()
            .ok()
            .map(|r| r.prepared.base.as_str())
    }

    fn ready(&self) -> Result<&Ready, Error> {
        self.ready
            .as_ref()
            .as_ref()
            .map_err(|e| Error::Config(e.clone()))
    }

    /// Send a request to `/v1/<path>`; any status is returned as a [`Reply`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Error> {
        self.send_timeout(method, path, query, body, None).await
    }

    /// [`Self::send`] with a timeout of its own (a blocking query's wait
    /// plus slack) instead of the client's.
    pub async fn send_timeout(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<Reply, Error> {
        let mut req = self.request(method.clone(), path, query)?;
        if let Some(b) = body {
            req = req.body(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = self.execute(method.clone(), path, req).await?;
        let url = resp.url().to_string();
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.bytes().await.map_err(|source| Error::Transport {
            method,
            url,
            source,
        })?;
        Ok(Reply {
            status,
            index,
            body,
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::RequestBuilder, Error> {
        let r = self.ready()?;
        let q = crate::common_query(&self.config, &method, query);
        let mut req = r
            .http
            .request(method, format!("{}/v1/{path}", r.prepared.base))
            .query(&q);
        if let Some(t) = &r.prepared.token {
            req = req.header(crate::TOKEN_HEADER, t);
        }
        Ok(req)
    }

    async fn execute(
        &self,
        method: Method,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let r = self.ready()?;
        let req = req.build().map_err(|source| Error::Transport {
            method: method.clone(),
            url: format!("{}/v1/{path}", r.prepared.base),
            source,
        })?;
        let url = req.url().to_string();
        r.http
            .execute(req)
            .await
            .map_err(|source| Error::Transport {
                method,
                url,
                source,
            })
    }

    /// `GET /v1/<path>` whose body is read as it arrives (the live log):
    /// the response once its head is in; a non-2xx answer is an error.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, Error> {
        // A live stream has no end to wait for.
        let req = self
            .request(Method::GET, path, query)?
            .timeout(Duration::from_secs(365 * 24 * 3600));
        let resp = self.execute(Method::GET, path, req).await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status {
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
    ) -> Result<Reply, Error> {
        let r = self.send(method, path, query, body).await?;
        if r.status == 404 || r.is_success() {
            return Ok(r);
        }
        Err(Error::Status {
            status: r.status,
            body: String::from_utf8_lossy(&r.body).trim().to_string(),
        })
    }
}
