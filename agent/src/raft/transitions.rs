//! Raft's state changes as Consul logs them: `entering follower state`,
//! `entering candidate state`, `entering leader state`, then
//! `cluster leadership acquired` / `lost` and `New leader elected`, one
//! line each, read from openraft's metrics (whose own log is kept quiet).

use std::sync::Arc;

use openraft::ServerState;

use super::{NodeId, Raft};

/// Names a raft node (its node name, from gossip) when known.
pub type Names = Arc<dyn Fn(NodeId) -> Option<String> + Send + Sync>;

fn state_word(s: ServerState) -> Option<(&'static str, &'static str)> {
    match s {
        ServerState::Leader => Some(("leader", "Leader")),
        ServerState::Candidate => Some(("candidate", "Candidate")),
        // A learner is a follower that does not vote (raft's nonvoter).
        ServerState::Follower | ServerState::Learner => Some(("follower", "Follower")),
        ServerState::Shutdown => None,
    }
}

/// Log transitions of `raft` (advertised at `addr`) until it stops.
pub fn spawn(raft: Raft, addr: String, names: Names) {
    tokio::spawn(async move {
        let mut rx = raft.metrics();
        let mut last_state: Option<ServerState> = None;
        let mut last_leader: Option<NodeId> = None;
        loop {
            let (state, leader, term, leader_addr) = {
                let m = rx.borrow_and_update();
                let leader_addr = m
                    .current_leader
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
                    .map(|n| n.addr)
                    .unwrap_or_default();
                (m.state, m.current_leader, m.current_term, leader_addr)
            };
            // A learner turning voter is still a follower to Consul's eyes.
            let same = |a: ServerState, b: ServerState| state_word(a) == state_word(b);
            if last_state.is_none_or(|l| !same(l, state)) {
                log_state(state, last_state, &addr, term, &leader_addr, leader);
                last_state = Some(state);
            }
            if leader.is_some() && leader != last_leader {
                let who = leader
                    .and_then(|l| names(l))
                    .unwrap_or_else(|| leader_addr.clone());
                tracing::info!(target: "agent.server", payload = %who, "New leader elected");
            }
            last_leader = leader;
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}

fn log_state(
    state: ServerState,
    last: Option<ServerState>,
    addr: &str,
    term: u64,
    leader_addr: &str,
    leader: Option<NodeId>,
) {
    if last == Some(ServerState::Leader) {
        tracing::info!(target: "agent.server", "cluster leadership lost");
    }
    let Some((word, tag)) = state_word(state) else {
        return;
    };
    metrics::counter!(format!("raft.state.{word}")).increment(1);
    let node = format!("Node at {addr} [{tag}]");
    match state {
        ServerState::Leader => {
            tracing::info!(leader = %node, "entering leader state");
            tracing::info!(target: "agent.server", "cluster leadership acquired");
        }
        ServerState::Candidate => {
            tracing::info!(node = %node, term, "entering candidate state");
        }
        _ => {
            let id = leader.map(|l| l.to_string()).unwrap_or_default();
            tracing::info!(
                follower = %node,
                "leader-address" = %leader_addr,
                "leader-id" = %id,
                "entering {word} state"
            );
        }
    }
}
