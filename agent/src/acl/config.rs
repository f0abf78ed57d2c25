//! The agent's `acl` block (JSON or HCL), and the pre-1.4 top-level keys
//! still found in configs (`acl_master_token`, `acl_default_policy`, ...).
//!
//! ```hcl
//! acl {
//!   enabled        = true
//!   default_policy = "deny"
//!   down_policy    = "extend-cache"
//!   enable_token_persistence = true
//!   tokens { initial_management = "..." agent = "..." default = "..." }
//! }
//! ```

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use super::authorizer::DefaultPolicy;

/// `acl.down_policy`: what a client agent does when no server answers a
/// token lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DownPolicy {
    #[default]
    ExtendCache,
    AsyncCache,
    Allow,
    Deny,
}

/// Secrets are kept out of `Debug` (the config is logged in places).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Option<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "<hidden>" } else { "None" })
    }
}

impl Secret {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: DefaultPolicy,
    pub down_policy: DownPolicy,
    pub enable_token_persistence: bool,
    pub enable_key_list_policy: bool,
    pub initial_management: Secret,
    pub agent: Secret,
    pub default: Secret,
    pub agent_recovery: Secret,
    pub replication: Secret,
}

/// A bad `acl` block or legacy ACL key in a config file, or a bad
/// persisted token file. Each names the key.
#[derive(Debug, thiserror::Error)]
pub enum AclConfigError {
    #[error("{key}: expected {want}")]
    Expected { key: String, want: &'static str },
    #[error("{block}: unknown key {key:?}")]
    UnknownKey { block: &'static str, key: String },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

const DOWN_POLICIES: &str = "\"extend-cache\", \"async-cache\", \"allow\" or \"deny\"";

impl AclConfig {
    /// Merge one file's `acl` object. Errors name the key.
    pub fn merge(&mut self, val: &Value) -> Result<(), AclConfigError> {
        for (k, v) in object(val, "acl")? {
            let bad = |want: &'static str| AclConfigError::Expected {
                key: format!("acl.{k}"),
                want,
            };
            let b = || v.as_bool().ok_or_else(|| bad("true or false"));
            match k.as_str() {
                "enabled" => self.enabled = b()?,
                "enable_token_persistence" => self.enable_token_persistence = b()?,
                "enable_key_list_policy" => self.enable_key_list_policy = b()?,
                "default_policy" => {
                    self.default_policy =
                        default_policy(v).ok_or_else(|| bad("\"allow\" or \"deny\""))?
                }
                "down_policy" => {
                    self.down_policy = down_policy(v).ok_or_else(|| bad(DOWN_POLICIES))?
                }
                "tokens" => self.merge_tokens(v)?,
                // Read by Consul, meaningless for one datacenter.
                "policy_ttl" | "role_ttl" | "token_ttl" | "enable_token_replication" => {}
                other => {
                    return Err(AclConfigError::UnknownKey {
                        block: "acl",
                        key: other.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    fn merge_tokens(&mut self, val: &Value) -> Result<(), AclConfigError> {
        for (k, v) in object(val, "acl.tokens")? {
            let s = v
                .as_str()
                .map(|s| Secret(Some(s.to_string())))
                .ok_or_else(|| AclConfigError::Expected {
                    key: format!("acl.tokens.{k}"),
                    want: "a string",
                })?;
            match k.as_str() {
                "initial_management" | "master" => self.initial_management = s,
                "agent" => self.agent = s,
                "default" => self.default = s,
                "agent_recovery" | "agent_master" => self.agent_recovery = s,
                "replication" => self.replication = s,
                other => {
                    return Err(AclConfigError::UnknownKey {
                        block: "acl.tokens",
                        key: other.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The legacy top-level keys; `Ok(false)` for a key that is not one.
    pub fn merge_legacy(&mut self, key: &str, v: &Value) -> Result<bool, AclConfigError> {
        let bad = |want: &'static str| AclConfigError::Expected {
            key: key.to_string(),
            want,
        };
        let s = || {
            v.as_str()
                .map(|s| Secret(Some(s.to_string())))
                .ok_or_else(|| bad("a string"))
        };
        match key {
            "acl_master_token" => self.initial_management = s()?,
            "acl_token" => self.default = s()?,
            "acl_agent_token" => self.agent = s()?,
            "acl_agent_master_token" => self.agent_recovery = s()?,
            "acl_default_policy" => {
                self.default_policy =
                    default_policy(v).ok_or_else(|| bad("\"allow\" or \"deny\""))?
            }
            "acl_down_policy" => {
                self.down_policy = down_policy(v).ok_or_else(|| bad(DOWN_POLICIES))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The agent's own tokens at run time: from the config, replaced by
/// `PUT /v1/agent/token/<kind>` (kept in memory).
#[derive(Default)]
pub struct AgentTokens {
    default: RwLock<Option<Arc<str>>>,
    agent: RwLock<Option<Arc<str>>>,
    recovery: RwLock<Option<Arc<str>>>,
    replication: RwLock<Option<Arc<str>>>,
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentTokens")
    }
}

impl AgentTokens {
    pub fn from_config(c: &AclConfig) -> Self {
        let s = |x: &Secret| RwLock::new(x.get().map(Arc::from));
        Self {
            default: s(&c.default),
            agent: s(&c.agent),
            recovery: s(&c.agent_recovery),
            replication: s(&c.replication),
        }
    }

    /// The `default` token (requests without one act with it; DNS too).
    pub fn default_token(&self) -> Option<Arc<str>> {
        self.default.read().clone()
    }

    /// The `replication` token (a secondary's leader copies the primary's
    /// ACLs with it).
    pub fn replication_token(&self) -> Option<Arc<str>> {
        self.replication.read().clone()
    }

    /// The `agent` token (the agent's own work), else the default one.
    pub fn agent_token(&self) -> Option<Arc<str>> {
        self.agent.read().clone().or_else(|| self.default_token())
    }

    /// With `enable_token_persistence`: the tokens set through the API
    /// before a restart (Consul's `acl-tokens.json` in the data dir) win
    /// over the config's.
    pub fn load_persisted(&self, path: &std::path::Path) -> Result<(), AclConfigError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(AclConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let v: Value = serde_json::from_slice(&text).map_err(|source| AclConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        for (kind, key) in [
            ("default", "default"),
            ("agent", "agent"),
            ("agent_recovery", "agent_recovery"),
            ("replication", "replication"),
        ] {
            if let Some(t) = v.get(key).and_then(Value::as_str) {
                self.set(kind, t.to_string());
            }
        }
        Ok(())
    }

    /// Write the tokens set so far to `path` (atomically, fsynced).
    pub fn persist(&self, path: &std::path::Path) -> std::io::Result<()> {
        let get = |s: &RwLock<Option<Arc<str>>>| s.read().as_deref().map(str::to_string);
        let v = serde_json::json!({
            "default": get(&self.default),
            "agent": get(&self.agent),
            "agent_recovery": get(&self.recovery),
            "replication": get(&self.replication),
        });
        crate::fsutil::write_atomic_private(path, v.to_string().as_bytes())
    }

    /// Replace one (Consul's kinds and their legacy names); false for an
    /// unknown kind. An empty token clears it.
    pub fn set(&self, kind: &str, token: String) -> bool {
        let slot = match kind {
            "default" | "acl_token" => &self.default,
            "agent" | "acl_agent_token" => &self.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => &self.recovery,
            "replication" | "acl_replication_token" => &self.replication,
            _ => return false,
        };
        *slot.write() = Some(token).filter(|t| !t.is_empty()).map(Arc::from);
        true
    }
}

fn object<'a>(
    val: &'a Value,
    what: &str,
) -> Result<&'a serde_json::Map<String, Value>, AclConfigError> {
    match val {
        Value::Object(o) => Ok(o),
        // HCL blocks may come as a one-element list.
        Value::Array(a) if a.len() == 1 => object(&a[0], what),
        _ => Err(AclConfigError::Expected {
            key: what.to_string(),
            want: "an object",
        }),
    }
}

fn default_policy(v: &Value) -> Option<DefaultPolicy> {
    match v.as_str()? {
        "allow" => Some(DefaultPolicy::Allow),
        "deny" => Some(DefaultPolicy::Deny),
        _ => None,
    }
}

fn down_policy(v: &Value) -> Option<DownPolicy> {
    match v.as_str()? {
        "extend-cache" => Some(DownPolicy::ExtendCache),
        "async-cache" => Some(DownPolicy::AsyncCache),
        "allow" => Some(DownPolicy::Allow),
        "deny" => Some(DownPolicy::Deny),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_hcl_blocks() {
        let mut c = AclConfig::default();
        let v: Value = serde_json::from_str(
            r#"{"enabled": true, "default_policy": "deny", "down_policy": "deny",
                "tokens": {"initial_management": "root", "agent": "ag", "default": "df"}}"#,
        )
        .unwrap();
        c.merge(&v).unwrap();
        assert!(c.enabled);
        assert_eq!(c.default_policy, DefaultPolicy::Deny);
        assert_eq!(c.down_policy, DownPolicy::Deny);
        assert_eq!(c.initial_management.get(), Some("root"));
        assert_eq!(c.default.get(), Some("df"));
        assert!(
            !format!("{c:?}").contains("root"),
            "secrets stay out of Debug"
        );
        let h: Value = hcl::from_str(
            "acl {\n enabled = true\n default_policy = \"allow\"\n tokens {\n agent = \"x\"\n }\n}",
        )
        .unwrap();
        let mut c = AclConfig::default();
        c.merge(&h["acl"]).unwrap();
        assert_eq!((c.enabled, c.agent.get()), (true, Some("x")));
        assert!(c
            .merge(&serde_json::json!({"default_policy": "maybe"}))
            .is_err());
        assert!(c.merge(&serde_json::json!({"bogus": 1})).is_err());
    }
}
