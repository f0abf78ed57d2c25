//! ACL replication (Consul's `aclReplication`): policies, roles and global
//! tokens live in `primary_datacenter`; the leader of every other
//! datacenter copies them into its own tables, so a token made in the
//! primary works everywhere.
//!
//! The secondary's leader asks a server of the primary (found by the WAN
//! router) for the ACL tables with the `replication` token (which needs
//! `acl = "write"` there), as a long poll: the primary answers once its ACL
//! index passes the one the secondary has, or after [`HOLD`]. The
//! secondary then writes the differences through raft — deletions first,
//! so a renamed policy never collides with its old name — and asks again.
//! Local tokens (`Local: true`) stay in the datacenter that made them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acl::rules::Global;
use crate::acl::Need;
use crate::app::Shared;
use crate::state::acl::{AclCommand, PolicyRec, RoleRec, TokenRec, MANAGEMENT_POLICY_ID};
use crate::state::Command;

/// Where a secondary asks on the primary's server RPC port.
pub const PATH: &str = "/rpc/acl/replicate";
/// How long the primary holds a request whose index has not moved.
pub const HOLD: Duration = Duration::from_secs(30);
/// Pause after a failed round (primary unreachable, token refused).
const RETRY: Duration = Duration::from_secs(1);
/// At most this many records of each kind are taken from one answer.
const MAX_RECORDS: usize = 65_536;

/// A secondary's question: the tables once their index passes `min_index`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ask {
    pub min_index: u64,
    pub token: String,
}

/// The primary's ACL tables (global tokens only).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tables {
    pub index: u64,
    pub policies: Vec<PolicyRec>,
    pub roles: Vec<RoleRec>,
    pub tokens: Vec<TokenRec>,
}

/// The primary's side: check the token (`acl = "write"`), hold until the
/// ACL index passes `min_index` (at most [`HOLD`]), answer the tables.
pub async fn serve(s: &Shared, ask: Ask) -> Result<Tables, String> {
    if !s.config.acl.enabled {
        return Err("ACL support disabled".into());
    }
    let authz = s.resolve_local(&ask.token).map_err(|e| e.to_string())?;
    authz
        .require_global(Global::Acl, Need::Write)
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + HOLD;
    while s.store.read().acl.table_index() <= ask.min_index
        && tokio::time::Instant::now() < deadline
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = s.shutdown.cancelled() => break,
        }
    }
    let t = s.store.read();
    Ok(Tables {
        index: t.acl.table_index(),
        policies: t.acl.policies().cloned().collect(),
        roles: t.acl.roles().cloned().collect(),
        tokens: t.acl.tokens().filter(|x| !x.local).cloned().collect(),
    })
}

/// On a server of a secondary datacenter with ACLs on: replicate while
/// this server leads, until shutdown.
pub async fn run(s: Shared) {
    let Some(primary) = s.config.primary_datacenter.clone() else {
        return;
    };
    if primary == s.config.datacenter {
        return;
    }
    let mut remote_index = 0u64;
    let mut warned = false;
    loop {
        let round = async {
            if !s.leadership.is_leader() {
                tokio::time::sleep(RETRY).await;
                return Ok(remote_index);
            }
            let token = s.acl_tokens.replication_token().ok_or_else(|| {
                "no replication token (acl.tokens.replication) is set".to_string()
            })?;
            let tables = fetch(&s, &primary, remote_index, &token).await?;
            let n = apply(&s, &tables).await?;
            if n > 0 {
                tracing::info!(
                    "acl: replicated {n} change(s) from primary datacenter {primary} (index {})",
                    tables.index
                );
            }
            Ok::<u64, String>(tables.index)
        };
        let r = tokio::select! {
            r = round => r,
            _ = s.shutdown.cancelled() => return,
        };
        match r {
            Ok(i) => {
                remote_index = i;
                warned = false;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("acl: replication from {primary} failed, will retry: {e}");
                    warned = true;
                }
                remote_index = 0;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Ask a server of `primary` (the next when one cannot be reached).
async fn fetch(s: &Shared, primary: &str, min_index: u64, token: &str) -> Result<Tables, String> {
    let ask = Ask {
        min_index,
        token: token.to_string(),
    };
    let mut last = "No path to datacenter".to_string();
    for target in s.router.servers(primary).into_iter().take(3) {
        let target = target.to_string();
        let r: Result<Result<Tables, String>, _> = s
            .rpc
            .call(&target, PATH, &ask, HOLD + Duration::from_secs(10), 1)
            .await;
        match r {
            Ok(answer) => return answer,
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Write what differs from `remote`; returns how many commands.
async fn apply(s: &Shared, remote: &Tables) -> Result<usize, String> {
    let cmds = diff(&s.store.read().acl, remote);
    let n = cmds.len();
    for cmd in cmds {
        s.proposer
            .write(Command::Acl(cmd))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(n)
}

/// The commands that make the local tables match the primary's: deletions
/// (tokens, roles, policies), then policies, roles, tokens, so that every
/// reference exists when it is written.
fn diff(local: &crate::state::acl::AclTable, remote: &Tables) -> Vec<AclCommand> {
    let policies: BTreeMap<&str, &PolicyRec> = remote
        .policies
        .iter()
        .take(MAX_RECORDS)
        .map(|p| (p.id.as_str(), p))
        .collect();
    let roles: BTreeMap<&str, &RoleRec> = remote
        .roles
        .iter()
        .take(MAX_RECORDS)
        .map(|r| (r.id.as_str(), r))
        .collect();
    let tokens: BTreeMap<&str, &TokenRec> = remote
        .tokens
        .iter()
        .filter(|t| !t.local)
        .take(MAX_RECORDS)
        .map(|t| (t.accessor_id.as_str(), t))
        .collect();
    let mut out = Vec::new();
    for t in local.tokens() {
        if !t.local && !tokens.contains_key(t.accessor_id.as_str()) {
            out.push(AclCommand::DeleteToken(t.accessor_id.clone()));
        }
    }
    for r in local.roles() {
        if !roles.contains_key(r.id.as_str()) {
            out.push(AclCommand::DeleteRole(r.id.clone()));
        }
    }
    for p in local.policies() {
        if p.id != MANAGEMENT_POLICY_ID && !policies.contains_key(p.id.as_str()) {
            out.push(AclCommand::DeletePolicy(p.id.clone()));
        }
    }
    for p in policies.values() {
        let same = local.policy(&p.id).is_some_and(|l| {
            (&l.name, &l.description, &l.rules, &l.datacenters)
                == (&p.name, &p.description, &p.rules, &p.datacenters)
        });
        if !same {
            out.push(AclCommand::SetPolicy(Box::new((*p).clone())));
        }
    }
    for r in roles.values() {
        let same = local.role(&r.id).is_some_and(|l| {
            (&l.name, &l.description, &l.policies) == (&r.name, &r.description, &r.policies)
        });
        if !same {
            out.push(AclCommand::SetRole(Box::new((*r).clone())));
        }
    }
    for t in tokens.values() {
        let same = local.token(&t.accessor_id).is_some_and(|l| {
            (&l.secret_id, &l.description, &l.policies, &l.roles)
                == (&t.secret_id, &t.description, &t.policies, &t.roles)
        });
        if !same {
            out.push(AclCommand::SetToken(Box::new((*t).clone())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::acl::AclTable;

    fn policy(id: &str, name: &str, rules: &str) -> PolicyRec {
        PolicyRec {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            rules: rules.into(),
            datacenters: vec![],
            create_index: 1,
            modify_index: 1,
        }
    }

    fn token(accessor: &str, local: bool, policies: &[&str]) -> TokenRec {
        TokenRec {
            accessor_id: accessor.into(),
            secret_id: format!("s-{accessor}"),
            description: String::new(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            roles: vec![],
            local,
            create_time: String::new(),
            create_index: 1,
            modify_index: 1,
        }
    }

    #[test]
    fn deletions_first_then_what_differs_local_tokens_kept() {
        let local = AclTable::from_parts(
            vec![
                token("gone", false, &["old"]),
                token("mine", true, &[]),
                token("same", false, &["p1"]),
            ],
            vec![policy("old", "writer", ""), policy("p1", "p1", "")],
            vec![],
            0,
            5,
        );
        let remote = Tables {
            index: 9,
            // "writer" now has another ID: the old one must go first.
            policies: vec![policy("new", "writer", ""), policy("p1", "p1", "")],
            roles: vec![],
            tokens: vec![
                token("same", false, &["p1"]),
                token("fresh", false, &["new"]),
            ],
        };
        let cmds = diff(&local, &remote);
        let names: Vec<String> = cmds
            .iter()
            .map(|c| match c {
                AclCommand::DeleteToken(a) => format!("-token {a}"),
                AclCommand::DeletePolicy(a) => format!("-policy {a}"),
                AclCommand::SetPolicy(p) => format!("+policy {}", p.id),
                AclCommand::SetToken(t) => format!("+token {}", t.accessor_id),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            ["-token gone", "-policy old", "+policy new", "+token fresh"]
        );
    }
}
