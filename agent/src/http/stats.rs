//! The `Stats` of `/v1/agent/self` (what `tribune info` prints), with
//! Consul's sections and keys: `agent`, `build`, `consul`, `raft` (servers),
//! `runtime` and `serf_lan`. Every value is a string, as in Consul; values
//! tribune has no equivalent for are left out rather than invented.

use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::cluster::gossip::MemberStatus;
use crate::local::Probe;

/// A duration in milliseconds as Go prints a `time.Duration`.
fn go_ms(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        1..=999 => format!("{ms}ms"),
        _ if ms.is_multiple_of(1000) => {
            gocompat::duration::short(std::time::Duration::from_millis(ms))
        }
        _ => {
            let frac = format!("{:03}", ms % 1000);
            format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'))
        }
    }
}

/// Go's names for the CPU architectures (`GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        other => other,
    }
}

fn agent_stats(s: &AppState) -> Value {
    let checks = s.local.checks();
    let count = |f: fn(&Probe) -> bool| checks.iter().filter(|c| f(&c.def.probe)).count();
    json!({
        "check_monitors": count(|p| matches!(p, Probe::Script { .. })).to_string(),
        "check_ttls": count(|p| matches!(p, Probe::Ttl { .. })).to_string(),
        "checks": checks.len().to_string(),
        "services": s.local.services().len().to_string(),
    })
}

fn consul_stats(s: &AppState) -> Value {
    if s.raft.is_none() {
        let servers = s.gossip.as_ref().map_or(0, |g| g.alive_servers().len());
        return json!({ "server": "false", "known_servers": servers.to_string() });
    }
    let c = &s.config;
    json!({
        "server": "true",
        "leader": s.leadership.is_serving_leader().to_string(),
        "leader_addr": s.leadership.leader_addr(),
        "bootstrap": (c.bootstrap || c.bootstrap_expect == Some(1)).to_string(),
        // A count: the order (WAN distances) does not matter here.
        "known_datacenters": s.router.sorted_dcs(|_| None).len().to_string(),
        "acl": "disabled",
    })
}

fn raft_stats(s: &AppState) -> Option<Value> {
    let raft = s.raft.as_ref()?;
    let m = raft.metrics().borrow().clone();
    let last_log = raft.data_metrics().borrow().last_log;
    let state = match m.state {
        openraft::ServerState::Leader => "Leader",
        openraft::ServerState::Candidate => "Candidate",
        openraft::ServerState::Shutdown => "Shutdown",
        // A learner is a follower without a vote (raft's nonvoter).
        _ => "Follower",
    };
    // Servers are named by node ID, as Consul's raft IDs are.
    let ids: std::collections::HashMap<u64, String> = s
        .gossip
        .as_ref()
        .map(|g| {
            g.members()
                .into_iter()
                .map(|x| (x.ident.raft_id, x.ident.node_id))
                .collect()
        })
        .unwrap_or_default();
    let servers = s.leadership.servers();
    let config: Vec<String> = servers
        .iter()
        .map(|(id, addr, voter)| {
            let id = ids.get(id).cloned().unwrap_or_else(|| id.to_string());
            let suffrage = if *voter { "Voter" } else { "Nonvoter" };
            format!("{{Suffrage:{suffrage} ID:{id} Address:{addr}}}")
        })
        .collect();
    let voters_else = servers
        .iter()
        .filter(|(id, _, voter)| *voter && *id != s.raft_id)
        .count();
    let last_contact = if s.leadership.is_leader() {
        "0".to_string()
    } else if s.leadership.known() {
        go_ms(s.leadership.last_contact_ms())
    } else {
        "never".to_string()
    };
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    Some(json!({
        "state": state,
        "term": m.current_term.to_string(),
        "last_log_index": last_log.map(|l| l.index).unwrap_or(0).to_string(),
        "last_log_term": last_log.map(|l| l.leader_id.term).unwrap_or(0).to_string(),
        "applied_index": applied.to_string(),
        "last_snapshot_index": m.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
        "last_snapshot_term": m.snapshot.map(|l| l.leader_id.term).unwrap_or(0).to_string(),
        "latest_configuration": format!("[{}]", config.join(" ")),
        "latest_configuration_index": m
            .membership_config
            .log_id()
            .map(|l| l.index)
            .unwrap_or(0)
            .to_string(),
        "num_peers": voters_else.to_string(),
        "last_contact": last_contact,
        "protocol_version": "3",
    }))
}

fn runtime_stats() -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut v = json!({
        "os": std::env::consts::OS,
        "arch": go_arch(),
        "cpu_count": cpus.to_string(),
        "version": env!("TRIBUNE_RUSTC_VERSION"),
    });
    // Go's goroutines and GOMAXPROCS: tokio's live tasks and workers.
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        let m = h.metrics();
        v["goroutines"] = json!(m.num_alive_tasks().to_string());
        v["max_procs"] = json!(m.num_workers().to_string());
    }
    v
}

fn serf_lan_stats(s: &AppState) -> Option<Value> {
    let members = s.gossip.as_ref()?.members();
    let with = |st: MemberStatus| members.iter().filter(|m| m.status == st).count();
    Some(json!({
        "members": members.len().to_string(),
        "failed": with(MemberStatus::Failed).to_string(),
        "left": with(MemberStatus::Left).to_string(),
        "encrypted": "false",
    }))
}

/// Every section of the agent's `Stats`.
pub fn stats(s: &AppState) -> Value {
    let mut out = Map::new();
    out.insert("agent".into(), agent_stats(s));
    // `version` is the Consul API's, as in `Config.Version`; tribune's own
    // goes beside it.
    out.insert(
        "build".into(),
        json!({
            "prerelease": "",
            "revision": "",
            "version": crate::version::CONSUL_API,
            "version_metadata": "",
            "tribune_version": crate::version::TRIBUNE,
        }),
    );
    out.insert("consul".into(), consul_stats(s));
    if let Some(r) = raft_stats(s) {
        out.insert("raft".into(), r);
    }
    out.insert("runtime".into(), runtime_stats());
    if let Some(lan) = serf_lan_stats(s) {
        out.insert("serf_lan".into(), lan);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_ms(0), "0s");
        assert_eq!(go_ms(12), "12ms");
        assert_eq!(go_ms(1500), "1.5s");
        assert_eq!(go_ms(2000), "2s");
        assert_eq!(go_ms(61_000), "1m1s");
    }
}
