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
    /// One key of another datacenter (`key "k@dc2"`; consul-template's
    /// functions only: confd's keys are the local datacenter's).
    KvKeyDc {
        key: String,
        dc: String,
    },
    /// Every key under a prefix of another datacenter (`ls`/`tree "p@dc2"`).
    KvPrefixDc {
        prefix: String,
        dc: String,
    },
    /// Instances of a service with their health (all states; helpers filter).
    Service {
        name: String,
        tag: Option<String>,
        /// Another datacenter (`service "web@dc2"`).
        dc: Option<String>,
        /// `~node`: sent as `?near=`; the agent's order is kept (tribune
        /// has no network coordinates, so it does not sort by distance).
        near: Option<String>,
    },
    /// Service names and tags (`services "@dc"`).
    Services {
        dc: Option<String>,
    },
    /// Every node (`nodes "@dc~near"`).
    Nodes {
        dc: Option<String>,
        near: Option<String>,
    },
    /// One node and its services; no name is the agent's own node.
    Node {
        name: Option<String>,
        dc: Option<String>,
    },
    Datacenters,
    /// A local file (consul-template's `file`), re-read every second.
    File(String),
}

impl Dependency {
    /// The kind, as the `type` label of the fetch metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Dependency::KvPrefix(_) => "kv_prefix",
            Dependency::KvKey(_) | Dependency::KvKeyDc { .. } => "kv_key",
            Dependency::KvPrefixDc { .. } => "kv_prefix",
            Dependency::Service { .. } => "service",
            Dependency::Services { .. } => "services",
            Dependency::Nodes { .. } => "nodes",
            Dependency::Node { .. } => "node",
            Dependency::Datacenters => "datacenters",
            Dependency::File(_) => "file",
        }
    }

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
            Dependency::KvKeyDc { key, dc } => write!(f, "kv.key({key}@{dc})"),
            Dependency::KvPrefixDc { prefix, dc } => write!(f, "kv.list({prefix}@{dc})"),
            Dependency::Service {
                name,
                tag,
                dc,
                near,
            } => {
                let tag = tag.as_ref().map(|t| format!("{t}.")).unwrap_or_default();
                write!(f, "health.service({tag}{name}{})", at(dc, near))
            }
            Dependency::Services { dc } => match at(dc, &None) {
                a if a.is_empty() => write!(f, "catalog.services"),
                a => write!(f, "catalog.services({a})"),
            },
            Dependency::Nodes { dc, near } => match at(dc, near) {
                a if a.is_empty() => write!(f, "catalog.nodes"),
                a => write!(f, "catalog.nodes({a})"),
            },
            Dependency::Node { name, dc } => {
                match format!("{}{}", name.as_deref().unwrap_or(""), at(dc, &None)) {
                    a if a.is_empty() => write!(f, "catalog.node"),
                    a => write!(f, "catalog.node({a})"),
                }
            }
            Dependency::Datacenters => write!(f, "catalog.datacenters"),
            Dependency::File(p) => write!(f, "file({p})"),
        }
    }
}

/// `@dc` and `~near` of a query, as consul-template prints them.
fn at(dc: &Option<String>, near: &Option<String>) -> String {
    let dc = dc.as_ref().map(|d| format!("@{d}")).unwrap_or_default();
    let near = near.as_ref().map(|n| format!("~{n}")).unwrap_or_default();
    format!("{dc}{near}")
}

/// One KV entry with the metadata consul-template's `KeyPair` carries.
/// The file and env backends have no indexes: theirs are 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KvEntry {
    pub value: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub session: String,
}

impl From<String> for KvEntry {
    fn from(value: String) -> Self {
        KvEntry {
            value,
            ..Default::default()
        }
    }
}

/// `Weights` of a service (consul's `AgentWeights`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: i64,
    pub warning: i64,
}

/// One service instance: consul-template's `HealthService`, field for
/// field and in its order (plus `Meta`, the same as `ServiceMeta`, which
/// older templates use).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub node: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_address: String,
    pub node_datacenter: String,
    pub node_tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// The service address, or the node's when the service has none.
    pub address: String,
    /// `{lan: {Address, Port}, ...}` as the agent lists them.
    pub service_tagged_addresses: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Sorted, as consul-template sorts them.
    pub tags: Vec<String>,
    pub checks: Vec<serde_json::Value>,
    /// consul's aggregated status: maintenance (a maintenance check is
    /// present), else critical, warning or passing.
    pub status: String,
    pub port: u64,
    pub weights: Weights,
    pub namespace: String,
    pub meta: BTreeMap<String, String>,
}

/// consul-template's `Node`, fields in its order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
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
    pub enable_tag_override: bool,
}

/// consul-template's `CatalogNode`: `{{Node.Address}}`, `{{#each Services}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDetail {
    pub node: NodeInfo,
    /// Sorted by service name, then ID (as consul-template sorts them).
    pub services: Vec<NodeService>,
}

/// Fetched data of one dependency.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Key (no leading slash) -> value and metadata.
    Kv(BTreeMap<String, KvEntry>),
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
