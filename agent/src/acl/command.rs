//! What a raft command needs of its token, for writes that arrive over the
//! server RPC port (`/rpc/write`) or come from the agent's own work
//! (anti-entropy, check updates): the server that proposes them checks
//! these, as Consul's catalog/KV/session endpoints vet a forwarded RPC.
//! Writes made by the leader itself (TTL expiry, reconcile, autopilot,
//! the ACL builtins) never pass here.

use super::{Authorizer, Global, Need, Resource};
use crate::state::catalog::CatalogCommand;
use crate::state::{Command, KvCommand, KvVerb, SessionCommand, Tables};

/// May the holder of `a` have `cmd` applied? `t`: the tables as they
/// stand (a deregistration names a service by ID; its name is there).
pub fn permits(a: &Authorizer, t: &Tables, cmd: &Command) -> bool {
    match cmd {
        Command::Kv(k) => kv(a, k),
        Command::Catalog(c) => catalog(a, t, c),
        Command::Session(s) => session(a, t, s),
        Command::Batch(cmds) => cmds.iter().all(|c| permits(a, t, c)),
        Command::Autopilot(_) => a.allows_global(Global::Operator, Need::Write),
        Command::Query(q) => query(a, t, q),
        // Consul's Coordinate.Update: node:write on each node.
        Command::Coordinate(crate::state::coordinate::CoordinateCommand::Update(list)) => list
            .iter()
            .all(|(node, _, _)| a.allows(Resource::Node, node, Need::Write)),
        // Restores and ACL changes replace or grant authority: a
        // management-level token only (Consul: acl:write for both).
        Command::Restore(_) | Command::Acl(_) => a.allows_global(Global::Acl, Need::Write),
    }
}

fn kv(a: &Authorizer, k: &KvCommand) -> bool {
    let write = |key: &str| a.allows(Resource::Key, key, Need::Write);
    match k {
        KvCommand::Set { key, .. }
        | KvCommand::Acquire { key, .. }
        | KvCommand::Release { key, .. }
        | KvCommand::Delete {
            key,
            recurse: false,
            ..
        } => write(key),
        KvCommand::Delete { key, .. } => a.allows_key_write_prefix(key),
        KvCommand::Txn(ops) => ops.iter().all(|o| match o.verb {
            KvVerb::DeleteTree => a.allows_key_write_prefix(&o.key),
            KvVerb::GetTree => true,
            v if v.is_read() => a.allows(Resource::Key, &o.key, Need::Read),
            _ => write(&o.key),
        }),
    }
}

/// The name of service `id` on `node`, from the command or the catalog.
fn service_name<'a>(t: &'a Tables, node: &str, id: &str) -> Option<&'a str> {
    t.catalog.service(node, id).map(|s| s.service.as_str())
}

/// A check belongs to its service (service:write) or to the node
/// (node:write) — Consul's `vetRegisterWithACL`.
fn check_ok(a: &Authorizer, node: &str, service: Option<&str>) -> bool {
    match service {
        Some(name) => a.allows(Resource::Service, name, Need::Write),
        None => a.allows(Resource::Node, node, Need::Write),
    }
}

fn catalog(a: &Authorizer, t: &Tables, c: &CatalogCommand) -> bool {
    match c {
        CatalogCommand::Register(r) => {
            let node = r.node.node.as_str();
            if !r.skip_node_update && !a.allows(Resource::Node, node, Need::Write) {
                return false;
            }
            if let Some(s) = &r.service {
                if !a.allows(Resource::Service, &s.service, Need::Write) {
                    return false;
                }
            }
            r.checks.iter().all(|ch| {
                let svc = match (&r.service, ch.service_id.as_str()) {
                    (_, "") => None,
                    (Some(s), id) if s.id == id => Some(s.service.as_str()),
                    (_, id) => service_name(t, node, id).or(Some(ch.service_name.as_str())),
                };
                check_ok(a, node, svc)
            })
        }
        CatalogCommand::Deregister {
            node,
            service_id,
            check_id,
        } => match (service_id, check_id) {
            (Some(id), _) => match service_name(t, node, id) {
                Some(name) => a.allows(Resource::Service, name, Need::Write),
                None => a.allows(Resource::Node, node, Need::Write),
            },
            (None, Some(id)) => check_ok(a, node, check_service(t, node, id)),
            (None, None) => a.allows(Resource::Node, node, Need::Write),
        },
        CatalogCommand::UpdateCheck { node, check_id, .. } => {
            check_ok(a, node, check_service(t, node, check_id))
        }
    }
}

/// The service name of check `id` on `node`, if it is a service's check.
fn check_service<'a>(t: &'a Tables, node: &'a str, id: &str) -> Option<&'a str> {
    t.catalog
        .node_checks(node)
        .find(|c| c.check_id == id && !c.service_id.is_empty())
        .map(|c| c.service_name.as_str())
}

fn session(a: &Authorizer, t: &Tables, s: &SessionCommand) -> bool {
    let on_node = |node: &str| a.allows(Resource::Session, node, Need::Write);
    match s {
        SessionCommand::Create(rec) => on_node(&rec.node),
        // A session that is gone: the write is a no-op, nothing to guard.
        SessionCommand::Renew { id } | SessionCommand::Destroy { id } => {
            t.sessions.get(id).is_none_or(|r| on_node(&r.node))
        }
        // Expiry is the leader's decision, never an agent's.
        SessionCommand::Expire { .. } => a.allows_global(Global::Acl, Need::Write),
    }
}

/// Consul: `query:write` on the query's name (its old and new one); a
/// query without a name needs a management token.
fn query(a: &Authorizer, t: &Tables, q: &crate::state::query::QueryCommand) -> bool {
    use crate::state::query::QueryCommand;
    let may = |name: &str| match name.is_empty() {
        true => a.allows_global(Global::Acl, Need::Write),
        false => a.allows(Resource::Query, name, Need::Write),
    };
    let old = |id: &str| t.queries.get(id).is_none_or(|o| may(&o.name));
    match q {
        QueryCommand::Set(rec) => may(&rec.name) && old(&rec.id),
        QueryCommand::Delete { id } => old(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::rules::parse;
    use crate::acl::DefaultPolicy;
    use crate::state::catalog::{NodeRec, RegisterReq};

    fn authz(text: &str) -> Authorizer {
        Authorizer::from_policies([&parse(text).unwrap()], DefaultPolicy::Deny)
    }

    fn register(node: &str, skip_node: bool) -> Command {
        Command::Catalog(CatalogCommand::Register(Box::new(RegisterReq {
            node: NodeRec {
                node: node.into(),
                ..Default::default()
            },
            skip_node_update: skip_node,
            service: None,
            checks: vec![],
        })))
    }

    /// Node info needs node:write; a KV write key:write; the defaults deny.
    #[test]
    fn catalog_and_kv_needs() {
        let t = Tables::default();
        let a =
            authz("node \"n1\" { policy = \"write\" }\nkey_prefix \"app/\" { policy = \"write\" }");
        assert!(permits(&a, &t, &register("n1", false)));
        assert!(!permits(&a, &t, &register("n2", false)));
        let set = |key: &str| {
            Command::Kv(KvCommand::Set {
                key: key.into(),
                value: vec![],
                flags: 0,
                cas: None,
            })
        };
        assert!(permits(&a, &t, &set("app/x")));
        assert!(!permits(&a, &t, &set("other")));
        assert!(!permits(
            &a,
            &t,
            &Command::Batch(vec![set("app/x"), set("other")])
        ));
        let ro = authz(r#"node "n1" { policy = "read" }"#);
        assert!(!permits(&ro, &t, &register("n1", false)));
        assert!(permits(&Authorizer::Manage, &t, &register("n2", false)));
    }

    /// A service needs service:write on its name, not node:write; a
    /// TTL expiry and ACL changes a management token.
    #[test]
    fn service_session_and_acl_needs() {
        use crate::state::catalog::ServiceRec;
        let t = Tables::default();
        let a =
            authz("service \"web\" { policy = \"write\" }\nsession \"n1\" { policy = \"write\" }");
        let svc = |name: &str| {
            Command::Catalog(CatalogCommand::Register(Box::new(RegisterReq {
                node: NodeRec {
                    node: "n1".into(),
                    ..Default::default()
                },
                skip_node_update: true,
                service: Some(ServiceRec {
                    id: format!("{name}-1"),
                    service: name.into(),
                    ..Default::default()
                }),
                checks: vec![],
            })))
        };
        assert!(permits(&a, &t, &svc("web")));
        assert!(!permits(&a, &t, &svc("db")));
        // Only the leader expires sessions (trusted, never checked here).
        let expire = Command::Session(SessionCommand::Expire {
            id: "s".into(),
            renew_index: 1,
        });
        assert!(!permits(&a, &t, &expire));
        let del = Command::Acl(crate::state::acl::AclCommand::DeleteToken("x".into()));
        assert!(!permits(&a, &t, &del));
        assert!(permits(&Authorizer::Manage, &t, &del));
    }
}
