//! The client side of server RPC: one pooled HTTP/2 connection per
//! server, bincode bodies, errors in Go's words. A leaf: raft's network,
//! forwarding, DNS and anti-entropy all call through it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use super::wire::{RpcError, AGENT_NODE, HOPS};

/// Client side of server RPC. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    /// Forwarded writes: connections torn down when a write is abandoned.
    writes: super::write_conn::WritePool,
    /// `https` when server RPC speaks TLS.
    scheme: &'static str,
}

impl Default for RpcClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcClient {
    pub fn new() -> Self {
        Self::with_tls(None)
    }

    /// A client that dials servers over TLS with `tls` (mutual TLS when it
    /// holds a certificate), or in plaintext without.
    pub fn with_tls(tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>) -> Self {
        let mut b = reqwest::Client::builder();
        if let Some(c) = &tls {
            b = b.use_preconfigured_tls(c.as_ref().clone());
        }
        let http = b
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            http,
            scheme: if tls.is_some() { "https" } else { "http" },
            writes: super::write_conn::WritePool::new(tls),
        }
    }

    /// The URL of `path` on the server RPC port at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// [`Self::call`] for a write: on its own connection, which is torn
    /// down if the write times out or its caller goes away, so that a write
    /// reported as failed cannot reach the peer later.
    pub async fn call_write<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Q,
        timeout: Duration,
        hops: u32,
        token: Option<&str>,
    ) -> Result<A, RpcError> {
        let body =
            bincode::serialize(req).map_err(|e| RpcError::Codec(addr.into(), e.to_string()))?;
        let (status, bytes) = self
            .writes
            .post(addr, path, hops, token, body, timeout)
            .await?;
        decode_answer(addr, status.as_u16(), &bytes)
    }

    /// The HTTP/2 client, for streamed calls (snapshots).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POST a bincode request to `addr` and decode a bincode answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Q,
        timeout: Duration,
        hops: u32,
    ) -> Result<A, RpcError> {
        let body =
            bincode::serialize(req).map_err(|e| RpcError::Codec(addr.into(), e.to_string()))?;
        let r = self
            .http
            .post(self.url(addr, path))
            .header(HOPS, hops)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        answer(addr, r).await
    }

    /// GET `path` from `addr`, decoding a bincode answer.
    pub async fn get<A: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<A, RpcError> {
        let r = self
            .http
            .get(self.url(addr, path))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        answer(addr, r).await
    }
}

/// Decode a bincode answer; a non-2xx status is an error with its body.
async fn answer<A: DeserializeOwned>(
    addr: &str,
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<A, RpcError> {
    let r = r.map_err(|e| classify(addr, e))?;
    let status = r.status();
    let bytes = r.bytes().await.map_err(|e| classify(addr, e))?;
    decode_answer(addr, status.as_u16(), &bytes)
}

fn decode_answer<A: DeserializeOwned>(
    addr: &str,
    status: u16,
    bytes: &[u8],
) -> Result<A, RpcError> {
    if !(200..300).contains(&status) {
        return Err(RpcError::Status(
            addr.into(),
            status,
            String::from_utf8_lossy(bytes).into_owned(),
        ));
    }
    bincode::deserialize(bytes).map_err(|e| RpcError::Codec(addr.into(), e.to_string()))
}

/// The error with its cause, in Go's words (`dial tcp ...: connect:
/// connection refused`).
fn classify(addr: &str, e: reqwest::Error) -> RpcError {
    if e.is_connect() {
        RpcError::Connect(addr.into(), crate::goerr::cause(&e))
    } else {
        RpcError::Transport(addr.into(), crate::goerr::cause(&e))
    }
}
