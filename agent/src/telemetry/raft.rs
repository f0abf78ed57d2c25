//! Raft series read from openraft's metrics each second:
//! `consul.raft.leader.lastContact` (on the leader, the time since a quorum
//! last acknowledged it — hashicorp/raft samples it per follower), the
//! and the `consul.raft.last_index` / `applied_index` gauges.

use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::super::raft::Raft;

pub fn spawn(raft: Raft, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let m = raft.metrics().borrow().clone();
            if m.state == ServerState::Leader {
                if let Some(ms) = m.millis_since_quorum_ack {
                    metrics::histogram!("raft.leader.lastContact").record(ms as f64);
                }
            }
            metrics::gauge!("raft.last_index").set(m.last_log_index.unwrap_or(0) as f64);
            let applied = m.last_applied.map_or(0, |l| l.index);
            metrics::gauge!("raft.applied_index").set(applied as f64);
        }
    });
}
