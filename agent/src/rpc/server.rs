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
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::cluster::autopilot::RaftInfo;
use crate::dns::lookup::{ask, find_here, LookupError, Reply, Request as LookupRequest};
use crate::http::serve::{accept_loop, Gate};
use crate::http::timeouts::Handshake;
use crate::pipeline::context::{Consistency, RpcCtx};
use crate::pipeline::{auth, forward};
use crate::raft::proposer::{Actor, WriteError, WriteGate};
use crate::raft::NodeId;
use crate::rpc::wire;
use crate::state::{Command, Outcome};

/// Raft messages (entry batches, snapshot chunks) may be large.
const MAX_RPC_BODY: usize = 64 << 20;

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
        .route(crate::pipeline::read_index::PATH, post(read_index))
        .route("/rpc/node-view/{node}", get(node_view))
        .route("/rpc/dns", post(dns_lookup))
        .route(crate::coordinate::sync::PEERS_PATH, get(coordinates))
        .route(crate::coordinate::wan::PATH, get(wan_coordinate))
        .route(crate::dns::lookup::DC_PATH, post(dns_lookup_dc))
        .route(crate::query::remote::REMOTE_PATH, post(query_execute))
        .route(crate::acl::replication::PATH, post(acl_replicate))
        .route(auth::RESOLVE_PATH, post(acl_resolve))
        .route(
            forward::TUNNEL_PATH,
            post({
                let api = api.clone();
                move |ctx: RpcCtx, body: Bytes| tunnel(api.clone(), ctx, body)
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

/// A follower's read-index question: the leader's checked applied index.
async fn read_index(State(s): State<Shared>, body: Bytes) -> Response {
    match decode(&body) {
        Ok(ask) => match crate::pipeline::read_index::answer(&s, ask).await {
            Ok(a) => bin(&a),
            Err(e) => e.into_response(),
        },
        Err(r) => *r,
    }
}

/// A forwarded API request enters the API router, and so the pipeline.
async fn tunnel(api: Router, ctx: RpcCtx, body: Bytes) -> Response {
    auth::authenticate_rpc(&ctx);
    match decode::<forward::Tunnelled>(&body) {
        Ok(env) => bin(&forward::serve_tunnelled(api, ctx.hops, env).await),
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
    bin(&crate::cluster::autopilot::remove_voter(&s.autopilot(), id).await)
}

/// A leader's request during a leadership transfer.
async fn transfer(State(s): State<Shared>, body: Bytes) -> Response {
    match decode::<crate::cluster::transfer::Ask>(&body) {
        Ok(ask) => bin(&crate::cluster::transfer::answer(&s, ask).await),
        Err(r) => *r,
    }
}

/// A write forwarded to the leader; the proposer routes it on (or
/// proposes it, here on the leader). With ACLs on, the secret it carries
/// (none: anonymous) must allow what the command does; else 403 and
/// nothing is applied. The secret travels on if it is forwarded again.
async fn write(
    State(s): State<Shared>,
    ctx: RpcCtx,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    auth::authenticate_rpc(&ctx);
    let cmd: Command = match decode(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let secret: Arc<str> = match headers.get(wire::TOKEN).map(|v| v.to_str()) {
        Some(Ok(t)) if !t.is_empty() => Arc::from(t),
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "bad token header").into_response(),
        _ => Arc::from(crate::state::acl::ANONYMOUS_SECRET),
    };
    if s.config.acl.enabled {
        let gate = WriteGate {
            store: s.store.clone(),
            default: s.config.acl.default_policy,
        };
        if let Err(WriteError::Denied(why)) = gate.check(&secret, &cmd) {
            tracing::debug!(hops = ctx.hops, "rpc: forwarded write refused: {why}");
            return (StatusCode::FORBIDDEN, why).into_response();
        }
    }
    let actor = Actor::Checked(secret);
    let r: Result<(u64, Outcome), WriteError> =
        s.proposer.write_hops(cmd, ctx.hops + 1, &actor).await;
    match r {
        // Refused further on (the leader): the same 403 (which agents of
        // any version read), not an error variant older ones cannot decode.
        Err(WriteError::Denied(why)) => (StatusCode::FORBIDDEN, why).into_response(),
        r => bin(&r),
    }
}

/// A DNS lookup for a client agent (or a follower wanting the leader's
/// answer): see [`crate::dns::lookup`].
async fn dns_lookup(State(s): State<Shared>, ctx: RpcCtx, body: Bytes) -> Response {
    auth::authenticate_rpc(&ctx);
    let req: LookupRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    bin(&lookup(&s, req, ctx.hops).await)
}

/// A secondary datacenter's leader asking for the ACL tables.
async fn acl_replicate(State(s): State<Shared>, ctx: RpcCtx, body: Bytes) -> Response {
    auth::authenticate_rpc(&ctx);
    let ask: crate::acl::replication::Ask = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    bin(&crate::acl::replication::serve(&s, ask).await)
}

/// A prepared query run here for another datacenter's failover.
async fn query_execute(State(s): State<Shared>, ctx: RpcCtx, body: Bytes) -> Response {
    auth::authenticate_rpc(&ctx);
    match decode::<crate::query::remote::RemoteExecute>(&body) {
        Ok(r) => bin(&crate::query::remote::execute_here(&s, r).await),
        Err(r) => *r,
    }
}

/// A client agent's lookup in another datacenter: asked of that
/// datacenter's servers (this one's own, if it names this datacenter).
async fn dns_lookup_dc(State(s): State<Shared>, ctx: RpcCtx, body: Bytes) -> Response {
    auth::authenticate_rpc(&ctx);
    let r: crate::dns::lookup::DcRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if r.dc == s.config.datacenter {
        return bin(&lookup(&s, r.req, ctx.hops).await);
    }
    let answer = crate::dns::lookup::ask_dc(&s.router, &s.rpc, &r.dc, &r.req, ctx.hops).await;
    bin(&answer)
}

/// The server side of `/rpc/dns`: answer from this server's store when a
/// stale answer will do or this server leads; else ask the leader.
async fn lookup(s: &Shared, req: LookupRequest, hops: u32) -> Result<Reply, LookupError> {
    if req.allow_stale || s.gate(Consistency::Default).await.is_ok() {
        return Ok(Reply {
            found: find_here(s, &req).await?,
            last_contact_ms: s.leadership.last_contact_ms(),
        });
    }
    let up = s.upstream.as_ref().ok_or(LookupError::NoLeader)?;
    if up.targets().is_empty() {
        return Err(LookupError::NoLeader);
    }
    ask(up, &req, hops + 1).await
}

/// A client agent's token lookup (see [`auth::resolve_for_client`]).
async fn acl_resolve(State(s): State<Shared>, body: Bytes) -> Response {
    let secret: String = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    bin(&auth::resolve_for_client(&s, &secret))
}

async fn node_view(State(s): State<Shared>, Path(node): Path<String>) -> Response {
    let view = crate::local::sync::node_view(&s.store.read(), &node);
    bin(&view)
}

/// Every node's coordinate, for a client agent's Vivaldi updates.
async fn coordinates(State(s): State<Shared>) -> Response {
    bin(&crate::coordinate::sync::peers(&s.store.read()))
}

/// This server's WAN name and coordinate, for its WAN peers
/// (`coordinate::wan`); 503 without a WAN pool.
async fn wan_coordinate(State(s): State<Shared>) -> Response {
    match s.wan_coords.own() {
        Some(own) => bin(&own),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no WAN coordinate").into_response(),
    }
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
    tls: Option<Arc<crate::tls::Reloadable>>,
    stop: CancellationToken,
) {
    use hyper_util::service::TowerToHyperService;
    let refused = Arc::new(parking_lot::Mutex::new(None::<std::time::Instant>));
    accept_loop(listener, &stop, gate, |stream, peer, admitted| {
        let svc = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.current()));
        let refused = refused.clone();
        async move {
            let _admitted = admitted;
            let io = Handshake::new(stream, HANDSHAKE_BYTES, handshake);
            let Some(acceptor) = acceptor else {
                return serve_h2(io, svc, peer, stop).await;
            };
            match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                Ok(Ok(tls_io)) => serve_h2(tls_io, svc, peer, stop).await,
                Ok(Err(e)) => handshake_refused(&refused, peer, &e.to_string()),
                Err(_) => handshake_refused(&refused, peer, "TLS handshake timed out"),
            }
        }
    })
    .await;
}

/// A peer that failed the TLS handshake (no certificate, another CA, plain
/// HTTP/2): logged at most every 10 s, so a flood cannot fill the log.
fn handshake_refused(
    last: &parking_lot::Mutex<Option<std::time::Instant>>,
    peer: std::net::SocketAddr,
    why: &str,
) {
    metrics::counter!("consul.rpc.tls.refused").increment(1);
    let mut l = last.lock();
    if l.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        *l = Some(std::time::Instant::now());
        tracing::warn!("rpc: TLS handshake from {peer} failed, connection closed: {why}");
    } else {
        tracing::debug!("rpc: TLS handshake from {peer} failed: {why}");
    }
}

/// HTTP/2 on one accepted connection (plain or TLS) until it ends or `stop`.
async fn serve_h2<IO>(
    io: IO,
    svc: hyper_util::service::TowerToHyperService<Router>,
    peer: std::net::SocketAddr,
    stop: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper::server::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    // Pings find peers that vanished without closing (a partition,
    // a host gone): their connections are freed.
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), svc);
    // Peers retry: a connection is simply dropped at shutdown.
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::trace!(%peer, error = %e, "rpc connection ended");
        },
        _ = stop.cancelled() => {}
    }
}
