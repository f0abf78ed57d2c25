//! Anti-entropy: make this node's catalog entries equal to the local agent
//! state. Runs after every local change and every few seconds, so a catalog
//! that diverges (an operator's manual deregistration, a lost write) is
//! repaired within seconds. Only differences are written, so a probe whose
//! result did not change costs no raft write, and one whose output alone
//! changed waits for `check_update_interval` (see [`super::CheckView`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{service_rec, LocalAgent};
use serde::{Deserialize, Serialize};

use crate::cluster::Upstream;
use crate::raft::proposer::{Actor, Proposer, WriteError};
use crate::state::catalog::serf_check;
use crate::state::catalog::SERF_CHECK;
use crate::state::catalog::{CatalogCommand, CheckRec, Meta, NodeRec, RegisterReq, ServiceRec};
use crate::state::{Command, Health, Outcome, Store, Tables};

/// Who this node is in the catalog.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: String,
    pub id: String,
    pub address: String,
    pub datacenter: String,
    pub meta: Meta,
    /// Server RPC port when this agent is a server (registers service `consul`).
    pub server_port: Option<u16>,
    /// Gossip is off (`ports.serf_lan = -1`): no leader mirrors gossip into
    /// this node's `serfHealth`, so anti-entropy keeps a passing one itself
    /// (sessions default to it). With gossip on the leader owns it.
    pub own_serf_health: bool,
}

/// The meta key every agent sets on its own node: its network segment
/// (always the default, "", as segments are a Consul Enterprise feature).
pub const SEGMENT_META_KEY: &str = "consul-network-segment";

/// This agent's node meta: the configured pairs plus the reserved segment
/// key, as Consul's agent loads it (`node_meta` itself may not use the
/// `consul-` prefix; the agent's own key is added after that check).
pub fn node_meta(configured: &Meta) -> Meta {
    let mut m = configured.clone();
    m.insert(SEGMENT_META_KEY.into(), String::new());
    m
}

impl NodeInfo {
    fn rec(&self) -> NodeRec {
        let mut tagged = Meta::new();
        for k in ["lan", "lan_ipv4", "wan", "wan_ipv4"] {
            tagged.insert(k.into(), self.address.clone());
        }
        NodeRec {
            id: self.id.clone(),
            node: self.node.clone(),
            address: self.address.clone(),
            datacenter: self.datacenter.clone(),
            tagged_addresses: tagged,
            meta: self.meta.clone(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// This node's catalog entries, as anti-entropy compares them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeView {
    pub node: Option<NodeRec>,
    pub services: Vec<ServiceRec>,
    pub checks: Vec<CheckRec>,
}

pub fn node_view(t: &Tables, node: &str) -> NodeView {
    let cat = &t.catalog;
    NodeView {
        node: cat.node(node).cloned(),
        services: cat.node_services(node).cloned().collect(),
        checks: cat.node_checks(node).cloned().collect(),
    }
}

/// Where anti-entropy reads the catalog: the local replica on a server,
/// a server over RPC on a client agent.
#[derive(Clone)]
pub enum CatalogSource {
    Local(Arc<Store>),
    Remote(Upstream),
}

impl CatalogSource {
    async fn view(&self, node: &str) -> Result<NodeView, WriteError> {
        match self {
            CatalogSource::Local(store) => Ok(node_view(&store.read(), node)),
            CatalogSource::Remote(up) => {
                for t in up.targets() {
                    let path = format!("/rpc/node-view/{}", urlencode(node));
                    match up.rpc.get::<NodeView>(&t, &path).await {
                        Ok(v) => {
                            up.good(&t);
                            return Ok(v);
                        }
                        Err(e) => {
                            tracing::debug!(server = %t, error = %e, "reading the catalog");
                            up.bad(&t);
                        }
                    }
                }
                Err(WriteError::NoLeader)
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The authority anti-entropy writes with, read on every pass (the
/// agent token may be replaced at run time).
pub type ActorSource = Arc<dyn Fn() -> Actor + Send + Sync>;

pub async fn run(
    agent: Arc<LocalAgent>,
    info: NodeInfo,
    source: CatalogSource,
    proposer: Proposer,
    actor: ActorSource,
    stop: CancellationToken,
) {
    let mut blocked = Blocked::default();
    loop {
        let acting = actor();
        let retry = match sync_once(&agent, &info, &source, &proposer, &acting, &mut blocked).await
        {
            Ok(0) => Duration::from_secs(5),
            Ok(n) => {
                tracing::debug!(writes = n, "catalog synced");
                Duration::from_secs(5)
            }
            Err(e) => {
                tracing::debug!(error = %e, "catalog sync failed; retrying");
                Duration::from_millis(250)
            }
        };
        tokio::select! {
            _ = agent.changed.notified() => {}
            _ = tokio::time::sleep(retry) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Sync writes the ACLs refused, by item (`node`, `service:<id>`,
/// `check:<id>`) with the write refused: each is logged once per change,
/// not on every pass, and retried on the normal cadence.
#[derive(Default)]
pub struct Blocked(std::collections::HashMap<String, String>);

impl Blocked {
    /// A refusal: logged unless this same write was refused already.
    fn refused(&mut self, c: &CatalogCommand, why: &str) {
        for (what, item) in blocked_items(c) {
            let fingerprint = format!("{c:?}");
            if self.0.get(&item) == Some(&fingerprint) {
                continue;
            }
            self.0.insert(item.clone(), fingerprint);
            match item.split_once(':') {
                Some(("service", id)) => {
                    tracing::warn!(service = %id, "{what} blocked by ACLs: {why}")
                }
                Some((_, id)) => tracing::warn!(check = %id, "{what} blocked by ACLs: {why}"),
                None => tracing::warn!("{what} blocked by ACLs: {why}"),
            }
        }
    }

    fn accepted(&mut self, c: &CatalogCommand) {
        for (_, item) in blocked_items(c) {
            self.0.remove(&item);
        }
    }
}

/// The items a sync write is about, in Consul's log words.
fn blocked_items(c: &CatalogCommand) -> Vec<(&'static str, String)> {
    match c {
        CatalogCommand::Register(r) => {
            let mut out = Vec::new();
            if !r.skip_node_update {
                out.push(("Node info update", "node".to_string()));
            }
            if let Some(s) = &r.service {
                out.push(("Service registration", format!("service:{}", s.id)));
            }
            for ch in &r.checks {
                out.push(("Check registration", format!("check:{}", ch.check_id)));
            }
            out
        }
        CatalogCommand::Deregister {
            service_id: Some(id),
            ..
        } => vec![("Service deregistration", format!("service:{id}"))],
        CatalogCommand::Deregister {
            check_id: Some(id), ..
        } => vec![("Check deregistration", format!("check:{id}"))],
        CatalogCommand::Deregister { .. } => vec![("Node deregistration", "node".into())],
        CatalogCommand::UpdateCheck { check_id, .. } => {
            vec![("Check update", format!("check:{check_id}"))]
        }
    }
}

/// One sync pass; returns how many catalog writes it made.
pub async fn sync_once(
    agent: &LocalAgent,
    info: &NodeInfo,
    source: &CatalogSource,
    proposer: &Proposer,
    actor: &Actor,
    blocked: &mut Blocked,
) -> Result<usize, WriteError> {
    let node = info.node.clone();
    let mut services: BTreeMap<String, ServiceRec> = agent
        .services()
        .iter()
        .map(|s| (s.id.clone(), service_rec(s)))
        .collect();
    if let Some(port) = info.server_port {
        services.insert(
            "consul".into(),
            ServiceRec {
                id: "consul".into(),
                service: "consul".into(),
                port,
                ..Default::default()
            },
        );
    }
    let mut checks: BTreeMap<String, CheckRec> = agent
        .checks()
        .iter()
        .map(|c| (c.def.id.clone(), c.catalog_rec(&node)))
        .collect();
    if info.own_serf_health {
        checks
            .entry(SERF_CHECK.into())
            .or_insert_with(|| serf_check(&node, Health::Passing));
    }
    let want_node = info.rec();

    let view = source.view(&node).await?;
    let cmds = {
        let mut cmds = Vec::new();
        let node_ok = view.node.as_ref().map(|n| {
            let mut n = n.clone();
            n.create_index = 0;
            n.modify_index = 0;
            n == want_node
        });
        if node_ok != Some(true) {
            cmds.push(CatalogCommand::Register(Box::new(RegisterReq {
                node: want_node.clone(),
                skip_node_update: false,
                service: None,
                checks: vec![],
            })));
        }
        let check_differs = |c: &CheckRec| {
            view.checks
                .iter()
                .find(|o| o.check_id == c.check_id)
                .map(|o| !o.same_content(c))
                .unwrap_or(true)
        };
        let mut pending_checks: Vec<CheckRec> = checks
            .values()
            .filter(|c| check_differs(c))
            .cloned()
            .collect();
        for s in services.values() {
            let differs = view
                .services
                .iter()
                .find(|o| o.id == s.id)
                .map(|o| !o.same_content(s))
                .unwrap_or(true);
            if differs {
                let (mine, rest): (Vec<CheckRec>, Vec<CheckRec>) = pending_checks
                    .into_iter()
                    .partition(|c| c.service_id == s.id);
                pending_checks = rest;
                cmds.push(CatalogCommand::Register(Box::new(RegisterReq {
                    node: want_node.clone(),
                    skip_node_update: true,
                    service: Some(s.clone()),
                    checks: mine,
                })));
            }
        }
        if !pending_checks.is_empty() {
            cmds.push(CatalogCommand::Register(Box::new(RegisterReq {
                node: want_node.clone(),
                skip_node_update: true,
                service: None,
                checks: pending_checks,
            })));
        }
        for s in &view.services {
            if !services.contains_key(&s.id) {
                cmds.push(CatalogCommand::Deregister {
                    node: node.clone(),
                    service_id: Some(s.id.clone()),
                    check_id: None,
                });
            }
        }
        for c in &view.checks {
            let owner_goes = !c.service_id.is_empty() && !services.contains_key(&c.service_id);
            // serfHealth belongs to the leader, which mirrors gossip into it.
            let gossip_owned = c.check_id == SERF_CHECK;
            if !checks.contains_key(&c.check_id) && !owner_goes && !gossip_owned {
                cmds.push(CatalogCommand::Deregister {
                    node: node.clone(),
                    service_id: None,
                    check_id: Some(c.check_id.clone()),
                });
            }
        }
        cmds
    };
    let n = cmds.len();
    for c in cmds {
        let done = synced(&c);
        match proposer.write_as(Command::Catalog(c.clone()), actor).await {
            Err(WriteError::Denied(why)) => {
                blocked.refused(&c, &why);
                continue;
            }
            Err(e) => return Err(e),
            Ok((_, Outcome::Catalog(crate::state::CatalogOutcome::Error(e)))) => {
                tracing::debug!(error = %e, "catalog sync write refused");
                continue;
            }
            Ok(_) => blocked.accepted(&c),
        }
        for (msg, kind, id) in done {
            match kind {
                "" => tracing::info!("{msg}"),
                "service" => tracing::info!(service = %id, "{msg}"),
                _ => tracing::info!(check = %id, "{msg}"),
            }
        }
    }
    Ok(n)
}

/// What a sync write did, in Consul's log words: (message, "service" or
/// "check" or "", ID). The server's own `consul` service goes unsaid.
fn synced(c: &CatalogCommand) -> Vec<(&'static str, &'static str, String)> {
    match c {
        CatalogCommand::Register(r) => {
            let mut out = Vec::new();
            if !r.skip_node_update {
                out.push(("Synced node info", "", String::new()));
            }
            if let Some(s) = r.service.as_ref().filter(|s| s.id != "consul") {
                out.push(("Synced service", "service", s.id.clone()));
            }
            for ch in &r.checks {
                out.push(("Synced check", "check", ch.check_id.clone()));
            }
            out
        }
        CatalogCommand::Deregister {
            service_id: Some(id),
            ..
        } => vec![("Deregistered service", "service", id.clone())],
        CatalogCommand::Deregister {
            check_id: Some(id), ..
        } => vec![("Deregistered check", "check", id.clone())],
        _ => Vec::new(),
    }
}
