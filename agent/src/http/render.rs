//! Catalog and agent records rendered in Consul's JSON shapes.

use serde_json::{json, Map, Value};

use crate::local::{fmt_duration, CheckView, ServiceDef};
use crate::state::catalog::{CheckRec, NodeRec, ServiceAddress, ServiceRec, Weights};
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

pub fn node(n: &NodeRec) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "Meta": n.meta,
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    })
}

/// A service as nested in health results and `catalog/node`.
pub fn service(s: &ServiceRec) -> Value {
    json!({
        "ID": s.id, "Service": s.service, "Tags": s.tags, "Address": s.address,
        "TaggedAddresses": tagged(&s.tagged_addresses), "Meta": s.meta, "Port": s.port,
        "Weights": weights(&s.weights), "EnableTagOverride": s.enable_tag_override,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

/// An entry of `/v1/catalog/service/<name>`.
pub fn catalog_service(n: &NodeRec, s: &ServiceRec) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "NodeMeta": n.meta,
        "ServiceKind": "", "ServiceID": s.id, "ServiceName": s.service, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServiceTaggedAddresses": tagged(&s.tagged_addresses),
        "ServiceWeights": weights(&s.weights), "ServiceMeta": s.meta, "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override, "ServiceProxy": {}, "ServiceConnect": {},
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

pub fn check(c: &CheckRec) -> Value {
    json!({
        "Node": c.node, "CheckID": c.check_id, "Name": c.name, "Status": c.status.as_str(),
        "Notes": c.notes, "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
        "ServiceTags": c.service_tags, "Type": c.kind, "Interval": c.interval, "Timeout": c.timeout,
        "ExposedPort": 0, "Definition": {},
        "CreateIndex": c.create_index, "ModifyIndex": c.modify_index,
    })
}

/// `/v1/agent/services` entries (AgentService).
pub fn agent_service(s: &ServiceDef, datacenter: &str) -> Value {
    json!({
        "Kind": "", "ID": s.id, "Service": s.name, "Tags": s.tags, "Meta": s.meta, "Port": s.port,
        "Address": s.address, "TaggedAddresses": tagged(&s.tagged_addresses),
        "Weights": weights(&s.weights), "EnableTagOverride": s.enable_tag_override,
        "Datacenter": datacenter,
    })
}

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
