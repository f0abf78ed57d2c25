//! `/v1/health/*`: instances with their checks, filtered by health.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::records as render;
use crate::app::Shared;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::state::catalog::{self as cat, Catalog, CheckRec};
use crate::state::{Health, WatchTarget};

/// Worst status among checks (passing when there are none).
pub fn aggregate(checks: &[&CheckRec]) -> Health {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Health::Passing)
}

/// Healthy instances of a service as `[{Node, Service, Checks}]`.
pub fn service_entries(c: &Catalog, name: &str, tags: &[&str], passing_only: bool) -> Vec<Value> {
    c.instances(name)
        .into_iter()
        .filter(|(_, s)| {
            tags.iter()
                .all(|t| s.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        })
        .filter_map(|(n, s)| {
            let checks = c.instance_checks(&n.node, &s.id);
            if passing_only && checks.iter().any(|c| c.status != Health::Passing) {
                return None;
            }
            Some(json!({
                "Node": render::node(n),
                "Service": render::service(s),
                "Checks": checks.iter().map(|c| render::check(c)).collect::<Vec<_>>(),
            }))
        })
        .collect()
}

pub async fn service(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let query = &ctx.query;
    let tags: Vec<&str> = query.all("tag").collect();
    let passing = query.has("passing");
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::svc_target(&name)),
        |t| t.catalog.service_index(&name),
        |t| Some(service_entries(&t.catalog, &name, &tags, passing)),
    )
    .await
}

pub async fn checks(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::svc_target(&name)),
        |t| t.catalog.service_index(&name),
        |t| {
            let list: Vec<Value> = t
                .catalog
                .checks()
                .filter(|c| c.service_name.eq_ignore_ascii_case(&name))
                .map(render::check)
                .collect();
            Some(list)
        },
    )
    .await
}

pub async fn node(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::node_target(&name)),
        |t| t.catalog.node_index(&name),
        |t| {
            Some(
                t.catalog
                    .node_checks(&name)
                    .map(render::check)
                    .collect::<Vec<_>>(),
            )
        },
    )
    .await
}

pub async fn state(
    State(s): State<Shared>,
    Path(state): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let want = match state.as_str() {
        "any" => None,
        other => match Health::parse(other) {
            Some(h @ (Health::Passing | Health::Warning | Health::Critical)) => Some(h),
            _ => {
                return Err(ApiError::bad(format!(
                    "Invalid state: {other:?} (any, passing, warning, critical)"
                )))
            }
        },
    };
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::CHECKS.into()),
        |t| t.catalog.checks_index(),
        |t| {
            let list: Vec<Value> = t
                .catalog
                .checks()
                .filter(|c| want.map(|w| c.status == w).unwrap_or(true))
                .map(render::check)
                .collect();
            Some(list)
        },
    )
    .await
}
