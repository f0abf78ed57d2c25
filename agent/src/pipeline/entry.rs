//! The pipeline's entry: the step every API route passes ([`super::layer`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::Route as Handler;
use tokio::task::futures::TaskLocalFuture;
use tokio_util::either::Either;

use super::auth;
use super::authz::Authz;
use super::cache;
use super::context::{Consistency, RequestCtx};
use super::error::ApiError;
use super::forward::{forward_boxed, forward_dc_boxed, Forwarding};
use super::next::{self, Next, Run};
use super::read_index;
use super::route::{self, Route};
use super::write::acting;
use crate::app::Shared;
use crate::cluster::Upstream;
use crate::http::access;

/// Parse the context, route, authenticate where the request is answered
/// and check the route's ACL class; then the handler (here) or the
/// forwarding (elsewhere, where the same steps run again). A `?cached`
/// read is answered by the agent cache, which fetches through this same
/// pipeline.
///
/// Not an async fn: a request answered here (a parked blocking query among
/// them) would otherwise carry the forwarding state machine, an HTTP client
/// call, for its whole life. Forwarding is boxed instead; a request a
/// server answers is not, with ACLs on or off (a box per parked query is
/// memory kept for its whole wait).
///
/// The route is borrowed: a request answered at once calls it now, and
/// only a deferred one keeps its own copy ([`Next`]).
pub fn entry(s: Shared, req: Request, handler: &mut Handler) -> Entry {
    let ctx = RequestCtx::parse(req.uri(), req.headers(), &s.config.datacenter);
    if cache::cacheable(req.method(), req.uri().path(), &ctx) {
        return Either::Right(cached(s, ctx, req));
    }
    match route::decide(&s, req.method(), req.uri().path(), &ctx) {
        Route::Here => {}
        Route::Leader(up) | Route::Server(up) => {
            return Either::Right(forward_boxed(s, up, ctx, req, Next::of(handler)))
        }
        // The other datacenter checks the token.
        Route::Datacenter(dc) => return Either::Right(forward_dc_boxed(s, dc, ctx, req)),
        Route::ReadIndex(up) => {
            let next = Next::of(handler);
            return Either::Right(Box::pin(by_read_index(s, up, ctx, req, next)));
        }
    }
    here(s, ctx, req, handler)
}

/// A request answered here: authenticated (ACLs on), then the handler.
fn here(s: Shared, mut ctx: RequestCtx, mut req: Request, handler: &mut Handler) -> Entry {
    if !s.config.acl.enabled {
        req.extensions_mut().insert(ctx);
        return Either::Left(Either::Left(next::run(handler, req)));
    }
    // The route's pattern (an `Arc<str>` inside: no copy).
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let pattern = matched.as_ref().map_or("", MatchedPath::as_str);
    // The handler's writes act with it (see `pipeline::write`).
    let secret: Arc<str> = ctx.token_shared().unwrap_or_else(|| s.default_secret());
    if s.raft.is_some() {
        // A server resolves from its own tables, synchronously.
        let resolved = s.resolve_local(&secret);
        let checked =
            resolved.and_then(|a| access::check(&s, pattern, req.method(), &a).map(|()| a));
        return match checked {
            Ok(a) => {
                ctx.set_authz(a);
                req.extensions_mut().insert(ctx);
                Either::Left(Either::Right(acting(secret, next::run(handler, req))))
            }
            Err(e) => refuse(e),
        };
    }
    // A client agent asks a server (boxed: rare beside the common path).
    let pattern = pattern.to_string();
    let next = Next::of(handler);
    Either::Right(Box::pin(async move {
        let a: Authz = match auth::authenticate(&s, &ctx).await {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = access::check(&s, &pattern, req.method(), &a) {
            return e.into_response();
        }
        ctx.set_authz(a);
        req.extensions_mut().insert(ctx);
        acting(secret, next.run(req)).await
    }))
}

/// A follower's read answered here once it has applied the leader's index
/// ([`read_index`]); the token is resolved after that wait, so a token
/// written before the read counts. The state must not move past the index
/// while the handler reads it: else the read is asked again (once), then
/// forwarded.
async fn by_read_index(
    s: Shared,
    up: Upstream,
    ctx: RequestCtx,
    req: Request,
    mut next: Next,
) -> Response {
    let c = ctx
        .read_opts_anywhere()
        .map_or(Consistency::Default, |o| o.consistency);
    // A read's body means nothing (Consul ignores it): the head is enough
    // to run the request again.
    let (parts, _) = req.into_parts();
    let again = || Request::from_parts(parts.clone(), axum::body::Body::empty());
    for _ in 0..2 {
        match read_index::wait(&s, &up, c).await {
            read_index::Next::Ready(index) => {
                let mut ctx = ctx.clone();
                ctx.set_read_index();
                let resp = here(s.clone(), ctx, again(), next.route()).await;
                if read_index::still_at(&s, index) {
                    return resp;
                }
            }
            read_index::Next::Local => return here(s, ctx, again(), next.route()).await,
            read_index::Next::Past => {}
            read_index::Next::Forward => break,
            read_index::Next::Failed(e) => return e.into_response(),
        }
    }
    forward_boxed(s, up, ctx, again(), next).await
}

/// What [`entry`] answers with: the handler, with ACLs off or on (acting
/// with the request's secret), or a boxed rarer path.
pub type Entry = Either<Either<Run, TaskLocalFuture<Arc<str>, Run>>, Forwarding>;

fn refuse<F>(e: ApiError) -> Either<F, Forwarding> {
    // Rare: boxed, so the common future stays as small as `next`'s.
    let resp = e.into_response();
    Either::Right(Box::pin(std::future::ready(resp)))
}

/// A `?cached` read. With ACLs on, the token is resolved first, on every
/// request (a hit too): a deleted token is refused at once, as elsewhere.
/// The entry's key has the token in it, so a hit holds only what a fetch
/// with that same token was answered.
fn cached(s: Shared, ctx: RequestCtx, req: Request) -> Forwarding {
    if !s.config.acl.enabled {
        return Box::pin(cache::serve(s.cache.clone(), ctx, req));
    }
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    Box::pin(async move {
        let a = match auth::authenticate(&s, &ctx).await {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = access::check(&s, &pattern, req.method(), &a) {
            return e.into_response();
        }
        cache::serve(s.cache.clone(), ctx, req).await
    })
}
