//! What servers do about membership.
//!
//! - Bootstrap: once `bootstrap_expect` servers of the datacenter are alive
//!   in gossip and none of them belongs to a raft cluster yet, the one with
//!   the lowest raft id initializes raft with all of them as voters; the
//!   others wait for its leader's first append. One initializer means one
//!   cluster, whatever the start order; a server restarted with its data dir
//!   is already initialized and simply rejoins.
//! - On the leader: an alive server not in the raft configuration is added
//!   (learner, then voter, replacing a dead server of the same name); a
//!   server that left is removed.
//! - On the leader: gossip health is mirrored into each node's
//!   `serfHealth` check (alive -> passing, failed -> critical), and nodes
//!   that left or were reaped are deregistered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use tokio_util::sync::CancellationToken;

use super::gossip::{Gossip, Ident, MemberStatus};
use crate::raft::leadership::Leadership;
use crate::raft::proposer::Proposer;
use crate::raft::Raft;
use crate::raft::{Node, NodeId};
use crate::rpc::client::RpcClient;
use crate::state::catalog::{serf_check, CatalogCommand, NodeRec, RegisterReq, SERF_CHECK};
use crate::state::{Command, Health, Store};
use serde::{Deserialize, Serialize};

/// What a server says about its raft state (bootstrap decisions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftInfo {
    pub id: NodeId,
    pub initialized: bool,
    pub leader: String,
    /// Milliseconds since this server last heard from the leader.
    pub last_contact_ms: u64,
    /// The term of this server's last log entry, and its index.
    pub last_term: u64,
    pub last_index: u64,
}

/// What autopilot works with — raft, the leadership view, the tables (to
/// compare with gossip), the proposer and the RPC client — not the agent's
/// whole state.
#[derive(Clone)]
pub struct Handles {
    /// `None` on a client agent.
    pub raft: Option<Raft>,
    pub leadership: Arc<Leadership>,
    pub store: Arc<Store>,
    pub proposer: Proposer,
    pub rpc: RpcClient,
}

/// Leader-only reaping of nodes unknown to gossip waits this long after
/// taking office, so gossip has converged first.
const REAP_GRACE: Duration = Duration::from_secs(15);

/// How often the leader refreshes `consul.autopilot.healthy` (Consul's
/// autopilot ServerHealthInterval is 2 s; this asks every server).
const HEALTH_EVERY: Duration = Duration::from_secs(10);

/// `refresh_health` starts a refresh of `consul.autopilot.healthy` (it asks
/// every server: the caller runs it off this loop).
pub async fn run(
    s: Handles,
    refresh_health: impl Fn() + Send,
    gossip: Gossip,
    expect: Option<u32>,
    stop: CancellationToken,
) {
    let mut changes = gossip.subscribe();
    let mut leading_since: Option<Instant> = None;
    let mut health_at: Option<Instant> = None;
    loop {
        // Poll fast until this server has led for a moment (a new leader
        // writes every node's serfHealth at once), then settle to 1 s.
        let mut tick = Duration::from_millis(100);
        if let Some(raft) = s.raft.as_ref() {
            if !raft.is_initialized().await.unwrap_or(true) {
                if let Some(n) = expect.filter(|n| *n > 1) {
                    maybe_bootstrap(&s, &gossip, n).await;
                }
            } else if s.leadership.ready() {
                let since = *leading_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    tick = Duration::from_secs(1);
                }
                reconcile_servers(&s, &gossip).await;
                reconcile_members(&s, &gossip, since.elapsed() >= REAP_GRACE).await;
                // consul.autopilot.healthy, as Consul's leader refreshes it
                // (aside: asking a stopped server must not hold this loop).
                if health_at.is_none_or(|t| t.elapsed() >= HEALTH_EVERY) {
                    health_at = Some(Instant::now());
                    refresh_health();
                }
            } else {
                leading_since = None;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn maybe_bootstrap(s: &Handles, gossip: &Gossip, expect: u32) {
    let Some(raft) = s.raft.as_ref() else { return };
    let servers = gossip.alive_servers();
    if (servers.len() as u32) < expect {
        return;
    }
    let me = gossip.me();
    for x in servers.iter().filter(|x| x.raft_id != me.raft_id) {
        if x.bootstrap_expect != 0 && x.bootstrap_expect != expect {
            tracing::error!(
                server = %x.name,
                theirs = x.bootstrap_expect,
                ours = expect,
                "servers disagree on bootstrap_expect; not bootstrapping"
            );
            return;
        }
        let info: Result<RaftInfo, _> = s
            .rpc
            .call(
                &x.rpc_addr().to_string(),
                "/rpc/raft/info",
                &(),
                Duration::from_secs(2),
                0,
            )
            .await;
        match info {
            Ok(i) if i.initialized => {
                tracing::info!(server = %x.name, "a raft cluster exists; waiting to be added");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(server = %x.name, error = %e, "bootstrap: server not reachable yet");
                return;
            }
        }
    }
    let lowest = servers.iter().map(|x| x.raft_id).min();
    if lowest != Some(me.raft_id) {
        return;
    }
    let members: BTreeMap<NodeId, Node> = servers
        .iter()
        .map(|x| (x.raft_id, Node::new(x.rpc_addr().to_string())))
        .collect();
    let names: Vec<&str> = servers.iter().map(|x| x.name.as_str()).collect();
    tracing::info!(
        servers = %names.join(", "),
        "found {expect} servers: bootstrapping the cluster"
    );
    if let Err(e) = raft.initialize(members).await {
        tracing::warn!(error = %e, "bootstrap");
    }
}

async fn reconcile_servers(s: &Handles, gossip: &Gossip) {
    let Some(raft) = s.raft.as_ref() else { return };
    let config = s.leadership.servers();
    let known: BTreeMap<NodeId, bool> = config.iter().map(|(id, _, v)| (*id, *v)).collect();
    let members = gossip.members();
    let dc = gossip.me().dc;
    let by_id: BTreeMap<NodeId, &Ident> = members
        .iter()
        .filter(|m| m.ident.server)
        .map(|m| (m.ident.raft_id, &m.ident))
        .collect();
    for m in members
        .iter()
        .filter(|m| m.ident.server && m.ident.dc == dc)
    {
        let id = m.ident.raft_id;
        match (m.status, known.get(&id)) {
            (MemberStatus::Alive, None) => {
                // A server replaced under the same name: drop the dead one.
                for (old, _, _) in &config {
                    let replaced = by_id.get(old).is_some_and(|o| o.name == m.ident.name)
                        && members
                            .iter()
                            .any(|o| o.ident.raft_id == *old && o.status != MemberStatus::Alive);
                    if *old != id && replaced {
                        let _ = remove_voter(s, *old).await;
                    }
                }
                tracing::info!(server = %m.ident.name, "adding server to the raft configuration");
                let node = Node::new(m.ident.rpc_addr().to_string());
                if let Err(e) = raft.add_learner(id, node, true).await {
                    tracing::warn!(server = %m.ident.name, error = %e, "add learner");
                    continue;
                }
                promote(raft, id, &m.ident.name).await;
            }
            (MemberStatus::Alive, Some(false)) => promote(raft, id, &m.ident.name).await,
            (MemberStatus::Left, Some(_)) => {
                tracing::info!(server = %m.ident.name, "server left: removing it from raft");
                if let Err(e) = remove_voter(s, id).await {
                    tracing::warn!(error = %e, "removing server");
                }
            }
            _ => {}
        }
    }
}

async fn promote(raft: &crate::raft::Raft, id: NodeId, name: &str) {
    if let Err(e) = raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
    {
        tracing::warn!(server = %name, error = %e, "promote to voter");
    }
}

/// Why a server was not removed from the raft configuration; it travels
/// back over server RPC when a follower forwards the removal.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RemoveError {
    #[error("not a server")]
    NotServer,
    /// Not (or no longer) a peer: a leaving server is done.
    #[error("no raft peer with id {0}")]
    NotAPeer(NodeId),
    #[error("No cluster leader")]
    NoLeader,
    #[error("refusing to remove the last voter")]
    LastVoter,
    #[error("asking the leader: {0}")]
    Rpc(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// Remove a server from the raft configuration. On a follower this is
/// forwarded to the leader.
pub async fn remove_voter(s: &Handles, id: NodeId) -> Result<(), RemoveError> {
    let Some(raft) = s.raft.as_ref() else {
        return Err(RemoveError::NotServer);
    };
    let config = s.leadership.servers();
    if !config.iter().any(|(x, _, _)| *x == id) {
        return Err(RemoveError::NotAPeer(id));
    }
    if !s.leadership.is_leader() {
        let leader = s.leadership.leader_addr();
        if leader.is_empty() {
            return Err(RemoveError::NoLeader);
        }
        let r: Result<Result<(), RemoveError>, _> = s
            .rpc
            .call(&leader, "/rpc/raft/remove", &id, Duration::from_secs(10), 1)
            .await;
        return r.map_err(|e| RemoveError::Rpc(e.to_string()))?;
    }
    let voters: BTreeSet<NodeId> = config.iter().filter(|x| x.2).map(|x| x.0).collect();
    if voters.len() == 1 && voters.contains(&id) {
        return Err(RemoveError::LastVoter);
    }
    let change = if voters.contains(&id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    raft.change_membership(change, false)
        .await
        .map(|_| ())
        .map_err(|e| RemoveError::Raft(e.to_string()))
}

async fn reconcile_members(s: &Handles, gossip: &Gossip, reap: bool) {
    let members = gossip.members();
    let dc = gossip.me().dc;
    let mut cmds = Vec::new();
    {
        let t = s.store.read();
        let cat = &t.catalog;
        for m in members.iter().filter(|m| m.ident.dc == dc) {
            let name = &m.ident.name;
            let want = match m.status {
                MemberStatus::Alive | MemberStatus::Leaving => Health::Passing,
                MemberStatus::Failed => Health::Critical,
                MemberStatus::Left => {
                    if cat.node(name).is_some() {
                        cmds.push(CatalogCommand::Deregister {
                            node: name.clone(),
                            service_id: None,
                            check_id: None,
                        });
                    }
                    continue;
                }
            };
            let check = serf_check(name, want);
            let current = cat.check(name, SERF_CHECK);
            if current.is_some_and(|c| c.same_content(&check)) {
                continue;
            }
            let existing = cat.node(name).cloned();
            if existing.is_none() && want != Health::Passing {
                continue;
            }
            let node = existing.clone().unwrap_or_else(|| NodeRec {
                id: m.ident.node_id.clone(),
                node: name.clone(),
                address: m.ident.addr.ip().to_string(),
                datacenter: dc.clone(),
                ..Default::default()
            });
            cmds.push(CatalogCommand::Register(Box::new(RegisterReq {
                node,
                skip_node_update: existing.is_some(),
                service: None,
                checks: vec![check],
            })));
        }
        if reap {
            let known: BTreeSet<&str> = members.iter().map(|m| m.ident.name.as_str()).collect();
            for n in cat.nodes() {
                let gossip_node = cat.check(&n.node, SERF_CHECK).is_some();
                if gossip_node && !known.contains(n.node.as_str()) {
                    tracing::info!(node = %n.node, "reaping node unknown to gossip");
                    cmds.push(CatalogCommand::Deregister {
                        node: n.node.clone(),
                        service_id: None,
                        check_id: None,
                    });
                }
            }
        }
    }
    for c in cmds {
        if let Err(e) = s.proposer.write(Command::Catalog(c)).await {
            tracing::debug!(error = %e, "membership reconcile write");
            return;
        }
    }
}
