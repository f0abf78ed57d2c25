//! Who leads, readable without touching raft: what handlers, forwarding
//! and DNS ask on every request (atomic loads), and the leader lease that
//! default reads rely on. `track` keeps it in step with raft's metrics.
//! [`Hold`] is how long a request waits for a leader to appear.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::ServerState;
use parking_lot::RwLock;
use tokio::sync::futures::Notified;

use super::disk::StorageHealth;
use super::{NodeId, Raft};

/// Leadership as handlers need it, readable without touching raft.
#[derive(Default)]
pub struct Leadership {
    /// A leader is known.
    known: AtomicBool,
    /// This node leads and has applied an entry of its own term, so its state
    /// includes every committed write.
    ready: AtomicBool,
    leader_addr: RwLock<String>,
    peers: RwLock<Vec<String>>,
    /// Milliseconds since the leader was last heard from (0 on the leader).
    last_contact: AtomicU64,
    /// This node is the raft leader (possibly not yet `ready`).
    leader_here: AtomicBool,
    /// Voters and learners: (raft id, address, voter).
    servers: RwLock<Vec<(NodeId, String, bool)>>,
    /// Default reads may be answered here until this time ([`clock_nanos`]):
    /// the leader lease. 0: not at all; `u64::MAX`: while this node leads
    /// (it is the only voter, so no other leader can be elected).
    lease_until: AtomicU64,
    storage: Arc<StorageHealth>,
    /// Woken when the leader changes (or this node takes or leaves office):
    /// requests held for a leader go at once, not at their next poll.
    changed: tokio::sync::Notify,
}

/// Monotonic nanoseconds since the process's first lease computation.
/// `Instant` is CLOCK_MONOTONIC, which runs on while the process is
/// stopped, so a lease measured before a SIGSTOP is expired after it.
fn clock_nanos(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    at.saturating_duration_since(base).as_nanos() as u64
}

impl Leadership {
    pub(super) fn new(storage: Arc<StorageHealth>) -> Self {
        clock_nanos(Instant::now());
        Self {
            storage,
            ..Default::default()
        }
    }

    /// A leader is known that can serve (not this node with failing storage).
    pub fn known(&self) -> bool {
        self.known.load(Ordering::Relaxed) && !self.stuck_leader()
    }
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// The leader's RPC address; empty if none is known or this node leads
    /// but cannot write.
    pub fn leader_addr(&self) -> String {
        if self.stuck_leader() {
            return String::new();
        }
        self.leader_addr.read().clone()
    }
    pub fn peers(&self) -> Vec<String> {
        self.peers.read().clone()
    }
    pub fn last_contact_ms(&self) -> u64 {
        self.last_contact.load(Ordering::Relaxed)
    }
    pub fn is_leader(&self) -> bool {
        self.leader_here.load(Ordering::Relaxed)
    }
    /// Raft configuration: (id, address, voter).
    pub fn servers(&self) -> Vec<(NodeId, String, bool)> {
        self.servers.read().clone()
    }

    /// This node may answer a default-consistency read from its own state:
    /// it leads, is `ready`, and its lease holds (a quorum acknowledged a
    /// heartbeat sent less than the lease ago, so no other leader can have
    /// been elected since). One atomic load and a clock read.
    pub fn lease_valid(&self) -> bool {
        let until = self.lease_until.load(Ordering::Acquire);
        until == u64::MAX || (until != 0 && clock_nanos(Instant::now()) < until)
    }

    /// This node is the only voter, leads and is `ready`: nobody else can
    /// be elected, so every read may be answered from local state.
    pub fn sole_leader(&self) -> bool {
        self.lease_until.load(Ordering::Acquire) == u64::MAX
    }

    /// Completes at the next change of leader (see `Self::changed`'s
    /// field); enable it (`Notified::enable`) before looking at the leader,
    /// so that a change in between is not missed.
    pub fn leader_changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// Raft storage on this node.
    pub fn storage(&self) -> &Arc<StorageHealth> {
        &self.storage
    }

    /// This node leads and can serve writes.
    pub fn is_serving_leader(&self) -> bool {
        self.is_leader() && !self.storage.failing()
    }

    /// This node leads but its storage fails: it cannot serve writes.
    fn stuck_leader(&self) -> bool {
        self.storage.failing() && self.leader_here.load(Ordering::Relaxed)
    }
}

/// How long a request waits for a leader to appear (Consul's rpc_hold_timeout).
const HOLD: Duration = Duration::from_secs(7);

/// A request's wait for a leader, shared by writes, forwarding and read
/// index rounds: tries until 7 s (`HOLD`) have passed, pausing between them.
pub struct Hold(tokio::time::Instant);

impl Hold {
    pub fn start() -> Self {
        Self(tokio::time::Instant::now() + HOLD)
    }

    pub fn over(&self) -> bool {
        tokio::time::Instant::now() >= self.0
    }

    /// Until `changed` fires (armed before the leader was last looked at,
    /// so no change is missed) or 50 ms: a client agent learns its servers
    /// from gossip, and nothing notifies it, so it polls.
    pub async fn pause(&self, changed: Option<Pin<&mut Notified<'_>>>) {
        let retry = Duration::from_millis(50);
        match changed {
            Some(c) => {
                let _ = tokio::time::timeout(retry, c).await;
            }
            None => tokio::time::sleep(retry).await,
        }
    }
}

pub(super) async fn track(raft: Raft, l: Arc<Leadership>, lease: Duration) {
    let mut rx = raft.metrics();
    let mut last_heard = Instant::now();
    // Every metrics value read after the first was sent after this instant
    // (the previous read): the lower bound the lease is measured from.
    let mut sent_after: Option<Instant> = None;
    // What the address fields were built from: openraft sends metrics on
    // every commit, and these change only with the membership or leader.
    let mut built_from = None;
    let mut sole_voter = false;
    loop {
        let now = Instant::now();
        {
            let m = rx.borrow_and_update();
            let membership = m.membership_config.membership();
            let addr_of = |id: &NodeId| {
                membership
                    .get_node(id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default()
            };
            let leader = m.current_leader;
            l.known.store(leader.is_some(), Ordering::Relaxed);
            let source = (*m.membership_config.log_id(), leader);
            let mut moved = false;
            if built_from != Some(source) {
                built_from = Some(source);
                let addr = leader.as_ref().map(addr_of).unwrap_or_default();
                moved = *l.leader_addr.read() != addr;
                *l.leader_addr.write() = addr;
                *l.peers.write() = membership.voter_ids().map(|id| addr_of(&id)).collect();
                let voters: std::collections::HashSet<NodeId> = membership.voter_ids().collect();
                *l.servers.write() = membership
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
                    .collect();
                sole_voter = voters.len() == 1 && voters.contains(&m.id);
            }
            let is_leader = m.state == ServerState::Leader;
            let moved = moved || l.leader_here.swap(is_leader, Ordering::Relaxed) != is_leader;
            let own_term_applied = m.last_applied.map(|a| a.leader_id.term) == Some(m.current_term);
            let ready = is_leader && own_term_applied;
            l.ready.store(ready, Ordering::Relaxed);
            let until = match (ready, sole_voter, sent_after, m.millis_since_quorum_ack) {
                (false, ..) => 0,
                (true, true, ..) => u64::MAX,
                (true, false, Some(t), Some(ms)) => lease_end(t, ms, lease),
                _ => 0,
            };
            l.lease_until.store(until, Ordering::Release);
            if is_leader || leader.is_some() {
                last_heard = Instant::now();
            }
            let contact = if is_leader {
                0
            } else {
                last_heard.elapsed().as_millis() as u64
            };
            l.last_contact.store(contact, Ordering::Relaxed);
            if let Err(e) = &m.running_state {
                stopped(&l, e);
            }
            if moved {
                l.changed.notify_waiters();
            }
        }
        sent_after = Some(now);
        if rx.changed().await.is_err() {
            l.known.store(false, Ordering::Relaxed);
            l.ready.store(false, Ordering::Relaxed);
            l.leader_here.store(false, Ordering::Relaxed);
            l.lease_until.store(0, Ordering::Release);
            return;
        }
    }
}

/// The end of the lease for metrics sent after `sent_after` that report the
/// last quorum acknowledgement `ms` milliseconds old. openraft times an
/// acknowledgement from when its heartbeat was sent, and counts `ms` when
/// it reports, which was after `sent_after`: so the acknowledgement was no
/// later than `sent_after - ms` (one more ms for the rounding down).
fn lease_end(sent_after: Instant, ms: u64, lease: Duration) -> u64 {
    let acked = clock_nanos(sent_after).checked_sub(ms.saturating_add(1).saturating_mul(1_000_000));
    match acked {
        Some(a) => a.saturating_add(lease.as_nanos() as u64),
        None => 0,
    }
}

/// Raft's core stopped: without a leader here, reads and writes go
/// elsewhere; an error other than shutdown makes the agent exit.
fn stopped(l: &Leadership, e: &openraft::error::Fatal<NodeId>) {
    l.known.store(false, Ordering::Relaxed);
    l.ready.store(false, Ordering::Relaxed);
    l.leader_here.store(false, Ordering::Relaxed);
    l.lease_until.store(0, Ordering::Release);
    l.changed.notify_waiters();
    if !matches!(e, openraft::error::Fatal::Stopped) {
        l.storage.report_fatal(format!(
            "raft stopped: {e}; exiting so that the agent restarts"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_counts_from_before_the_report() {
        let lease = Duration::from_millis(300);
        let t = Instant::now() + Duration::from_secs(1);
        let base = clock_nanos(t);
        // Acknowledged at least 21 ms (20 reported, rounded down) before `t`.
        assert_eq!(lease_end(t, 20, lease), base - 21_000_000 + 300_000_000);
        assert_eq!(lease_end(Instant::now(), u64::MAX, lease), 0);
    }

    #[test]
    fn lease_expires_and_a_lone_voter_keeps_it() {
        let l = Leadership::new(Arc::default());
        assert!(!l.lease_valid());
        let now = clock_nanos(Instant::now());
        l.lease_until.store(now + 200_000_000, Ordering::Release);
        assert!(l.lease_valid() && !l.sole_leader());
        l.lease_until
            .store(now.saturating_sub(1), Ordering::Release);
        assert!(!l.lease_valid());
        l.lease_until.store(u64::MAX, Ordering::Release);
        assert!(l.lease_valid() && l.sole_leader());
    }

    #[test]
    fn a_leader_that_cannot_write_is_not_named() {
        let l = Leadership::new(Arc::default());
        l.known.store(true, Ordering::Relaxed);
        l.leader_here.store(true, Ordering::Relaxed);
        *l.leader_addr.write() = "10.0.0.1:8300".into();
        assert_eq!(l.leader_addr(), "10.0.0.1:8300");
        l.storage
            .report_failure(super::super::disk::Part::Log, "disk full");
        assert!(!l.known() && l.leader_addr().is_empty() && !l.is_serving_leader());
        l.storage.report_ok(super::super::disk::Part::Log);
        assert!(l.known() && l.is_serving_leader());
    }

    /// A hold ends after [`HOLD`]; its pause ends at a leader change, or
    /// after 50 ms when none comes (virtual time: nothing sleeps).
    #[tokio::test(start_paused = true)]
    async fn hold_pauses_until_a_change_or_its_retry() {
        let l = Arc::new(Leadership::new(Arc::default()));
        let hold = Hold::start();
        let t = tokio::time::Instant::now();
        hold.pause(None).await;
        assert_eq!(t.elapsed(), Duration::from_millis(50));
        let changed = l.leader_changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let l2 = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            l2.changed.notify_waiters();
        });
        let t = tokio::time::Instant::now();
        hold.pause(Some(changed)).await;
        assert_eq!(t.elapsed(), Duration::from_millis(10));
        assert!(!hold.over());
        tokio::time::advance(HOLD).await;
        assert!(hold.over());
    }
}
