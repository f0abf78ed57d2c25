//! `/v1/operator/raft/*`: the raft configuration and removing a peer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::app::Shared;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;

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
        .map_err(ApiError::Internal)?;
    Ok(json(StatusCode::OK, &json!(null), false))
}
