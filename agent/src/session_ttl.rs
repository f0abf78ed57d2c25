//! Session TTL expiry: decided by the leader, replicated through raft.
//!
//! Every server records, when it applies a session's create or renew, the
//! local time of it (soft state in [`crate::state::SessionTable`]). Only a
//! leader whose state includes every committed write acts on it: a session
//! whose TTL × 2 (Consul's grace) has passed since the later of its last
//! renewal and the moment this node took office is expired with a raft
//! write naming the renewal it saw. So timers restart on a leader change and
//! never fire early, and a renew that commits first wins the race.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::raft::leadership::Leadership;
use crate::raft::proposer::Proposer;
use crate::state::{Command, SessionCommand, Store};

/// How often leadership is looked at; also the longest sleep between scans.
const POLL: Duration = Duration::from_secs(1);

/// Expire lapsed TTL sessions while this node leads, until `stop`.
pub async fn run(
    store: Arc<Store>,
    leadership: Arc<Leadership>,
    proposer: Proposer,
    stop: CancellationToken,
) {
    let mut leader_since: Option<std::time::Instant> = None;
    loop {
        let mut next = Instant::now() + POLL;
        if leadership.ready() {
            let since = *leader_since.get_or_insert_with(std::time::Instant::now);
            let now = std::time::Instant::now();
            let (due, soonest, active) = {
                let t = store.read();
                let (due, soonest) = t.sessions.ttl_scan(since, now);
                let active = t
                    .sessions
                    .list()
                    .filter(|s| !s.ttl_duration.is_zero())
                    .count();
                (due, soonest, active)
            };
            // Consul's leader reports its TTL sessions as this gauge.
            metrics::gauge!("session_ttl.active").set(active as f64);
            for (id, renew_index) in due {
                let cmd = Command::Session(SessionCommand::Expire {
                    id: id.clone(),
                    renew_index,
                });
                let _t = crate::telemetry::timer("session_ttl.invalidate");
                match proposer.write(cmd).await {
                    Ok(_) => tracing::info!(session = %id, "session TTL expired; invalidated"),
                    Err(e) => {
                        tracing::debug!(session = %id, error = %e, "session expiry not written")
                    }
                }
            }
            if let Some(s) = soonest {
                next = next.min(Instant::from_std(s));
            }
        } else {
            leader_since = None;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}
