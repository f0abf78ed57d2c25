//! The ACL tables: tokens, policies and roles, replicated through raft
//! like every other table (Consul's `acl-tokens`, `acl-policies`,
//! `acl-roles`), plus the bootstrap index.
//!
//! What a secret resolves to is derived state, rebuilt on load: the
//! secret's digest -> accessor map (so a lookup never compares secrets by
//! `==`), each policy's parsed rules, and a per-token authorizer cache
//! emptied by every ACL write (a deleted token is refused from the very
//! next request after its apply).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::acl::authorizer::{Authorizer, DefaultPolicy};
use crate::acl::rules::{self, Rules};

/// Consul's builtin IDs.
pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const MANAGEMENT_POLICY_NAME: &str = "global-management";
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// Rules of the builtin management policy (shown on reads; a token that
/// links the policy is a management token whatever its text).
const MANAGEMENT_RULES: &str = r#"acl = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
keyring = "write"
node_prefix "" { policy = "write" }
operator = "write"
mesh = "write"
query_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }"#;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRec {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    /// Policy IDs (names are looked up when shown).
    pub policies: Vec<String>,
    /// Role IDs.
    pub roles: Vec<String>,
    pub local: bool,
    /// RFC 3339, set by the server that took the request.
    pub create_time: String,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCommand {
    /// `PUT /v1/acl/bootstrap`: once only.
    Bootstrap(Box<TokenRec>),
    /// The leader's start-up: the builtin policy, the anonymous token and
    /// the configured `initial_management` token (which counts as the
    /// bootstrap, as in Consul).
    /// `now`: the creation time the leader stamps on what it creates.
    Init {
        initial_management: Option<Box<TokenRec>>,
        now: String,
    },
    SetToken(Box<TokenRec>),
    DeleteToken(String),
    SetPolicy(Box<PolicyRec>),
    DeletePolicy(String),
    SetRole(Box<RoleRec>),
    DeleteRole(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOutcome {
    Done,
    /// Refused; Consul's text.
    Error(String),
    /// Bootstrap already done, at this index.
    BootstrapDenied(u64),
}

/// Authorizers built for tokens, by accessor; emptied on every ACL write.
#[derive(Default)]
struct Cache(RwLock<HashMap<String, Arc<Authorizer>>>);

impl Clone for Cache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AclTable {
    tokens: BTreeMap<String, TokenRec>,
    policies: BTreeMap<String, PolicyRec>,
    roles: BTreeMap<String, RoleRec>,
    /// Index of the bootstrap (0: not yet).
    bootstrap_index: u64,
    /// Highest index that changed an ACL table.
    index: u64,
    #[serde(skip)]
    by_secret: SecretIndex,
    #[serde(skip)]
    compiled: HashMap<String, Arc<Rules>>,
    #[serde(skip)]
    cache: Cache,
}

/// Tokens by secret, keyed by a SipHash of the secret under this table's
/// own random key: a lookup costs one short hash (a SHA-256 was half of
/// what ACLs add to a GET), compares only the fixed-size keys, and confirms
/// the secret in constant time ([`ct_eq`]); timing tells an attacker
/// nothing, the key being unknown to him.
#[derive(Clone, Debug, Default)]
struct SecretIndex {
    keys: std::collections::hash_map::RandomState,
    /// Accessors by key (more than one only on a 64-bit collision).
    map: HashMap<u64, Vec<String>>,
}

impl SecretIndex {
    fn key(&self, secret: &str) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one(secret)
    }

    fn insert(&mut self, secret: &str, accessor: &str) {
        let k = self.key(secret);
        let list = self.map.entry(k).or_default();
        if !list.iter().any(|a| a == accessor) {
            list.push(accessor.to_string());
        }
    }

    fn remove(&mut self, secret: &str, accessor: &str) {
        let k = self.key(secret);
        if let Some(list) = self.map.get_mut(&k) {
            list.retain(|a| a != accessor);
            if list.is_empty() {
                self.map.remove(&k);
            }
        }
    }

    /// The accessors whose secret may be `secret` (confirm each).
    fn candidates(&self, secret: &str) -> &[String] {
        self.map.get(&self.key(secret)).map_or(&[], Vec::as_slice)
    }
}

/// Equal without an early exit on the first differing byte.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The builtin management policy record.
pub fn management_policy(index: u64) -> PolicyRec {
    PolicyRec {
        id: MANAGEMENT_POLICY_ID.into(),
        name: MANAGEMENT_POLICY_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: MANAGEMENT_RULES.into(),
        datacenters: vec![],
        create_index: index,
        modify_index: index,
    }
}

/// Why a secret does not resolve (it travels to client agents over
/// server RPC).
#[derive(Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Unresolved {
    /// No such token: Consul's `ACL not found`.
    #[error("ACL not found")]
    NotFound,
}

impl AclTable {
    /// Rebuild the derived lookups (after a snapshot load).
    pub fn from_parts(
        tokens: Vec<TokenRec>,
        policies: Vec<PolicyRec>,
        roles: Vec<RoleRec>,
        bootstrap_index: u64,
        index: u64,
    ) -> Self {
        let mut t = Self {
            tokens: tokens
                .into_iter()
                .map(|x| (x.accessor_id.clone(), x))
                .collect(),
            policies: policies.into_iter().map(|p| (p.id.clone(), p)).collect(),
            roles: roles.into_iter().map(|r| (r.id.clone(), r)).collect(),
            bootstrap_index,
            index,
            ..Default::default()
        };
        t.rebuild();
        t
    }

    fn rebuild(&mut self) {
        let mut by_secret = SecretIndex::default();
        for t in self.tokens.values() {
            by_secret.insert(&t.secret_id, &t.accessor_id);
        }
        self.by_secret = by_secret;
        self.compiled = self
            .policies
            .values()
            .map(|p| {
                (
                    p.id.clone(),
                    Arc::new(rules::parse(&p.rules).unwrap_or_default()),
                )
            })
            .collect();
    }

    pub fn tokens(&self) -> impl Iterator<Item = &TokenRec> {
        self.tokens.values()
    }
    pub fn policies(&self) -> impl Iterator<Item = &PolicyRec> {
        self.policies.values()
    }
    pub fn roles(&self) -> impl Iterator<Item = &RoleRec> {
        self.roles.values()
    }
    pub fn token(&self, accessor: &str) -> Option<&TokenRec> {
        self.tokens.get(accessor)
    }
    pub fn policy(&self, id: &str) -> Option<&PolicyRec> {
        self.policies.get(id)
    }
    pub fn policy_by_name(&self, name: &str) -> Option<&PolicyRec> {
        self.policies.values().find(|p| p.name == name)
    }
    pub fn role(&self, id: &str) -> Option<&RoleRec> {
        self.roles.get(id)
    }
    pub fn role_by_name(&self, name: &str) -> Option<&RoleRec> {
        self.roles.values().find(|r| r.name == name)
    }
    pub fn bootstrap_index(&self) -> u64 {
        self.bootstrap_index
    }
    pub fn table_index(&self) -> u64 {
        self.index
    }

    /// The token whose secret this is (compared in constant time).
    pub fn token_by_secret(&self, secret: &str) -> Option<&TokenRec> {
        self.by_secret
            .candidates(secret)
            .iter()
            .filter_map(|a| self.tokens.get(a))
            .find(|t| ct_eq(&t.secret_id, secret))
    }

    /// What `secret` may do. An unknown secret is refused; the anonymous
    /// token before the leader created it has no rules.
    pub fn resolve(
        &self,
        secret: &str,
        default: DefaultPolicy,
    ) -> Result<Arc<Authorizer>, Unresolved> {
        let token = match self.token_by_secret(secret) {
            Some(t) => t,
            None if secret == ANONYMOUS_SECRET => {
                return Ok(Arc::new(Authorizer::from_policies([], default)));
            }
            None => return Err(Unresolved::NotFound),
        };
        if let Some(a) = self.cache.0.read().get(&token.accessor_id) {
            return Ok(a.clone());
        }
        let a = Arc::new(self.build(token, default));
        let mut cache = self.cache.0.write();
        // Bounded: one entry per token that exists.
        if cache.len() < self.tokens.len() + 1 {
            cache.insert(token.accessor_id.clone(), a.clone());
        }
        Ok(a)
    }

    fn build(&self, token: &TokenRec, default: DefaultPolicy) -> Authorizer {
        let mut ids: Vec<&str> = token.policies.iter().map(String::as_str).collect();
        for r in token.roles.iter().filter_map(|r| self.roles.get(r)) {
            ids.extend(r.policies.iter().map(String::as_str));
        }
        if ids.contains(&MANAGEMENT_POLICY_ID) {
            return Authorizer::Manage;
        }
        let rules = ids.iter().filter_map(|id| self.compiled.get(*id));
        Authorizer::from_policies(rules.map(|r| &**r), default)
    }

    /// Apply one ACL write at `index`.
    pub fn apply(&mut self, index: u64, cmd: &AclCommand) -> AclOutcome {
        let out = self.apply_inner(index, cmd);
        if out == AclOutcome::Done {
            self.index = index;
            self.cache.0.write().clear();
        }
        out
    }

    fn apply_inner(&mut self, index: u64, cmd: &AclCommand) -> AclOutcome {
        match cmd {
            AclCommand::Bootstrap(tok) => {
                if self.bootstrap_index > 0 {
                    return AclOutcome::BootstrapDenied(self.bootstrap_index);
                }
                self.ensure_builtins(index, &tok.create_time);
                self.bootstrap_index = index;
                self.put_token(index, tok)
            }
            AclCommand::Init {
                initial_management,
                now,
            } => {
                self.ensure_builtins(index, now);
                if let Some(tok) = initial_management {
                    if self.token_by_secret(&tok.secret_id).is_none() {
                        if self.bootstrap_index == 0 {
                            self.bootstrap_index = index;
                        }
                        return self.put_token(index, tok);
                    }
                }
                AclOutcome::Done
            }
            AclCommand::SetToken(tok) => self.put_token(index, tok),
            AclCommand::DeleteToken(accessor) => self.delete_token(accessor),
            AclCommand::SetPolicy(p) => self.put_policy(index, p),
            AclCommand::DeletePolicy(id) => {
                if id == MANAGEMENT_POLICY_ID {
                    return AclOutcome::Error(
                        "Delete of the builtin global-management policy is not permitted".into(),
                    );
                }
                self.policies.remove(id);
                self.compiled.remove(id);
                for t in self.tokens.values_mut() {
                    t.policies.retain(|p| p != id);
                }
                for r in self.roles.values_mut() {
                    r.policies.retain(|p| p != id);
                }
                AclOutcome::Done
            }
            AclCommand::SetRole(r) => self.put_role(index, r),
            AclCommand::DeleteRole(id) => {
                self.roles.remove(id);
                for t in self.tokens.values_mut() {
                    t.roles.retain(|x| x != id);
                }
                AclOutcome::Done
            }
        }
    }

    fn ensure_builtins(&mut self, index: u64, now: &str) {
        if !self.policies.contains_key(MANAGEMENT_POLICY_ID) {
            let p = management_policy(index);
            self.compiled.insert(
                p.id.clone(),
                Arc::new(rules::parse(&p.rules).unwrap_or_default()),
            );
            self.policies.insert(p.id.clone(), p);
        }
        if !self.tokens.contains_key(ANONYMOUS_ACCESSOR) {
            let anon = TokenRec {
                accessor_id: ANONYMOUS_ACCESSOR.into(),
                secret_id: ANONYMOUS_SECRET.into(),
                description: "Anonymous Token".into(),
                policies: vec![],
                roles: vec![],
                local: false,
                create_time: now.to_string(),
                create_index: index,
                modify_index: index,
            };
            self.by_secret.insert(ANONYMOUS_SECRET, ANONYMOUS_ACCESSOR);
            self.tokens.insert(ANONYMOUS_ACCESSOR.into(), anon);
        }
    }

    fn put_token(&mut self, index: u64, tok: &TokenRec) -> AclOutcome {
        if let Some(owner) = self.token_by_secret(&tok.secret_id) {
            if owner.accessor_id != tok.accessor_id {
                return AclOutcome::Error("Invalid Token: SecretID is already in use".into());
            }
        }
        if let Some(missing) = tok
            .policies
            .iter()
            .find(|p| !self.policies.contains_key(*p))
        {
            return AclOutcome::Error(format!("cannot find policy {missing}"));
        }
        if let Some(missing) = tok.roles.iter().find(|r| !self.roles.contains_key(*r)) {
            return AclOutcome::Error(format!("cannot find role {missing}"));
        }
        let mut rec = tok.clone();
        if let Some(old) = self.tokens.get(&tok.accessor_id) {
            if old.secret_id != tok.secret_id {
                return AclOutcome::Error("Changing a token's SecretID is not permitted".into());
            }
            rec.create_index = old.create_index;
            rec.create_time = old.create_time.clone();
        } else {
            rec.create_index = index;
        }
        rec.modify_index = index;
        self.by_secret.insert(&rec.secret_id, &rec.accessor_id);
        self.tokens.insert(rec.accessor_id.clone(), rec);
        AclOutcome::Done
    }

    fn delete_token(&mut self, accessor: &str) -> AclOutcome {
        if accessor == ANONYMOUS_ACCESSOR {
            return AclOutcome::Error(
                "Delete operation not permitted on the anonymous token".into(),
            );
        }
        if let Some(t) = self.tokens.remove(accessor) {
            self.by_secret.remove(&t.secret_id, accessor);
        }
        AclOutcome::Done
    }

    fn put_policy(&mut self, index: u64, p: &PolicyRec) -> AclOutcome {
        let parsed = match rules::parse(&p.rules) {
            Ok(r) => r,
            Err(e) => return AclOutcome::Error(format!("Invalid Policy: {e}")),
        };
        if self
            .policies
            .values()
            .any(|o| o.name == p.name && o.id != p.id)
        {
            return AclOutcome::Error(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                p.name
            ));
        }
        let mut rec = p.clone();
        rec.create_index = self.policies.get(&p.id).map_or(index, |o| o.create_index);
        rec.modify_index = index;
        self.compiled.insert(rec.id.clone(), Arc::new(parsed));
        self.policies.insert(rec.id.clone(), rec);
        AclOutcome::Done
    }

    fn put_role(&mut self, index: u64, r: &RoleRec) -> AclOutcome {
        if self
            .roles
            .values()
            .any(|o| o.name == r.name && o.id != r.id)
        {
            return AclOutcome::Error(format!(
                "Invalid Role: A Role with Name {:?} already exists",
                r.name
            ));
        }
        if let Some(missing) = r.policies.iter().find(|p| !self.policies.contains_key(*p)) {
            return AclOutcome::Error(format!("cannot find policy {missing}"));
        }
        let mut rec = r.clone();
        rec.create_index = self.roles.get(&r.id).map_or(index, |o| o.create_index);
        rec.modify_index = index;
        self.roles.insert(rec.id.clone(), rec);
        AclOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::authorizer::Need;
    use crate::acl::rules::Resource;

    fn token(acc: &str, secret: &str, policies: &[&str]) -> Box<TokenRec> {
        Box::new(TokenRec {
            accessor_id: acc.into(),
            secret_id: secret.into(),
            description: String::new(),
            policies: policies.iter().map(|s| s.to_string()).collect(),
            roles: vec![],
            local: false,
            create_time: "2026-01-01T00:00:00Z".into(),
            create_index: 0,
            modify_index: 0,
        })
    }

    /// The secret index keeps every accessor of a key and drops emptied keys.
    #[test]
    fn secret_index_survives_collisions_and_removals() {
        let mut ix = SecretIndex::default();
        ix.insert("s1", "a1");
        ix.insert("s1", "a1");
        assert_eq!(ix.candidates("s1"), ["a1"]);
        // Two accessors under one key, as a 64-bit collision would put them.
        let k = ix.key("s1");
        ix.map.get_mut(&k).unwrap().push("a2".into());
        ix.remove("s1", "a1");
        assert_eq!(ix.candidates("s1"), ["a2"]);
        ix.remove("s1", "a2");
        assert!(ix.candidates("s1").is_empty() && ix.map.is_empty());
        assert!(ix.candidates("s").is_empty());
        // Each table hashes under a key of its own.
        assert_ne!(SecretIndex::default().key("s1"), ix.key("s1"));
    }

    /// Bootstrap works once; the second names the first's index.
    #[test]
    fn bootstrap_once() {
        let mut t = AclTable::default();
        assert_eq!(
            t.apply(
                5,
                &AclCommand::Bootstrap(token("a", "s", &[MANAGEMENT_POLICY_ID]))
            ),
            AclOutcome::Done
        );
        assert_eq!(
            t.apply(
                6,
                &AclCommand::Bootstrap(token("b", "s2", &[MANAGEMENT_POLICY_ID]))
            ),
            AclOutcome::BootstrapDenied(5)
        );
        let a = t.resolve("s", DefaultPolicy::Deny).unwrap();
        assert_eq!(*a, Authorizer::Manage);
        assert_eq!(
            t.resolve("s2", DefaultPolicy::Deny),
            Err(Unresolved::NotFound)
        );
    }

    /// A token resolves to its policies' rules; deleting it, or the
    /// policy, takes effect at once (the cache is emptied).
    #[test]
    fn resolve_and_revoke() {
        let mut t = AclTable::default();
        t.apply(
            1,
            &AclCommand::Init {
                initial_management: None,
                now: String::new(),
            },
        );
        let p = PolicyRec {
            id: "p1".into(),
            name: "app".into(),
            description: String::new(),
            rules: r#"key_prefix "app/" { policy = "write" }"#.into(),
            datacenters: vec![],
            create_index: 0,
            modify_index: 0,
        };
        assert_eq!(
            t.apply(2, &AclCommand::SetPolicy(Box::new(p.clone()))),
            AclOutcome::Done
        );
        let mut dup = p.clone();
        dup.id = "p2".into();
        assert!(matches!(
            t.apply(3, &AclCommand::SetPolicy(Box::new(dup))),
            AclOutcome::Error(_)
        ));
        assert_eq!(
            t.apply(4, &AclCommand::SetToken(token("a", "sec", &["p1"]))),
            AclOutcome::Done
        );
        let a = t.resolve("sec", DefaultPolicy::Deny).unwrap();
        assert!(a.allows(Resource::Key, "app/x", Need::Write));
        assert!(!a.allows(Resource::Key, "other/x", Need::Write));
        let anon = t.resolve(ANONYMOUS_SECRET, DefaultPolicy::Deny).unwrap();
        assert!(!anon.allows(Resource::Key, "app/x", Need::Read));
        t.apply(5, &AclCommand::DeletePolicy("p1".into()));
        let a = t.resolve("sec", DefaultPolicy::Deny).unwrap();
        assert!(!a.allows(Resource::Key, "app/x", Need::Write));
        t.apply(6, &AclCommand::DeleteToken("a".into()));
        assert_eq!(
            t.resolve("sec", DefaultPolicy::Deny),
            Err(Unresolved::NotFound)
        );
        assert!(matches!(
            t.apply(7, &AclCommand::DeleteToken(ANONYMOUS_ACCESSOR.into())),
            AclOutcome::Error(_)
        ));
    }

    /// A secret already held by another token is refused; the configured
    /// initial management token is the bootstrap.
    #[test]
    fn secrets_unique_and_initial_management() {
        let mut t = AclTable::default();
        let init = AclCommand::Init {
            initial_management: Some(token("root", "rootsecret", &[MANAGEMENT_POLICY_ID])),
            now: String::new(),
        };
        assert_eq!(t.apply(1, &init), AclOutcome::Done);
        assert_eq!(t.bootstrap_index(), 1);
        assert!(matches!(
            t.apply(2, &AclCommand::SetToken(token("x", "rootsecret", &[]))),
            AclOutcome::Error(_)
        ));
        assert_eq!(
            *t.resolve("rootsecret", DefaultPolicy::Deny).unwrap(),
            Authorizer::Manage
        );
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
