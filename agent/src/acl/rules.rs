//! ACL rules: Consul's policy language, in HCL or JSON, parsed and
//! validated when a policy is written (`acl/policy.go`,
//! `acl/policy_ce.go`).
//!
//! ```hcl
//! key_prefix "app/" { policy = "write" }
//! service "web"     { policy = "read" }
//! operator = "read"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An access level. Ordered by precedence when policies are merged:
/// `deny` beats `write` beats `list` beats `read` (Consul's
/// `takesPrecedenceOver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    Read,
    List,
    Write,
    Deny,
}

impl Level {
    fn parse(s: &str, list_allowed: bool) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "deny" => Some(Self::Deny),
            "list" if list_allowed => Some(Self::List),
            _ => None,
        }
    }

    /// The more important of two levels for the same rule.
    pub fn merge(self, other: Self) -> Self {
        self.max(other)
    }
}

/// The resources a rule names, each with an exact and a prefix form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    Key,
    Service,
    Node,
    Session,
    Event,
    Agent,
    Query,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Self::Key,
        Self::Service,
        Self::Node,
        Self::Session,
        Self::Event,
        Self::Agent,
        Self::Query,
    ];

    /// The HCL block name of the exact rule (`key`, `service`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Service => "service",
            Self::Node => "node",
            Self::Session => "session",
            Self::Event => "event",
            Self::Agent => "agent",
            Self::Query => "query",
        }
    }
}

/// The resources with a single level (`operator = "read"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Global {
    Operator,
    Acl,
    Keyring,
    Mesh,
}

impl Global {
    pub const ALL: [Global; 4] = [Self::Operator, Self::Acl, Self::Keyring, Self::Mesh];

    pub fn name(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Acl => "acl",
            Self::Keyring => "keyring",
            Self::Mesh => "mesh",
        }
    }
}

/// One parsed policy: per resource, its exact and prefix rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// `(resource, prefix?) -> name -> level`.
    pub named: BTreeMap<(Resource, bool), BTreeMap<String, Level>>,
    pub global: BTreeMap<Global, Level>,
}

/// A policy's rules did not parse or validate: the message is shown to
/// whoever wrote it (`400 Invalid Policy: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("Failed to parse ACL rules: {0}")]
    Syntax(String),
    #[error("Invalid {resource} policy: {detail}")]
    Invalid { resource: String, detail: String },
    #[error("Unexpected rule type {0:?}")]
    Unknown(String),
}

/// Parse rules in HCL or JSON (Consul accepts either in `Rules`).
pub fn parse(text: &str) -> Result<Rules, RulesError> {
    let value = parse_value(text)?;
    let Value::Object(top) = value else {
        return Err(RulesError::Syntax("rules must be an object".into()));
    };
    let mut rules = Rules::default();
    for (k, v) in &top {
        add(&mut rules, k, v)?;
    }
    Ok(rules)
}

fn parse_value(text: &str) -> Result<Value, RulesError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    if text.trim_start().starts_with('{') {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(v);
        }
    }
    hcl::from_str::<Value>(text).map_err(|e| RulesError::Syntax(e.to_string()))
}

fn add(rules: &mut Rules, key: &str, v: &Value) -> Result<(), RulesError> {
    if let Some(g) = Global::ALL.iter().find(|g| g.name() == key) {
        let level = v
            .as_str()
            .and_then(|s| Level::parse(s, false))
            .ok_or_else(|| invalid(key, format!("invalid access level {v}")))?;
        rules.global.insert(*g, level);
        return Ok(());
    }
    let (base, prefix) = match key.strip_suffix("_prefix") {
        Some(b) => (b, true),
        None => (key, false),
    };
    let Some(res) = Resource::ALL.iter().find(|r| r.name() == base) else {
        return Err(RulesError::Unknown(key.to_string()));
    };
    for (name, body) in blocks(key, v)? {
        let level = level_of(key, &name, body, *res == Resource::Key)?;
        let slot = rules
            .named
            .entry((*res, prefix))
            .or_default()
            .entry(name)
            .or_insert(level);
        *slot = slot.merge(level);
    }
    Ok(())
}

/// The labelled blocks of one rule type: `{"name": {...}}`, or a list of
/// such objects (HCL with repeated blocks; JSON written as an array).
fn blocks<'a>(key: &str, v: &'a Value) -> Result<Vec<(String, &'a Value)>, RulesError> {
    let mut out = Vec::new();
    let mut push = |obj: &'a serde_json::Map<String, Value>| {
        for (name, body) in obj {
            out.push((name.clone(), body));
        }
    };
    match v {
        Value::Object(o) => push(o),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(o) => push(o),
                    _ => return Err(invalid(key, "expected labelled blocks".into())),
                }
            }
        }
        _ => return Err(invalid(key, "expected labelled blocks".into())),
    }
    Ok(out)
}

fn level_of(key: &str, name: &str, body: &Value, list: bool) -> Result<Level, RulesError> {
    let body = match body {
        // A repeated block with the same label: the last one's object.
        Value::Array(a) => a.last().unwrap_or(&Value::Null),
        b => b,
    };
    let policy = body
        .get("policy")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(key, format!("{name:?}: missing policy")))?;
    Level::parse(policy, list)
        .ok_or_else(|| invalid(key, format!("{name:?}: invalid access level {policy:?}")))
}

fn invalid(resource: &str, detail: String) -> RulesError {
    RulesError::Invalid {
        resource: resource.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(r: &Rules, res: Resource, prefix: bool, name: &str) -> Option<Level> {
        r.named
            .get(&(res, prefix))
            .and_then(|m| m.get(name))
            .copied()
    }

    /// Consul's documented HCL example, every rule kind.
    #[test]
    fn hcl_example() {
        let r = parse(
            r#"
            key_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "write" }
            key "app/secret" { policy = "deny" }
            key_prefix "list/" { policy = "list" }
            service_prefix "" { policy = "read" }
            service "web" { policy = "write" }
            node_prefix "" { policy = "read" }
            session_prefix "" { policy = "write" }
            event_prefix "deploy" { policy = "write" }
            agent_prefix "" { policy = "read" }
            query_prefix "" { policy = "read" }
            operator = "read"
            acl = "write"
            keyring = "deny"
            "#,
        )
        .unwrap();
        assert_eq!(get(&r, Resource::Key, true, "app/"), Some(Level::Write));
        assert_eq!(get(&r, Resource::Key, true, ""), Some(Level::Read));
        assert_eq!(
            get(&r, Resource::Key, false, "app/secret"),
            Some(Level::Deny)
        );
        assert_eq!(get(&r, Resource::Key, true, "list/"), Some(Level::List));
        assert_eq!(get(&r, Resource::Service, false, "web"), Some(Level::Write));
        assert_eq!(get(&r, Resource::Event, true, "deploy"), Some(Level::Write));
        assert_eq!(r.global.get(&Global::Operator), Some(&Level::Read));
        assert_eq!(r.global.get(&Global::Acl), Some(&Level::Write));
        assert_eq!(r.global.get(&Global::Keyring), Some(&Level::Deny));
    }

    /// The same rules in JSON parse to the same policy.
    #[test]
    fn json_equals_hcl() {
        let j =
            parse(r#"{"key_prefix": {"app/": {"policy": "write"}}, "operator": "read"}"#).unwrap();
        let h = parse("key_prefix \"app/\" { policy = \"write\" }\noperator = \"read\"").unwrap();
        assert_eq!(j, h);
    }

    /// Validation errors name the problem.
    #[test]
    fn invalid_rules_are_refused() {
        for bad in [
            r#"key_prefix "a" { policy = "admin" }"#,
            r#"service "a" { policy = "list" }"#,
            r#"operator = "list""#,
            r#"bogus "a" { policy = "read" }"#,
            r#"key "a" { }"#,
            "key_prefix {{{",
            r#"operator = 3"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(r#"bogus "a" { policy = "read" }"#)
                .unwrap_err()
                .to_string(),
            "Unexpected rule type \"bogus\""
        );
        assert!(parse("").unwrap().named.is_empty());
    }
}
