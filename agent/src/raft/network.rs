//! Raft RPC between servers, over the server RPC port
//! ([`crate::rpc::client`]): one pooled HTTP/2 connection per peer.
//!
//! openraft bounds an append by its number of entries only; entries can be
//! large (group-commit batches, restore pieces), so an append is cut to
//! about `APPEND_BUDGET` bytes and reported as a partial success: the rest
//! goes in the next one, and no append outgrows the RPC body limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Entry, Node, NodeId, TypeConfig};
use crate::rpc::client::{RpcClient, RpcError};
use crate::state::{Command, KvCommand, RestoreCommand};

/// An append carries entries of about this many bytes at most (at least
/// one entry, whatever its size); well under the RPC body limit.
const APPEND_BUDGET: usize = 16 << 20;

/// About how many bytes `e` takes on the wire (cheap: no encoding).
fn entry_size(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(c) => command_size(c),
        _ => 256,
    }
}

fn command_size(c: &Command) -> usize {
    match c {
        Command::Kv(
            KvCommand::Set { key, value, .. }
            | KvCommand::Acquire { key, value, .. }
            | KvCommand::Release { key, value, .. },
        ) => key.len() + value.len() + 64,
        Command::Kv(KvCommand::Txn(ops)) => ops
            .iter()
            .map(|o| o.key.len() + o.value.len() + o.session.len() + 64)
            .sum(),
        Command::Batch(cmds) => cmds.iter().map(command_size).sum::<usize>() + 16,
        Command::Restore(RestoreCommand::Chunk { data, .. }) => data.len() + 64,
        other => bincode::serialized_size(other).map_or(APPEND_BUDGET, |n| n as usize),
    }
}

/// How many of `entries` fit the budget (at least one).
fn fitting(entries: &[Entry]) -> usize {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        total += entry_size(e);
        if total > APPEND_BUDGET && i > 0 {
            return i;
        }
    }
    entries.len()
}

/// Between repeats of "failed to contact" for a peer that stays down.
const REPEAT_FAILURE: Duration = Duration::from_secs(60);

/// Whether each peer answers, so the log says when one stops and when it
/// is back (openraft's own per-attempt errors are kept quiet).
#[derive(Default)]
struct Reachability {
    /// Failing peers: since when, last logged, attempts failed.
    failing: HashMap<NodeId, (Instant, Instant, u64)>,
}

impl Reachability {
    fn failed(&mut self, id: NodeId, addr: &str, e: &RpcError) {
        let now = Instant::now();
        match self.failing.get_mut(&id) {
            None => {
                self.failing.insert(id, (now, now, 1));
                tracing::warn!(peer = %addr, error = %e, "failed to contact peer");
            }
            Some((_, logged, n)) => {
                *n += 1;
                if logged.elapsed() >= REPEAT_FAILURE {
                    *logged = now;
                    tracing::warn!(peer = %addr, failures = *n, error = %e, "failed to contact peer");
                }
            }
        }
    }

    fn answered(&mut self, id: NodeId, addr: &str) {
        if let Some((since, _, _)) = self.failing.remove(&id) {
            let after = gocompat::duration::short(Duration::from_millis(
                since.elapsed().as_millis() as u64,
            ));
            tracing::info!(peer = %addr, after = %after, "peer reachable again");
        }
    }
}

/// Creates clients for peers.
#[derive(Clone, Default)]
pub struct Network {
    rpc: RpcClient,
    reach: Arc<Mutex<Reachability>>,
}

impl Network {
    pub fn new(rpc: RpcClient) -> Self {
        Self {
            rpc,
            reach: Arc::default(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    node: Node,
    rpc: RpcClient,
    reach: Arc<Mutex<Reachability>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            rpc: self.rpc.clone(),
            reach: self.reach.clone(),
        }
    }
}

impl PeerClient {
    async fn call<Q, A, E>(
        &self,
        path: &str,
        req: &Q,
        ttl: Duration,
    ) -> Result<A, RPCError<NodeId, Node, E>>
    where
        Q: Serialize,
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let r: Result<Result<A, E>, RpcError> = self
            .rpc
            .call(
                &self.node.addr,
                path,
                req,
                ttl.max(Duration::from_millis(50)),
                0,
            )
            .await;
        match &r {
            Ok(_) => self.reach.lock().answered(self.target, &self.node.addr),
            Err(e) => self.reach.lock().failed(self.target, &self.node.addr, e),
        }
        match r {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))),
            Err(e) if e.not_sent() => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let keep = fitting(&rpc.entries);
        if keep == rpc.entries.len() {
            return self.call("/rpc/raft/append", &rpc, option.hard_ttl()).await;
        }
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        match self
            .call("/rpc/raft/append", &rpc, option.hard_ttl())
            .await?
        {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(last)),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/rpc/raft/snapshot", &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/rpc/raft/vote", &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn chunk(index: u64, len: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Restore(RestoreCommand::Chunk {
                id: 1,
                seq: index as u32,
                data: vec![0; len],
            })),
        }
    }

    #[test]
    fn appends_are_cut_to_the_budget() {
        let small: Vec<Entry> = (1..=300).map(|i| chunk(i, 100)).collect();
        assert_eq!(fitting(&small), 300);
        let big: Vec<Entry> = (1..=300).map(|i| chunk(i, 1 << 20)).collect();
        assert_eq!(fitting(&big), 15);
        // one entry over the budget still goes, alone
        let huge = vec![chunk(1, APPEND_BUDGET + 1), chunk(2, 1)];
        assert_eq!(fitting(&huge), 1);
    }
}
