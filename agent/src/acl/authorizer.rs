//! Deciding a request: the token's policies merged into one set of rules,
//! then Consul's precedence (`acl/policy_authorizer.go`): an exact rule
//! beats any prefix rule, the longest matching prefix beats shorter ones,
//! and among rules for the same name from several policies `deny` wins.
//! A name no rule covers gets the agent's `default_policy`.

use serde::{Deserialize, Serialize};

use super::rules::{Global, Level, Resource, Rules};

/// What a request needs of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    /// KV only: `?recurse`/`?keys` with `enable_key_list_policy`.
    List,
    Write,
}

impl Need {
    /// Consul's access level word (`read`, `list`, `write`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
        }
    }

    fn granted_by(self, l: Level) -> bool {
        match (self, l) {
            (_, Level::Deny) => false,
            (Need::Read, _) => true,
            (Need::List, lvl) => lvl == Level::List || lvl == Level::Write,
            (Need::Write, lvl) => lvl == Level::Write,
        }
    }
}

/// `acl.default_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DefaultPolicy {
    #[default]
    Allow,
    Deny,
}

/// One token's authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authorizer {
    /// A management token (`global-management`): everything.
    Manage,
    /// Rules, with the default for what they do not cover.
    Policy {
        rules: Rules,
        default: DefaultPolicy,
    },
}

impl Authorizer {
    /// The merged rules of several policies (deny > write > list > read
    /// for the same rule).
    pub fn from_policies<'a>(
        policies: impl IntoIterator<Item = &'a Rules>,
        default: DefaultPolicy,
    ) -> Self {
        let mut merged = Rules::default();
        for p in policies {
            for (slot, names) in &p.named {
                let into = merged.named.entry(*slot).or_default();
                for (name, level) in names {
                    let e = into.entry(name.clone()).or_insert(*level);
                    *e = e.merge(*level);
                }
            }
            for (g, level) in &p.global {
                let e = merged.global.entry(*g).or_insert(*level);
                *e = e.merge(*level);
            }
        }
        Self::Policy {
            rules: merged,
            default,
        }
    }

    /// May `need` be done to the resource called `name`?
    pub fn allows(&self, res: Resource, name: &str, need: Need) -> bool {
        match self {
            Self::Manage => true,
            Self::Policy { rules, default } => match governing(rules, res, name) {
                Some(level) => need.granted_by(level),
                None => *default == DefaultPolicy::Allow,
            },
        }
    }

    /// `operator`, `acl`, `keyring`, `mesh`. The `allow` default does not
    /// grant ACL management (Consul's allow-all authorizer refuses it).
    pub fn allows_global(&self, g: Global, need: Need) -> bool {
        match self {
            Self::Manage => true,
            Self::Policy { rules, default } => match rules.global.get(&g) {
                Some(level) => need.granted_by(*level),
                None => *default == DefaultPolicy::Allow && g != Global::Acl,
            },
        }
    }

    /// Writing every key under `prefix` (a recursive delete): no rule
    /// below it may be anything but `write`, and the rule governing the
    /// prefix itself must allow the write (Consul's `KeyWritePrefix`).
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        let Self::Policy { rules, default } = self else {
            return true;
        };
        for exact in [false, true] {
            if let Some(names) = rules.named.get(&(Resource::Key, exact)) {
                let below = names
                    .range(prefix.to_string()..)
                    .take_while(|(n, _)| n.starts_with(prefix));
                if below.into_iter().any(|(_, l)| *l != Level::Write) {
                    return false;
                }
            }
        }
        match longest_prefix(rules, Resource::Key, prefix) {
            Some(level) => level == Level::Write,
            None => *default == DefaultPolicy::Allow,
        }
    }
}

/// The rule that decides `name`: an exact one, else the longest prefix.
fn governing(rules: &Rules, res: Resource, name: &str) -> Option<Level> {
    if let Some(l) = rules.named.get(&(res, false)).and_then(|m| m.get(name)) {
        return Some(*l);
    }
    longest_prefix(rules, res, name)
}

fn longest_prefix(rules: &Rules, res: Resource, name: &str) -> Option<Level> {
    let prefixes = rules.named.get(&(res, true))?;
    if prefixes.len() <= name.len() {
        // Few rules: test each (no allocation, no map walk per length).
        return prefixes
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, l)| *l);
    }
    // Many rules: each prefix of `name`, longest first, looked up directly
    // (bounded by the name's length, not by the number of rules).
    (0..=name.len())
        .rev()
        .filter(|&end| name.is_char_boundary(end))
        .find_map(|end| prefixes.get(&name[..end]).copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::rules::parse;

    fn authz(text: &str, default: DefaultPolicy) -> Authorizer {
        Authorizer::from_policies([&parse(text).unwrap()], default)
    }

    /// Consul's docs: exact beats prefix, longest prefix wins.
    #[test]
    fn precedence_exact_and_longest_prefix() {
        let a = authz(
            r#"
            key_prefix "" { policy = "read" }
            key_prefix "foo/" { policy = "write" }
            key_prefix "foo/private/" { policy = "deny" }
            key "foo/private/open" { policy = "read" }
            key "bar" { policy = "deny" }
            "#,
            DefaultPolicy::Deny,
        );
        assert!(a.allows(Resource::Key, "other", Need::Read));
        assert!(!a.allows(Resource::Key, "other", Need::Write));
        assert!(a.allows(Resource::Key, "foo/x", Need::Write));
        assert!(!a.allows(Resource::Key, "foo/private/x", Need::Read));
        assert!(a.allows(Resource::Key, "foo/private/open", Need::Read));
        assert!(!a.allows(Resource::Key, "foo/private/open", Need::Write));
        assert!(!a.allows(Resource::Key, "bar", Need::Read));
        assert!(a.allows(Resource::Key, "barn", Need::Read));
    }

    /// Two policies naming the same rule: deny wins, then write.
    #[test]
    fn deny_wins_across_policies() {
        let p1 = parse(r#"key_prefix "app/" { policy = "write" }"#).unwrap();
        let p2 = parse(r#"key_prefix "app/" { policy = "deny" }"#).unwrap();
        let p3 = parse(r#"service "web" { policy = "read" }"#).unwrap();
        let p4 = parse(r#"service "web" { policy = "write" }"#).unwrap();
        let a = Authorizer::from_policies([&p1, &p2, &p3, &p4], DefaultPolicy::Allow);
        assert!(!a.allows(Resource::Key, "app/x", Need::Read));
        assert!(a.allows(Resource::Service, "web", Need::Write));
        // Uncovered names take the default.
        assert!(a.allows(Resource::Key, "other", Need::Write));
    }

    /// `list` grants listing (and reading), not writing; `read` does not list.
    #[test]
    fn list_level() {
        let a = authz(
            r#"key_prefix "l/" { policy = "list" }
               key_prefix "r/" { policy = "read" }"#,
            DefaultPolicy::Deny,
        );
        assert!(a.allows(Resource::Key, "l/a", Need::List));
        assert!(a.allows(Resource::Key, "l/a", Need::Read));
        assert!(!a.allows(Resource::Key, "l/a", Need::Write));
        assert!(!a.allows(Resource::Key, "r/a", Need::List));
    }

    /// The defaults: deny refuses what no rule covers; allow grants it but
    /// never ACL management; a management token may do everything.
    #[test]
    fn defaults_and_management() {
        let deny = authz("", DefaultPolicy::Deny);
        assert!(!deny.allows(Resource::Service, "web", Need::Read));
        assert!(!deny.allows_global(Global::Operator, Need::Read));
        let allow = authz("", DefaultPolicy::Allow);
        assert!(allow.allows(Resource::Node, "n1", Need::Write));
        assert!(allow.allows_global(Global::Operator, Need::Write));
        assert!(!allow.allows_global(Global::Acl, Need::Read));
        assert!(Authorizer::Manage.allows_global(Global::Acl, Need::Write));
        let op = authz(r#"operator = "read""#, DefaultPolicy::Deny);
        assert!(op.allows_global(Global::Operator, Need::Read));
        assert!(!op.allows_global(Global::Operator, Need::Write));
    }

    /// Longest prefix wins with more rules than the name has characters
    /// (the per-length lookup) as with few (the scan).
    #[test]
    fn longest_prefix_with_many_rules() {
        let mut text = String::new();
        for i in 0..50 {
            text += &format!("key_prefix \"z{i}/\" {{ policy = \"read\" }}\n");
        }
        text +=
            "key_prefix \"a\" { policy = \"deny\" }\nkey_prefix \"ab\" { policy = \"write\" }\n";
        let a = authz(&text, DefaultPolicy::Deny);
        assert!(a.allows(Resource::Key, "abc", Need::Write));
        assert!(!a.allows(Resource::Key, "ax", Need::Read));
        assert!(a.allows(Resource::Key, "z7/k", Need::Read));
        assert!(!a.allows(Resource::Key, "z7/k", Need::Write));
        assert!(!a.allows(Resource::Key, "é", Need::Read));
    }

    /// A recursive delete needs write on everything below the prefix.
    #[test]
    fn write_prefix() {
        let a = authz(
            r#"key_prefix "app/" { policy = "write" }
               key "app/locked" { policy = "read" }"#,
            DefaultPolicy::Deny,
        );
        assert!(!a.allows_key_write_prefix("app/"));
        assert!(a.allows_key_write_prefix("app/x/"));
        assert!(!a.allows_key_write_prefix(""));
        assert!(!a.allows_key_write_prefix("other/"));
    }
}
