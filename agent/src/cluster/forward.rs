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
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::either::Either;

use super::rpc::{hops, AGENT_NODE, HOPS};
use super::Upstream;
use crate::http::params::Query;
use crate::http::{ApiError, Shared, MAX_BODY};

/// How long a request waits for a leader to appear (Consul's rpc_hold_timeout).
const HOLD: Duration = Duration::from_secs(7);
const MAX_HOPS: u32 = 3;

/// Paths answered from replicated state (the rest are agent-local).
fn replicated(path: &str, client: bool) -> bool {
    const PREFIXES: [&str; 9] = [
        "/v1/internal/ui/",
        "/v1/kv",
        "/v1/txn",
        "/v1/catalog/",
        "/v1/health/",
        "/v1/session/",
        "/v1/operator/",
        "/v1/coordinate/",
        "/v1/query",
    ];
    if path == "/v1/catalog/datacenters" {
        return false;
    }
    PREFIXES.iter().any(|p| path.starts_with(p)) || (client && path.starts_with("/v1/status/"))
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
    let writes = !(req.method() == Method::GET || req.method() == Method::HEAD);
    if !client && !writes && Query::parse(req.uri().query()).has("stale") {
        return None;
    }
    Some(up.clone())
}

async fn forward(s: Shared, up: Upstream, req: Request, next: Next) -> Response {
    let client = s.raft.is_none();
    let query = Query::parse(req.uri().query());
    let writes = !(req.method() == Method::GET || req.method() == Method::HEAD);
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
    let timeout = if query.has("index") {
        Duration::from_secs(11 * 60)
    } else {
        Duration::from_secs(15)
    };
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        if !client && s.leadership.is_leader() {
            // This server took office while the request waited.
            let mut req = Request::new(Body::from(body));
            *req.method_mut() = parts.method;
            *req.uri_mut() = parts.uri;
            *req.headers_mut() = parts.headers;
            return next.run(req).await;
        }
        for target in up.targets() {
            let mut rb = up
                .rpc
                .http()
                .request(parts.method.clone(), format!("http://{target}{path_q}"))
                .header(HOPS, hop + 1)
                .timeout(timeout)
                .body(body.clone());
            for (k, v) in parts.headers.iter() {
                if !hop_by_hop(k) {
                    rb = rb.header(k, v);
                }
            }
            if !parts.headers.contains_key(AGENT_NODE) {
                rb = rb.header(AGENT_NODE, &s.node.node);
            }
            match rb.send().await {
                Ok(r) => {
                    up.good(&target);
                    return relay(r).await;
                }
                // Never sent, or a read (safe to repeat): try again, elsewhere
                // or once a leader is known. A write that may have reached
                // the old leader is not repeated: its outcome is unknown.
                Err(e) if e.is_connect() || !writes => {
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

async fn relay(r: reqwest::Response) -> Response {
    let status = r.status();
    let mut headers = r.headers().clone();
    let body = match r.bytes().await {
        Ok(b) => b,
        Err(e) => return ApiError::Internal(format!("forwarded answer: {e}")).into_response(),
    };
    let drop: Vec<HeaderName> = headers.keys().filter(|k| hop_by_hop(k)).cloned().collect();
    for k in drop {
        headers.remove(k);
    }
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
