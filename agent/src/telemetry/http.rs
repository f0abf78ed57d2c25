//! `/v1/agent/metrics` and the per-request HTTP timer.

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::RwLock;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::routes::{Endpoint as E, Routes};
use crate::pipeline::context::RequestCtx;

pub fn routes() -> Routes {
    Routes::new().route("/v1/agent/metrics", E::get(metrics))
}

/// Consul's `AgentMetrics`: the in-memory summary as JSON, or with
/// `?format=prometheus` the Prometheus text (415 while retention is 0).
pub async fn metrics(ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let Some(sinks) = super::sinks() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics are not set up").into_response();
    };
    if q.get("format") == Some("prometheus") {
        return match &sinks.prometheus {
            Some(h) => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                h.render(),
            )
                .into_response(),
            None => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain")],
                "Prometheus is not enabled since its retention time is not positive",
            )
                .into_response(),
        };
    }
    crate::pipeline::render::json(StatusCode::OK, &sinks.inmem.summary(), q.has("pretty"))
}

/// Consul's `consul.http.<METHOD>.<path>` timer (`crate::pipeline::layer`
/// times each request): the route pattern's fixed segments, `_` for the
/// parameter part (`/v1/kv/{*key}` → `v1.kv._`).
pub fn record(method: &Method, pattern: &str, start: std::time::Instant) {
    route_timer(method, pattern).record(super::ms_since(start));
}

/// Each (method, route)'s histogram, named once (no allocation per request:
/// the route table and its methods bound the map, so the names are leaked).
/// The handle itself is the recorder's to keep ([`super::install`]: not
/// with Prometheus on, which drops a series idle for its retention time).
fn route_timer(method: &Method, pattern: &str) -> metrics::Histogram {
    // Looked up on every request: foldhash, not SipHash.
    type Names = HashMap<String, Vec<(Method, &'static str)>, foldhash::fast::RandomState>;
    static NAMES: OnceLock<RwLock<Names>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let found = names
        .read()
        .get(pattern)
        .and_then(|v| v.iter().find(|(m, _)| m == method).map(|(_, n)| *n));
    if let Some(name) = found {
        return metrics::histogram!(name);
    }
    let name: &'static str = format!("http.{method}.{}", metric_path(pattern)).leak();
    let mut w = names.write();
    let v = w.entry(pattern.to_string()).or_default();
    if !v.iter().any(|(m, _)| m == method) {
        v.push((method.clone(), name));
    }
    metrics::histogram!(name)
}

/// Consul's `consul.rpc.request`: each server RPC served, raft's own
/// traffic (append, vote, snapshot) aside as Consul's raft layer has it.
pub async fn rpc_request(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/rpc/raft/") {
        metrics::counter!("rpc.request").increment(1);
    }
    next.run(req).await
}

fn metric_path(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in pattern.trim_start_matches('/').split('/') {
        if seg.is_empty() || seg.starts_with('{') {
            parts.push("_");
            break;
        }
        parts.push(seg);
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_as_consul_names_them() {
        use super::metric_path as p;
        assert_eq!(p("/v1/kv/{*key}"), "v1.kv._");
        assert_eq!(p("/v1/kv/"), "v1.kv._");
        assert_eq!(p("/v1/kv"), "v1.kv");
        assert_eq!(p("/v1/catalog/service/{name}"), "v1.catalog.service._");
        assert_eq!(p("/v1/agent/metrics"), "v1.agent.metrics");
    }
}
