//! The `consul` backend: tribune or any Consul-compatible agent over HTTP,
//! with blocking queries (`?index=&wait=`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tribune_apiclient::{key_path, ApiClient, Config, Error as ApiError, TlsConfig};

use super::{BackendError, Fetched};
use crate::dependency::{
    Data, Dependency, Instance, KvEntry, NodeDetail, NodeInfo, NodeService, Weights,
};

pub struct Consul {
    /// One client per agent address, tried in order (confd's repeatable
    /// `-node`); each carries the token and TLS settings.
    nodes: Vec<Node>,
    /// The agent's own node name (for `node` without an argument), asked
    /// once from /v1/agent/self like consul-template does.
    self_name: parking_lot::Mutex<Option<String>>,
    /// `?stale`: any server may answer (consul-template's `max_stale`).
    stale: bool,
}

struct Node {
    /// As the user gave it, for messages.
    base: String,
    api: ApiClient,
}

/// TLS and consistency settings beyond the address and token.
#[derive(Clone, Debug, Default)]
pub struct ConsulOptions {
    pub stale: bool,
    pub tls: crate::ctconfig::Tls,
}

fn node_info(n: &Value) -> NodeInfo {
    NodeInfo {
        node: s(n, "Node"),
        id: s(n, "ID"),
        address: s(n, "Address"),
        datacenter: s(n, "Datacenter"),
        meta: map(n, "Meta"),
        tagged_addresses: map(n, "TaggedAddresses"),
    }
}

fn node_detail(v: &Value) -> Option<NodeDetail> {
    if !v["Node"].is_object() {
        return None;
    }
    let mut services: Vec<NodeService> = v["Services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, sv)| NodeService {
            id: s(sv, "ID"),
            service: s(sv, "Service"),
            tags: tags(sv),
            meta: map(sv, "Meta"),
            port: sv["Port"].as_u64().unwrap_or(0),
            address: s(sv, "Address"),
            enable_tag_override: sv["EnableTagOverride"].as_bool().unwrap_or(false),
        })
        .collect();
    services.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
    Some(NodeDetail {
        node: node_info(&v["Node"]),
        services,
    })
}

/// `?dc=` and `?near=` of a catalog or health query.
fn dc_near(dc: &Option<String>, near: &Option<String>) -> Vec<(&'static str, String)> {
    dc.iter()
        .map(|d| ("dc", d.clone()))
        .chain(near.iter().map(|n| ("near", n.clone())))
        .collect()
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn map(v: &Value, k: &str) -> BTreeMap<String, String> {
    v.get(k)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(a, b)| (a.clone(), b.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's tags, sorted as consul-template sorts them.
fn tags(sv: &Value) -> Vec<String> {
    let mut t: Vec<String> = sv["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    t.sort();
    t
}

/// One `/v1/kv` entry with the metadata consul-template's `KeyPair` has.
fn kv_entry(e: &Value) -> KvEntry {
    let n = |k: &str| e[k].as_u64().unwrap_or(0);
    KvEntry {
        value: decode(&e["Value"]),
        create_index: n("CreateIndex"),
        modify_index: n("ModifyIndex"),
        lock_index: n("LockIndex"),
        flags: n("Flags"),
        session: s(e, "Session"),
    }
}

/// consul's `HealthChecks.AggregatedStatus`: any maintenance check makes
/// it "maintenance"; else the worst of critical, warning, passing (an
/// unknown status counts as critical); no checks is passing.
fn aggregated_status(checks: &[Value]) -> &'static str {
    let mut worst = 0;
    for c in checks {
        let id = c["CheckID"].as_str().unwrap_or("");
        if id == "_node_maintenance" || id.starts_with("_service_maintenance:") {
            return "maintenance";
        }
        worst = worst.max(match c["Status"].as_str() {
            Some("passing") => 0,
            Some("warning") => 1,
            _ => 2,
        });
    }
    ["passing", "warning", "critical"][worst]
}

fn decode(v: &Value) -> String {
    v.as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn instance(e: &Value) -> Instance {
    let n = &e["Node"];
    let sv = &e["Service"];
    let checks: Vec<Value> = e["Checks"].as_array().cloned().unwrap_or_default();
    let address = match s(sv, "Address") {
        a if a.is_empty() => s(n, "Address"),
        a => a,
    };
    let tagged: BTreeMap<String, Value> = sv["TaggedAddresses"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Instance {
        node: s(n, "Node"),
        node_id: s(n, "ID"),
        node_address: s(n, "Address"),
        node_datacenter: s(n, "Datacenter"),
        node_tagged_addresses: map(n, "TaggedAddresses"),
        node_meta: map(n, "Meta"),
        service_meta: map(sv, "Meta"),
        address,
        service_tagged_addresses: tagged,
        id: s(sv, "ID"),
        name: s(sv, "Service"),
        kind: s(sv, "Kind"),
        tags: tags(sv),
        status: aggregated_status(&checks).to_string(),
        checks,
        port: sv["Port"].as_u64().unwrap_or(0),
        weights: Weights {
            passing: sv["Weights"]["Passing"].as_i64().unwrap_or(1),
            warning: sv["Weights"]["Warning"].as_i64().unwrap_or(1),
        },
        namespace: s(sv, "Namespace"),
        meta: map(sv, "Meta"),
    }
}

/// A request's failure as the backend reported it before the shared
/// client: the reqwest error's own text after the dependency and address.
fn request_error(what: &str, base: &str, e: ApiError) -> BackendError {
    match e {
        ApiError::Transport { source, .. } => {
            BackendError::Request(format!("{what}: {base}: {source}"))
        }
        other => BackendError::Request(format!("{what}: {base}: {other}")),
    }
}

impl Consul {
    /// With consul-template's `consul { ssl {...} }` and `max_stale`. TLS
    /// settings apply to https addresses; given for plain http ones they
    /// are warned about, never silently dropped.
    pub fn with_options(
        nodes: Vec<String>,
        token: Option<String>,
        o: ConsulOptions,
    ) -> Result<Self, BackendError> {
        let t = &o.tls;
        let tls = TlsConfig {
            ca_file: t.ca_cert.clone(),
            ca_path: t.ca_path.clone(),
            cert_file: t.cert.clone(),
            key_file: t.key.clone(),
            server_name: t.server_name.clone(),
            verify: t.verify,
        };
        let configs: Vec<Config> = nodes
            .iter()
            .map(|n| Config {
                address: n.clone(),
                https: t.enabled,
                token: token.clone(),
                tls: tls.clone(),
                connect_timeout: Some(Duration::from_secs(5)),
                pool_max_idle_per_host: Some(64),
                ..Config::default()
            })
            .collect();
        let bases: Vec<String> = configs
            .iter()
            .map(|c| {
                c.base_url()
                    .map_err(|e| BackendError::Request(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let any_https = bases.iter().any(|u| u.starts_with("https://"));
        if tls.server_name.is_some() && any_https && bases.len() != 1 {
            return Err(BackendError::Request(
                "consul.ssl.server_name: needs exactly one agent address".into(),
            ));
        }
        if !any_https && (tls.is_set() || t.enabled) {
            tracing::warn!(address = %bases.join(","), "consul.ssl settings are not applied: the agent address is plain http (use an https:// address or ssl.enabled = true)");
        }
        let nodes = configs
            .into_iter()
            .zip(bases)
            .map(|(c, base)| {
                let api =
                    ApiClient::try_new(c).map_err(|e| BackendError::Request(e.to_string()))?;
                Ok(Node { base, api })
            })
            .collect::<Result<_, BackendError>>()?;
        Ok(Self {
            nodes,
            self_name: parking_lot::Mutex::new(None),
            stale: o.stale,
        })
    }

    /// The agent's node name, from the first agent that answers.
    async fn self_name(&self) -> Result<String, BackendError> {
        if let Some(n) = self.self_name.lock().clone() {
            return Ok(n);
        }
        let mut last_err = BackendError::Request("no agent address configured".into());
        for Node { base, api } in &self.nodes {
            let r = api
                .send_timeout(
                    Method::GET,
                    "agent/self",
                    &[],
                    None,
                    Some(Duration::from_secs(15)),
                )
                .await;
            let v: Value = match r {
                Ok(r) if r.is_success() => match serde_json::from_slice(&r.body) {
                    Ok(v) => v,
                    Err(e) => {
                        last_err = BackendError::Data(format!("agent/self from {base}: {e}"));
                        continue;
                    }
                },
                Ok(r) => {
                    last_err = BackendError::Status {
                        what: "agent/self".into(),
                        status: r.status,
                        body: String::from_utf8_lossy(&r.body).trim().to_string(),
                    };
                    continue;
                }
                Err(e) => {
                    last_err = request_error("agent/self", base, e);
                    continue;
                }
            };
            match v["Config"]["NodeName"].as_str().filter(|n| !n.is_empty()) {
                Some(n) => {
                    *self.self_name.lock() = Some(n.to_string());
                    return Ok(n.to_string());
                }
                None => {
                    last_err = BackendError::Data(format!("agent/self from {base}: no NodeName"))
                }
            }
        }
        Err(last_err)
    }

    pub async fn fetch(
        &self,
        dep: &Dependency,
        index: u64,
        wait: Duration,
    ) -> Result<Fetched, BackendError> {
        let (path, mut query): (String, Vec<(&str, String)>) = match dep {
            Dependency::KvPrefix(p) => (
                format!("kv/{}", key_path(p)),
                vec![("recurse", String::new())],
            ),
            Dependency::KvKey(k) => (format!("kv/{}", key_path(k)), vec![]),
            Dependency::KvKeyDc { key, dc } => {
                (format!("kv/{}", key_path(key)), vec![("dc", dc.clone())])
            }
            Dependency::KvPrefixDc { prefix, dc } => (
                format!("kv/{}", key_path(prefix)),
                vec![("recurse", String::new()), ("dc", dc.clone())],
            ),
            Dependency::Service {
                name,
                tag,
                dc,
                near,
            } => (
                format!("health/service/{}", key_path(name)),
                tag.iter()
                    .map(|t| ("tag", t.clone()))
                    .chain(dc_near(dc, near))
                    .collect(),
            ),
            Dependency::Services { dc } => ("catalog/services".into(), dc_near(dc, &None)),
            Dependency::Nodes { dc, near } => ("catalog/nodes".into(), dc_near(dc, near)),
            Dependency::Node { name, dc } => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => self.self_name().await?,
                };
                (
                    format!("catalog/node/{}", key_path(&name)),
                    dc_near(dc, &None),
                )
            }
            Dependency::Datacenters => ("catalog/datacenters".into(), vec![]),
            Dependency::File(_) => return Err(BackendError::Unsupported(dep.to_string())),
        };
        if self.stale {
            query.push(("stale", String::new()));
        }
        if index > 0 {
            query.push(("index", index.to_string()));
            query.push(("wait", format!("{}ms", wait.as_millis())));
        }
        let mut last_err = BackendError::Request("no agent address configured".into());
        for Node { base, api } in &self.nodes {
            let timeout = wait + wait / 16 + Duration::from_secs(15);
            let reply = match api
                .send_timeout(Method::GET, &path, &query, None, Some(timeout))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last_err = request_error(&dep.to_string(), base, e);
                    continue;
                }
            };
            let (status, idx, body) = (reply.status, reply.index, reply.body);
            let absent = matches!(
                dep,
                Dependency::KvPrefix(_)
                    | Dependency::KvKey(_)
                    | Dependency::KvKeyDc { .. }
                    | Dependency::KvPrefixDc { .. }
                    | Dependency::Node { .. }
            );
            if status == 404 && absent {
                let d = match dep {
                    Dependency::KvKey(_) | Dependency::KvKeyDc { .. } => Data::Key(None),
                    Dependency::Node { .. } => Data::Node(None),
                    _ => Data::Kv(BTreeMap::new()),
                };
                return Ok((d, idx));
            }
            if !(200..300).contains(&status) {
                return Err(BackendError::Status {
                    what: dep.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body).trim().to_string(),
                });
            }
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Data(format!("{dep}: bad JSON from {base}: {e}")))?;
            let data = match dep {
                Dependency::KvPrefix(_) | Dependency::KvPrefixDc { .. } => Data::Kv(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|e| !s(e, "Key").ends_with('/') || !e["Value"].is_null())
                        .map(|e| (s(e, "Key"), kv_entry(e)))
                        .collect(),
                ),
                Dependency::KvKey(_) | Dependency::KvKeyDc { .. } => Data::Key(
                    v.as_array()
                        .and_then(|a| a.first())
                        .map(|e| decode(&e["Value"])),
                ),
                // Sorted by node, then ID, as consul-template sorts them,
                // unless `~near` asked for the agent's order.
                Dependency::Service { near, .. } => {
                    let mut l: Vec<Instance> =
                        v.as_array().into_iter().flatten().map(instance).collect();
                    if near.is_none() {
                        l.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
                    }
                    Data::Service(l)
                }
                Dependency::Services { .. } => Data::Services(
                    v.as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, t)| (k.clone(), tags(&json!({ "Tags": t }))))
                        .collect(),
                ),
                Dependency::Nodes { near, .. } => {
                    let mut l: Vec<NodeInfo> =
                        v.as_array().into_iter().flatten().map(node_info).collect();
                    if near.is_none() {
                        l.sort_by(|a, b| (&a.node, &a.address).cmp(&(&b.node, &b.address)));
                    }
                    Data::Nodes(l)
                }
                Dependency::Node { .. } => Data::Node(node_detail(&v)),
                Dependency::Datacenters => Data::Datacenters(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                ),
                Dependency::File(_) => return Err(BackendError::Unsupported(dep.to_string())),
            };
            return Ok((data, idx));
        }
        Err(last_err)
    }
}
