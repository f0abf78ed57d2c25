//! The pipeline as one tower layer on every API route: the request timer
//! and then [`entry`]. A plain service rather than two axum `from_fn`
//! middlewares: each of those boxed a future that kept its own copy of the
//! request's parts for the request's whole life, about 1.7 KiB per parked
//! blocking query (issue 21).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use axum::routing::Route;
use tower::{Layer, Service};

use super::entry::{entry, Entry};
use crate::app::Shared;

/// [`Pipeline`] on a route.
#[derive(Clone)]
pub struct PipelineLayer {
    state: Shared,
}

impl PipelineLayer {
    pub fn new(state: Shared) -> Self {
        Self { state }
    }
}

impl Layer<Route> for PipelineLayer {
    type Service = Pipeline;

    fn layer(&self, inner: Route) -> Pipeline {
        Pipeline {
            state: self.state.clone(),
            inner,
        }
    }
}

/// The pipeline in front of one route's handler.
#[derive(Clone)]
pub struct Pipeline {
    state: Shared,
    inner: Route,
}

impl Service<Request> for Pipeline {
    type Response = Response;
    type Error = Infallible;
    type Future = Timed<Entry>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.extensions().get::<MatchedPath>().cloned();
        Timed {
            inner: entry(self.state.clone(), req, &mut self.inner),
            timer: Some((start, method, path)),
        }
    }
}

pin_project_lite::pin_project! {
    /// Consul's `consul.http.<METHOD>.<path>` timer around a request.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        timer: Option<(Instant, Method, Option<MatchedPath>)>,
    }
}

impl<F: Future<Output = Response>> Future for Timed<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx));
        if let Some((start, method, Some(path))) = this.timer.take() {
            crate::telemetry::http::record(&method, path.as_str(), start);
        }
        Poll::Ready(Ok(resp))
    }
}
