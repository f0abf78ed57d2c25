//! Every route's ACL class, in one table, checked by the pipeline's entry
//! before any handler runs (`crate::pipeline::entry`).
//!
//! A class either decides the request from the route alone (`operator`,
//! `agent` on this node, management) or hands the decision to the handler,
//! which alone knows the names involved (a key, a service in a body) and
//! filters list answers ([`Class::Handler`]; the handler reads the token's
//! `Authz` from its context). A route missing from the table is refused to
//! every token but a management one (fail closed), and
//! `tests::every_route_has_a_class` walks the route table so none is.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::Method;

use crate::acl::{Global, Need, Resource};
use crate::app::AppState;
use crate::pipeline::authz::Authz;
use crate::pipeline::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No permission needed (status, the UI's files, `acl/bootstrap`).
    Open,
    /// `operator:read` for reads, `operator:write` for the rest.
    Operator,
    /// `keyring:read` to list the gossip keys, `keyring:write` to change them.
    Keyring,
    /// `agent:read`/`agent:write` on this agent's node name.
    Agent,
    /// `node:write` on this agent's node (its checks, maintenance).
    NodeWrite,
    /// The handler checks the names it touches and filters its lists.
    Handler,
    /// Management tokens only (`acl:write`).
    Management,
}

/// The table: route pattern -> class.
const TABLE: &[(&str, Class)] = {
    use Class::*;
    &[
        ("/v1/kv", Handler),
        ("/v1/kv/", Handler),
        ("/v1/kv/{*key}", Handler),
        ("/v1/txn", Handler),
        ("/v1/status/leader", Open),
        ("/v1/status/peers", Open),
        ("/v1/agent/self", Agent),
        ("/v1/catalog/datacenters", Open),
        ("/v1/catalog/register", Handler),
        ("/v1/catalog/deregister", Handler),
        ("/v1/catalog/services", Handler),
        ("/v1/catalog/service/{name}", Handler),
        ("/v1/catalog/nodes", Handler),
        ("/v1/catalog/node/{name}", Handler),
        ("/v1/health/service/{name}", Handler),
        ("/v1/health/checks/{name}", Handler),
        ("/v1/health/node/{name}", Handler),
        ("/v1/health/state/{state}", Handler),
        ("/v1/agent/services", Handler),
        ("/v1/agent/service/{id}", Handler),
        ("/v1/agent/checks", Handler),
        ("/v1/agent/members", Handler),
        ("/v1/agent/service/register", Handler),
        ("/v1/agent/service/deregister/{id}", Handler),
        ("/v1/agent/service/maintenance/{id}", Handler),
        ("/v1/agent/check/register", NodeWrite),
        ("/v1/agent/check/deregister/{*id}", NodeWrite),
        ("/v1/agent/check/pass/{*id}", NodeWrite),
        ("/v1/agent/check/warn/{*id}", NodeWrite),
        ("/v1/agent/check/fail/{*id}", NodeWrite),
        ("/v1/agent/check/update/{*id}", NodeWrite),
        ("/v1/agent/maintenance", NodeWrite),
        ("/v1/agent/health/service/name/{name}", Handler),
        ("/v1/agent/health/service/id/{id}", Handler),
        ("/v1/agent/reload", Agent),
        ("/v1/agent/join/{addr}", Agent),
        ("/v1/agent/leave", Agent),
        ("/v1/agent/force-leave/{node}", Operator),
        ("/v1/operator/raft/configuration", Operator),
        ("/v1/operator/raft/peer", Operator),
        ("/v1/operator/raft/transfer-leader", Operator),
        ("/v1/operator/autopilot/configuration", Operator),
        ("/v1/operator/autopilot/health", Operator),
        ("/v1/operator/autopilot/state", Operator),
        ("/v1/operator/keyring", Keyring),
        ("/v1/internal/ui/services", Handler),
        ("/v1/internal/ui/nodes", Handler),
        ("/v1/internal/ui/node/{name}", Handler),
        ("/", Open),
        ("/ui", Open),
        ("/ui/", Open),
        ("/ui/{*path}", Open),
        ("/v1/session/create", Handler),
        ("/v1/session/destroy/{id}", Handler),
        ("/v1/session/renew/{id}", Handler),
        ("/v1/session/info/{id}", Handler),
        ("/v1/session/node/{node}", Handler),
        ("/v1/session/list", Handler),
        ("/v1/event/fire/{name}", Handler),
        ("/v1/event/list", Handler),
        ("/v1/agent/monitor", Agent),
        ("/v1/snapshot", Management),
        ("/v1/agent/version", Open),
        ("/v1/agent/host", Operator),
        ("/v1/agent/metrics", Agent),
        ("/v1/agent/token/{kind}", Management),
        ("/v1/acl/bootstrap", Open),
        ("/v1/acl/token/self", Open),
        ("/v1/acl/token", Handler),
        ("/v1/acl/token/{id}", Handler),
        ("/v1/acl/token/{id}/clone", Handler),
        ("/v1/acl/tokens", Handler),
        ("/v1/acl/policy", Handler),
        ("/v1/acl/policy/{id}", Handler),
        ("/v1/acl/policy/name/{name}", Handler),
        ("/v1/acl/policies", Handler),
        ("/v1/acl/role", Handler),
        ("/v1/acl/role/{id}", Handler),
        ("/v1/acl/role/name/{name}", Handler),
        ("/v1/acl/roles", Handler),
        // Consul: none for datacenters; node:read (filtered) for reads,
        // node:write on the body's node for updates.
        ("/v1/coordinate/datacenters", Open),
        ("/v1/coordinate/nodes", Handler),
        ("/v1/coordinate/node/{node}", Handler),
        ("/v1/coordinate/update", Handler),
        // query:read/write on the query's name, checked by the handlers.
        ("/v1/query", Handler),
        ("/v1/query/{id}", Handler),
        ("/v1/query/{id}/execute", Handler),
        ("/v1/query/{id}/explain", Handler),
    ]
};

/// The class of a route pattern (`None`: not in the table).
pub fn class_of(pattern: &str) -> Option<Class> {
    static MAP: OnceLock<HashMap<&'static str, Class>> = OnceLock::new();
    MAP.get_or_init(|| TABLE.iter().copied().collect())
        .get(pattern)
        .copied()
}

fn need(m: &Method) -> Need {
    match crate::pipeline::route::is_read(m) {
        true => Need::Read,
        false => Need::Write,
    }
}

/// The route-level decision for a request to `pattern`.
pub fn check(s: &AppState, pattern: &str, m: &Method, a: &Authz) -> Result<(), ApiError> {
    match class_of(pattern).unwrap_or(Class::Management) {
        Class::Open | Class::Handler => Ok(()),
        Class::Operator => a.require_global(Global::Operator, need(m)),
        Class::Keyring => a.require_global(Global::Keyring, need(m)),
        Class::Agent => a.require(Resource::Agent, &s.node.node, need(m)),
        Class::NodeWrite => a.require(Resource::Node, &s.node.node, Need::Write),
        Class::Management => a.require_global(Global::Acl, Need::Write),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the API serves has a class: a new route cannot forget
    /// its ACL decision (without one it would be management-only).
    #[test]
    fn every_route_has_a_class() {
        for ui in [true, false] {
            for r in crate::http::routes(ui).table() {
                assert!(
                    class_of(r.path).is_some(),
                    "route {} has no ACL class",
                    r.path
                );
            }
        }
        // And the table names no route that does not exist.
        let all: Vec<_> = crate::http::routes(true)
            .table()
            .into_iter()
            .chain(crate::http::routes(false).table())
            .map(|r| r.path)
            .collect();
        for (p, _) in TABLE {
            assert!(all.contains(p), "table entry {p} is no route");
        }
    }
}
