//! `/v1/status/*`, `/v1/agent/self`, `/v1/catalog/datacenters`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::app::Shared;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;

pub async fn leader(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    Ok(json(
        StatusCode::OK,
        &s.leadership.leader_addr(),
        q.has("pretty"),
    ))
}

pub async fn peers(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    Ok(json(StatusCode::OK, &s.leadership.peers(), q.has("pretty")))
}

/// Every datacenter this server's WAN pool knows, local first, the others
/// by estimated round trip (WAN coordinates), then name (a client
/// agent's request is answered by a server: see `pipeline::route`).
pub async fn datacenters(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let dcs = s.wan_coords.sorted_dcs(&s.router);
    json(StatusCode::OK, &dcs, q.has("pretty"))
}

pub async fn agent_self(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let c = &s.config;
    let version = crate::version::CONSUL_API;
    let bind = c.bind_addr.to_string();
    let (server_port, serf_port) = match &s.gossip {
        Some(g) => {
            let me = g.me();
            (i64::from(me.rpc_port), i64::from(me.addr.port()))
        }
        None => (c.ports.server.into(), c.ports.serf_lan.into()),
    };
    let member = match &s.gossip {
        Some(g) => {
            let status = g
                .member(&c.node_name)
                .map(|m| m.status)
                .unwrap_or(crate::cluster::gossip::MemberStatus::Alive);
            super::agent_api::member_json(&g.me(), status, c.bootstrap_expect.unwrap_or(0))
        }
        None => json!({ "Name": c.node_name, "Addr": bind, "Port": 0, "Tags": {}, "Status": 1 }),
    };
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.primary_datacenter.as_deref().unwrap_or(&c.datacenter),
            "NodeName": c.node_name,
            "NodeID": s.node_id,
            "Server": c.server,
            "Revision": "",
            "Version": version,
            "TribuneVersion": crate::version::TRIBUNE,
            "BuildDate": "",
        },
        "DebugConfig": {
            "Datacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": s.node_id,
            "ServerMode": c.server,
            "DevMode": c.dev,
            "BootstrapExpect": c.bootstrap_expect.unwrap_or(0),
            "DataDir": c.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "BindAddr": bind,
            "ClientAddrs": [c.client_addr.to_string()],
            "HTTPPort": c.ports.http,
            "DNSPort": c.ports.dns,
            "ServerPort": server_port,
            "SerfPortLAN": serf_port,
            "SerfPortWAN": c.ports.serf_wan,
            "RaftMultiplier": c.raft_multiplier,
            "EnableScriptChecks": c.enable_script_checks,
            "UIConfig": { "Enabled": c.ui },
            "LogLevel": c.log_level,
        },
        "Coord": { "Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1.0e-5 },
        "Member": member,
        // The node's meta as the catalog has it (consul-network-segment included).
        "Meta": s.node.meta,
        "Stats": super::stats::stats(&s),
        // No "xDS": Consul leaves it out when it runs no xDS server, and
        // tribune has none (Envoy tooling must not be told otherwise).
    });
    json(StatusCode::OK, &body, q.has("pretty"))
}
