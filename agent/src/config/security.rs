//! Encryption settings: gossip (`encrypt`, `encrypt_verify_*`) and TLS
//! (Consul's `tls { defaults, https, internal_rpc }` block and the older
//! top-level `ca_file`, `cert_file`, `verify_incoming`... keys). Kept apart
//! from the rest of the config: only [`owns`] and [`Security::merge`] are
//! called from the file reader.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Errors in the words of [`super::ConfigError`] (which wraps these).
#[derive(Debug, thiserror::Error)]
pub enum SecurityConfigError {
    #[error("invalid value for {key}: {msg}")]
    Invalid { key: String, msg: String },
    #[error("failed to parse {}: invalid config key {key}", path.display())]
    UnknownKey { path: PathBuf, key: String },
}

/// One side's TLS settings as written; unset fields fall back to
/// `tls.defaults`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSide {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<String>,
}

impl TlsSide {
    /// `self` over `base`.
    fn over(&self, base: &TlsSide) -> TlsSide {
        TlsSide {
            ca_file: self.ca_file.clone().or_else(|| base.ca_file.clone()),
            ca_path: self.ca_path.clone().or_else(|| base.ca_path.clone()),
            cert_file: self.cert_file.clone().or_else(|| base.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| base.key_file.clone()),
            verify_incoming: self.verify_incoming.or(base.verify_incoming),
            verify_outgoing: self.verify_outgoing.or(base.verify_outgoing),
            tls_min_version: self
                .tls_min_version
                .clone()
                .or_else(|| base.tls_min_version.clone()),
            tls_cipher_suites: self
                .tls_cipher_suites
                .clone()
                .or_else(|| base.tls_cipher_suites.clone()),
        }
    }

    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }
}

/// The `tls` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub defaults: TlsSide,
    pub https: TlsSide,
    pub internal_rpc: TlsSide,
    /// Servers must show `server.<dc>.<domain>` (`internal_rpc.verify_server_hostname`).
    pub verify_server_hostname: bool,
}

impl TlsConfig {
    /// The HTTPS listener's settings.
    pub fn https(&self) -> TlsSide {
        self.https.over(&self.defaults)
    }

    /// The server RPC port's settings.
    pub fn rpc(&self) -> TlsSide {
        self.internal_rpc.over(&self.defaults)
    }

    /// Server RPC speaks TLS: a certificate is configured and either side
    /// asks for verification (Consul turns it on the same way).
    pub fn rpc_enabled(&self) -> bool {
        let r = self.rpc();
        r.cert_file.is_some()
            && (r.verify_incoming == Some(true)
                || r.verify_outgoing == Some(true)
                || self.verify_server_hostname)
    }
}

/// Gossip and TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Security {
    /// The gossip key (`encrypt`, `-encrypt`), base64.
    pub encrypt: Option<String>,
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
    pub tls: TlsConfig,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            encrypt: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            tls: TlsConfig::default(),
        }
    }
}

/// Top-level keys this module reads.
const KEYS: &[&str] = &[
    "encrypt",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "tls",
    "ca_file",
    "ca_path",
    "cert_file",
    "key_file",
    "verify_incoming",
    "verify_incoming_https",
    "verify_incoming_rpc",
    "verify_outgoing",
    "verify_server_hostname",
    "tls_min_version",
    "tls_cipher_suites",
];

/// Whether `key` (top level) is an encryption setting.
pub fn owns(key: &str) -> bool {
    KEYS.contains(&key)
}

fn invalid(path: &Path, key: &str, want: &str) -> SecurityConfigError {
    SecurityConfigError::Invalid {
        key: format!("{key} in {}", path.display()),
        msg: format!("must be {want}"),
    }
}

fn string(path: &Path, key: &str, v: &Value) -> Result<String, SecurityConfigError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(path, key, "a string"))
}

fn boolean(path: &Path, key: &str, v: &Value) -> Result<bool, SecurityConfigError> {
    v.as_bool()
        .ok_or_else(|| invalid(path, key, "true or false"))
}

impl Security {
    /// Merge one top-level key ([`owns`] said yes).
    pub fn merge(&mut self, path: &Path, key: &str, v: &Value) -> Result<(), SecurityConfigError> {
        let d = &mut self.tls.defaults;
        match key {
            "encrypt" => self.encrypt = Some(string(path, key, v)?),
            "encrypt_verify_incoming" => self.encrypt_verify_incoming = boolean(path, key, v)?,
            "encrypt_verify_outgoing" => self.encrypt_verify_outgoing = boolean(path, key, v)?,
            "tls" => self.merge_tls(path, v)?,
            "verify_incoming_https" => {
                self.tls.https.verify_incoming = Some(boolean(path, key, v)?)
            }
            "verify_incoming_rpc" => {
                self.tls.internal_rpc.verify_incoming = Some(boolean(path, key, v)?)
            }
            "verify_server_hostname" => self.tls.verify_server_hostname = boolean(path, key, v)?,
            _ => merge_side(d, path, key, key, v)?,
        }
        Ok(())
    }

    fn merge_tls(&mut self, path: &Path, v: &Value) -> Result<(), SecurityConfigError> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(path, "tls", "an object"))?;
        for (section, sv) in obj {
            let full = format!("tls.{section}");
            let side = match section.as_str() {
                "defaults" => &mut self.tls.defaults,
                "https" => &mut self.tls.https,
                "internal_rpc" => &mut self.tls.internal_rpc,
                "grpc" => continue,
                _ => {
                    return Err(SecurityConfigError::UnknownKey {
                        path: path.into(),
                        key: full,
                    })
                }
            };
            let o = sv
                .as_object()
                .ok_or_else(|| invalid(path, &full, "an object"))?;
            for (k, kv) in o {
                let name = format!("{full}.{k}");
                if section == "internal_rpc" && k == "verify_server_hostname" {
                    self.tls.verify_server_hostname = boolean(path, &name, kv)?;
                    continue;
                }
                merge_side(side, path, k, &name, kv)?;
            }
        }
        Ok(())
    }

    /// The settings' own rules (files exist, versions known, a key is a key).
    pub fn validate(&self, https_port: i32) -> Result<(), SecurityConfigError> {
        let bad = |key: &str, msg: String| SecurityConfigError::Invalid {
            key: key.into(),
            msg,
        };
        if let Some(k) = &self.encrypt {
            crate::cluster::keyring::parse_key(k).map_err(|e| bad("encrypt", e.to_string()))?;
        }
        for (name, side) in [
            ("tls.https", self.tls.https()),
            ("tls.internal_rpc", self.tls.rpc()),
        ] {
            if let Some(v) = &side.tls_min_version {
                if !matches!(v.as_str(), "TLSv1_2" | "TLSv1_3" | "tls12" | "tls13") {
                    return Err(bad(
                        &format!("{name}.tls_min_version"),
                        format!("{v:?}: tribune speaks TLSv1_2 and TLSv1_3"),
                    ));
                }
            }
            if side.verify_incoming == Some(true) && !side.has_ca() {
                return Err(bad(
                    &format!("{name}.verify_incoming"),
                    "needs ca_file or ca_path to check client certificates".into(),
                ));
            }
        }
        let h = self.tls.https();
        if https_port >= 0 && (h.cert_file.is_none() || h.key_file.is_none()) {
            return Err(bad(
                "ports.https",
                "HTTPS needs tls.defaults (or tls.https) cert_file and key_file".into(),
            ));
        }
        let r = self.tls.rpc();
        if (r.verify_incoming == Some(true) || r.verify_outgoing == Some(true))
            && (r.cert_file.is_none() || r.key_file.is_none() || !r.has_ca())
        {
            return Err(bad(
                "tls.internal_rpc",
                "verify_incoming/verify_outgoing need ca_file (or ca_path), cert_file and key_file"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn merge_side(
    side: &mut TlsSide,
    path: &Path,
    key: &str,
    name: &str,
    v: &Value,
) -> Result<(), SecurityConfigError> {
    let file = |v: &Value| string(path, name, v).map(PathBuf::from);
    match key {
        "ca_file" => side.ca_file = Some(file(v)?),
        "ca_path" => side.ca_path = Some(file(v)?),
        "cert_file" => side.cert_file = Some(file(v)?),
        "key_file" => side.key_file = Some(file(v)?),
        "verify_incoming" => side.verify_incoming = Some(boolean(path, name, v)?),
        "verify_outgoing" => side.verify_outgoing = Some(boolean(path, name, v)?),
        "tls_min_version" => side.tls_min_version = Some(string(path, name, v)?),
        "tls_cipher_suites" => side.tls_cipher_suites = Some(string(path, name, v)?),
        // Consul keys tribune has no use for.
        "tls_prefer_server_cipher_suites" | "use_auto_cert" => {}
        _ => {
            return Err(SecurityConfigError::UnknownKey {
                path: path.into(),
                key: name.into(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tls_block_and_old_keys() {
        let p = Path::new("x.json");
        let mut s = Security::default();
        s.merge(p, "ca_file", &json!("/old/ca.pem")).unwrap();
        s.merge(p, "verify_incoming_https", &json!(true)).unwrap();
        s.merge(
            p,
            "tls",
            &json!({"defaults": {"cert_file": "c.pem", "key_file": "k.pem", "verify_outgoing": true},
                    "internal_rpc": {"verify_server_hostname": true, "ca_file": "rpc-ca.pem"}}),
        )
        .unwrap();
        assert_eq!(s.tls.https().ca_file, Some("/old/ca.pem".into()));
        assert_eq!(s.tls.https().verify_incoming, Some(true));
        assert_eq!(s.tls.rpc().ca_file, Some("rpc-ca.pem".into()));
        assert_eq!(s.tls.rpc().verify_incoming, None);
        assert!(s.tls.verify_server_hostname && s.tls.rpc_enabled());
        assert!(s.validate(8501).is_ok());
        assert!(s
            .merge(p, "tls", &json!({"defaults": {"cert_flie": "x"}}))
            .is_err());
        assert!(s.merge(p, "tls", &json!({"bogus": {}})).is_err());
        s.merge(p, "tls_min_version", &json!("TLSv1_0")).unwrap();
        assert!(s.validate(-1).is_err());
        let mut k = Security::default();
        k.merge(p, "encrypt", &json!("c2hvcnQ=")).unwrap();
        assert!(k.validate(-1).is_err());
    }
}
