//! `/v1/coordinate/*`: the network coordinates servers hold (Consul's
//! `coordinate_endpoint.go`). Updates are queued on the server and applied
//! in batches ([`crate::coordinate::sync::Batcher`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::routes::{Endpoint as E, Routes};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::coordinate::sync::validate;
use crate::coordinate::Coordinate;
use crate::local::defs::normalize;
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::{json, mark_filtered};
use crate::state::coordinate::{CoordEntry, COORDINATES};
use crate::state::WatchTarget;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/coordinate/datacenters", E::get(datacenters))
        .route("/v1/coordinate/nodes", E::get(nodes))
        .route("/v1/coordinate/node/{node}", E::get(node))
        .route("/v1/coordinate/update", E::put(update))
}

/// One entry as Consul renders `structs.Coordinate`.
pub fn entry_json(e: &CoordEntry) -> Value {
    json!({
        "Node": e.node,
        "Segment": e.segment,
        "Coord": e.coord,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

/// `GET /v1/coordinate/datacenters`: per datacenter (by name), its
/// servers' WAN coordinates as this server knows them
/// (`coordinate::wan`). Without a WAN pool the local servers' LAN
/// coordinates stand in, under their WAN names (`<node>.<dc>`).
pub async fn datacenters(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    enabled(&s)?;
    let pretty = ctx.query.has("pretty");
    if let Some(map) = s.wan_coords.wan_coordinates() {
        let body: Vec<Value> = map
            .into_iter()
            .map(|(dc, list)| {
                let coords: Vec<Value> = list
                    .into_iter()
                    .map(|(n, c)| json!({"Node": n, "Segment": "", "Coord": c}))
                    .collect();
                json!({ "Datacenter": dc, "AreaID": "wan", "Coordinates": coords })
            })
            .collect();
        return Ok(json(StatusCode::OK, &body, pretty));
    }
    let dc = s.config.datacenter.clone();
    let servers: Vec<String> = match &s.gossip {
        Some(g) => g
            .members()
            .into_iter()
            .filter(|m| m.ident.server && m.ident.dc == dc)
            .map(|m| m.ident.name)
            .collect(),
        None if s.config.server => vec![s.node.node.clone()],
        None => Vec::new(),
    };
    let t = s.store.read();
    let coords: Vec<Value> = servers
        .iter()
        .filter_map(|n| {
            t.coordinates
                .get(n)
                .map(|c| json!({"Node": format!("{n}.{dc}"), "Segment": "", "Coord": c}))
        })
        .collect();
    let body = json!([{ "Datacenter": dc, "AreaID": "wan", "Coordinates": coords }]);
    Ok(json(StatusCode::OK, &body, pretty))
}

/// `GET /v1/coordinate/nodes[?segment=]`: every node's coordinate the token
/// may read (blocking).
pub async fn nodes(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    enabled(&s)?;
    ctx.check_dc()?;
    let authz = ctx.authz();
    let segment = ctx.query.get("segment").map(str::to_string);
    let filtered = AtomicBool::new(false);
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(COORDINATES.into()),
            |t| t.coordinates.index(),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                let list: Vec<Value> = t
                    .coordinates
                    .list()
                    .filter(|e| segment.as_ref().is_none_or(|sg| *sg == e.segment))
                    .filter(|e| {
                        let ok = authz.can(Resource::Node, &e.node, Need::Read);
                        filtered.fetch_or(!ok, Relaxed);
                        ok
                    })
                    .map(entry_json)
                    .collect();
                Some(list)
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

/// `GET /v1/coordinate/node/<node>`: that node's coordinates (404 when it
/// has none).
pub async fn node(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    enabled(&s)?;
    ctx.check_dc()?;
    ctx.authz().require(Resource::Node, &name, Need::Read)?;
    let segment = ctx.query.get("segment").map(str::to_string);
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(COORDINATES.into()),
        |t| t.coordinates.index(),
        |t| {
            let list: Vec<Value> = t
                .coordinates
                .node(&name)
                .filter(|e| segment.as_ref().is_none_or(|sg| *sg == e.segment))
                .map(entry_json)
                .collect();
            (!list.is_empty()).then_some(list)
        },
    )
    .await
}

/// Consul's answer on every coordinate route with `disable_coordinates`.
fn enabled(s: &Shared) -> Result<(), ApiError> {
    match s.config.coordinates.disabled {
        true => Err(ApiError::Unauthorized("Coordinate support disabled".into())),
        false => Ok(()),
    }
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("Request decode failed: {msg}"))
}

/// A string field (`k` normalized, `name` as Consul spells it).
fn string(o: &Map<String, Value>, k: &str, name: &str) -> Result<String, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(format!("{name} must be a string"))),
    }
}

/// The body of `PUT /v1/coordinate/update`: `{Node, Segment, Coord}`.
pub fn parse_update(v: &Value) -> Result<(String, String, Coordinate), ApiError> {
    let v = normalize(v);
    let o = v.as_object().ok_or_else(|| bad("expected an object"))?;
    let node = string(o, "node", "Node")?;
    if node.is_empty() {
        return Err(ApiError::bad("Must provide node"));
    }
    let segment = string(o, "segment", "Segment")?;
    let c = o
        .get("coord")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad("Must provide Coord"))?;
    let num = |k: &str, name: &str| match c.get(k) {
        None => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| bad(format!("Coord.{name}"))),
        Some(_) => Err(bad(format!("Coord.{name} must be a number"))),
    };
    let vec = match c.get("vec") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_f64().ok_or_else(|| bad("Coord.Vec must hold numbers")))
            .collect::<Result<Vec<f64>, _>>()?,
        _ => return Err(bad("Coord.Vec must be an array of numbers")),
    };
    let coord = Coordinate {
        vec,
        error: num("error", "Error")?,
        adjustment: num("adjustment", "Adjustment")?,
        height: num("height", "Height")?,
    };
    validate(&coord).map_err(ApiError::bad)?;
    Ok((node, segment, coord))
}

/// `PUT /v1/coordinate/update`: queue a node's coordinate (node:write).
pub async fn update(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    enabled(&s)?;
    ctx.check_dc()?;
    let (node, segment, coord) = parse_update(&json_body(body, &headers)?)?;
    ctx.authz().require(Resource::Node, &node, Need::Write)?;
    s.coord_batch.push(node, segment, coord);
    Ok(StatusCode::OK.into_response())
}
