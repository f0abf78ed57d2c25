//! `/v1/health/*`: instances with their checks, filtered by health.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::records as render;
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::authz::Authz;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::mark_filtered;
use crate::state::catalog::{self as cat, Catalog, CheckRec};
use crate::state::{Health, WatchTarget};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Worst status among checks (passing when there are none).
pub fn aggregate(checks: &[&CheckRec]) -> Health {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Health::Passing)
}

/// A check the token may see: its service's read, else its node's.
fn check_visible(authz: &Authz, c: &CheckRec, filtered: &AtomicBool) -> bool {
    let ok = match c.service_name.is_empty() {
        true => authz.can(Resource::Node, &c.node, Need::Read),
        false => authz.can(Resource::Service, &c.service_name, Need::Read),
    };
    filtered.fetch_or(!ok, Relaxed);
    ok
}

/// Healthy instances of a service as `[{Node, Service, Checks}]`, those
/// on nodes the token may not read left out.
pub fn service_entries(
    c: &Catalog,
    name: &str,
    tags: &[&str],
    passing_only: bool,
    authz: &Authz,
    filtered: &AtomicBool,
) -> Vec<Value> {
    c.instances(name)
        .into_iter()
        .filter(|(_, s)| {
            tags.iter()
                .all(|t| s.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        })
        .filter(|(n, s)| {
            let ok = authz.can(Resource::Service, &s.service, Need::Read)
                && authz.can(Resource::Node, &n.node, Need::Read);
            filtered.fetch_or(!ok, Relaxed);
            ok
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
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let query = &ctx.query;
    let near = crate::coordinate::near::origin(query, &headers, &s.node.node);
    let tags: Vec<&str> = query.all("tag").collect();
    let passing = query.has("passing");
    let (authz, filtered) = (ctx.authz(), AtomicBool::new(false));
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::svc_target(&name)),
            |t| t.catalog.service_index(&name),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let mut e = service_entries(&t.catalog, &name, &tags, passing, authz, &filtered);
                crate::coordinate::near::sort(t, near.as_deref(), &mut e, |v| {
                    crate::coordinate::near::json_node(v)
                });
                Some(e)
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

pub async fn checks(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let (authz, filtered) = (ctx.authz(), AtomicBool::new(false));
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::svc_target(&name)),
            |t| t.catalog.service_index(&name),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let list: Vec<Value> = t
                    .catalog
                    .checks()
                    .filter(|c| c.service_name.eq_ignore_ascii_case(&name))
                    .filter(|c| check_visible(authz, c, &filtered))
                    .map(render::check)
                    .collect();
                Some(list)
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

pub async fn node(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let (authz, filtered) = (ctx.authz(), AtomicBool::new(false));
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::node_target(&name)),
            |t| t.catalog.node_index(&name),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let list = t
                    .catalog
                    .node_checks(&name)
                    .filter(|c| check_visible(authz, c, &filtered));
                Some(list.map(render::check).collect::<Vec<_>>())
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
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
    let (authz, filtered) = (ctx.authz(), AtomicBool::new(false));
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::CHECKS.into()),
            |t| t.catalog.checks_index(),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let list: Vec<Value> = t
                    .catalog
                    .checks()
                    .filter(|c| want.map(|w| c.status == w).unwrap_or(true))
                    .filter(|c| check_visible(authz, c, &filtered))
                    .map(render::check)
                    .collect();
                Some(list)
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}
