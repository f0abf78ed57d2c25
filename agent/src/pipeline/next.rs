//! The rest of a route after the pipeline's entry step: its handler, run
//! by [`super::entry`] (or by forwarding, when this server took office
//! while the request waited). What [`super::layer`] hands on.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::routing::Route;
use tower::Service;

/// The rest of the route (its handler), kept for a request answered later
/// (forwarded, or after a read-index wait).
pub struct Next(Route);

impl Next {
    pub fn of(route: &Route) -> Self {
        Self(route.clone())
    }

    pub fn route(&mut self) -> &mut Route {
        &mut self.0
    }

    pub fn run(mut self, req: Request) -> Run {
        run(&mut self.0, req)
    }
}

/// The handler, called now. `Route::call` clones the route's boxed service
/// itself, so a request answered at once clones it only there.
pub fn run(route: &mut Route, req: Request) -> Run {
    Run(route.call(req))
}

/// The handler's answer.
pub struct Run(RouteFuture<Infallible>);

impl Future for Run {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(resp)) => Poll::Ready(resp),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Poll::Pending,
        }
    }
}
