//! Autopilot's view of the servers, computed on the leader for
//! `/v1/operator/autopilot/health` and `/state`.
//!
//! The leader asks every server of the raft configuration for its raft
//! position (`/rpc/raft/info`, 1 s timeout) and reads gossip. A server is
//! healthy, as in Consul, when gossip has it alive, it answers, its last
//! log term is the leader's, it trails the leader by at most
//! `MaxTrailingLogs` entries, and it heard from the leader within
//! `LastContactThreshold` (plus one heartbeat interval: its last contact
//! is measured between heartbeats, 50 ms × raft_multiplier apart). A
//! stopped server is unhealthy at once (it does not answer) and healthy
//! again once it has caught up. `StableSince` is when its health last
//! changed, as this leader saw it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::autopilot::RaftInfo;
use super::gossip::MemberStatus;
use crate::app::Shared;
use crate::raft::NodeId;
use crate::state::autopilot::AutopilotConfig;

/// One server as autopilot reports it.
#[derive(Clone, Debug)]
pub struct ServerHealth {
    pub raft_id: NodeId,
    pub id: String,
    pub name: String,
    pub address: String,
    pub serf_status: String,
    pub version: String,
    pub leader: bool,
    pub voter: bool,
    pub last_contact: Option<Duration>,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub stable_since: SystemTime,
}

pub struct ClusterHealth {
    pub healthy: bool,
    pub failure_tolerance: usize,
    pub optimistic_failure_tolerance: usize,
    pub servers: Vec<ServerHealth>,
}

/// Health last seen per server: (healthy, since).
static STABLE: Mutex<Option<HashMap<NodeId, (bool, SystemTime)>>> = Mutex::new(None);

/// The configuration in force: the replicated one, else Consul's defaults.
pub fn config(s: &Shared) -> AutopilotConfig {
    s.store.read().autopilot.clone().unwrap_or_default()
}

/// Why there is no health report: only the leader judges.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("not a server")]
    NotServer,
    #[error("not the leader")]
    NotLeader,
}

/// Ask every server and judge it (on the leader).
pub async fn collect(s: &Shared) -> Result<ClusterHealth, HealthError> {
    let raft = s.raft.as_ref().ok_or(HealthError::NotServer)?;
    if !s.leadership.is_leader() {
        return Err(HealthError::NotLeader);
    }
    let conf = config(s);
    let metrics = raft.metrics().borrow().clone();
    let term = metrics.current_term;
    let leader_index = metrics.last_log_index.unwrap_or(0);
    let heartbeat = Duration::from_millis(raft.config().heartbeat_interval);
    let threshold = Duration::from_millis(conf.last_contact_threshold_ms) + heartbeat;
    let members = s.gossip.as_ref().map(|g| g.members()).unwrap_or_default();
    let asks = s.leadership.servers().into_iter().map(|(id, addr, voter)| {
        let s = s.clone();
        async move {
            let info: Result<RaftInfo, String> = if id == s.raft_id {
                Ok(RaftInfo {
                    id,
                    initialized: true,
                    leader: addr.clone(),
                    last_contact_ms: 0,
                    last_term: term,
                    last_index: leader_index,
                })
            } else {
                s.rpc
                    .call(&addr, "/rpc/raft/info", &(), Duration::from_secs(1), 0)
                    .await
                    .map_err(|e| e.to_string())
            };
            (id, addr, voter, info)
        }
    });
    let answers = futures_join(asks).await;
    let now = SystemTime::now();
    let mut stable = STABLE.lock();
    let stable = stable.get_or_insert_with(HashMap::new);
    let mut servers = Vec::new();
    for (id, addr, voter, info) in answers {
        let member = members
            .iter()
            .find(|m| m.ident.server && m.ident.raft_id == id);
        let serf_status = member
            .map(|m| serf_word(m.status))
            .unwrap_or("none")
            .to_string();
        let (contact, last_term, last_index) = match &info {
            Ok(i) => (
                (i.last_contact_ms != u64::MAX).then(|| Duration::from_millis(i.last_contact_ms)),
                i.last_term,
                i.last_index,
            ),
            Err(_) => (None, 0, 0),
        };
        let healthy = serf_status == "alive"
            && info.is_ok()
            && contact.is_some_and(|c| c <= threshold)
            && last_term == term
            && leader_index.saturating_sub(last_index) <= conf.max_trailing_logs;
        let entry = stable.entry(id).or_insert((healthy, now));
        if entry.0 != healthy {
            *entry = (healthy, now);
        }
        servers.push(ServerHealth {
            raft_id: id,
            id: member
                .map(|m| m.ident.node_id.clone())
                .unwrap_or_else(|| id.to_string()),
            name: member.map(|m| m.ident.name.clone()).unwrap_or_default(),
            address: addr,
            serf_status,
            version: crate::version::CONSUL_API.to_string(),
            leader: id == s.raft_id,
            voter,
            last_contact: contact,
            last_term,
            last_index,
            healthy,
            stable_since: entry.1,
        });
    }
    let known: Vec<NodeId> = servers.iter().map(|x| x.raft_id).collect();
    stable.retain(|id, _| known.contains(id));
    let voters = servers.iter().filter(|x| x.voter).count();
    let healthy_voters = servers.iter().filter(|x| x.voter && x.healthy).count();
    let quorum = voters / 2 + 1;
    let healthy = servers.iter().all(|x| x.healthy);
    metrics::gauge!("autopilot.healthy").set(if healthy { 1.0 } else { 0.0 });
    metrics::gauge!("autopilot.failure_tolerance")
        .set(healthy_voters.saturating_sub(quorum) as f64);
    Ok(ClusterHealth {
        healthy,
        failure_tolerance: healthy_voters.saturating_sub(quorum),
        optimistic_failure_tolerance: voters.saturating_sub(quorum),
        servers,
    })
}

/// Run the asks at once (a stopped server costs its timeout once).
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn serf_word(s: MemberStatus) -> &'static str {
    match s {
        MemberStatus::Alive => "alive",
        MemberStatus::Leaving => "leaving",
        MemberStatus::Left => "left",
        MemberStatus::Failed => "failed",
    }
}

/// Go's `time.Duration` text for the durations autopilot prints.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        if d.is_zero() {
            return "0s".into();
        }
        return format!("{}µs", d.as_micros());
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let t = format!("{secs:.3}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        return format!("{t}s");
    }
    let total = d.as_secs();
    let (h, m, sec) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else {
        format!("{m}m{sec}s")
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `/v1/operator/autopilot/health`'s body.
pub fn health_json(h: &ClusterHealth) -> Value {
    let servers: Vec<Value> = h
        .servers
        .iter()
        .map(|x| {
            json!({
                "ID": x.id,
                "Name": x.name,
                "Address": x.address,
                "SerfStatus": x.serf_status,
                "Version": x.version,
                "Leader": x.leader,
                "LastContact": x.last_contact.map(go_duration).unwrap_or_default(),
                "LastTerm": x.last_term,
                "LastIndex": x.last_index,
                "Healthy": x.healthy,
                "Voter": x.voter,
                "StableSince": rfc3339(x.stable_since),
            })
        })
        .collect();
    json!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "Servers": servers,
    })
}

/// `/v1/operator/autopilot/state`'s body.
pub fn state_json(h: &ClusterHealth) -> Value {
    let mut servers = serde_json::Map::new();
    let mut voters = Vec::new();
    let mut leader = String::new();
    for x in &h.servers {
        let status = match (x.leader, x.voter) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "non-voter",
        };
        if x.voter {
            voters.push(x.id.clone());
        }
        if x.leader {
            leader = x.id.clone();
        }
        servers.insert(
            x.id.clone(),
            json!({
                "ID": x.id,
                "Name": x.name,
                "Address": x.address,
                "NodeStatus": x.serf_status,
                "Version": x.version,
                "LastContact": x.last_contact.map(go_duration).unwrap_or_default(),
                "LastTerm": x.last_term,
                "LastIndex": x.last_index,
                "Healthy": x.healthy,
                "StableSince": rfc3339(x.stable_since),
                "ReadReplica": false,
                "Status": status,
                "Meta": {},
                "NodeType": "voter",
            }),
        );
    }
    json!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "OptimisticFailureTolerance": h.optimistic_failure_tolerance,
        "Servers": servers,
        "Leader": leader,
        "Voters": voters,
        "ReadReplicas": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
