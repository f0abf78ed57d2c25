//! What templates depend on: one enum with a stable identity, so every
//! template needing the same data shares one watch.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    /// Every key under a prefix (no leading slash; "" is the root).
    KvPrefix(String),
    /// One key.
    KvKey(String),
    /// Instances of a service with their health (all states; helpers filter).
    Service {
        name: String,
        tag: Option<String>,
        /// Another datacenter (`service "web@dc2"`).
        dc: Option<String>,
    },
    /// Service names and tags.
    Services,
    Nodes,
    /// One node and its services; `None` is the agent's own node.
    Node(Option<String>),
    Datacenters,
    /// A local file (consul-template's `file`), re-read every second.
    File(String),
}

impl Dependency {
    /// Whether the backend can long-poll it (else it is re-read).
    pub fn blocking(&self) -> bool {
        !matches!(self, Dependency::File(_))
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dependency::KvPrefix(p) => write!(f, "kv.list({p})"),
            Dependency::KvKey(k) => write!(f, "kv.key({k})"),
            Dependency::Service { name, tag, dc } => {
                let tag = tag.as_ref().map(|t| format!("{t}.")).unwrap_or_default();
                let dc = dc.as_ref().map(|d| format!("@{d}")).unwrap_or_default();
                write!(f, "health.service({tag}{name}{dc})")
            }
            Dependency::Services => write!(f, "catalog.services"),
            Dependency::Nodes => write!(f, "catalog.nodes"),
            Dependency::Node(None) => write!(f, "catalog.node"),
            Dependency::Node(Some(n)) => write!(f, "catalog.node({n})"),
            Dependency::Datacenters => write!(f, "catalog.datacenters"),
            Dependency::File(p) => write!(f, "file({p})"),
        }
    }
}

/// One service instance, with consul-template's field names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub node: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_address: String,
    pub node_datacenter: String,
    pub node_meta: BTreeMap<String, String>,
    /// The service address, or the node's when the service has none.
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub port: u64,
    pub meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// Worst check status: passing, warning, critical (maintenance counts as critical).
    pub status: String,
    pub checks: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeInfo {
    pub node: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
    pub datacenter: String,
    pub meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, String>,
}

/// A service as `/v1/catalog/node/<name>` lists it (consul-template's
/// `CatalogNodeService`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub port: u64,
    pub address: String,
}

/// consul-template's `CatalogNode`: `{{Node.Address}}`, `{{#each Services}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDetail {
    pub node: NodeInfo,
    /// Sorted by ID, so renders are stable.
    pub services: Vec<NodeService>,
}

/// Fetched data of one dependency.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Key (no leading slash) -> value.
    Kv(BTreeMap<String, String>),
    Key(Option<String>),
    Service(Vec<Instance>),
    Services(BTreeMap<String, Vec<String>>),
    Nodes(Vec<NodeInfo>),
    /// `None`: no such node.
    Node(Option<NodeDetail>),
    Datacenters(Vec<String>),
    /// `None`: no such file (yet).
    File(Option<String>),
}
