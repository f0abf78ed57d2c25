//! `/v1/catalog/*`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::records as render;
use crate::app::Shared;
use crate::local::defs::{normalize, parse_service_as, validate_meta_with, DefError};
use crate::local::{parse_check_rec, service_rec};
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::state::catalog::{self as cat, CatalogCommand, CatalogOutcome, NodeRec, RegisterReq};
use crate::state::{Command, Outcome, WatchTarget};

fn tags_match(tags: &[String], want: &[&str]) -> bool {
    want.iter()
        .all(|w| tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

pub async fn services(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::SERVICES.into()),
        |t| t.catalog.services_index(),
        |t| {
            let m: Map<String, Value> = t
                .catalog
                .service_names()
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
    .await
}

pub async fn service(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let query = &ctx.query;
    let tags: Vec<&str> = query.all("tag").collect();
    metrics::counter!("catalog.service.query").increment(1);
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::svc_target(&name)),
        |t| t.catalog.service_index(&name),
        |t| {
            let list: Vec<Value> = t
                .catalog
                .instances(&name)
                .into_iter()
                .filter(|(_, sv)| tags_match(&sv.tags, &tags))
                .map(|(n, sv)| render::catalog_service(n, sv))
                .collect();
            Some(list)
        },
    )
    .await
}

pub async fn nodes(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(cat::NODES.into()),
        |t| t.catalog.nodes_index(),
        |t| Some(t.catalog.nodes().map(render::node).collect::<Vec<_>>()),
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
            t.catalog.node(&name).map(|n| {
                let services: Map<String, Value> = t
                    .catalog
                    .node_services(&name)
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
    let req = RegisterReq {
        node,
        skip_node_update: matches!(field(o, "skipnodeupdate"), Some(Value::Bool(true))),
        service,
        checks,
    };
    catalog_write(&s, CatalogCommand::Register(Box::new(req))).await
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
