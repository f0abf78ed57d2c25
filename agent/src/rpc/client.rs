//! The client side of server RPC: one pooled HTTP/2 connection per
//! server, bincode bodies, errors in Go's words. A leaf: raft's network,
//! forwarding, DNS and anti-entropy all call through it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Header counting how many times a request has been forwarded.
pub const HOPS: &str = "x-tribune-hops";
/// Header naming the agent a forwarded request first reached: defaults such
/// as a new session's node are that agent's, not the leader's.
pub const AGENT_NODE: &str = "x-tribune-agent-node";
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("calling {0}: {1}")]
    Transport(String, String),
    #[error("{0} answered {1}: {2}")]
    Status(String, u16, String),
    #[error("decoding the answer of {0}: {1}")]
    Codec(String, String),
}

impl RpcError {
    /// The request certainly did not reach the peer: safe to retry elsewhere.
    pub fn not_sent(&self) -> bool {
        matches!(self, RpcError::Connect(..))
    }
}

/// Client side of server RPC. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
}

impl Default for RpcClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self { http }
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
            .post(format!("http://{addr}{path}"))
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
            .get(format!("http://{addr}{path}"))
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
    if !status.is_success() {
        return Err(RpcError::Status(
            addr.into(),
            status.as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    bincode::deserialize(&bytes).map_err(|e| RpcError::Codec(addr.into(), e.to_string()))
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
