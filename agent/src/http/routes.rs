//! Route registration that records, for every path, the methods it answers.
//!
//! Every endpoint is declared once, as an [`Endpoint`] (a method router that
//! knows its methods), so the route table ([`Routes::table`]) is derived from
//! the router itself: a test walks it and cannot miss a route. Method rules
//! follow Consul's `http.go`: `OPTIONS` answers 200 with `Allow`, any other
//! method not declared answers 405 with `Allow` and changes nothing. Unlike
//! Consul, `HEAD` is answered on every `GET` route, as `GET` without a body.

use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;

use crate::app::Shared;
use crate::pipeline::error::ApiError;

/// One route of the table: its path pattern (axum syntax, e.g.
/// `/v1/kv/{*key}`) and the methods it answers besides `OPTIONS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub path: &'static str,
    pub methods: Vec<Method>,
}

impl RouteSpec {
    /// The `Allow` header: `OPTIONS` first, as Consul lists it.
    pub fn allow(&self) -> String {
        let mut all = vec!["OPTIONS"];
        all.extend(self.methods.iter().map(Method::as_str));
        all.join(",")
    }
}

/// A method router together with the methods registered on it.
pub struct Endpoint {
    router: MethodRouter<Shared>,
    methods: Vec<Method>,
}

impl Endpoint {
    fn new() -> Self {
        Self {
            router: MethodRouter::new(),
            methods: Vec::new(),
        }
    }

    /// Answer `method` with `handler` (`GET` also answers `HEAD`).
    pub fn on<H, T>(mut self, method: Method, handler: H) -> Self
    where
        H: Handler<T, Shared>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(method.clone()) {
            Ok(f) => f,
            // Only the standard methods are ever registered (see the helpers below).
            Err(e) => panic!("route with a non-standard method: {e}"),
        };
        self.router = self.router.on(filter, handler);
        if method == Method::GET {
            self.methods.push(Method::GET);
            self.methods.push(Method::HEAD);
        } else {
            self.methods.push(method);
        }
        self
    }

    pub fn get<H: Handler<T, Shared>, T: 'static>(handler: H) -> Self {
        Self::new().on(Method::GET, handler)
    }

    pub fn put<H: Handler<T, Shared>, T: 'static>(handler: H) -> Self {
        Self::new().on(Method::PUT, handler)
    }

    pub fn delete<H: Handler<T, Shared>, T: 'static>(handler: H) -> Self {
        Self::new().on(Method::DELETE, handler)
    }

    pub fn post<H: Handler<T, Shared>, T: 'static>(handler: H) -> Self {
        Self::new().on(Method::POST, handler)
    }
}

/// A set of routes under construction, with their table.
#[derive(Default)]
pub struct Routes {
    entries: Vec<(RouteSpec, MethodRouter<Shared>)>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, path: &'static str, ep: Endpoint) -> Self {
        let spec = RouteSpec {
            path,
            methods: ep.methods,
        };
        self.entries.push((spec, ep.router));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.entries.extend(other.entries);
        self
    }

    /// Every route with its methods, in registration order.
    pub fn table(&self) -> Vec<RouteSpec> {
        self.entries.iter().map(|(s, _)| s.clone()).collect()
    }

    /// The router: each endpoint's declared methods pass through `wrap`
    /// (forwarding to the leader); `OPTIONS` and undeclared methods are
    /// answered here, before anything is forwarded or read.
    pub fn into_router(
        self,
        mut wrap: impl FnMut(MethodRouter<Shared>) -> MethodRouter<Shared>,
    ) -> Router<Shared> {
        let mut router = Router::new();
        for (spec, mr) in self.entries {
            let allow = HeaderValue::from_str(&spec.allow())
                .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"));
            let mr = wrap(mr).fallback(move |method: Method| {
                let allow = allow.clone();
                async move { other_method(method, allow) }
            });
            router = router.route(spec.path, mr);
        }
        router
    }
}

/// `OPTIONS` (200) or a method the route does not answer (405), both with `Allow`.
fn other_method(method: Method, allow: HeaderValue) -> Response {
    if method == Method::OPTIONS {
        return (StatusCode::OK, [(header::ALLOW, allow)]).into_response();
    }
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table lists HEAD beside GET and the Allow header starts with OPTIONS.
    #[test]
    fn table_lists_methods() {
        async fn h() {}
        let r = Routes::new()
            .route("/a", Endpoint::get(h).on(Method::PUT, h))
            .route("/b", Endpoint::delete(h));
        let t = r.table();
        assert_eq!(t[0].path, "/a");
        assert_eq!(t[0].methods, vec![Method::GET, Method::HEAD, Method::PUT]);
        assert_eq!(t[0].allow(), "OPTIONS,GET,HEAD,PUT");
        assert_eq!(t[1].allow(), "OPTIONS,DELETE");
    }
}
