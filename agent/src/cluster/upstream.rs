//! Where requests this agent cannot answer itself go.

use std::sync::Arc;

use parking_lot::RwLock;
use rand::seq::SliceRandom;

use super::gossip::Gossip;
use crate::raft::leadership::Leadership;
use crate::rpc::client::RpcClient;

/// Where requests that this agent cannot answer itself go: the leader (from
/// a server) or any alive server (from a client agent).
///
/// Shared: each forwarded request holds a copy, which is one reference
/// count rather than a copy of the gossip handle and the addresses (a
/// clone and a drop per waiter of a fan-out, issue 18).
#[derive(Clone)]
pub struct Upstream(Arc<Inner>);

/// What every copy of an [`Upstream`] shares.
pub struct Inner {
    pub rpc: RpcClient,
    /// Set on servers.
    leadership: Option<Arc<Leadership>>,
    gossip: Gossip,
    /// This server's own RPC address, never a target.
    own_rpc: String,
    /// The server that answered last (clients stick to it).
    preferred: RwLock<Option<String>>,
}

impl std::ops::Deref for Upstream {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Upstream {
    pub fn new(
        rpc: RpcClient,
        leadership: Option<Arc<Leadership>>,
        gossip: Gossip,
        own_rpc: String,
    ) -> Self {
        Self(Arc::new(Inner {
            rpc,
            leadership,
            gossip,
            own_rpc,
            preferred: RwLock::new(None),
        }))
    }

    /// Candidate RPC addresses, best first. Empty while a server knows no
    /// leader (or leads itself).
    pub fn targets(&self) -> Vec<String> {
        if let Some(l) = &self.leadership {
            let a = l.leader_addr();
            if a.is_empty() || a == self.own_rpc || l.is_leader() {
                return vec![];
            }
            return vec![a];
        }
        let mut v: Vec<String> = self
            .gossip
            .alive_servers()
            .iter()
            .map(|i| i.rpc_addr().to_string())
            .collect();
        v.shuffle(&mut rand::thread_rng());
        if let Some(p) = self.preferred.read().as_ref() {
            if let Some(i) = v.iter().position(|x| x == p) {
                v.swap(0, i);
            }
        }
        v
    }

    pub fn good(&self, target: &str) {
        if self.leadership.is_none() && self.preferred.read().as_deref() != Some(target) {
            *self.preferred.write() = Some(target.to_string());
        }
    }

    pub fn bad(&self, target: &str) {
        let mut p = self.preferred.write();
        if p.as_deref() == Some(target) {
            *p = None;
        }
    }

    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }
}
