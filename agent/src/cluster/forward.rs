//! Forwarding HTTP API calls, as Consul's RPC layer does.
//!
//! A follower sends every request on replicated state to the leader unless
//! it asks for `?stale`; a client agent, which holds no state, sends them to
//! a server (which answers `?stale` itself or forwards on). The request goes
//! whole over the server RPC port and the answer comes back unchanged, so
//! headers such as `X-Consul-Index` are the leader's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio_util::either::Either;
use tower::ServiceExt;

use super::rpc::{hops, RpcError, AGENT_NODE, HOPS};
use super::Upstream;
use crate::http::params::Query;
use crate::http::{ApiError, Shared, MAX_BODY};

/// How long a request waits for a leader to appear (Consul's rpc_hold_timeout).
const HOLD: Duration = Duration::from_secs(7);
/// Whole snapshots go through here: streamed, see [`forward_snapshot`].
const SNAPSHOT: &str = "/v1/snapshot";
/// Where they go on the server RPC port.
pub const SNAPSHOT_PATH: &str = "/rpc/snapshot";
const MAX_HOPS: u32 = 3;

/// Paths answered from replicated state (the rest are agent-local).
fn replicated(path: &str, client: bool) -> bool {
    const PREFIXES: [&str; 10] = [
        "/v1/internal/ui/",
        "/v1/kv",
        "/v1/txn",
        "/v1/catalog/",
        "/v1/health/",
        "/v1/session/",
        "/v1/operator/",
        "/v1/coordinate/",
        "/v1/query",
        SNAPSHOT,
    ];
    if path == "/v1/catalog/datacenters" {
        return false;
    }
    PREFIXES.iter().any(|p| path.starts_with(p)) || (client && path.starts_with("/v1/status/"))
}

/// Reads only the leader answers, `?stale` or not.
const LEADER_ONLY: [&str; 2] = [
    "/v1/operator/autopilot/health",
    "/v1/operator/autopilot/state",
];

/// Reads may be repeated on another server; every other method is a write.
fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD)
}

type Forwarding = Pin<Box<dyn Future<Output = Response> + Send>>;

/// axum middleware: answer here, or forward.
///
/// Not an async fn: a request answered here (a parked blocking query among
/// them) would otherwise carry the forwarding state machine, an HTTP client
/// call, for its whole life. Forwarding is boxed instead.
pub fn middleware(
    State(s): State<Shared>,
    req: Request,
    next: Next,
) -> Either<impl Future<Output = Response> + Send, Forwarding> {
    match upstream_for(&s, &req) {
        None => Either::Left(next.run(req)),
        Some(up) if req.uri().path() == SNAPSHOT => {
            Either::Right(Box::pin(forward_snapshot(s, up, req, next)))
        }
        Some(up) => Either::Right(Box::pin(forward(s, up, req, next))),
    }
}

/// Where `req` must go, or `None` to answer it here.
fn upstream_for(s: &Shared, req: &Request) -> Option<Upstream> {
    let client = s.raft.is_none();
    if !replicated(req.uri().path(), client) {
        return None;
    }
    // The leader answers everything itself: decide that before any work.
    if !client && s.leadership.is_leader() {
        return None;
    }
    let up = s.upstream.as_ref()?;
    let writes = !is_read(req.method());
    // Autopilot's health is the leader's view (Consul requires it there).
    let leader_only = LEADER_ONLY.contains(&req.uri().path());
    if !client && !writes && !leader_only && Query::parse(req.uri().query()).has("stale") {
        return None;
    }
    Some(up.clone())
}

async fn forward(s: Shared, up: Upstream, req: Request, next: Next) -> Response {
    let client = s.raft.is_none();
    let query = Query::parse(req.uri().query());
    let writes = !is_read(req.method());
    let hop = hops(req.headers());
    if hop >= MAX_HOPS {
        return ApiError::Internal(
            "request forwarded too many times (servers disagree on the leader)".into(),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large, max size: {MAX_BODY} bytes"),
            )
                .into_response()
        }
    };
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    // A blocking query may park up to 10 min (+ jitter); anything else that
    // takes this long is lost in the network: answer 500 rather than hang.
    // A forwarded write gets less: its error must reach the client before
    // the client's own timeout, or the client cannot tell it failed (the
    // write connection is torn down then, so it cannot arrive later).
    let timeout = if query.has("index") {
        Duration::from_secs(11 * 60)
    } else if writes {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(15)
    };
    let envelope = Tunnelled {
        method: parts.method.to_string(),
        uri: path_q,
        headers: tunnel_headers(&parts.headers, &s.node.node),
        body: body.to_vec(),
    };
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        if !client && s.leadership.is_leader() {
            // This server took office while the request waited.
            let mut req = Request::new(Body::from(envelope.body));
            *req.method_mut() = parts.method;
            *req.uri_mut() = parts.uri;
            *req.headers_mut() = parts.headers;
            return next.run(req).await;
        }
        for target in up.targets() {
            let r: Result<TunnelledAnswer, RpcError> = if writes {
                up.rpc
                    .call_write(&target, TUNNEL_PATH, &envelope, timeout, hop + 1)
                    .await
            } else {
                up.rpc
                    .call(&target, TUNNEL_PATH, &envelope, timeout, hop + 1)
                    .await
            };
            match r {
                Ok(answer) => {
                    up.good(&target);
                    return answer.into_response();
                }
                // Never sent, or a read (safe to repeat): try again, elsewhere
                // or once a leader is known. A write that may have reached
                // the old leader is not repeated: its outcome is unknown.
                Err(e) if e.not_sent() || !writes => {
                    tracing::debug!(%target, error = %e, "forward: server unreachable");
                    up.bad(&target);
                }
                Err(e) => {
                    return ApiError::Internal(format!("forwarding to {target}: {e}"))
                        .into_response()
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiError::NoLeader.into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request's headers for the envelope, without hop-by-hop ones, and
/// naming the agent it first reached.
fn tunnel_headers(h: &HeaderMap, node: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = h
        .iter()
        .filter(|(k, _)| !hop_by_hop(k))
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    if !h.contains_key(AGENT_NODE) {
        v.push((AGENT_NODE.to_string(), node.as_bytes().to_vec()));
    }
    v
}

/// Where tunnelled API requests go on the server RPC port.
pub const TUNNEL_PATH: &str = "/rpc/api";

/// An HTTP API request forwarded whole over server RPC. The RPC port
/// serves only envelopes like this one, never the API itself, so `-client`
/// decides who can reach the API.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tunnelled {
    pub method: String,
    /// Path and query, e.g. `/v1/kv/a?index=7`.
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to a [`Tunnelled`] request, as the serving agent gave it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TunnelledAnswer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl IntoResponse for TunnelledAnswer {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_bytes(&v)) {
                // Content-Length is the body's (or, for HEAD, GET's): kept.
                if k == header::CONTENT_LENGTH || !hop_by_hop(&k) {
                    h.append(k, v);
                }
            }
        }
        resp
    }
}

/// Largest answer carried back (a full catalog listing can be megabytes).
const MAX_ANSWER: usize = 64 << 20;

/// Server side of [`TUNNEL_PATH`]: answer the enclosed request with the
/// API router `api` (which forwards it on when this server is not the
/// leader, `hops` counting the trip so far).
pub async fn serve_tunnelled(api: Router, hops: u32, env: Tunnelled) -> TunnelledAnswer {
    let failed = |status: StatusCode, msg: String| TunnelledAnswer {
        status: status.as_u16(),
        headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
        body: msg.into_bytes(),
    };
    let (Ok(method), Ok(uri)) = (
        Method::from_bytes(env.method.as_bytes()),
        env.uri.parse::<axum::http::Uri>(),
    ) else {
        return failed(
            StatusCode::BAD_REQUEST,
            "malformed forwarded request".into(),
        );
    };
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return failed(
            StatusCode::BAD_REQUEST,
            "malformed forwarded request".into(),
        );
    }
    let mut req = Request::new(Body::from(env.body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    for (k, v) in env.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_bytes(&v)) {
            if !hop_by_hop(&k) {
                h.append(k, v);
            }
        }
    }
    h.insert(HOPS, HeaderValue::from(hops));
    let resp = match api.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(b) => b.to_vec(),
        Err(e) => return failed(StatusCode::INTERNAL_SERVER_ERROR, format!("answer: {e}")),
    };
    TunnelledAnswer {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(k, _)| **k == header::CONTENT_LENGTH || !hop_by_hop(k))
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

fn hop_by_hop(h: &HeaderName) -> bool {
    h == header::HOST
        || h == header::CONNECTION
        || h == header::CONTENT_LENGTH
        || h == header::TRANSFER_ENCODING
        || h == header::UPGRADE
        || h.as_str() == "keep-alive"
        || h.as_str() == "proxy-connection"
        || h.as_str() == HOPS
}

/// `/v1/snapshot` carries whole snapshots, larger than an envelope may be:
/// the body and the answer are streamed through [`SNAPSHOT_PATH`] (not
/// buffered), with a long timeout, to one target (a streamed body cannot be
/// sent twice).
async fn forward_snapshot(s: Shared, up: Upstream, req: Request, next: Next) -> Response {
    let client = s.raft.is_none();
    let hop = hops(req.headers());
    if hop >= MAX_HOPS {
        return ApiError::Internal(
            "request forwarded too many times (servers disagree on the leader)".into(),
        )
        .into_response();
    }
    let deadline = tokio::time::Instant::now() + HOLD;
    let target = loop {
        if !client && s.leadership.is_leader() {
            return next.run(req).await;
        }
        if let Some(t) = up.targets().into_iter().next() {
            break t;
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiError::NoLeader.into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut rb = up
        .rpc
        .http()
        .request(
            parts.method.clone(),
            format!("http://{target}{SNAPSHOT_PATH}{query}"),
        )
        .header(HOPS, hop + 1)
        .timeout(Duration::from_secs(30 * 60))
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (k, v) in parts.headers.iter() {
        if !hop_by_hop(k) {
            rb = rb.header(k, v);
        }
    }
    match rb.send().await {
        Ok(r) => {
            up.good(&target);
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = r.status();
            for (k, v) in r.headers() {
                if !hop_by_hop(k) {
                    resp.headers_mut().append(k, v.clone());
                }
            }
            *resp.body_mut() = Body::from_stream(r.bytes_stream());
            resp
        }
        Err(e) => {
            up.bad(&target);
            ApiError::Internal(format!("forwarding to {target}: {e}")).into_response()
        }
    }
}

/// Server side of [`SNAPSHOT_PATH`]: the request as `/v1/snapshot` through
/// the API router `api` (which forwards it on when this server is not the
/// leader), its answer streamed back.
pub async fn serve_snapshot(api: Router, req: Request) -> Response {
    let hop = hops(req.headers());
    let (mut parts, body) = req.into_parts();
    if !matches!(parts.method, Method::GET | Method::PUT) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, PUT")],
        )
            .into_response();
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match format!("{SNAPSHOT}{query}").parse() {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "malformed forwarded request").into_response(),
    };
    parts.headers.insert(HOPS, HeaderValue::from(hop));
    match api.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
