//! Step 3's other half: carrying a request that [`super::route`] sent
//! elsewhere, as Consul's RPC layer forwards.
//!
//! A follower sends every request on replicated state to the leader unless
//! it asks for `?stale`; a client agent, which holds no state, sends them to
//! a server (which answers `?stale` itself or forwards on). The request goes
//! whole over the server RPC port and the answer comes back unchanged, so
//! headers such as `X-Consul-Index` are the leader's. On the server the
//! envelope enters the same pipeline ([`serve_tunnelled`]). Whole snapshots
//! (`/v1/snapshot`) are streamed instead (`forward_snapshot`, and
//! `forward_dc_snapshot` for another datacenter's), never held whole.
//!
//! Issue 16 gives the RPC client its TLS settings ([`crate::rpc::client`]);
//! Identical forwarded blocking reads share one upstream query
//! ([`super::coalesce`], issue 18).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use super::body::MAX_BODY;
use super::coalesce;
use super::context::RequestCtx;
use super::error::ApiError;
use super::next::Next;
use super::route::{is_read, SNAPSHOT};
use super::tunnel::{hop_by_hop, send, Here, Sent};
pub use super::tunnel::{Tunnelled, TunnelledAnswer, TUNNEL_PATH};
use crate::app::Shared;
use crate::cluster::Upstream;
use crate::raft::leadership::Hold;
use crate::rpc::client::{AGENT_NODE, HOPS};
/// Where they go on the server RPC port.
pub const SNAPSHOT_PATH: &str = "/rpc/snapshot";
/// A client agent, a server, another datacenter's server, its leader.
const MAX_HOPS: u32 = 4;

/// Forwarding, boxed: see [`super::entry`].
pub type Forwarding = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Carry `req` to `up` (the leader, or a server) and answer with its answer.
pub fn forward_boxed(
    s: Shared,
    up: Upstream,
    ctx: RequestCtx,
    req: Request,
    next: Next,
) -> Forwarding {
    if req.uri().path() == SNAPSHOT {
        return Box::pin(forward_snapshot(s, up, ctx, req, next));
    }
    Box::pin(forward(s, up, ctx, req, next))
}

async fn forward(s: Shared, up: Upstream, ctx: RequestCtx, req: Request, next: Next) -> Response {
    let writes = !is_read(req.method());
    let hop = ctx.hops;
    if hop >= MAX_HOPS {
        return ApiError::Internal(
            "request forwarded too many times (servers disagree on the leader)".into(),
        )
        .into_response();
    }
    let (mut parts, body) = req.into_parts();
    let (mut envelope, mut timeout) = match envelope_of(&s, &ctx, &parts, body, writes).await {
        Ok(e) => e,
        Err(resp) => return resp,
    };
    let mut ctx = ctx;
    let job = (parts.method == Method::GET)
        .then(|| coalesce::Job::new(&ctx, parts.uri.path()))
        .flatten();
    let here = Here {
        client: s.raft.is_none(),
        leadership: s.leadership.clone(),
    };
    if let Some(job) = job {
        let shared = coalesce::Shared {
            here: here.clone(),
            up: up.clone(),
            coalescer: s.coalesce.clone(),
            shutdown: s.shutdown.clone(),
        };
        if here.client {
            // A client agent answers nothing itself (`Sent::Local` is a
            // server's): the request's head, context and route go now rather
            // than when the shared answer comes, when a thousand waiters are
            // answered at once and their frees were a visible part of the
            // fan-out's time (issue 18).
            drop((parts, ctx, next, s));
            return shared_on_client(&shared, job, envelope, timeout, hop).await;
        }
        match coalesce::wait(&shared, &job, &envelope, hop).await {
            coalesce::Waited::Answer(resp) => return resp,
            coalesce::Waited::Alone { nonblocking: false } => {}
            // Its wait ended before the shared query had an answer: a plain
            // read gives the current data and index.
            coalesce::Waited::Alone { nonblocking: true } => {
                envelope.uri = job.plain_uri().to_string();
                if let Ok(uri) = envelope.uri.parse() {
                    parts.uri = uri;
                    ctx = RequestCtx::parse(&parts.uri, &parts.headers, &s.config.datacenter);
                }
                timeout = Duration::from_secs(15);
            }
        }
    }
    match send(&here, &up, &envelope, writes, timeout, hop).await {
        Sent::Answer(answer) => answer.into_response(),
        Sent::Failed(e) => e.into_response(),
        Sent::Local => {
            // This server took office while the request waited: it
            // decides the token here, as the entry step does.
            if let Err(e) = authorize_here(&s, &parts, &mut ctx) {
                return e.into_response();
            }
            let mut req = Request::new(Body::from(envelope.body));
            *req.method_mut() = parts.method;
            *req.uri_mut() = parts.uri;
            *req.headers_mut() = parts.headers;
            req.extensions_mut().insert(ctx);
            next.run(req).await
        }
    }
}

/// A client agent's blocking read through a shared query ([`forward`]).
async fn shared_on_client(
    shared: &coalesce::Shared,
    job: coalesce::Job,
    mut envelope: Tunnelled,
    mut timeout: Duration,
    hop: u32,
) -> Response {
    match coalesce::wait(shared, &job, &envelope, hop).await {
        coalesce::Waited::Answer(resp) => return resp,
        coalesce::Waited::Alone { nonblocking: false } => {}
        coalesce::Waited::Alone { nonblocking: true } => {
            envelope.uri = job.plain_uri().to_string();
            timeout = Duration::from_secs(15);
        }
    }
    match send(&shared.here, &shared.up, &envelope, false, timeout, hop).await {
        Sent::Answer(answer) => answer.into_response(),
        Sent::Failed(e) => e.into_response(),
        // `send` answers so only on a server.
        Sent::Local => ApiError::Internal("no server to forward to".into()).into_response(),
    }
}

/// The request as an envelope for server RPC, and how long to wait for
/// its answer; an over-long body is answered 413 here.
async fn envelope_of(
    s: &Shared,
    ctx: &RequestCtx,
    parts: &axum::http::request::Parts,
    body: Body,
    writes: bool,
) -> Result<(Tunnelled, Duration), Response> {
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large, max size: {MAX_BODY} bytes"),
            )
                .into_response())
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
    let timeout = if ctx.query.has("index") {
        Duration::from_secs(11 * 60)
    } else if writes {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(15)
    };
    let mut headers = tunnel_headers(&parts.headers, &s.node.node);
    // Without a token of its own, a request acts with this agent's default
    // token, on the server that answers too (as Consul's agents send it).
    if s.config.acl.enabled && ctx.token().is_none() {
        if let Some(t) = s.acl_tokens.default_token() {
            headers.push(("x-consul-token".into(), t.as_bytes().to_vec()));
        }
    }
    let envelope = Tunnelled {
        method: parts.method.to_string(),
        uri: path_q,
        headers,
        body: body.to_vec(),
    };
    Ok((envelope, timeout))
}

/// At most this many servers of another datacenter are tried for one request.
const MAX_DC_TRIES: usize = 3;

/// Carry `req` to a server of datacenter `dc` (its `?dc=`), boxed as
/// [`forward_boxed`] is.
pub fn forward_dc_boxed(s: Shared, dc: String, ctx: RequestCtx, req: Request) -> Forwarding {
    if req.uri().path() == SNAPSHOT {
        return Box::pin(forward_dc_snapshot(s, dc, ctx, req));
    }
    Box::pin(forward_dc(s, dc, ctx, req))
}

/// Send the request whole to an alive server of `dc` (from the WAN
/// router), which answers it through its own leader, with its indexes; a
/// blocking read is held there. A server that cannot be reached is passed
/// over for the next (a write only if it was never sent). No alive server
/// there, or none reachable: Consul's `No path to datacenter`, at once.
/// A request a handler decided belongs to datacenter `dc` (a global ACL
/// token's write made in a secondary, which the primary owns), sent as
/// `?dc=` sends one.
pub async fn to_datacenter(
    s: Shared,
    dc: String,
    ctx: RequestCtx,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Response {
    let req = Request::from_parts(parts, Body::from(body));
    forward_dc_boxed(s, dc, ctx, req).await
}

async fn forward_dc(s: Shared, dc: String, ctx: RequestCtx, req: Request) -> Response {
    let writes = !is_read(req.method());
    let hop = ctx.hops;
    if hop >= MAX_HOPS {
        return ApiError::Internal("request forwarded too many times".into()).into_response();
    }
    let targets = s.router.servers(&dc);
    if targets.is_empty() {
        tracing::debug!(datacenter = %dc, "router: no path to datacenter");
        return ApiError::NoPathToDatacenter.into_response();
    }
    let (parts, body) = req.into_parts();
    let (envelope, timeout) = match envelope_of(&s, &ctx, &parts, body, writes).await {
        Ok(e) => e,
        Err(resp) => return resp,
    };
    for target in targets.iter().take(MAX_DC_TRIES) {
        let target = target.to_string();
        let r: Result<TunnelledAnswer, crate::rpc::client::RpcError> = if writes {
            s.rpc
                .call_write(&target, TUNNEL_PATH, &envelope, timeout, hop + 1, None)
                .await
        } else {
            s.rpc
                .call(&target, TUNNEL_PATH, &envelope, timeout, hop + 1)
                .await
        };
        match r {
            Ok(answer) => return answer.into_response(),
            Err(e) if e.not_sent() || !writes => {
                tracing::warn!("router: server {target} of datacenter {dc} unreachable: {e}");
            }
            Err(e) => {
                return ApiError::Internal(format!("forwarding to {target} in {dc}: {e}"))
                    .into_response()
            }
        }
    }
    ApiError::NoPathToDatacenter.into_response()
}

/// Resolve and check the token on this server (ACLs on), as the entry step
/// does for a request answered here from the start.
fn authorize_here(
    s: &Shared,
    parts: &axum::http::request::Parts,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    if !s.config.acl.enabled {
        return Ok(());
    }
    let pattern = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or("", |m| m.as_str());
    let secret = ctx
        .token()
        .map(Into::into)
        .unwrap_or_else(|| s.default_secret());
    let checked = s
        .resolve_local(&secret)
        .and_then(|a| crate::http::access::check(s, pattern, &parts.method, &a).map(|()| a));
    ctx.set_authz(checked?);
    Ok(())
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

/// `/v1/snapshot` carries whole snapshots, larger than an envelope may be:
/// the body and the answer are streamed through [`SNAPSHOT_PATH`] (not
/// buffered), with a long timeout, to one target (a streamed body cannot be
/// sent twice).
async fn forward_snapshot(
    s: Shared,
    up: Upstream,
    ctx: RequestCtx,
    mut req: Request,
    next: Next,
) -> Response {
    let client = s.raft.is_none();
    let hop = ctx.hops;
    if hop >= MAX_HOPS {
        return ApiError::Internal(
            "request forwarded too many times (servers disagree on the leader)".into(),
        )
        .into_response();
    }
    let hold = Hold::start();
    let target = loop {
        if !client && s.leadership.is_leader() {
            req.extensions_mut().insert(ctx);
            return next.run(req).await;
        }
        if let Some(t) = up.targets().into_iter().next() {
            break t;
        }
        if hold.over() {
            return ApiError::NoLeader.into_response();
        }
        hold.pause(None).await;
    };
    let (parts, body) = req.into_parts();
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    match stream_snapshot(&s, &ctx, &parts, body, &target.to_string()).await {
        Ok(resp) => {
            up.good(&target);
            resp
        }
        Err(e) => {
            up.bad(&target);
            ApiError::Internal(format!("forwarding to {target}: {e}")).into_response()
        }
    }
}

/// `/v1/snapshot?dc=<other>` from a server: streamed as
/// [`forward_snapshot`] streams, to an alive server of `dc` (which hands it
/// to its leader). A save is tried on a few of them; a restore goes to one
/// (its body cannot be sent twice).
async fn forward_dc_snapshot(s: Shared, dc: String, ctx: RequestCtx, req: Request) -> Response {
    if ctx.hops >= MAX_HOPS {
        return ApiError::Internal("request forwarded too many times".into()).into_response();
    }
    let (parts, body) = req.into_parts();
    let tries = if is_read(&parts.method) {
        MAX_DC_TRIES
    } else {
        1
    };
    let mut body = Some(body);
    for target in s.router.servers(&dc).into_iter().take(tries) {
        let body = match body.take() {
            Some(b) if !is_read(&parts.method) => reqwest::Body::wrap_stream(b.into_data_stream()),
            _ => reqwest::Body::from(Vec::new()),
        };
        match stream_snapshot(&s, &ctx, &parts, body, &target.to_string()).await {
            Ok(resp) => return resp,
            Err(e) if is_read(&parts.method) => {
                tracing::warn!("router: server {target} of datacenter {dc} unreachable: {e}");
            }
            Err(e) => {
                return ApiError::Internal(format!("forwarding to {target} in {dc}: {e}"))
                    .into_response()
            }
        }
    }
    tracing::debug!(datacenter = %dc, "router: no path to datacenter");
    ApiError::NoPathToDatacenter.into_response()
}

/// Send a snapshot request to `target`'s [`SNAPSHOT_PATH`], `body`
/// streamed, with a long timeout; its answer streamed back whole (status,
/// headers, `Content-Type` and `X-Consul-Index` among them). Without a
/// token of its own it carries this agent's default token, as forwarded
/// envelopes do.
async fn stream_snapshot(
    s: &Shared,
    ctx: &RequestCtx,
    parts: &axum::http::request::Parts,
    body: reqwest::Body,
    target: &str,
) -> Result<Response, reqwest::Error> {
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut rb = s
        .rpc
        .http()
        .request(
            parts.method.clone(),
            s.rpc.url(target, &format!("{SNAPSHOT_PATH}{query}")),
        )
        .header(HOPS, ctx.hops + 1)
        .timeout(Duration::from_secs(30 * 60))
        .body(body);
    for (k, v) in parts.headers.iter() {
        if !hop_by_hop(k) {
            rb = rb.header(k, v);
        }
    }
    if s.config.acl.enabled && ctx.token().is_none() {
        if let Some(t) = s.acl_tokens.default_token() {
            rb = rb.header("x-consul-token", &*t);
        }
    }
    let r = rb.send().await?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = r.status();
    for (k, v) in r.headers() {
        if !hop_by_hop(k) {
            resp.headers_mut().append(k, v.clone());
        }
    }
    *resp.body_mut() = Body::from_stream(r.bytes_stream());
    Ok(resp)
}

/// Server side of [`SNAPSHOT_PATH`]: the request as `/v1/snapshot` through
/// the API router `api` (which forwards it on when this server is not the
/// leader), its answer streamed back.
pub async fn serve_snapshot(api: Router, req: Request) -> Response {
    let hop = super::context::hops(req.headers());
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
