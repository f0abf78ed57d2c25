//! The blocking client: one-shot CLI commands.

use reqwest::blocking::{Body, Client, Response};
use reqwest::Method;

use crate::config::Config;
use crate::error::Error;
use crate::tls::{configure, Prepared};

struct Ready {
    client: Client,
    prepared: Prepared,
}

/// A blocking client of one agent. A configuration that cannot be used
/// (an unreadable token or CA file) is reported by every request, so a
/// command fails the way it fails when the agent is unreachable.
pub struct Api {
    ready: Result<Ready, crate::config::ConfigError>,
    config: Config,
}

impl Api {
    pub fn new(config: impl Into<Config>) -> Self {
        let config = config.into();
        let ready = Prepared::new(&config).and_then(|prepared| {
            let client = configure!(Client::builder(), &config, &prepared)
                .build()
                .map_err(|e| crate::config::ConfigError::Tls(crate::goerr::chain_text(&e)))?;
            Ok(Ready { client, prepared })
        });
        Api { ready, config }
    }

    /// Fails at once on a configuration that cannot be used.
    pub fn try_new(config: impl Into<Config>) -> Result<Self, Error> {
        let api = Api::new(config);
        match &api.ready {
            Ok(_) => Ok(api),
            Err(e) => Err(Error::Config(e.clone())),
        }
    }

    fn ready(&self) -> Result<&Ready, Error> {
        self.ready.as_ref().map_err(|e| Error::Config(e.clone()))
    }

    /// Send a request to `/v1/<path>` with query pairs; returns the raw response.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, Error> {
        self.send_body(method, path, query, body.map(Body::from))
    }

    /// [`Self::send`] with any body (a file, streamed).
    pub fn send_body(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Response, Error> {
        let r = self.ready()?;
        let url = format!("{}/v1/{path}", r.prepared.base);
        let q = crate::common_query(&self.config, &method, query);
        let mut req = r.client.request(method.clone(), &url).query(&q);
        if let Some(t) = &r.prepared.token {
            req = req.header(crate::TOKEN_HEADER, t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let req = req.build().map_err(|source| Error::Transport {
            method: method.clone(),
            url,
            source,
        })?;
        let url = req.url().to_string();
        r.client.execute(req).map_err(|source| Error::Transport {
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
    ) -> Result<Option<Vec<u8>>, Error> {
        let resp = self.send(method.clone(), path, query, body)?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        let url = resp.url().to_string();
        let bytes = resp.bytes().map_err(|source| Error::Transport {
            method,
            url,
            source,
        })?;
        if !status.is_success() {
            return Err(Error::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        Ok(Some(bytes.to_vec()))
    }
}
