//! Building a raft node and tracking who leads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::RwLock;

use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::StateMachine;
use super::{Node, NodeId, Raft, StoreError};
use crate::state::Store;

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error("raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Fatal(Box<openraft::error::Fatal<NodeId>>),
    #[error("raft initialize: {0}")]
    Init(String),
}

impl From<openraft::error::Fatal<NodeId>> for RaftStartError {
    fn from(e: openraft::error::Fatal<NodeId>) -> Self {
        Self::Fatal(Box::new(e))
    }
}

pub struct RaftOptions {
    pub id: NodeId,
    /// Advertised raft RPC address (`ip:port`), shown by `/v1/status/*`.
    pub addr: String,
    /// `None` = in-memory (`-dev`).
    pub data_dir: Option<PathBuf>,
    pub raft_multiplier: u64,
    pub snapshot_threshold: u64,
    /// Form a one-voter cluster if none exists yet.
    pub bootstrap: bool,
    pub network: Network,
}

/// Leadership as handlers need it, readable without touching raft.
#[derive(Default)]
pub struct Leadership {
    /// A leader is known.
    known: AtomicBool,
    /// This node leads and has applied an entry of its own term, so its state
    /// includes every committed write: default-consistency reads may be served.
    ready: AtomicBool,
    leader_addr: RwLock<String>,
    peers: RwLock<Vec<String>>,
    /// Milliseconds since the leader was last heard from (0 on the leader).
    last_contact: AtomicU64,
    /// This node is the raft leader (possibly not yet `ready`).
    leader_here: AtomicBool,
    /// Voters and learners: (raft id, address, voter).
    servers: RwLock<Vec<(NodeId, String, bool)>>,
}

impl Leadership {
    pub fn known(&self) -> bool {
        self.known.load(Ordering::Relaxed)
    }
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn leader_addr(&self) -> String {
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
}

pub struct RaftNode {
    pub raft: Raft,
    pub leadership: Arc<Leadership>,
    log: LogStore,
}

impl RaftNode {
    pub async fn start(opts: RaftOptions, store: Arc<Store>) -> Result<Self, RaftStartError> {
        let m = opts.raft_multiplier.max(1);
        let config = Config {
            cluster_name: "tribune".into(),
            heartbeat_interval: 50 * m,
            election_timeout_min: 300 * m,
            election_timeout_max: 600 * m,
            install_snapshot_timeout: 2000 * m,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: 1024.min(opts.snapshot_threshold),
            ..Default::default()
        }
        .validate()?;
        let (log, sm) = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(StoreError::from)?;
                (
                    LogStore::open(dir)?,
                    StateMachine::open(dir, store.clone())?,
                )
            }
            None => (LogStore::memory(), StateMachine::memory(store.clone())),
        };
        let raft = Raft::new(opts.id, Arc::new(config), opts.network, log.clone(), sm).await?;
        if opts.bootstrap {
            if !raft.is_initialized().await? {
                let members = BTreeMap::from([(opts.id, Node::new(opts.addr.clone()))]);
                raft.initialize(members)
                    .await
                    .map_err(|e| RaftStartError::Init(e.to_string()))?;
            } else {
                // A lone voter restarting need not wait out an election timeout.
                let m = raft.metrics().borrow().membership_config.clone();
                let voters: Vec<NodeId> = m.membership().voter_ids().collect();
                if voters == [opts.id] {
                    raft.trigger().elect().await?;
                }
            }
        }
        let leadership = Arc::new(Leadership::default());
        tokio::spawn(track_leadership(raft.clone(), leadership.clone()));
        Ok(Self {
            raft,
            leadership,
            log,
        })
    }

    /// Stop raft and flush the log writer.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let log = self.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

async fn track_leadership(raft: Raft, l: Arc<Leadership>) {
    let mut rx = raft.metrics();
    let mut last_heard = Instant::now();
    loop {
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
            *l.leader_addr.write() = leader.as_ref().map(addr_of).unwrap_or_default();
            *l.peers.write() = membership.voter_ids().map(|id| addr_of(&id)).collect();
            let voters: std::collections::HashSet<NodeId> = membership.voter_ids().collect();
            *l.servers.write() = membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
                .collect();
            let is_leader = m.state == ServerState::Leader;
            l.leader_here.store(is_leader, Ordering::Relaxed);
            let own_term_applied = m.last_applied.map(|a| a.leader_id.term) == Some(m.current_term);
            l.ready
                .store(is_leader && own_term_applied, Ordering::Relaxed);
            if is_leader || leader.is_some() {
                last_heard = Instant::now();
            }
            let contact = if is_leader {
                0
            } else {
                last_heard.elapsed().as_millis() as u64
            };
            l.last_contact.store(contact, Ordering::Relaxed);
        }
        if rx.changed().await.is_err() {
            l.known.store(false, Ordering::Relaxed);
            l.ready.store(false, Ordering::Relaxed);
            return;
        }
    }
}
