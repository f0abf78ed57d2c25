//! The catalog: nodes, service instances and health checks, stamped with
//! raft indexes. Besides whole-table indexes it keeps one index per service
//! name and per node, so a watcher of `web` wakes only when `web` (its
//! instances, their checks, or the checks of nodes hosting it) changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub type Meta = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRec {
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: Meta,
    pub meta: Meta,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: i32,
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRec {
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: Meta,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceRec {
    /// Equal apart from raft indexes.
    pub fn same_content(&self, o: &ServiceRec) -> bool {
        let strip = |s: &ServiceRec| ServiceRec {
            create_index: 0,
            modify_index: 0,
            ..s.clone()
        };
        strip(self) == strip(o)
    }
}

/// Health states, ordered from best to worst.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Health {
    Passing,
    Warning,
    /// A new check starts here, as in Consul.
    #[default]
    Critical,
    Maintenance,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
            Health::Maintenance => "maintenance",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "passing" => Health::Passing,
            "warning" => Health::Warning,
            "critical" => Health::Critical,
            "maintenance" => Health::Maintenance,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRec {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: Health,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    /// `http`, `tcp`, `ttl`, `script`, `grpc`, `serf`, `maintenance`, or "".
    pub kind: String,
    pub interval: String,
    pub timeout: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl CheckRec {
    /// Equal apart from raft indexes.
    pub fn same_content(&self, o: &CheckRec) -> bool {
        let strip = |c: &CheckRec| CheckRec {
            create_index: 0,
            modify_index: 0,
            ..c.clone()
        };
        strip(self) == strip(o)
    }
}

/// `PUT /v1/catalog/register` and the agent's anti-entropy sync.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RegisterReq {
    pub node: NodeRec,
    pub skip_node_update: bool,
    pub service: Option<ServiceRec>,
    pub checks: Vec<CheckRec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CatalogCommand {
    Register(Box<RegisterReq>),
    /// Whole node, or one service (with its checks), or one check.
    Deregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
    },
    /// A check result: written only when status or output changed.
    UpdateCheck {
        node: String,
        check_id: String,
        status: Health,
        output: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CatalogOutcome {
    Ok,
    /// Rejected by the state machine (e.g. a check for an unknown service).
    Error(String),
}

/// Names of watch targets; see [`crate::state::WatchTarget::Named`].
/// Folded: a watcher of `web` wakes when `Web` changes (lookups ignore case).
pub fn svc_target(name: &str) -> String {
    format!("svc:{}", fold(name))
}
pub fn node_target(name: &str) -> String {
    format!("node:{name}")
}
pub const NODES: &str = "tbl:nodes";
pub const SERVICES: &str = "tbl:services";
pub const CHECKS: &str = "tbl:checks";

type Key = (String, String);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "CatalogWire")]
pub struct Catalog {
    nodes: BTreeMap<String, NodeRec>,
    services: BTreeMap<Key, ServiceRec>,
    checks: BTreeMap<Key, CheckRec>,
    /// Service name -> instances (node, service id).
    by_name: BTreeMap<String, BTreeSet<Key>>,
    /// Last change per service name / per node (kept after removal).
    service_index: BTreeMap<String, u64>,
    node_index: BTreeMap<String, u64>,
    nodes_index: u64,
    services_index: u64,
    checks_index: u64,
    /// Derived from the fields above, so not in snapshots (rebuilt on load).
    #[serde(skip)]
    folded: Folded,
}

/// Case-folded (ASCII lowercase) names for DNS, which is case-insensitive:
/// a hash lookup per query instead of a scan over every name.
#[derive(Clone, Debug, Default)]
struct Folded {
    /// Folded service name -> the names as registered.
    services: HashMap<String, BTreeSet<String>>,
    /// Folded node name -> the names as registered.
    nodes: HashMap<String, BTreeSet<String>>,
    /// Last change to any service of that folded name (kept after removal,
    /// so it only moves forward and a cache keyed on it cannot go stale).
    service_index: HashMap<String, u64>,
}

/// Lowercase without allocating for names that already are (DNS query
/// names are folded before lookup).
fn fold(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

fn fold_insert(map: &mut HashMap<String, BTreeSet<String>>, name: &str) {
    map.entry(fold(name).into_owned())
        .or_default()
        .insert(name.to_string());
}

fn fold_remove(map: &mut HashMap<String, BTreeSet<String>>, name: &str) {
    let key = fold(name);
    if let Some(set) = map.get_mut(key.as_ref()) {
        set.remove(name);
        if set.is_empty() {
            map.remove(key.as_ref());
        }
    }
}

/// The serialized form of [`Catalog`]: the same fields in the same order
/// (bincode is positional), minus the derived `folded`.
#[derive(Deserialize)]
struct CatalogWire {
    nodes: BTreeMap<String, NodeRec>,
    services: BTreeMap<Key, ServiceRec>,
    checks: BTreeMap<Key, CheckRec>,
    by_name: BTreeMap<String, BTreeSet<Key>>,
    service_index: BTreeMap<String, u64>,
    node_index: BTreeMap<String, u64>,
    nodes_index: u64,
    services_index: u64,
    checks_index: u64,
}

impl From<CatalogWire> for Catalog {
    fn from(w: CatalogWire) -> Self {
        let mut folded = Folded::default();
        for name in w.by_name.keys() {
            fold_insert(&mut folded.services, name);
        }
        for name in w.nodes.keys() {
            fold_insert(&mut folded.nodes, name);
        }
        for (name, &i) in &w.service_index {
            let e = folded
                .service_index
                .entry(fold(name).into_owned())
                .or_default();
            *e = (*e).max(i);
        }
        Self {
            nodes: w.nodes,
            services: w.services,
            checks: w.checks,
            by_name: w.by_name,
            service_index: w.service_index,
            node_index: w.node_index,
            nodes_index: w.nodes_index,
            services_index: w.services_index,
            checks_index: w.checks_index,
            folded,
        }
    }
}

/// The stored parts of a [`Catalog`] (snapshots), without what is derived.
pub(crate) struct CatalogParts {
    pub nodes: BTreeMap<String, NodeRec>,
    pub services: Vec<ServiceRec>,
    pub service_nodes: Vec<String>,
    pub checks: Vec<CheckRec>,
    pub service_index: BTreeMap<String, u64>,
    pub node_index: BTreeMap<String, u64>,
    pub nodes_index: u64,
    pub services_index: u64,
    pub checks_index: u64,
}

impl Catalog {
    /// A catalog from its stored parts; the name index and folded names are
    /// rebuilt. `services[i]` lives on node `service_nodes[i]`.
    pub(crate) fn from_parts(p: CatalogParts) -> Self {
        let mut services = BTreeMap::new();
        let mut by_name: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
        for (s, node) in p.services.into_iter().zip(p.service_nodes) {
            let key = (node, s.id.clone());
            by_name
                .entry(s.service.clone())
                .or_default()
                .insert(key.clone());
            services.insert(key, s);
        }
        let checks = p
            .checks
            .into_iter()
            .map(|c| ((c.node.clone(), c.check_id.clone()), c))
            .collect();
        Self::from(CatalogWire {
            nodes: p.nodes,
            services,
            checks,
            by_name,
            service_index: p.service_index,
            node_index: p.node_index,
            nodes_index: p.nodes_index,
            services_index: p.services_index,
            checks_index: p.checks_index,
        })
    }

    /// Every service instance with its node, in (node, id) order.
    pub(crate) fn all_services(&self) -> impl ExactSizeIterator<Item = (&str, &ServiceRec)> {
        self.services.iter().map(|((n, _), s)| (n.as_str(), s))
    }

    /// Last change per service name and per node (kept after removal).
    pub(crate) fn name_indexes(&self) -> (&BTreeMap<String, u64>, &BTreeMap<String, u64>) {
        (&self.service_index, &self.node_index)
    }

    /// How many nodes, service instances and checks there are.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.nodes.len(), self.services.len(), self.checks.len())
    }

    /// The raw table indexes: nodes, services, checks (0 if never written).
    pub(crate) fn table_indexes(&self) -> (u64, u64, u64) {
        (self.nodes_index, self.services_index, self.checks_index)
    }
}

/// Accumulates what an apply changed, for indexes and wake-ups.
struct Touch<'a> {
    index: u64,
    named: &'a mut Vec<String>,
}

impl Catalog {
    // ---- reads ----

    pub fn nodes(&self) -> impl Iterator<Item = &NodeRec> {
        self.nodes.values()
    }
    pub fn node(&self, name: &str) -> Option<&NodeRec> {
        self.nodes.get(name)
    }
    pub fn node_services<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a ServiceRec> + 'a {
        self.services
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, s)| s)
    }
    pub fn node_checks<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a CheckRec> + 'a {
        self.checks
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, c)| c)
    }
    pub fn service_names(&self) -> impl Iterator<Item = (&String, BTreeSet<&String>)> {
        self.by_name.iter().map(|(name, keys)| {
            let tags = keys
                .iter()
                .filter_map(|k| self.services.get(k))
                .flat_map(|s| s.tags.iter())
                .collect();
            (name, tags)
        })
    }
    /// Instances of the service registered exactly as `name`.
    fn instances_exact<'a>(&'a self, name: &str) -> Vec<(&'a NodeRec, &'a ServiceRec)> {
        let Some(keys) = self.by_name.get(name) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| Some((self.nodes.get(&k.0)?, self.services.get(k)?)))
            .collect()
    }
    /// Instances of a service with their node. Names match ignoring ASCII
    /// case, as in Consul (its DNS is case-insensitive, so its catalog and
    /// health lookups are too): `Redis` and `redis` answer both.
    pub fn instances<'a>(&'a self, name: &str) -> Vec<(&'a NodeRec, &'a ServiceRec)> {
        let Some(names) = self.folded.services.get(fold(name).as_ref()) else {
            return Vec::new();
        };
        names.iter().flat_map(|n| self.instances_exact(n)).collect()
    }
    /// Last change to any service named `name` ignoring ASCII case.
    pub fn service_index(&self, name: &str) -> u64 {
        self.folded
            .service_index
            .get(fold(name).as_ref())
            .copied()
            .unwrap_or(1)
            .max(1)
    }
    /// A node by name ignoring ASCII case; an exact match wins.
    pub fn node_folded(&self, name: &str) -> Option<&NodeRec> {
        self.nodes.get(name).or_else(|| {
            let names = self.folded.nodes.get(fold(name).as_ref())?;
            names.iter().find_map(|n| self.nodes.get(n))
        })
    }
    /// Checks that apply to an instance: its own and its node's.
    pub fn instance_checks<'a>(&'a self, node: &'a str, service_id: &'a str) -> Vec<&'a CheckRec> {
        self.node_checks(node)
            .filter(|c| c.service_id.is_empty() || c.service_id == service_id)
            .collect()
    }
    pub fn checks(&self) -> impl Iterator<Item = &CheckRec> {
        self.checks.values()
    }
    pub fn check(&self, node: &str, id: &str) -> Option<&CheckRec> {
        self.checks.get(&(node.to_string(), id.to_string()))
    }
    pub fn service(&self, node: &str, id: &str) -> Option<&ServiceRec> {
        self.services.get(&(node.to_string(), id.to_string()))
    }
    pub fn node_index(&self, name: &str) -> u64 {
        self.node_index.get(name).copied().unwrap_or(1).max(1)
    }
    pub fn nodes_index(&self) -> u64 {
        self.nodes_index.max(1)
    }
    pub fn services_index(&self) -> u64 {
        self.services_index.max(1)
    }
    pub fn checks_index(&self) -> u64 {
        self.checks_index.max(1)
    }

    // ---- writes ----

    pub fn apply(
        &mut self,
        index: u64,
        cmd: &CatalogCommand,
        named: &mut Vec<String>,
    ) -> CatalogOutcome {
        let mut t = Touch { index, named };
        match cmd {
            CatalogCommand::Register(r) => self.register(r, &mut t),
            CatalogCommand::Deregister {
                node,
                service_id,
                check_id,
            } => {
                match (service_id, check_id) {
                    (Some(s), _) => self.remove_service(node, s, &mut t),
                    (None, Some(c)) => self.remove_check(node, c, &mut t),
                    (None, None) => self.remove_node(node, &mut t),
                }
                CatalogOutcome::Ok
            }
            CatalogCommand::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => {
                let key = (node.clone(), check_id.clone());
                let Some(c) = self.checks.get(&key) else {
                    return CatalogOutcome::Error(format!(
                        "check {check_id:?} not found on node {node:?}"
                    ));
                };
                if c.status != *status || c.output != *output {
                    let mut c = c.clone();
                    c.status = *status;
                    c.output = output.clone();
                    self.put_check(c, &mut t);
                }
                CatalogOutcome::Ok
            }
        }
    }

    fn bump_service(&mut self, name: &str, t: &mut Touch) {
        self.service_index.insert(name.to_string(), t.index);
        self.folded
            .service_index
            .insert(fold(name).into_owned(), t.index);
        t.named.push(svc_target(name));
    }

    fn bump_node(&mut self, node: &str, t: &mut Touch) {
        self.node_index.insert(node.to_string(), t.index);
        t.named.push(node_target(node));
    }

    /// A node-level change affects every service hosted on the node.
    fn bump_services_of_node(&mut self, node: &str, t: &mut Touch) {
        let names: BTreeSet<String> = self
            .node_services(node)
            .map(|s| s.service.clone())
            .collect();
        for n in names {
            self.bump_service(&n, t);
        }
    }

    fn register(&mut self, r: &RegisterReq, t: &mut Touch) -> CatalogOutcome {
        let name = r.node.node.clone();
        if name.is_empty() {
            return CatalogOutcome::Error("Must provide node".into());
        }
        // Validate everything before changing anything.
        for c in &r.checks {
            if !c.service_id.is_empty() {
                let in_req = r
                    .service
                    .as_ref()
                    .map(|s| s.id == c.service_id)
                    .unwrap_or(false);
                if !in_req && self.service(&name, &c.service_id).is_none() {
                    return CatalogOutcome::Error(format!(
                        "Unknown service ID {:?} for check ID {:?}",
                        c.service_id, c.check_id
                    ));
                }
            }
        }
        match self.nodes.get(&name) {
            Some(_) if r.skip_node_update => {}
            Some(old) => {
                let mut n = r.node.clone();
                n.create_index = old.create_index;
                n.modify_index = old.modify_index;
                if n != *old {
                    n.modify_index = t.index;
                    self.nodes.insert(name.clone(), n);
                    self.nodes_index = t.index;
                    t.named.push(NODES.into());
                    self.bump_node(&name, t);
                    self.bump_services_of_node(&name, t);
                }
            }
            None => {
                let mut n = r.node.clone();
                n.create_index = t.index;
                n.modify_index = t.index;
                self.nodes.insert(name.clone(), n);
                fold_insert(&mut self.folded.nodes, &name);
                self.nodes_index = t.index;
                t.named.push(NODES.into());
                self.bump_node(&name, t);
            }
        }
        if let Some(s) = &r.service {
            let key = (name.clone(), s.id.clone());
            let old = self.services.get(&key).cloned();
            if old.as_ref().map(|o| !o.same_content(s)).unwrap_or(true) {
                let mut s = s.clone();
                s.create_index = old.as_ref().map(|o| o.create_index).unwrap_or(t.index);
                s.modify_index = t.index;
                if let Some(o) = &old {
                    if o.service != s.service {
                        self.unlink(&o.service, &key);
                        self.bump_service(&o.service, t);
                    }
                }
                self.by_name
                    .entry(s.service.clone())
                    .or_default()
                    .insert(key.clone());
                fold_insert(&mut self.folded.services, &s.service);
                let svc_name = s.service.clone();
                let tags = s.tags.clone();
                self.services.insert(key.clone(), s);
                self.services_index = t.index;
                t.named.push(SERVICES.into());
                self.bump_service(&svc_name, t);
                self.bump_node(&name, t);
                // Checks of this service carry its name and tags.
                let ids: Vec<Key> = self
                    .node_checks(&name)
                    .filter(|c| c.service_id == key.1)
                    .map(|c| (c.node.clone(), c.check_id.clone()))
                    .collect();
                for k in ids {
                    if let Some(c) = self.checks.get_mut(&k) {
                        c.service_name = svc_name.clone();
                        c.service_tags = tags.clone();
                    }
                }
            }
        }
        for c in &r.checks {
            let mut c = c.clone();
            c.node = name.clone();
            if let Some(s) = (!c.service_id.is_empty())
                .then(|| self.service(&name, &c.service_id))
                .flatten()
            {
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
            }
            self.put_check(c, t);
        }
        CatalogOutcome::Ok
    }

    fn put_check(&mut self, mut c: CheckRec, t: &mut Touch) {
        let key = (c.node.clone(), c.check_id.clone());
        let old = self.checks.get(&key);
        if old.map(|o| o.same_content(&c)).unwrap_or(false) {
            return;
        }
        c.create_index = old.map(|o| o.create_index).unwrap_or(t.index);
        c.modify_index = t.index;
        let node = c.node.clone();
        let svc = c.service_name.clone();
        let was_svc = old.map(|o| o.service_name.clone()).unwrap_or_default();
        self.checks.insert(key, c);
        self.checks_index = t.index;
        t.named.push(CHECKS.into());
        self.bump_node(&node, t);
        if svc.is_empty() {
            self.bump_services_of_node(&node, t);
        } else {
            self.bump_service(&svc, t);
        }
        if !was_svc.is_empty() && was_svc != svc {
            self.bump_service(&was_svc, t);
        }
    }

    fn unlink(&mut self, name: &str, key: &Key) {
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.by_name.remove(name);
                fold_remove(&mut self.folded.services, name);
            }
        }
    }

    fn remove_check(&mut self, node: &str, id: &str, t: &mut Touch) {
        let Some(c) = self.checks.remove(&(node.to_string(), id.to_string())) else {
            return;
        };
        self.checks_index = t.index;
        t.named.push(CHECKS.into());
        self.bump_node(node, t);
        if c.service_name.is_empty() {
            self.bump_services_of_node(node, t);
        } else {
            self.bump_service(&c.service_name, t);
        }
    }

    fn remove_service(&mut self, node: &str, id: &str, t: &mut Touch) {
        let key = (node.to_string(), id.to_string());
        let Some(s) = self.services.remove(&key) else {
            return;
        };
        self.unlink(&s.service, &key);
        self.services_index = t.index;
        t.named.push(SERVICES.into());
        self.bump_service(&s.service, t);
        self.bump_node(node, t);
        let checks: Vec<String> = self
            .node_checks(node)
            .filter(|c| c.service_id == id)
            .map(|c| c.check_id.clone())
            .collect();
        for c in checks {
            self.remove_check(node, &c, t);
        }
    }

    fn remove_node(&mut self, node: &str, t: &mut Touch) {
        let services: Vec<String> = self.node_services(node).map(|s| s.id.clone()).collect();
        for s in services {
            self.remove_service(node, &s, t);
        }
        let checks: Vec<String> = self.node_checks(node).map(|c| c.check_id.clone()).collect();
        for c in checks {
            self.remove_check(node, &c, t);
        }
        if self.nodes.remove(node).is_some() {
            fold_remove(&mut self.folded.nodes, node);
            self.nodes_index = t.index;
            t.named.push(NODES.into());
            self.bump_node(node, t);
        }
    }
}

/// The check gossip drives on every node, and sessions check by default.
pub const SERF_CHECK: &str = "serfHealth";

/// The `serfHealth` check of `node`, as gossip drives it: on servers the
/// leader mirrors each member's gossip status into it; a server without
/// gossip keeps a passing one itself.
pub fn serf_check(node: &str, status: Health) -> CheckRec {
    CheckRec {
        node: node.into(),
        check_id: SERF_CHECK.into(),
        name: "Serf Health Status".into(),
        status,
        output: if status == Health::Passing {
            "Agent alive and reachable".into()
        } else {
            "Agent not live or unreachable".into()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeRec {
        NodeRec {
            node: n.into(),
            address: "10.0.0.1".into(),
            ..Default::default()
        }
    }
    fn svc(id: &str, name: &str) -> ServiceRec {
        ServiceRec {
            id: id.into(),
            service: name.into(),
            ..Default::default()
        }
    }
    fn check(id: &str, svc: &str, status: Health) -> CheckRec {
        CheckRec {
            check_id: id.into(),
            name: id.into(),
            status,
            service_id: svc.into(),
            kind: "ttl".into(),
            ..Default::default()
        }
    }
    fn reg(
        c: &mut Catalog,
        i: u64,
        n: &str,
        s: Option<ServiceRec>,
        checks: Vec<CheckRec>,
    ) -> Vec<String> {
        let mut named = vec![];
        let out = c.apply(
            i,
            &CatalogCommand::Register(Box::new(RegisterReq {
                node: node(n),
                skip_node_update: false,
                service: s,
                checks,
            })),
            &mut named,
        );
        assert_eq!(out, CatalogOutcome::Ok);
        named
    }

    /// A change to `web` advances web's index and wakes web's watchers, not db's.
    #[test]
    fn per_service_indexes() {
        let mut c = Catalog::default();
        reg(
            &mut c,
            5,
            "n1",
            Some(svc("web1", "web")),
            vec![check("c1", "web1", Health::Passing)],
        );
        reg(&mut c, 6, "n1", Some(svc("db1", "db")), vec![]);
        assert_eq!(c.service_index("web"), 5);
        assert_eq!(c.service_index("db"), 6);
        let mut named = vec![];
        c.apply(
            7,
            &CatalogCommand::UpdateCheck {
                node: "n1".into(),
                check_id: "c1".into(),
                status: Health::Critical,
                output: "down".into(),
            },
            &mut named,
        );
        assert_eq!(c.service_index("web"), 7);
        assert_eq!(c.service_index("db"), 6);
        assert!(named.contains(&svc_target("web")));
        assert!(!named.contains(&svc_target("db")));
        assert_eq!(c.check("n1", "c1").unwrap().service_name, "web");
        // identical update: no write, no wake
        let mut named = vec![];
        c.apply(
            8,
            &CatalogCommand::UpdateCheck {
                node: "n1".into(),
                check_id: "c1".into(),
                status: Health::Critical,
                output: "down".into(),
            },
            &mut named,
        );
        assert!(named.is_empty());
        assert_eq!(c.checks_index(), 7);
    }

    /// A node check change wakes every service on that node.
    #[test]
    fn node_checks_touch_services() {
        let mut c = Catalog::default();
        reg(&mut c, 2, "n1", Some(svc("web1", "web")), vec![]);
        let named = reg(
            &mut c,
            3,
            "n1",
            None,
            vec![check("serfHealth", "", Health::Passing)],
        );
        assert!(named.contains(&svc_target("web")));
        assert_eq!(c.instance_checks("n1", "web1").len(), 1);
    }

    /// Deregistering a service removes its checks; deregistering a node removes everything.
    #[test]
    fn deregister() {
        let mut c = Catalog::default();
        reg(
            &mut c,
            2,
            "n1",
            Some(svc("web1", "web")),
            vec![check("c1", "web1", Health::Passing)],
        );
        reg(&mut c, 3, "n1", Some(svc("web2", "web")), vec![]);
        let mut named = vec![];
        c.apply(
            4,
            &CatalogCommand::Deregister {
                node: "n1".into(),
                service_id: Some("web1".into()),
                check_id: None,
            },
            &mut named,
        );
        assert!(c.check("n1", "c1").is_none());
        assert_eq!(c.instances("web").len(), 1);
        c.apply(
            5,
            &CatalogCommand::Deregister {
                node: "n1".into(),
                service_id: None,
                check_id: None,
            },
            &mut named,
        );
        assert!(c.instances("web").is_empty());
        assert!(c.node("n1").is_none());
        assert_eq!(c.service_index("web"), 5);
        assert_eq!(c.service_names().count(), 0);
    }

    /// A check naming an unknown service is refused and changes nothing.
    #[test]
    fn unknown_service_check_refused() {
        let mut c = Catalog::default();
        let mut named = vec![];
        let out = c.apply(
            2,
            &CatalogCommand::Register(Box::new(RegisterReq {
                node: node("n1"),
                skip_node_update: false,
                service: None,
                checks: vec![check("c", "nope", Health::Passing)],
            })),
            &mut named,
        );
        assert!(matches!(out, CatalogOutcome::Error(_)));
        assert!(c.node("n1").is_none());
        assert!(named.is_empty());
    }

    /// Lookups ignore case: names registered in mixed case are found by
    /// any spelling, the folded index moves on changes, and a snapshot
    /// round trip rebuilds the folded names.
    #[test]
    fn folded_lookups() {
        let mut c = Catalog::default();
        reg(&mut c, 2, "MyHost", Some(svc("r1", "Redis")), vec![]);
        reg(&mut c, 3, "other", Some(svc("r2", "redis")), vec![]);
        assert_eq!(c.instances("REDIS").len(), 2);
        assert_eq!(c.instances_exact("redis").len(), 1);
        assert_eq!(c.node_folded("myhost").unwrap().node, "MyHost");
        assert_eq!(c.service_index("rEdIs"), 3);
        let mut named = vec![];
        c.apply(
            4,
            &CatalogCommand::Deregister {
                node: "MyHost".into(),
                service_id: None,
                check_id: None,
            },
            &mut named,
        );
        assert_eq!(c.instances("redis").len(), 1);
        assert!(c.node_folded("MYHOST").is_none());
        assert_eq!(c.service_index("redis"), 4);

        reg(&mut c, 5, "MyHost", Some(svc("r1", "Redis")), vec![]);
        let bytes = bincode::serialize(&c).unwrap();
        let back: Catalog = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.instances("redis").len(), 2);
        assert_eq!(back.node_folded("myhost").unwrap().node, "MyHost");
        assert_eq!(back.service_index("REDIS"), 5);
    }
}
