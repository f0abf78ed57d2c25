//! Server RPC on `ports.server` (8300): HTTP/2 (prior knowledge, no
//! HTTP/1.1) with bincode bodies.
//!
//! One listener carries raft traffic between servers, writes forwarded to
//! the leader, catalog reads for client agents' anti-entropy and DNS, and forwarded
//! HTTP API calls, each in its envelope ([`forward::Tunnelled`], answered
//! by the API router as the agent's own HTTP port would). The API itself is
//! not served here: only `-client` addresses answer it. HTTP/2 multiplexes
//! every call over one reused connection per peer, blocking queries
//! included; refusing HTTP/1.1 also keeps browsers (which cannot speak h2c)
//! from posting to these routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::forward;
use crate::http::serve::{accept_loop, Gate};
use crate::http::timeouts::Handshake;
use crate::http::Shared;
use crate::raft::proposer::WriteError;
use crate::raft::NodeId;
use crate::state::{Command, Outcome};

/// Header counting how many times a request has been forwarded.
pub const HOPS: &str = "x-tribune-hops";
/// Header naming the agent a forwarded request first reached: defaults such
/// as a new session's node are that agent's, not the leader's.
pub const AGENT_NODE: &str = "x-tribune-agent-node";
/// Raft messages (entry batches, snapshot chunks) may be large.
const MAX_RPC_BODY: usize = 64 << 20;

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

/// What a server says about its raft state (bootstrap decisions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftInfo {
    pub id: NodeId,
    pub initialized: bool,
    pub leader: String,
    /// Milliseconds since this server last heard from the leader.
    pub last_contact_ms: u64,
    /// The term of this server's last log entry, and its index.
    pub last_term: u64,
    pub last_index: u64,
}

/// Client side of server RPC. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    /// Forwarded writes: connections torn down when a write is abandoned.
    writes: super::write_conn::WritePool,
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
        Self {
            http,
            writes: Default::default(),
        }
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
    ) -> Result<A, RpcError> {
        let body =
            bincode::serialize(req).map_err(|e| RpcError::Codec(addr.into(), e.to_string()))?;
        let (status, bytes) = self.writes.post(addr, path, hops, body, timeout).await?;
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

fn bin<T: Serialize>(v: &T) -> Response {
    match bincode::serialize(v) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    bincode::deserialize(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("bad rpc body: {e}")).into_response())
    })
}

pub fn hops(h: &HeaderMap) -> u32 {
    h.get(HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The RPC route table. `api` answers forwarded API requests.
pub fn router(state: Shared, api: Router) -> Router {
    Router::new()
        .route("/rpc/raft/append", post(append))
        .route("/rpc/raft/vote", post(vote))
        .route("/rpc/raft/snapshot", post(snapshot))
        .route("/rpc/raft/info", post(info))
        .route("/rpc/raft/remove", post(remove_peer))
        .route("/rpc/raft/transfer", post(transfer))
        .route("/rpc/write", post(write))
        .route("/rpc/node-view/{node}", get(node_view))
        .route("/rpc/dns", post(dns_lookup))
        .route(
            forward::TUNNEL_PATH,
            post({
                let api = api.clone();
                move |headers: HeaderMap, body: Bytes| tunnel(api.clone(), headers, body)
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_RPC_BODY))
        .layer(axum::middleware::from_fn(
            crate::telemetry::http::rpc_request,
        ))
        // Streamed, so no body limit applies; the API's handler bounds it.
        .route(
            forward::SNAPSHOT_PATH,
            any(move |req: axum::extract::Request| forward::serve_snapshot(api.clone(), req)),
        )
        .with_state(state)
}

async fn tunnel(api: Router, headers: HeaderMap, body: Bytes) -> Response {
    match decode::<forward::Tunnelled>(&body) {
        Ok(env) => bin(&forward::serve_tunnelled(api, hops(&headers), env).await),
        Err(r) => *r,
    }
}

macro_rules! raft_or_503 {
    ($s:expr) => {
        match $s.raft.as_ref() {
            Some(r) => r,
            None => return (StatusCode::SERVICE_UNAVAILABLE, "not a server").into_response(),
        }
    };
}

/// Milliseconds (since [`contact_base`]) of the last append (heartbeats
/// included) received from a leader; 0: never.
static LAST_APPEND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn contact_base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

/// Milliseconds since a leader's last append reached this server
/// (`u64::MAX` if none ever did).
pub fn since_last_append_ms() -> u64 {
    match LAST_APPEND.load(std::sync::atomic::Ordering::Relaxed) {
        0 => u64::MAX,
        at => (contact_base().elapsed().as_millis() as u64).saturating_sub(at),
    }
}

async fn append(State(s): State<Shared>, body: Bytes) -> Response {
    let raft = raft_or_503!(s);
    let now = (contact_base().elapsed().as_millis() as u64).max(1);
    LAST_APPEND.store(now, std::sync::atomic::Ordering::Relaxed);
    match decode(&body) {
        Ok(req) => bin(&raft.append_entries(req).await),
        Err(r) => *r,
    }
}

async fn vote(State(s): State<Shared>, body: Bytes) -> Response {
    let raft = raft_or_503!(s);
    match decode(&body) {
        Ok(req) => bin(&raft.vote(req).await),
        Err(r) => *r,
    }
}

async fn snapshot(State(s): State<Shared>, body: Bytes) -> Response {
    let raft = raft_or_503!(s);
    match decode(&body) {
        Ok(req) => bin(&raft.install_snapshot(req).await),
        Err(r) => *r,
    }
}

async fn info(State(s): State<Shared>) -> Response {
    let raft = raft_or_503!(s);
    let initialized = raft.is_initialized().await.unwrap_or(false);
    let m = raft.metrics().borrow().clone();
    bin(&RaftInfo {
        id: s.raft_id,
        initialized,
        leader: s.leadership.leader_addr(),
        last_contact_ms: if s.leadership.is_leader() {
            0
        } else {
            since_last_append_ms()
        },
        last_term: m.vote.leader_id().term,
        last_index: m.last_log_index.unwrap_or(0),
    })
}

/// Remove a server from the voters (its own graceful leave, or an
/// operator's remove-peer forwarded here). Only the leader acts.
async fn remove_peer(State(s): State<Shared>, body: Bytes) -> Response {
    let id: NodeId = match decode(&body) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    bin(&crate::cluster::autopilot::remove_voter(&s, id).await)
}

/// A leader's request during a leadership transfer.
async fn transfer(State(s): State<Shared>, body: Bytes) -> Response {
    match decode::<crate::cluster::transfer::Ask>(&body) {
        Ok(ask) => bin(&crate::cluster::transfer::answer(&s, ask).await),
        Err(r) => *r,
    }
}

async fn write(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let cmd: Command = match decode(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let r: Result<(u64, Outcome), WriteError> =
        s.proposer.write_hops(cmd, hops(&headers) + 1).await;
    bin(&r)
}

/// A DNS lookup for a client agent (or a follower wanting the leader's
/// answer): see [`crate::dns::lookup`].
async fn dns_lookup(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: crate::dns::lookup::Request = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    bin(&crate::dns::lookup::serve(&s, req, hops(&headers)).await)
}

async fn node_view(State(s): State<Shared>, Path(node): Path<String>) -> Response {
    let view = crate::local::sync::node_view(&s.store.read(), &node);
    bin(&view)
}

/// Bytes a peer sends first: the HTTP/2 preface and a frame header.
const HANDSHAKE_BYTES: usize = 24 + 9;

/// Serve the RPC router on `listener` (HTTP/2 only) until `stop`; `gate`
/// caps connections per peer address, `handshake` bounds a new
/// connection's silence.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    gate: Arc<Gate>,
    handshake: Duration,
    stop: CancellationToken,
) {
    use hyper::server::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    accept_loop(listener, &stop, gate, |stream, peer, admitted| {
        let svc = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        async move {
            let _admitted = admitted;
            let io = TokioIo::new(Handshake::new(stream, HANDSHAKE_BYTES, handshake));
            // Pings find peers that vanished without closing (a partition,
            // a host gone): their connections are freed.
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .serve_connection(io, svc);
            // Peers retry: a connection is simply dropped at shutdown.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::trace!(%peer, error = %e, "rpc connection ended");
                },
                _ = stop.cancelled() => {}
            }
        }
    })
    .await;
}
