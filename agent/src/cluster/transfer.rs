//! Leadership transfer: `tribune operator raft transfer-leader [-id]` and
//! `POST /v1/operator/raft/transfer-leader[?id=]`.
//!
//! openraft 0.9 has no transfer of its own, so the leader arranges an
//! ordinary election that only the target can start: it stops its
//! heartbeats and asks every other server (itself included) to stand for
//! no election for a while ([`hold`], lapsing on its own if the leader dies
//! mid-way), then, once the voters' leader lease has run out, asks the
//! target to stand. Raft's own rules keep it safe: the target wins only
//! with a quorum's votes and a log at least as complete as theirs (it is
//! checked caught up first). The leader's heartbeats resume whatever
//! happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::app::Shared;
use crate::raft::NodeId;

/// What the leader asks of the other servers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Ask {
    /// Stand for no election for this many milliseconds.
    Hold(u64),
    /// Stand for election now.
    Elect,
    /// Elections allowed again (the transfer is over).
    Release,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("not a server")]
    NotServer,
    #[error("cannot find peer to transfer leadership to")]
    NoPeer,
    #[error("cannot transfer leadership to itself")]
    ToSelf,
    #[error("{0} is not a voter of the raft configuration")]
    NotVoter(String),
    #[error("leadership transfer in progress")]
    InProgress,
    #[error("server {0} did not catch up with the leader's log in time")]
    Behind(NodeId),
    #[error("server {id}: {err}")]
    Rpc { id: NodeId, err: String },
    #[error("this server's raft storage is failing; it is handing over leadership by itself")]
    StorageFailing,
    #[error("leadership was not transferred within {0:?}")]
    Timeout(Duration),
}

/// Why a server did not do what the leader asked ([`answer`]); it
/// travels back over server RPC.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum AskError {
    #[error("not a server")]
    NotServer,
    #[error("standing for election: {0}")]
    Elect(String),
}

/// Held while this leader transfers leadership: one transfer at a time.
static TRANSFERRING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Milliseconds (on [`Instant`] since the first hold) until which this
/// server stands for no election.
static HOLD_UNTIL: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Stand for no election for `ms` (bounded by the caller); elections are
/// allowed again once the last hold asked for has passed.
pub fn hold(s: &Shared, raft: &crate::raft::Raft, ms: u64) {
    let until = now_ms() + ms;
    HOLD_UNTIL.fetch_max(until, Ordering::Relaxed);
    raft.runtime_config().elect(false);
    let (s, raft) = (s.clone(), raft.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let until = HOLD_UNTIL.load(Ordering::Relaxed);
        if until != 0 && now_ms() >= until {
            release(&s, &raft);
        }
    });
}

/// Elections allowed again at once (unless failing storage keeps this
/// server out of them: see `raft::node`).
pub fn release(s: &Shared, raft: &crate::raft::Raft) {
    HOLD_UNTIL.store(0, Ordering::Relaxed);
    if !s.leadership.storage().failing() {
        raft.runtime_config().elect(true);
    }
}

/// Answer a leader's [`Ask`] (RPC `/rpc/raft/transfer`).
pub async fn answer(s: &Shared, ask: Ask) -> Result<(), AskError> {
    let raft = s.raft.as_ref().ok_or(AskError::NotServer)?;
    match ask {
        // Bounded: a hold cannot keep a server out of elections for long.
        Ask::Hold(ms) => hold(s, raft, ms.min(60_000)),
        Ask::Release => release(s, raft),
        Ask::Elect => {
            tracing::info!("standing for election: the leader transfers leadership here");
            raft.trigger()
                .elect()
                .await
                .map_err(|e| AskError::Elect(e.to_string()))?;
        }
    }
    Ok(())
}

/// Resolve `-id` (a node ID or a raft id) to a voter's raft id.
pub fn resolve(s: &Shared, id: &str) -> Result<NodeId, TransferError> {
    let by_node_id = s.gossip.as_ref().and_then(|g| {
        g.members()
            .into_iter()
            .find(|m| m.ident.server && (m.ident.node_id == id || m.ident.name == id))
            .map(|m| m.ident.raft_id)
    });
    let raft_id = by_node_id.or_else(|| id.parse::<u64>().ok());
    s.leadership
        .servers()
        .into_iter()
        .find(|(x, _, voter)| Some(*x) == raft_id && *voter)
        .map(|(x, _, _)| x)
        .ok_or_else(|| TransferError::NotVoter(id.to_string()))
}

/// On the leader: move leadership to `target` (else the most caught-up
/// voter); returns the new leader's raft id.
pub async fn transfer(s: &Shared, target: Option<NodeId>) -> Result<NodeId, TransferError> {
    let raft = s.raft.as_ref().ok_or(TransferError::NotServer)?;
    if s.leadership.storage().failing() {
        // It hands over by itself (see `raft::node`).
        return Err(TransferError::StorageFailing);
    }
    let Ok(_one) = TRANSFERRING.try_lock() else {
        return Err(TransferError::InProgress);
    };
    let me = s.raft_id;
    let servers = s.leadership.servers();
    let others: Vec<(NodeId, String)> = servers
        .iter()
        .filter(|(id, _, voter)| *voter && *id != me)
        .map(|(id, addr, _)| (*id, addr.clone()))
        .collect();
    let matched = |id: NodeId| {
        let m = raft.metrics().borrow().clone();
        let got = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        (got, m.last_log_index)
    };
    let target = match target {
        Some(t) if t == me => return Err(TransferError::ToSelf),
        Some(t) => t,
        None => others
            .iter()
            .max_by_key(|(id, _)| matched(*id).0)
            .map(|(id, _)| *id)
            .ok_or(TransferError::NoPeer)?,
    };
    let Some(target_addr) = others.iter().find(|x| x.0 == target).map(|x| x.1.clone()) else {
        return Err(TransferError::NotVoter(target.to_string()));
    };
    let cfg = raft.config().clone();
    let lease = Duration::from_millis(cfg.election_timeout_max);
    let hold_for = lease * 4 + Duration::from_secs(1);
    // The target must hold every entry the leader has.
    let caught_up = async {
        loop {
            let (got, last) = matched(target);
            if got >= last {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(lease, caught_up).await.is_err() {
        return Err(TransferError::Behind(target));
    }
    tracing::info!(target = target, "transferring leadership");
    raft.runtime_config().heartbeat(false);
    let result = run(s, target, &target_addr, &others, lease, hold_for).await;
    if !s.leadership.storage().failing() {
        raft.runtime_config().heartbeat(true);
    }
    release(s, raft);
    for (_, addr) in others.iter().filter(|x| x.0 != target) {
        let _: Result<Result<(), AskError>, _> = s
            .rpc
            .call(
                addr,
                "/rpc/raft/transfer",
                &Ask::Release,
                Duration::from_secs(2),
                0,
            )
            .await;
    }
    match &result {
        Ok(()) => tracing::info!(target = target, "leadership transferred"),
        Err(e) => tracing::warn!(target = target, error = %e, "leadership transfer failed"),
    }
    result.map(|()| target)
}

async fn run(
    s: &Shared,
    target: NodeId,
    target_addr: &str,
    others: &[(NodeId, String)],
    lease: Duration,
    hold_for: Duration,
) -> Result<(), TransferError> {
    let raft = s.raft.as_ref().ok_or(TransferError::NotServer)?;
    let hold_ms = hold_for.as_millis() as u64;
    hold(s, raft, hold_ms);
    let ask = |id: NodeId, addr: String, a: Ask| async move {
        // The RPC client's result: the call's, then the server's answer.
        let r: Result<Result<(), AskError>, _> = s
            .rpc
            .call(&addr, "/rpc/raft/transfer", &a, Duration::from_secs(2), 0)
            .await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
        .map_err(|err| TransferError::Rpc { id, err })
    };
    // A server that does not answer cannot stand either; the others hold.
    for (id, addr) in others.iter().filter(|x| x.0 != target) {
        if let Err(e) = ask(*id, addr.clone(), Ask::Hold(hold_ms)).await {
            tracing::debug!(error = %e, "transfer: hold");
        }
    }
    // Voters grant no vote while the lease of the last heartbeat holds.
    tokio::time::sleep(lease + Duration::from_millis(cfg_heartbeat(raft))).await;
    ask(target, target_addr.to_string(), Ask::Elect).await?;
    let deadline = Instant::now() + hold_for;
    while Instant::now() < deadline {
        let leader = raft.metrics().borrow().current_leader;
        if leader == Some(target) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(TransferError::Timeout(hold_for))
}

fn cfg_heartbeat(raft: &crate::raft::Raft) -> u64 {
    raft.config().heartbeat_interval
}
