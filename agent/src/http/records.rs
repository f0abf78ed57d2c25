//! Catalog and agent records rendered in Consul's JSON shapes.
//!
//! Each function mirrors one of Consul's Go structs, key for key: a field
//! tagged `omitempty` there is left out here when empty, every other field
//! is always present (Consul Community Edition, so no `Namespace` or
//! `Partition`). The struct each follows is named in its doc comment.

use serde_json::{json, Map, Value};

use crate::local::{CheckView, ServiceDef};
use crate::state::catalog::{CheckRec, NodeRec, ServiceAddress, ServiceRec, Weights};
use gocompat::duration::short as fmt_duration;
use std::collections::BTreeMap;

fn tagged(t: &BTreeMap<String, ServiceAddress>) -> Value {
    Value::Object(
        t.iter()
            .map(|(k, a)| (k.clone(), json!({"Address": a.address, "Port": a.port})))
            .collect::<Map<_, _>>(),
    )
}

fn weights(w: &Weights) -> Value {
    json!({"Passing": w.passing, "Warning": w.warning})
}

/// An object from `json!`, to add optional keys to.
fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A `map[string]ServiceAddress` field tagged `omitempty`.
fn put_tagged(o: &mut Map<String, Value>, key: &str, t: &BTreeMap<String, ServiceAddress>) {
    if !t.is_empty() {
        o.insert(key.into(), tagged(t));
    }
}

/// `structs.ConnectProxyConfig` of a typical service: its only fields
/// without `omitempty` are `Mode` and the two structs.
fn empty_proxy() -> Value {
    json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
}

/// `structs.Node`.
pub fn node(n: &NodeRec) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "Meta": n.meta,
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    })
}

/// `structs.NodeService`: a service as nested in health results and
/// `catalog/node` (`Port` and `TaggedAddresses` are `omitempty`; `Kind`
/// too, and always empty here).
pub fn service(s: &ServiceRec) -> Value {
    let mut o = object(json!({
        "ID": s.id, "Service": s.service, "Tags": s.tags, "Address": s.address,
        "Meta": s.meta, "Weights": weights(&s.weights),
        "EnableTagOverride": s.enable_tag_override,
        "Proxy": empty_proxy(), "Connect": {}, "PeerName": "",
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    }));
    put_tagged(&mut o, "TaggedAddresses", &s.tagged_addresses);
    if s.port != 0 {
        o.insert("Port".into(), s.port.into());
    }
    Value::Object(o)
}

/// `structs.ServiceNode`: an entry of `/v1/catalog/service/<name>`
/// (`ServiceTaggedAddresses` and `PeerName` are `omitempty`).
pub fn catalog_service(n: &NodeRec, s: &ServiceRec) -> Value {
    let mut o = object(json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "NodeMeta": n.meta,
        "ServiceKind": "", "ServiceID": s.id, "ServiceName": s.service, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServiceWeights": weights(&s.weights),
        "ServiceMeta": s.meta, "ServicePort": s.port, "ServiceSocketPath": "",
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": empty_proxy(), "ServiceConnect": {}, "ServiceLocality": null,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    }));
    put_tagged(&mut o, "ServiceTaggedAddresses", &s.tagged_addresses);
    Value::Object(o)
}

/// `structs.HealthCheck` (only `PeerName` is `omitempty`). `Definition`
/// is empty, as Consul's is for every check an agent registers.
pub fn check(c: &CheckRec) -> Value {
    json!({
        "Node": c.node, "CheckID": c.check_id, "Name": c.name, "Status": c.status.as_str(),
        "Notes": c.notes, "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
        "ServiceTags": c.service_tags, "Type": c.kind, "Interval": c.interval, "Timeout": c.timeout,
        "ExposedPort": 0, "Definition": {},
        "CreateIndex": c.create_index, "ModifyIndex": c.modify_index,
    })
}

/// `api.AgentService`: `/v1/agent/services` entries. `Kind`,
/// `TaggedAddresses` and the raft indexes (zero in an agent's local state)
/// are `omitempty`; `Datacenter` is always set.
pub fn agent_service(s: &ServiceDef, datacenter: &str) -> Value {
    let mut o = object(json!({
        "ID": s.id, "Service": s.name, "Tags": s.tags, "Meta": s.meta, "Port": s.port,
        "Address": s.address, "Weights": weights(&s.weights),
        "EnableTagOverride": s.enable_tag_override, "Datacenter": datacenter,
    }));
    put_tagged(&mut o, "TaggedAddresses", &s.tagged_addresses);
    Value::Object(o)
}

/// `structs.HealthCheck` of a local check (`/v1/agent/checks`).
pub fn agent_check(c: &CheckView, node: &str) -> Value {
    let mut v = check(&c.to_rec(node));
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "Interval".into(),
            Value::String(fmt_duration(c.def.interval)),
        );
    }
    v
}

/// `api.HealthCheck` as `/v1/agent/health/service/*` fills it: Consul
/// copies only the identity, status and output of each check, so `Type`
/// is empty and `Definition` is the zero `api.HealthCheckDefinition`, whose
/// fields have no `omitempty` (durations render as "0s").
pub fn agent_health_check(c: &CheckView, node: &str) -> Value {
    let r = c.to_rec(node);
    json!({
        "Node": r.node, "CheckID": r.check_id, "Name": r.name, "Status": r.status.as_str(),
        "Notes": r.notes, "Output": r.output, "ServiceID": r.service_id,
        "ServiceName": r.service_name, "ServiceTags": r.service_tags, "Type": "",
        "ExposedPort": 0,
        "Definition": {
            "Interval": "0s", "Timeout": "0s", "DeregisterCriticalServiceAfter": "0s",
            "HTTP": "", "Header": null, "Method": "", "Body": "", "TLSServerName": "",
            "TLSSkipVerify": false, "TCP": "", "UDP": "", "GRPC": "", "OSService": "",
            "GRPCUseTLS": false,
        },
        "CreateIndex": 0, "ModifyIndex": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    /// Empty `omitempty` fields are left out; a set one appears.
    #[test]
    fn omitempty_fields() {
        let mut s = ServiceRec {
            id: "w".into(),
            service: "w".into(),
            ..Default::default()
        };
        let v = service(&s);
        assert!(v.get("Port").is_none() && v.get("TaggedAddresses").is_none());
        assert_eq!(v["PeerName"], "");
        s.port = 80;
        s.tagged_addresses.insert(
            "lan".into(),
            ServiceAddress {
                address: "10.0.0.1".into(),
                port: 80,
            },
        );
        let v = service(&s);
        assert_eq!(v["Port"], 80);
        assert_eq!(v["TaggedAddresses"]["lan"]["Address"], "10.0.0.1");
        let n = NodeRec::default();
        let c = catalog_service(&n, &s);
        assert!(c.get("ServiceTaggedAddresses").is_some());
        assert_eq!(c["ServiceLocality"], Value::Null);
        s.tagged_addresses.clear();
        assert_eq!(
            keys(&catalog_service(&n, &s)),
            [
                "Address",
                "CreateIndex",
                "Datacenter",
                "ID",
                "ModifyIndex",
                "Node",
                "NodeMeta",
                "ServiceAddress",
                "ServiceConnect",
                "ServiceEnableTagOverride",
                "ServiceID",
                "ServiceKind",
                "ServiceLocality",
                "ServiceMeta",
                "ServiceName",
                "ServicePort",
                "ServiceProxy",
                "ServiceSocketPath",
                "ServiceTags",
                "ServiceWeights",
                "TaggedAddresses",
            ]
        );
    }
}
