//! The pipeline's entry: the one axum middleware every API route passes.

use std::future::Future;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::either::Either;

use super::auth;
use super::cache;
use super::context::RequestCtx;
use super::forward::{forward_boxed, Forwarding};
use super::route::{self, Route};
use crate::app::Shared;

/// Parse the context, authenticate, route; then the handler (here) or the
/// forwarding (elsewhere). A `?cached` read is answered by the agent
/// cache, which fetches through this same pipeline.
///
/// Not an async fn: a request answered here (a parked blocking query among
/// them) would otherwise carry the forwarding state machine, an HTTP client
/// call, for its whole life. Forwarding is boxed instead.
pub fn entry(
    State(s): State<Shared>,
    mut req: Request,
    next: Next,
) -> Either<impl Future<Output = Response> + Send, Forwarding> {
    let ctx = RequestCtx::parse(req.uri(), req.headers(), &s.config.datacenter);
    if let Err(e) = auth::authenticate(&ctx) {
        // Rare: boxed, so the common future stays as small as `next`'s.
        let resp = e.into_response();
        return Either::Right(Box::pin(std::future::ready(resp)));
    }
    if cache::cacheable(req.method(), req.uri().path(), &ctx) {
        return Either::Right(Box::pin(cache::serve(s.cache.clone(), ctx, req)));
    }
    match route::decide(&s, req.method(), req.uri().path(), &ctx) {
        Route::Here => {
            req.extensions_mut().insert(ctx);
            Either::Left(next.run(req))
        }
        Route::Leader(up) | Route::Server(up) => {
            Either::Right(forward_boxed(s, up, ctx, req, next))
        }
    }
}
