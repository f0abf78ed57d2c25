//! `/v1/operator/raft/*` (the raft configuration, removing a peer,
//! transferring leadership) and `/v1/operator/autopilot/*`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::app::Shared;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::state::autopilot::{AutopilotCommand, AutopilotConfig};
use crate::state::{Command, Outcome};

/// `GET /v1/operator/raft/configuration`.
pub async fn configuration(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    let Some(raft) = s.raft.as_ref() else {
        return Err(ApiError::NoLeader);
    };
    let leader = s.leadership.leader_addr();
    // Raft ids map to node names through gossip.
    let names: std::collections::HashMap<u64, (String, String)> = s
        .gossip
        .as_ref()
        .map(|g| {
            g.members()
                .into_iter()
                .filter(|m| m.ident.server)
                .map(|m| {
                    (
                        m.ident.raft_id,
                        (m.ident.name.clone(), m.ident.node_id.clone()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let index = raft
        .metrics()
        .borrow()
        .membership_config
        .log_id()
        .map(|l| l.index)
        .unwrap_or(0);
    let servers: Vec<serde_json::Value> = s
        .leadership
        .servers()
        .into_iter()
        .map(|(id, addr, voter)| {
            let (node, node_id) = names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| (String::new(), String::new()));
            json!({
                "ID": if node_id.is_empty() { id.to_string() } else { node_id },
                "RaftID": id.to_string(),
                "Node": node,
                "Address": addr,
                "Leader": !leader.is_empty() && addr == leader,
                "Voter": voter,
                "ProtocolVersion": "3",
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "Servers": servers, "Index": index }),
        q.has("pretty"),
    ))
}

/// `DELETE /v1/operator/raft/peer?id=<node id or raft id>` or `?address=ip:port`.
pub async fn remove_peer(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    let servers = s.leadership.servers();
    let target = match (q.get("id"), q.get("address")) {
        (Some(id), None) => {
            let by_node_id = s.gossip.as_ref().and_then(|g| {
                g.members()
                    .into_iter()
                    .find(|m| m.ident.server && m.ident.node_id == id)
                    .map(|m| m.ident.raft_id)
            });
            by_node_id.or_else(|| id.parse::<u64>().ok())
        }
        (None, Some(addr)) => servers.iter().find(|x| x.1 == addr).map(|x| x.0),
        _ => {
            return Err(ApiError::bad(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    let Some(target) = target.filter(|t| servers.iter().any(|x| x.0 == *t)) else {
        return Err(ApiError::bad("no such raft peer"));
    };
    crate::cluster::autopilot::remove_voter(&s.autopilot(), target)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &json!(null), false))
}

/// `POST /v1/operator/raft/transfer-leader[?id=<node id or raft id>]`
/// (answered by the leader: followers forward it).
pub async fn transfer_leader(
    State(s): State<Shared>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    use crate::cluster::transfer::{self, TransferError as T};
    let q = &ctx.query;
    ctx.check_dc()?;
    if s.raft.is_none() {
        return Err(ApiError::NoLeader);
    }
    let target = match q.get("id").filter(|id| !id.is_empty()) {
        Some(id) => Some(transfer::resolve(&s, id).map_err(|e| ApiError::bad(e.to_string()))?),
        None => None,
    };
    match transfer::transfer(&s, target).await {
        Ok(_) => Ok(json(
            StatusCode::OK,
            &json!({ "Success": true }),
            q.has("pretty"),
        )),
        Err(e @ (T::ToSelf | T::NotVoter(_) | T::NoPeer | T::InProgress)) => {
            Err(ApiError::bad(e.to_string()))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// The configuration in Consul's JSON.
pub fn autopilot_json(c: &AutopilotConfig) -> serde_json::Value {
    use crate::cluster::health::go_duration;
    use std::time::Duration;
    json!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": go_duration(Duration::from_millis(c.last_contact_threshold_ms)),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": go_duration(Duration::from_millis(c.server_stabilization_time_ms)),
        "RedundancyZoneTag": c.redundancy_zone_tag,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "UpgradeVersionTag": c.upgrade_version_tag,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// A PUT body: the whole configuration, as Consul decodes it (a field
/// left out is its zero value); a field of the wrong type is refused.
fn parse_autopilot(v: &serde_json::Value) -> Result<AutopilotConfig, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad("Request decode failed: body must be a JSON object"))?;
    let bad = |k: &str, want: &str| ApiError::bad(format!("Request decode failed: {k}: {want}"));
    let mut c = AutopilotConfig {
        cleanup_dead_servers: false,
        last_contact_threshold_ms: 0,
        max_trailing_logs: 0,
        min_quorum: 0,
        server_stabilization_time_ms: 0,
        ..AutopilotConfig::default()
    };
    for (k, val) in obj {
        let boolean = || {
            val.as_bool()
                .ok_or_else(|| bad(k, "expected true or false"))
        };
        let number = || {
            val.as_u64()
                .ok_or_else(|| bad(k, "expected a non-negative number"))
        };
        let text = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(k, "expected a string"))
        };
        let ms = || {
            val.as_str()
                .and_then(gocompat::duration::parse_duration)
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| bad(k, "expected a duration like \"200ms\""))
        };
        match k.as_str() {
            "CleanupDeadServers" => c.cleanup_dead_servers = boolean()?,
            "LastContactThreshold" => c.last_contact_threshold_ms = ms()?,
            "MaxTrailingLogs" => c.max_trailing_logs = number()?,
            "MinQuorum" => c.min_quorum = number()?,
            "ServerStabilizationTime" => c.server_stabilization_time_ms = ms()?,
            "RedundancyZoneTag" => c.redundancy_zone_tag = text()?,
            "DisableUpgradeMigration" => c.disable_upgrade_migration = boolean()?,
            "UpgradeVersionTag" => c.upgrade_version_tag = text()?,
            _ => {}
        }
    }
    Ok(c)
}

/// `GET /v1/operator/autopilot/configuration`.
pub async fn autopilot_get(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    if s.raft.is_none() {
        return Err(ApiError::NoLeader);
    }
    let c = crate::cluster::health::config(&s);
    Ok(json(StatusCode::OK, &autopilot_json(&c), q.has("pretty")))
}

/// `PUT /v1/operator/autopilot/configuration[?cas=<ModifyIndex>]`:
/// `true`, or `false` when the CAS failed.
pub async fn autopilot_put(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    if s.raft.is_none() {
        return Err(ApiError::NoLeader);
    }
    let cas = q.u64("cas", "Error parsing cas value")?;
    let config = parse_autopilot(&crate::pipeline::body::json_body(body, &headers)?)?;
    let cmd = Command::Autopilot(AutopilotCommand::Set { config, cas });
    match s.write(cmd).await? {
        (_, Outcome::Autopilot(ok)) => Ok(json(StatusCode::OK, &json!(ok), false)),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// The leader's view of the servers' health, for `/health` and `/state`.
async fn leader_health(
    s: &Shared,
    ctx: &RequestCtx,
) -> Result<crate::cluster::health::ClusterHealth, ApiError> {
    ctx.check_dc()?;
    crate::cluster::health::collect(s)
        .await
        .map_err(|_| ApiError::NoLeader)
}

/// `GET /v1/operator/autopilot/health`: 429 when a server is unhealthy, as
/// Consul.
pub async fn autopilot_health(
    State(s): State<Shared>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let h = leader_health(&s, &ctx).await?;
    let status = if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    Ok(json(
        status,
        &crate::cluster::health::health_json(&h),
        q.has("pretty"),
    ))
}

/// `GET /v1/operator/autopilot/state`.
pub async fn autopilot_state(
    State(s): State<Shared>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let h = leader_health(&s, &ctx).await?;
    Ok(json(
        StatusCode::OK,
        &crate::cluster::health::state_json(&h),
        q.has("pretty"),
    ))
}
