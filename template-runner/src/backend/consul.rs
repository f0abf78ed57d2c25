//! The `consul` backend: tribune or any Consul-compatible agent over HTTP,
//! with blocking queries (`?index=&wait=`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::{BackendError, Fetched};
use crate::dependency::{
    Data, Dependency, Instance, KvEntry, NodeDetail, NodeInfo, NodeService, Weights,
};

pub struct Consul {
    client: reqwest::Client,
    /// Agent base URLs, tried in order (confd's repeatable `-node`).
    nodes: Vec<String>,
    token: Option<String>,
    /// The agent's own node name (for `node` without an argument), asked
    /// once from /v1/agent/self like consul-template does.
    self_name: parking_lot::Mutex<Option<String>>,
    /// `?stale`: any server may answer (consul-template's `max_stale`).
    stale: bool,
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

/// `ssl { ca_cert cert key verify }` on the client.
fn tls_client(
    mut b: reqwest::ClientBuilder,
    t: &crate::ctconfig::Tls,
) -> Result<reqwest::ClientBuilder, BackendError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| BackendError::Request(format!("{}: {e}", p.display())))
    };
    if let Some(ca) = &t.ca_cert {
        let c = reqwest::Certificate::from_pem(&read(ca)?)
            .map_err(|e| BackendError::Request(format!("{}: {e}", ca.display())))?;
        b = b.add_root_certificate(c);
    }
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.extend(read(key)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| BackendError::Request(format!("{}: {e}", cert.display())))?;
            b = b.identity(id);
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(BackendError::Request(
                "consul.ssl: cert and key must be given together".into(),
            ))
        }
        (None, None) => {}
    }
    if !t.verify {
        tracing::warn!("consul.ssl.verify = false: the agent's certificate is not checked");
    }
    Ok(b.danger_accept_invalid_certs(!t.verify))
}

/// `ssl { server_name }`: the name TLS sends (SNI) and checks the agent's
/// certificate against, instead of the address's host. The URL carries
/// the name and the client resolves it to the configured address.
fn server_name(
    b: reqwest::ClientBuilder,
    urls: &mut [String],
    name: &str,
) -> Result<reqwest::ClientBuilder, BackendError> {
    use std::net::ToSocketAddrs;
    let bad = |m: String| BackendError::Request(format!("consul.ssl.server_name: {m}"));
    if name.is_empty() || name.contains(['/', ':', '@', ' ']) {
        return Err(bad(format!("{name:?} is not a host name")));
    }
    let [url] = urls else {
        return Err(bad("needs exactly one agent address".into()));
    };
    let mut u = reqwest::Url::parse(url).map_err(|e| bad(format!("{url}: {e}")))?;
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("resolving {host}: {e}")))?
        .collect();
    u.set_host(Some(name))
        .map_err(|e| bad(format!("{name:?}: {e}")))?;
    *url = u.as_str().trim_end_matches('/').to_string();
    Ok(b.resolve_to_addrs(name, &addrs))
}

fn base_url(addr: &str) -> String {
    let a = addr.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

fn path_escape(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
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

impl Consul {
    pub fn new(nodes: Vec<String>, token: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            client,
            nodes: nodes.iter().map(|n| base_url(n)).collect(),
            token,
            self_name: parking_lot::Mutex::new(None),
            stale: false,
        }
    }

    /// With consul-template's `consul { ssl {...} }` and `max_stale`. TLS
    /// settings apply to https addresses; given for plain http ones they
    /// are warned about, never silently dropped.
    pub fn with_options(
        nodes: Vec<String>,
        token: Option<String>,
        o: ConsulOptions,
    ) -> Result<Self, BackendError> {
        let https = o.tls.enabled;
        let mut urls: Vec<String> = nodes
            .iter()
            .map(|n| {
                if https && !n.contains("://") {
                    format!("https://{}", n.trim_end_matches('/'))
                } else {
                    base_url(n)
                }
            })
            .collect();
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64);
        let any_https = urls.iter().any(|u| u.starts_with("https://"));
        let t = &o.tls;
        let tls_given = t.ca_cert.is_some()
            || t.cert.is_some()
            || t.key.is_some()
            || t.server_name.is_some()
            || !t.verify;
        if any_https {
            b = tls_client(b, t)?;
            if let Some(name) = &t.server_name {
                b = server_name(b, &mut urls, name)?;
            }
        } else if tls_given || t.enabled {
            tracing::warn!(address = %urls.join(","), "consul.ssl settings are not applied: the agent address is plain http (use an https:// address or ssl.enabled = true)");
        }
        let client = b
            .build()
            .map_err(|e| BackendError::Request(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            nodes: urls,
            token,
            self_name: parking_lot::Mutex::new(None),
            stale: o.stale,
        })
    }

    fn get(&self, url: String, timeout: Duration) -> reqwest::RequestBuilder {
        let req = self.client.get(url).timeout(timeout);
        match &self.token {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        }
    }

    /// The agent's node name, from the first agent that answers.
    async fn self_name(&self) -> Result<String, BackendError> {
        if let Some(n) = self.self_name.lock().clone() {
            return Ok(n);
        }
        let mut last_err = BackendError::Request("no agent address configured".into());
        for base in &self.nodes {
            let r = self
                .get(format!("{base}/v1/agent/self"), Duration::from_secs(15))
                .send()
                .await;
            let v: Value = match r {
                Ok(r) if r.status().is_success() => match r.json().await {
                    Ok(v) => v,
                    Err(e) => {
                        last_err = BackendError::Data(format!("agent/self from {base}: {e}"));
                        continue;
                    }
                },
                Ok(r) => {
                    last_err = BackendError::Status {
                        what: "agent/self".into(),
                        status: r.status().as_u16(),
                        body: r.text().await.unwrap_or_default().trim().to_string(),
                    };
                    continue;
                }
                Err(e) => {
                    last_err = BackendError::Request(format!("agent/self: {base}: {e}"));
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
                format!("kv/{}", path_escape(p)),
                vec![("recurse", String::new())],
            ),
            Dependency::KvKey(k) => (format!("kv/{}", path_escape(k)), vec![]),
            Dependency::Service {
                name,
                tag,
                dc,
                near,
            } => (
                format!("health/service/{}", path_escape(name)),
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
                    format!("catalog/node/{}", path_escape(&name)),
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
        for base in &self.nodes {
            let req = self
                .get(
                    format!("{base}/v1/{path}"),
                    wait + wait / 16 + Duration::from_secs(15),
                )
                .query(&query);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last_err = BackendError::Request(format!("{dep}: {base}: {e}"));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let idx = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let body = resp
                .bytes()
                .await
                .map_err(|e| BackendError::Request(format!("{dep}: {base}: {e}")))?;
            let absent = matches!(
                dep,
                Dependency::KvPrefix(_) | Dependency::KvKey(_) | Dependency::Node { .. }
            );
            if status == 404 && absent {
                let d = match dep {
                    Dependency::KvKey(_) => Data::Key(None),
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
                Dependency::KvPrefix(_) => Data::Kv(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|e| !s(e, "Key").ends_with('/') || !e["Value"].is_null())
                        .map(|e| (s(e, "Key"), kv_entry(e)))
                        .collect(),
                ),
                Dependency::KvKey(_) => Data::Key(
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
