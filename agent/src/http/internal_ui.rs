//! `/v1/internal/ui/*`: the summaries Consul's own web UI reads, so a list
//! page is one blocking query instead of one per service or node (browsers
//! allow only six connections per origin, and each long-poll holds one).

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::records as render;
use super::routes::{Endpoint as E, Routes};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::block::blocking_any;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::state::catalog::{self as cat, Catalog, NodeRec};
use crate::state::Health;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/internal/ui/services", E::get(services))
        .route("/v1/internal/ui/nodes", E::get(nodes))
        .route("/v1/internal/ui/node/{name}", E::get(node))
}

/// Consul's ServiceSummary: one entry per service name with its instance
/// count and the checks of all instances (node checks included) by status.
pub fn service_summaries(c: &Catalog, datacenter: &str) -> Vec<Value> {
    c.service_names()
        .map(|(name, tags)| {
            let instances = c.instances(name);
            let nodes: BTreeSet<&str> = instances.iter().map(|(n, _)| n.node.as_str()).collect();
            let (mut passing, mut warning, mut critical) = (0u64, 0u64, 0u64);
            for (n, s) in &instances {
                for check in c.instance_checks(&n.node, &s.id) {
                    match check.status {
                        Health::Passing => passing += 1,
                        Health::Warning => warning += 1,
                        // maintenance and unknown states count as critical, as in Consul
                        _ => critical += 1,
                    }
                }
            }
            json!({
                "Kind": "", "Name": name, "Datacenter": datacenter,
                "Tags": tags, "Nodes": nodes, "InstanceCount": instances.len(),
                "ChecksPassing": passing, "ChecksWarning": warning, "ChecksCritical": critical,
                "ExternalSources": null,
            })
        })
        .collect()
}

/// Consul's NodeDump entry: the node with its services and checks.
pub fn node_dump(c: &Catalog, n: &NodeRec) -> Value {
    let mut v = render::node(n);
    if let Some(o) = v.as_object_mut() {
        let services: Vec<Value> = c.node_services(&n.node).map(render::service).collect();
        let checks: Vec<Value> = c.node_checks(&n.node).map(render::check).collect();
        o.insert("Services".into(), Value::from(services));
        o.insert("Checks".into(), Value::from(checks));
    }
    v
}

async fn services(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let dc = s.config.datacenter.clone();
    blocking_any(
        &s,
        &ctx,
        &[cat::SERVICES, cat::CHECKS],
        |t| t.catalog.services_index().max(t.catalog.checks_index()),
        |t| {
            let mut all = service_summaries(&t.catalog, &dc);
            all.retain(|v| visible(&ctx, Resource::Service, &v["Name"]));
            Some(all)
        },
    )
    .await
}

/// The token may read the entry's service (or node).
fn visible(ctx: &RequestCtx, res: Resource, name: &Value) -> bool {
    ctx.authz()
        .can(res, name.as_str().unwrap_or(""), Need::Read)
}

async fn nodes(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    blocking_any(
        &s,
        &ctx,
        &[cat::NODES, cat::SERVICES, cat::CHECKS],
        |t| {
            let c = &t.catalog;
            c.nodes_index()
                .max(c.services_index())
                .max(c.checks_index())
        },
        |t| {
            let c = &t.catalog;
            let authz = ctx.authz();
            let list = c
                .nodes()
                .filter(|n| authz.can(Resource::Node, &n.node, Need::Read));
            Some(list.map(|n| node_dump(c, n)).collect::<Vec<_>>())
        },
    )
    .await
}

async fn node(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ctx.authz().require(Resource::Node, &name, Need::Read)?;
    let target = cat::node_target(&name);
    blocking_any(
        &s,
        &ctx,
        &[target.as_str()],
        |t| t.catalog.node_index(&name),
        |t| t.catalog.node(&name).map(|n| node_dump(&t.catalog, n)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{CatalogCommand, CheckRec, RegisterReq, ServiceRec};
    use crate::state::Tables;
    use crate::state::{Changes, Command};

    fn node(name: &str) -> NodeRec {
        NodeRec {
            id: String::new(),
            node: name.into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            create_index: 0,
            modify_index: 0,
        }
    }

    fn check(node: &str, id: &str, svc: &str, status: Health) -> CheckRec {
        CheckRec {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            status,
            service_id: svc.into(),
            service_name: svc.into(),
            ..Default::default()
        }
    }

    fn register(t: &mut Tables, index: u64, n: &str, svc: &str, checks: Vec<CheckRec>) {
        let service = ServiceRec {
            id: svc.into(),
            service: svc.into(),
            tags: vec![format!("t-{n}")],
            address: String::new(),
            port: 80,
            meta: Default::default(),
            tagged_addresses: Default::default(),
            weights: Default::default(),
            enable_tag_override: false,
            create_index: 0,
            modify_index: 0,
        };
        let cmd = Command::Catalog(CatalogCommand::Register(Box::new(RegisterReq {
            node: node(n),
            skip_node_update: false,
            service: Some(service),
            checks,
        })));
        t.apply(index, &cmd, &mut Changes::default());
    }

    /// Counts add up per instance, and a node check counts for each
    /// service on that node (Consul's summary does the same).
    #[test]
    fn summaries_count_instances_and_checks() {
        let mut t = Tables::default();
        register(
            &mut t,
            2,
            "a",
            "web",
            vec![
                check("a", "serfHealth", "", Health::Passing),
                check("a", "service:web", "web", Health::Critical),
            ],
        );
        register(
            &mut t,
            3,
            "b",
            "web",
            vec![check("b", "service:web", "web", Health::Warning)],
        );
        let all = service_summaries(&t.catalog, "dc1");
        assert_eq!(all.len(), 1);
        let web = &all[0];
        assert_eq!(web["Name"], "web");
        assert_eq!(web["InstanceCount"], 2);
        assert_eq!(web["Nodes"], json!(["a", "b"]));
        assert_eq!(web["Tags"], json!(["t-a", "t-b"]));
        assert_eq!(
            (
                &web["ChecksPassing"],
                &web["ChecksWarning"],
                &web["ChecksCritical"]
            ),
            (&json!(1), &json!(1), &json!(1))
        );
        let a = t.catalog.node("a").unwrap();
        let dump = node_dump(&t.catalog, a);
        assert_eq!(dump["Node"], "a");
        assert_eq!(dump["Services"][0]["Service"], "web");
        assert_eq!(dump["Checks"].as_array().map(Vec::len), Some(2));
    }
}
