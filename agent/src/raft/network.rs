//! Raft RPC between servers, over the server RPC port
//! ([`crate::cluster::rpc`]): one pooled HTTP/2 connection per peer.

use std::time::Duration;

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

use super::{Node, NodeId, TypeConfig};
use crate::cluster::rpc::{RpcClient, RpcError};

/// Creates clients for peers.
#[derive(Clone, Default)]
pub struct Network {
    rpc: RpcClient,
}

impl Network {
    pub fn new(rpc: RpcClient) -> Self {
        Self { rpc }
    }
}

pub struct PeerClient {
    target: NodeId,
    node: Node,
    rpc: RpcClient,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            rpc: self.rpc.clone(),
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
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/rpc/raft/append", &rpc, option.hard_ttl()).await
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
