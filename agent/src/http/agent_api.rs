//! `/v1/agent/*`: this agent's services and checks.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::records as render;
use super::routes::{Endpoint as E, Routes};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::local::defs::{normalize, parse_service, parse_standalone_check, DefError};
use crate::local::{CheckView, LocalError, Source};
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::{json, mark_filtered};
use crate::state::Health;

impl From<LocalError> for ApiError {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::UnknownService(_) | LocalError::UnknownCheck(_) => {
                ApiError::NotFound(e.to_string())
            }
            LocalError::Invalid(_) | LocalError::NotTtl(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/agent/services", E::get(services))
        .route("/v1/agent/service/{id}", E::get(service))
        .route("/v1/agent/checks", E::get(checks))
        .route("/v1/agent/members", E::get(members))
        .route("/v1/agent/service/register", E::put(register_service))
        .route(
            "/v1/agent/service/deregister/{id}",
            E::put(deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{id}",
            E::put(service_maintenance),
        )
        .route("/v1/agent/check/register", E::put(register_check))
        .route("/v1/agent/check/deregister/{*id}", E::put(deregister_check))
        .route("/v1/agent/check/pass/{*id}", E::put(pass))
        .route("/v1/agent/check/warn/{*id}", E::put(warn))
        .route("/v1/agent/check/fail/{*id}", E::put(fail))
        .route("/v1/agent/check/update/{*id}", E::put(update))
        .route("/v1/agent/maintenance", E::put(node_maintenance))
        .route(
            "/v1/agent/health/service/name/{name}",
            E::get(health_by_name),
        )
        .route("/v1/agent/health/service/id/{id}", E::get(health_by_id))
        .route("/v1/agent/reload", E::put(reload))
        .route("/v1/agent/join/{addr}", E::put(join))
        .route("/v1/agent/leave", E::put(leave))
        .route("/v1/agent/force-leave/{node}", E::put(force_leave))
}

fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

pub async fn services(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let all = s.local.services();
    let m: Map<String, Value> = all
        .iter()
        .filter(|d| ctx.authz().can(Resource::Service, &d.name, Need::Read))
        .map(|d| (d.id.clone(), render::agent_service(d, &s.config.datacenter)))
        .collect();
    let mut resp = json(StatusCode::OK, &m, q.has("pretty"));
    mark_filtered(&mut resp, m.len() != all.len());
    resp
}

/// `GET /v1/agent/service/<id>`: the service with its `ContentHash` (also
/// in `X-Consul-ContentHash`); `?hash=<h>` waits, up to `?wait`, until the
/// service no longer hashes to `h`, as Consul's hash-based blocking does.
pub async fn service(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let opts = ctx.read_opts()?;
    let want = q.get("hash").unwrap_or("");
    let mut changes = s.local.subscribe();
    let deadline = tokio::time::Instant::now() + opts.wait;
    loop {
        // Subscribed before reading, so no change falls between the two.
        changes.borrow_and_update();
        let d = s
            .local
            .service(&id)
            .ok_or_else(|| ApiError::NotFound(format!("unknown service ID: {id}")))?;
        ctx.authz()
            .require(Resource::Service, &d.name, Need::Read)?;
        let (body, hash) = hashed_agent_service(&d, &s.config.datacenter);
        let respond = || {
            let mut resp = json(StatusCode::OK, &body, opts.pretty);
            if let Ok(v) = axum::http::HeaderValue::from_str(&hash) {
                resp.headers_mut().insert("x-consul-contenthash", v);
            }
            Ok(resp)
        };
        if want != hash {
            return respond();
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return respond() },
            _ = tokio::time::sleep_until(deadline) => return respond(),
            _ = s.shutdown.cancelled() => return respond(),
        }
    }
}

/// A service as `/v1/agent/service/<id>` renders it, and its content hash
/// (FNV-1a of the body without the hash, in hex as Consul writes its own).
fn hashed_agent_service(d: &crate::local::ServiceDef, dc: &str) -> (Value, String) {
    let mut body = render::agent_service(d, dc);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hash = format!("{h:x}");
    if let Some(o) = body.as_object_mut() {
        o.insert("ContentHash".into(), Value::String(hash.clone()));
    }
    (body, hash)
}

pub async fn checks(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let node = &s.config.node_name;
    let all = s.local.checks();
    let authz = ctx.authz();
    let m: Map<String, Value> = all
        .iter()
        .filter(|c| match s.local.service(&c.def.service_id) {
            Some(sv) => authz.can(Resource::Service, &sv.name, Need::Read),
            None => authz.can(Resource::Node, node, Need::Read),
        })
        .map(|c| (c.def.id.clone(), render::agent_check(c, node)))
        .collect();
    let mut resp = json(StatusCode::OK, &m, q.has("pretty"));
    mark_filtered(&mut resp, m.len() != all.len());
    resp
}

pub async fn register_service(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    let v = json_body(body, &headers)?;
    let def =
        parse_service(&v, s.config.enable_script_checks).map_err(|DefError(e)| ApiError::bad(e))?;
    ctx.authz()
        .require(Resource::Service, &def.name, Need::Write)?;
    let replace = q
        .get("replace-existing-checks")
        .map(|v| v != "false" && v != "0")
        .unwrap_or(false);
    tracing::info!(service = %def.id, name = %def.name, "service registered");
    s.local.add_service(def, Source::Http, replace);
    Ok(empty_ok())
}

pub async fn deregister_service(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    if let Some(d) = s.local.service(&id) {
        ctx.authz()
            .require(Resource::Service, &d.name, Need::Write)?;
    }
    s.local.remove_service(&id)?;
    tracing::info!(service = %id, "service deregistered");
    Ok(empty_ok())
}

pub async fn register_check(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let v = json_body(body, &headers)?;
    let def = parse_standalone_check(&v, s.config.enable_script_checks)
        .map_err(|DefError(e)| ApiError::bad(e))?;
    s.local.add_check(def, Source::Http)?;
    Ok(empty_ok())
}

pub async fn deregister_check(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.local.remove_check(&id)?;
    Ok(empty_ok())
}

async fn ttl(s: Shared, id: String, ctx: RequestCtx, status: Health) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let note = q.get("note").unwrap_or("").to_string();
    s.local.ttl_update(&id, status, note)?;
    Ok(empty_ok())
}

pub async fn pass(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ttl(s, id, ctx, Health::Passing).await
}
pub async fn warn(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ttl(s, id, ctx, Health::Warning).await
}
pub async fn fail(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ttl(s, id, ctx, Health::Critical).await
}

/// `PUT /v1/agent/check/update/<id>` with `{"Status", "Output"}`.
pub async fn update(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let v = normalize(&json_body(body, &headers)?);
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .and_then(Health::parse)
        .filter(|h| *h != Health::Maintenance)
        .ok_or_else(|| ApiError::bad("Invalid check status: use passing, warning or critical"))?;
    let output = match v.get("output") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(o)) => o.clone(),
        Some(_) => return Err(ApiError::bad("Output must be a string")),
    };
    s.local.ttl_update(&id, status, output)?;
    Ok(empty_ok())
}

fn enable_param(q: &crate::pipeline::context::Query) -> Result<bool, ApiError> {
    match q.get("enable") {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ApiError::bad(
            "Invalid value for \"enable\": use true or false",
        )),
        None => Err(ApiError::bad("Missing value for enable")),
    }
}

pub async fn node_maintenance(
    State(s): State<Shared>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let enable = enable_param(q)?;
    s.local
        .set_node_maintenance(enable, q.get("reason").unwrap_or(""));
    Ok(empty_ok())
}

pub async fn service_maintenance(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let enable = enable_param(q)?;
    if let Some(d) = s.local.service(&id) {
        ctx.authz()
            .require(Resource::Service, &d.name, Need::Write)?;
    }
    s.local
        .set_service_maintenance(&id, enable, q.get("reason").unwrap_or(""))?;
    Ok(empty_ok())
}

/// Status of one local instance: worst of its checks and the node's.
fn instance_health<'a>(checks: &'a [CheckView], service_id: &str) -> (Health, Vec<&'a CheckView>) {
    let mine: Vec<&CheckView> = checks
        .iter()
        .filter(|c| c.def.service_id.is_empty() || c.def.service_id == service_id)
        .collect();
    let maint = mine.iter().any(|c| crate::local::is_maintenance(&c.def.id));
    let worst = if maint {
        Health::Maintenance
    } else {
        mine.iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Health::Passing)
    };
    (worst, mine)
}

fn health_code(h: Health) -> StatusCode {
    match h {
        Health::Passing => StatusCode::OK,
        Health::Warning => StatusCode::TOO_MANY_REQUESTS,
        Health::Critical | Health::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn health_body(
    s: &Shared,
    h: Health,
    svc: &crate::local::ServiceDef,
    checks: &[&CheckView],
) -> Value {
    let node = &s.config.node_name;
    json!({
        "AggregatedStatus": h.as_str(),
        "Service": render::agent_service(svc, &s.config.datacenter),
        "Checks": checks.iter().map(|c| render::agent_health_check(c, node)).collect::<Vec<_>>(),
    })
}

pub async fn health_by_name(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.authz().require(Resource::Service, &name, Need::Read)?;
    let checks = s.local.checks();
    let services: Vec<_> = s
        .local
        .services()
        .into_iter()
        .filter(|d| d.name == name)
        .collect();
    if services.is_empty() {
        return Err(ApiError::NotFound(format!("ServiceName {name} Not Found")));
    }
    let mut worst = Health::Passing;
    let mut list = Vec::new();
    for svc in &services {
        let (h, mine) = instance_health(&checks, &svc.id);
        worst = worst.max(h);
        list.push(health_body(&s, h, svc, &mine));
    }
    if q.get("format") == Some("text") {
        return Ok((health_code(worst), worst.as_str()).into_response());
    }
    Ok(json(health_code(worst), &list, q.has("pretty")))
}

pub async fn health_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let svc = s
        .local
        .service(&id)
        .ok_or_else(|| ApiError::NotFound(format!("ServiceId {id} Not Found")))?;
    ctx.authz()
        .require(Resource::Service, &svc.name, Need::Read)?;
    let checks = s.local.checks();
    let (h, mine) = instance_health(&checks, &id);
    if q.get("format") == Some("text") {
        return Ok((health_code(h), h.as_str()).into_response());
    }
    Ok(json(
        health_code(h),
        &health_body(&s, h, &svc, &mine),
        q.has("pretty"),
    ))
}

pub async fn reload(State(s): State<Shared>) -> Result<Response, ApiError> {
    crate::app::reload(&s).map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(empty_ok())
}

/// One member as `/v1/agent/members` and `/v1/agent/self` show it.
pub fn member_json(
    m: &crate::cluster::gossip::Ident,
    status: crate::cluster::gossip::MemberStatus,
    expect: u32,
) -> serde_json::Value {
    let mut tags = serde_json::Map::new();
    tags.insert(
        "role".into(),
        json!(if m.server { "consul" } else { "node" }),
    );
    tags.insert("dc".into(), json!(m.dc));
    tags.insert("id".into(), json!(m.node_id));
    tags.insert("vsn".into(), json!("2"));
    tags.insert("vsn_min".into(), json!("2"));
    tags.insert("vsn_max".into(), json!("3"));
    tags.insert("build".into(), json!(m.build));
    tags.insert("segment".into(), json!(""));
    if m.server {
        tags.insert("port".into(), json!(m.rpc_port.to_string()));
        tags.insert("raft_vsn".into(), json!("3"));
        if expect > 0 {
            tags.insert("expect".into(), json!(expect.to_string()));
        }
    }
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": tags,
        "Status": status as u8,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `/v1/agent/members`: every member gossip knows, failed and left included;
/// with `?wan`, the WAN pool's (servers only; a client agent has none).
pub async fn members(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    if q.has("wan") {
        let all = s.router.wan().map(|w| w.members()).unwrap_or_default();
        let list: Vec<serde_json::Value> = all
            .iter()
            .filter(|m| ctx.authz().can(Resource::Node, &m.ident.name, Need::Read))
            .map(|m| member_json(&m.ident, m.status, m.ident.bootstrap_expect))
            .collect();
        let mut resp = json(StatusCode::OK, &list, q.has("pretty"));
        mark_filtered(&mut resp, list.len() != all.len());
        return resp;
    }
    let list: Vec<serde_json::Value> = match &s.gossip {
        Some(g) => g
            .members()
            .iter()
            .filter(|m| ctx.authz().can(Resource::Node, &m.ident.name, Need::Read))
            .map(|m| member_json(&m.ident, m.status, m.ident.bootstrap_expect))
            .collect(),
        None => vec![json!({
            "Name": s.config.node_name,
            "Addr": s.node.address,
            "Port": 0,
            "Tags": {
                "role": if s.config.server { "consul" } else { "node" },
                "dc": s.config.datacenter,
                "id": s.node_id,
                "build": crate::version::build_tag(),
            },
            "Status": 1,
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
        })],
    };
    let total = s.gossip.as_ref().map_or(1, |g| g.members().len());
    let mut resp = json(StatusCode::OK, &list, q.has("pretty"));
    mark_filtered(&mut resp, list.len() != total);
    resp
}

/// The pool `?wan` names: the LAN pool, or a server's WAN pool (Consul's
/// text for a client agent, which has none).
fn pool<'a>(
    s: &'a Shared,
    q: &crate::pipeline::context::Query,
) -> Result<&'a crate::cluster::gossip::Gossip, ApiError> {
    if !q.has("wan") {
        return gossip(s);
    }
    match s.router.wan() {
        Some(w) => Ok(w),
        None if s.config.server => Err(ApiError::bad(
            "the WAN pool is off on this server (ports.serf_wan = -1)",
        )),
        None => Err(ApiError::Internal(
            "Must be a server to join WAN cluster".into(),
        )),
    }
}

fn gossip(s: &Shared) -> Result<&crate::cluster::gossip::Gossip, ApiError> {
    s.gossip
        .as_ref()
        .ok_or_else(|| ApiError::bad("gossip is off on this agent (ports.serf_lan = -1)"))
}

/// `PUT /v1/agent/join/<address>[?wan]`.
pub async fn join(
    State(s): State<Shared>,
    Path(addr): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let wan = ctx.query.has("wan");
    let g = pool(&s, &ctx.query)?;
    let n = g
        .join(std::slice::from_ref(&addr))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let which = if wan { "WAN" } else { "LAN" };
    tracing::info!(number_of_nodes = n, "({which}) joined");
    Ok(empty_ok())
}

/// `PUT /v1/agent/leave`: leave the cluster gracefully, then shut down.
pub async fn leave(State(s): State<Shared>) -> Result<Response, ApiError> {
    gossip(&s)?;
    crate::app::graceful_leave(&s).await;
    s.shutdown.cancel();
    Ok(empty_ok())
}

/// `PUT /v1/agent/force-leave/<node>[?prune][?wan]` (WAN names are
/// `<node>.<dc>`).
pub async fn force_leave(
    State(s): State<Shared>,
    Path(node): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let g = pool(&s, q)?;
    let Some(m) = g.member(&node) else {
        return Err(ApiError::NotFound(format!(
            "agent: No node found with name '{node}'"
        )));
    };
    if m.status == crate::cluster::gossip::MemberStatus::Alive && !q.has("prune") {
        return Err(ApiError::bad(format!(
            "node {node} is alive: force-leave only applies to failed members"
        )));
    }
    g.force_leave(&node, q.has("prune"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(empty_ok())
}
