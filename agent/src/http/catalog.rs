//! `/v1/catalog/*`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::records as render;
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::coordinate::near;
use crate::local::defs::{normalize, parse_service_as, validate_meta_with, DefError};
use crate::local::{parse_check_rec, service_rec};
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::pipeline::render::mark_filtered;
use crate::state::catalog::{self as cat, CatalogCommand, CatalogOutcome, NodeRec, RegisterReq};
use crate::state::{Command, Outcome, WatchTarget};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

fn tags_match(tags: &[String], want: &[&str]) -> bool {
    want.iter()
        .all(|w| tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

pub async fn services(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let authz = ctx.authz();
    let filtered = AtomicBool::new(false);
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::SERVICES.into()),
            |t| t.catalog.services_index(),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let m: Map<String, Value> = t
                    .catalog
                    .service_names()
                    .filter(|(n, _)| {
                        let ok = authz.can(Resource::Service, n, Need::Read);
                        filtered.fetch_or(!ok, Relaxed);
                        ok
                    })
                    .map(|(n, tags)| {
                        (
                            n.clone(),
                            Value::from(tags.into_iter().cloned().collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                Some(Value::Object(m))
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

pub async fn service(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = &ctx.query;
    let near = near::origin(query, &headers, &s.node.node);
    let tags: Vec<&str> = query.all("tag").collect();
    metrics::counter!("catalog.service.query").increment(1);
    let authz = ctx.authz();
    let filtered = AtomicBool::new(false);
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::svc_target(&name)),
            |t| t.catalog.service_index(&name),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let mut list: Vec<Value> = t
                    .catalog
                    .instances(&name)
                    .into_iter()
                    .filter(|(_, sv)| tags_match(&sv.tags, &tags))
                    .filter(|(n, sv)| {
                        let ok = authz.can(Resource::Service, &sv.service, Need::Read)
                            && authz.can(Resource::Node, &n.node, Need::Read);
                        filtered.fetch_or(!ok, Relaxed);
                        ok
                    })
                    .map(|(n, sv)| render::catalog_service(n, sv))
                    .collect();
                near::sort(t, near.as_deref(), &mut list, |v| near::json_node(v));
                Some(list)
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

pub async fn nodes(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let near = near::origin(&ctx.query, &headers, &s.node.node);
    let authz = ctx.authz();
    let filtered = AtomicBool::new(false);
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(cat::NODES.into()),
            |t| t.catalog.nodes_index(),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let list = t.catalog.nodes().filter(|n| {
                    let ok = authz.can(Resource::Node, &n.node, Need::Read);
                    filtered.fetch_or(!ok, Relaxed);
                    ok
                });
                let mut list: Vec<Value> = list.map(render::node).collect();
                near::sort(t, near.as_deref(), &mut list, |v| near::json_node(v));
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
    let authz = ctx.authz();
    authz.require(Resource::Node, &name, Need::Read)?;
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::node_target(&name)),
        |t| t.catalog.node_index(&name),
        |t| {
            t.catalog.node(&name).map(|n| {
                let services: Map<String, Value> = t
                    .catalog
                    .node_services(&name)
                    .filter(|sv| authz.can(Resource::Service, &sv.service, Need::Read))
                    .map(|sv| (sv.id.clone(), render::service(sv)))
                    .collect();
                serde_json::json!({"Node": render::node(n), "Services": services})
            })
        },
    )
    .await
}

fn field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn str_field(o: &Map<String, Value>, k: &str) -> Result<String, ApiError> {
    match field(o, k) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad(format!(
            "Request decode failed: {k} must be a string"
        ))),
    }
}

fn map_field(o: &Map<String, Value>, k: &str) -> Result<cat::Meta, ApiError> {
    match field(o, k) {
        None => Ok(cat::Meta::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(a, b)| {
                b.as_str()
                    .map(|b| (a.clone(), b.to_string()))
                    .ok_or_else(|| {
                        ApiError::bad(format!("Request decode failed: {k} values must be strings"))
                    })
            })
            .collect(),
        Some(_) => Err(ApiError::bad(format!(
            "Request decode failed: {k} must be an object"
        ))),
    }
}

async fn catalog_write(s: &Shared, cmd: CatalogCommand) -> Result<Response, ApiError> {
    match s.write(Command::Catalog(cmd)).await? {
        (_, Outcome::Catalog(CatalogOutcome::Ok)) => Ok(json(StatusCode::OK, &true, false)),
        (_, Outcome::Catalog(CatalogOutcome::Error(e))) => Err(ApiError::bad(e)),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// `PUT /v1/catalog/register`.
pub async fn register(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let _t = crate::telemetry::timer("catalog.register");
    ctx.check_dc()?;
    let v = normalize(&json_body(body, &headers)?);
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad("Request decode failed: expected an object"))?;
    let dc = str_field(o, "datacenter")?;
    if !dc.is_empty() && dc != s.config.datacenter {
        return Err(ApiError::NoPathToDatacenter);
    }
    let node_name = str_field(o, "node")?;
    if node_name.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    let address = str_field(o, "address")?;
    if address.is_empty() {
        return Err(ApiError::bad("Must provide address"));
    }
    let meta = map_field(o, "nodemeta")?;
    // Consul checks only service meta here; node meta reaches DNS TXT
    // answers too, so it gets the same limits, but `consul-` keys pass: a
    // node read back from the catalog carries `consul-network-segment`.
    validate_meta_with(&meta, true)
        .map_err(|e| ApiError::bad(format!("Invalid Node Meta for node {node_name}: {e}")))?;
    let node = NodeRec {
        id: str_field(o, "id")?,
        node: node_name.clone(),
        address,
        datacenter: s.config.datacenter.clone(),
        tagged_addresses: map_field(o, "taggedaddresses")?,
        meta,
        create_index: 0,
        modify_index: 0,
    };
    let service = match field(o, "service") {
        None => None,
        Some(sv) => {
            // The catalog spells the name "Service"; the agent API spells it "Name".
            let mut sv = sv.clone();
            if let Some(m) = sv.as_object_mut() {
                if let Some(n) = m.remove("service") {
                    m.insert("name".into(), n);
                }
            }
            let def = parse_service_as(&sv, true, |_, id, e| {
                format!("Invalid Service Meta for node {node_name} and serviceID {id}: {e}")
            })
            .map_err(|DefError(e)| ApiError::bad(e))?;
            if !def.checks.is_empty() {
                return Err(ApiError::bad(
                    "Service checks belong in Check/Checks of the registration",
                ));
            }
            Some(service_rec(&def))
        }
    };
    let mut checks = Vec::new();
    let mut raw: Vec<&Value> = field(o, "check").into_iter().collect();
    if let Some(Value::Array(a)) = field(o, "checks") {
        raw.extend(a.iter());
    }
    for c in raw {
        checks.push(parse_check_rec(c, &node_name).map_err(|DefError(e)| ApiError::bad(e))?);
    }
    check_register(&s, &ctx, &node, service.as_ref(), &checks)?;
    let req = RegisterReq {
        node,
        skip_node_update: matches!(field(o, "skipnodeupdate"), Some(Value::Bool(true))),
        service,
        checks,
    };
    catalog_write(&s, CatalogCommand::Register(Box::new(req))).await
}

/// Consul's `vetRegisterWithACL`, in short: the service needs
/// `service:write`; a new or changed node, or a registration without a
/// service, needs `node:write`; a service check its service's write.
fn check_register(
    s: &Shared,
    ctx: &RequestCtx,
    node: &NodeRec,
    service: Option<&cat::ServiceRec>,
    checks: &[cat::CheckRec],
) -> Result<(), ApiError> {
    let authz = ctx.authz();
    if !authz.enabled() {
        return Ok(());
    }
    if let Some(sv) = service {
        authz.require(Resource::Service, &sv.service, Need::Write)?;
    }
    let unchanged = s
        .store
        .read()
        .catalog
        .node(&node.node)
        .is_some_and(|n| n.address == node.address && n.meta == node.meta);
    let node_checks = checks.iter().any(|c| c.service_id.is_empty());
    if service.is_none() || !unchanged || node_checks {
        authz.require(Resource::Node, &node.node, Need::Write)?;
    }
    for c in checks.iter().filter(|c| !c.service_id.is_empty()) {
        let name = service
            .filter(|sv| sv.id == c.service_id)
            .map(|sv| sv.service.clone())
            .or_else(|| {
                let t = s.store.read();
                let found = t
                    .catalog
                    .node_services(&node.node)
                    .find(|sv| sv.id == c.service_id)
                    .map(|sv| sv.service.clone());
                found
            })
            .unwrap_or_default();
        authz.require(Resource::Service, &name, Need::Write)?;
    }
    Ok(())
}

/// `PUT /v1/catalog/deregister`.
pub async fn deregister(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let _t = crate::telemetry::timer("catalog.deregister");
    ctx.check_dc()?;
    let v = normalize(&json_body(body, &headers)?);
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad("Request decode failed: expected an object"))?;
    // As register does: a body naming another datacenter is for a server
    // there, and no other datacenter is reachable.
    let dc = str_field(o, "datacenter")?;
    if !dc.is_empty() && dc != s.config.datacenter {
        return Err(ApiError::NoPathToDatacenter);
    }
    let node = str_field(o, "node")?;
    if node.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    let service_id = Some(str_field(o, "serviceid")?).filter(|x| !x.is_empty());
    let check_id = Some(str_field(o, "checkid")?).filter(|x| !x.is_empty());
    let authz = ctx.authz();
    let owner = |sid: &str| {
        let t = s.store.read();
        let name = t
            .catalog
            .node_services(&node)
            .find(|sv| sv.id == sid)
            .map(|sv| sv.service.clone());
        name
    };
    match (&service_id, &check_id) {
        (Some(sid), None) => match owner(sid) {
            Some(name) => authz.require(Resource::Service, &name, Need::Write)?,
            None => authz.require(Resource::Node, &node, Need::Write)?,
        },
        _ => authz.require(Resource::Node, &node, Need::Write)?,
    }
    catalog_write(
        &s,
        CatalogCommand::Deregister {
            node,
            service_id,
            check_id,
        },
    )
    .await
}
