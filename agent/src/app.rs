//! The agent's core: the state every part shares ([`AppState`]) and the
//! operations on the agent as a whole ([`reload`], [`graceful_leave`]).
//!
//! It sits above `http/`, `dns/`, `rpc/`, `cluster/`, `raft/` and `local/`:
//! those receive only the handles they use (a store, a proposer, the
//! leadership), never this struct, except the entry points (HTTP handlers,
//! the RPC server) that serve requests against the whole agent.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::local::defs::{parse_service_as, parse_standalone_check};
use crate::local::{CheckDef, ServiceDef};
use crate::raft::leadership::Leadership;
use crate::raft::proposer::Proposer;
use crate::raft::Raft;
use crate::state::catalog::CatalogCommand;
use crate::state::{Command, Store};

/// Everything a handler needs.
pub struct AppState {
    pub config: Arc<AgentConfig>,
    pub store: Arc<Store>,
    /// `None` on a client agent (no raft state).
    pub raft: Option<Raft>,
    pub raft_id: crate::raft::NodeId,
    pub proposer: Proposer,
    pub leadership: Arc<Leadership>,
    /// Gossip membership (`None` when `ports.serf_lan` is -1).
    pub gossip: Option<crate::cluster::gossip::Gossip>,
    /// The servers of every known datacenter (a server's WAN pool; a client
    /// agent knows only its own datacenter and asks its servers).
    pub router: crate::cluster::router::Router,
    /// Where forwarded requests go (`None` without gossip on a lone server).
    pub upstream: Option<crate::cluster::Upstream>,
    pub rpc: crate::rpc::client::RpcClient,
    /// Cancelled when a graceful leave starts: anti-entropy stops so the
    /// node stays deregistered.
    pub leaving: CancellationToken,
    pub node_id: String,
    /// This node as registered in the catalog.
    pub node: crate::local::sync::NodeInfo,
    pub local: Arc<crate::local::LocalAgent>,
    /// This agent's user-event buffer.
    pub events: Arc<crate::events::Events>,
    /// The command-line flags, re-applied over the files on reload.
    pub flags: crate::config::Flags,
    /// The agent's ACL tokens (`default`, `agent`, ...), replaceable at
    /// run time.
    pub acl_tokens: crate::acl::config::AgentTokens,
    /// A client agent's last token answers, read only while no server answers.
    pub acl_fallback: crate::acl::fallback::Fallback,
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// The certificates the HTTPS API (and server RPC) serve; reloadable.
    pub tls: Arc<crate::tls::AgentTls>,
    /// Forwarded blocking reads shared among identical waiters.
    pub coalesce: Arc<crate::pipeline::coalesce::Coalescer>,
    /// A follower's reads waiting for the leader's index.
    pub read_index: crate::pipeline::read_index::batch::ReadIndex,
    /// The agent cache (`?cached`).
    pub cache: Arc<crate::pipeline::cache::AgentCache>,
    /// Coordinate updates waiting for the next batch (servers).
    pub coord_batch: crate::coordinate::sync::Batcher,
    /// A server's WAN coordinates and its WAN peers' (empty elsewhere).
    pub wan_coords: crate::coordinate::wan::WanCoords,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The handles autopilot and voter removal work with.
    pub fn autopilot(&self) -> crate::cluster::autopilot::Handles {
        crate::cluster::autopilot::Handles {
            raft: self.raft.clone(),
            leadership: self.leadership.clone(),
            store: self.store.clone(),
            proposer: self.proposer.clone(),
            rpc: self.rpc.clone(),
        }
    }
}

/// Why the config files' definitions cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("service definition: {0}")]
    Service(String),
    #[error("check definition: {0}")]
    Check(String),
}

/// Parse the service and check definitions of the config files.
pub fn config_definitions(
    c: &AgentConfig,
) -> Result<(Vec<ServiceDef>, Vec<CheckDef>), DefinitionError> {
    let services = c
        .service_defs
        .iter()
        .map(|v| {
            parse_service_as(v, c.enable_script_checks, |name, _, e| {
                format!("invalid meta for service {name}: {e}")
            })
            .map_err(|e| DefinitionError::Service(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let checks = c
        .check_defs
        .iter()
        .map(|v| {
            parse_standalone_check(v, c.enable_script_checks)
                .map_err(|e| DefinitionError::Check(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((services, checks))
}

/// Re-read the config files and apply their service and check definitions
/// and `log_level` (SIGHUP, `PUT /v1/agent/reload`, `tribune reload`).
/// Nothing is applied when any file is invalid.
pub fn reload(state: &AppState) -> Result<(), DefinitionError> {
    let c = AgentConfig::load(&state.flags)?;
    let (services, checks) = config_definitions(&c)?;
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    // Validated by the load above.
    if let Some(level) = crate::logging::parse_level(&c.log_level) {
        let old = crate::logging::level();
        if old.is_some_and(|o| o != level) {
            crate::logging::set_level(level);
            tracing::info!(
                from = %old.map(|o| o.to_string()).unwrap_or_default(),
                to = %level,
                "log level changed"
            );
        }
    }
    tracing::info!(
        services = services.len(),
        checks = checks.len(),
        "reloading configuration"
    );
    state.local.reload(services, checks);
    // A bad new certificate keeps the old one serving.
    if let Err(e) = state.tls.reload(&c.security.tls) {
        tracing::error!("tls: reload failed, keeping the certificates in use: {e}");
    }
    Ok(())
}

/// Set when the agent was stopped by SIGINT (Consul leaves on interrupt and
/// on terminate by different defaults).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Leave the cluster gracefully: the node is deregistered (while a
/// leaving server still leads or can reach the leader), a server leaves the
/// raft configuration (so the quorum shrinks instead of losing a vote),
/// then gossip is told, so members show it as `left`. Runs once.
pub async fn graceful_leave(s: &Shared) {
    if s.leaving.is_cancelled() {
        return;
    }
    s.leaving.cancel();
    tracing::info!("Gracefully shutting down agent...");
    let dereg = Command::Catalog(CatalogCommand::Deregister {
        node: s.node.node.clone(),
        service_id: None,
        check_id: None,
    });
    let _ = tokio::time::timeout(Duration::from_secs(3), s.agent_write(dereg)).await;
    leave_raft(s).await;
    if let Some(g) = &s.gossip {
        g.leave().await;
    }
    if let Some(w) = s.router.wan() {
        w.leave().await;
    }
}

/// A server leaves the raft configuration (the leader removes it; from a
/// follower the request is forwarded), then stops raft.
async fn leave_raft(s: &Shared) {
    use crate::cluster::autopilot::{remove_voter, RemoveError};
    let Some(raft) = s.raft.as_ref() else { return };
    let voters = s.leadership.servers().iter().filter(|x| x.2).count();
    if voters <= 1 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Done once the leader has committed the change: a follower never
        // sees its own removal (the leader stops replicating to it).
        match remove_voter(&s.autopilot(), s.raft_id).await {
            Ok(()) => break,
            Err(RemoveError::NotAPeer(_)) => break,
            Err(e) => tracing::debug!(error = %e, "leaving raft; retrying"),
        }
        if Instant::now() >= deadline {
            tracing::warn!("could not leave the raft configuration within 10s; the leader removes this server once gossip shows it left");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!("removed this server from the raft configuration");
    // No longer a member, it must not stand for election while it stops.
    if let Err(e) = raft.shutdown().await {
        tracing::debug!(error = %e, "raft shutdown after leaving");
    }
}
