//! Building and starting a raft node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use super::disk::StorageHealth;
use super::leadership::Leadership;
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

/// Raft timing at raft_multiplier 1 (milliseconds).
const HEARTBEAT_MS: u64 = 50;
const ELECTION_MIN_MS: u64 = 300;
const ELECTION_MAX_MS: u64 = 450;

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

pub struct RaftNode {
    pub raft: Raft,
    pub leadership: Arc<Leadership>,
    log: LogStore,
}

impl RaftNode {
    pub async fn start(opts: RaftOptions, store: Arc<Store>) -> Result<Self, RaftStartError> {
        let m = opts.raft_multiplier.max(1);
        // Every timing scales with raft_multiplier, as Consul scales its
        // raft's (heartbeat and election timeouts 1000 ms, leader lease
        // 500 ms, times the multiplier). An openraft 0.9 follower campaigns
        // once `election_timeout_max` (its lease on the leader) plus its
        // own timeout, drawn once from min..max, have passed without a
        // heartbeat, checked every 1.5 heartbeats: 750-975 ms at 1, after
        // a leader silent for 15 heartbeats or more. The leader's read lease
        // (`election_timeout_min`) stays well inside the no-vote window.
        let config = Config {
            cluster_name: "tribune".into(),
            heartbeat_interval: HEARTBEAT_MS * m,
            election_timeout_min: ELECTION_MIN_MS * m,
            election_timeout_max: ELECTION_MAX_MS * m,
            install_snapshot_timeout: 2000 * m,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: 1024.min(opts.snapshot_threshold),
            ..Default::default()
        }
        .validate()?;
        // Followers grant no vote for `election_timeout_max` after a
        // heartbeat (openraft's leader lease), and a restarted one does not
        // stand for `election_timeout_min`: the leader trusts its lease for
        // that long, which leaves room for clock drift.
        let lease = Duration::from_millis(config.election_timeout_min);
        let health = Arc::new(StorageHealth::default());
        let (log, sm) = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(StoreError::from)?;
                (
                    LogStore::open(dir, health.clone())?,
                    StateMachine::open(dir, store.clone(), health.clone())?,
                )
            }
            None => (LogStore::memory(), StateMachine::memory(store.clone())),
        };
        let (restored_tx, restored_rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = sm.on_restore(restored_tx);
        let raft = Raft::new(opts.id, Arc::new(config), opts.network, log.clone(), sm).await?;
        tokio::spawn(compact_after_restore(raft.clone(), restored_rx));
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
        tokio::spawn(step_aside_while_failing(raft.clone(), health.clone()));
        let leadership = Arc::new(Leadership::new(health));
        tokio::spawn(super::leadership::track(
            raft.clone(),
            leadership.clone(),
            lease,
        ));
        Ok(Self {
            raft,
            leadership,
            log,
        })
    }

    /// Stop raft and flush the log writer.
    pub async fn shutdown(&self) {
        // A write failing on a full disk would otherwise keep raft waiting.
        self.log.begin_close();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let log = self.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

/// While raft storage fails this server sends no heartbeats and stands
/// for no election: a leader whose disk is full then hands over to a
/// healthy server within an election timeout, rather than hold office it
/// cannot use (its heartbeats alone would keep the others from electing).
async fn step_aside_while_failing(raft: Raft, health: Arc<StorageHealth>) {
    loop {
        health.failed().await;
        let rc = raft.runtime_config();
        rc.heartbeat(false);
        rc.elect(false);
        tracing::warn!("raft storage failing: this server sends no heartbeats and stands for no election until it works again");
        health.recovered().await;
        let rc = raft.runtime_config();
        rc.heartbeat(true);
        rc.elect(true);
        tracing::info!("raft storage works again: heartbeats and elections resume");
    }
}
/// After a restore, snapshot at once and purge the log up to it: the
/// restore's pieces (the whole file) would otherwise stay in the log, in
/// memory, until the snapshot policy came round.
async fn compact_after_restore(raft: Raft, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>) {
    while let Some(mut index) = rx.recv().await {
        while let Ok(i) = rx.try_recv() {
            index = index.max(i);
        }
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        let built = raft
            .wait(Some(Duration::from_secs(300)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= index),
                "snapshot after restore",
            )
            .await;
        match built {
            Ok(_) => {
                if raft.trigger().purge_log(index).await.is_err() {
                    return;
                }
                tracing::info!(
                    index,
                    "snapshot taken after the restore; log purged up to it"
                );
            }
            Err(e) => tracing::warn!(error = %e, "no snapshot after the restore"),
        }
    }
}
