//! Where the agent is and how to reach it: the address (and scheme), the
//! ACL token, the datacenter, TLS, timeouts; read from flags by the callers
//! and from Consul's `CONSUL_*` environment variables here.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a request may take: the longest blocking wait (10m) plus jitter
/// and slack.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(660);

/// The address used when none is given.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// As Consul's `api.NewClient` says it.
    #[error("Error loading token file: {path}: {why}")]
    TokenFile { path: PathBuf, why: String },
    #[error("Error loading {what} {path}: {why}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{0}")]
    Tls(String),
    #[error("invalid {name} value {value:?}: expected true or false")]
    BadBool { name: &'static str, value: String },
    #[error("invalid HTTP address {addr:?}: {why}")]
    Address { addr: String, why: String },
}

/// TLS towards the agent, as Consul's `api.TLSConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM CA bundle that signs the agent's certificate (`-ca-file`,
    /// `CONSUL_CACERT`). Given, it replaces the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA files (`-ca-path`, `CONSUL_CAPATH`).
    pub ca_path: Option<PathBuf>,
    /// Client certificate and key presented to the agent
    /// (`-client-cert`/`-client-key`, `CONSUL_CLIENT_CERT`/`_KEY`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the agent's certificate is checked against (and sent as
    /// SNI) instead of the address's host (`-tls-server-name`,
    /// `CONSUL_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// Check the agent's certificate (`CONSUL_HTTP_SSL_VERIFY`).
    pub verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            ca_path: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            verify: true,
        }
    }
}

impl TlsConfig {
    /// Any setting beyond the defaults.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.ca_path.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
            || !self.verify
    }
}

/// Everything a client needs to reach one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `host:port`, or a URL (`http://`, `https://`).
    pub address: String,
    /// Use https for an address without a scheme (`CONSUL_HTTP_SSL`).
    pub https: bool,
    /// Sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// Read at client start; its trimmed content, when not empty, wins over
    /// `token`, as Consul's client has it.
    pub token_file: Option<PathBuf>,
    /// Added as `?dc=` to every request.
    pub datacenter: Option<String>,
    /// Added as `?stale` to every GET.
    pub stale: bool,
    pub tls: TlsConfig,
    /// Whole-request timeout (a request may set its own).
    pub timeout: Duration,
    pub connect_timeout: Option<Duration>,
    /// Idle connections kept per host (reqwest's default when `None`).
    pub pool_max_idle_per_host: Option<usize>,
    /// A setting read earlier that cannot be used (a bad
    /// `CONSUL_HTTP_SSL`): the client reports it instead of a request.
    pub invalid: Option<ConfigError>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: DEFAULT_ADDRESS.into(),
            https: false,
            token: None,
            token_file: None,
            datacenter: None,
            stale: false,
            tls: TlsConfig::default(),
            timeout: REQUEST_TIMEOUT,
            connect_timeout: None,
            pool_max_idle_per_host: None,
            invalid: None,
        }
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean environment variable; unset or empty is `None`.
pub fn env_bool(name: &'static str) -> Result<Option<bool>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_go_bool(v.trim())
            .map(Some)
            .ok_or(ConfigError::BadBool { name, value: v }),
        _ => Ok(None),
    }
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Consul's `api.DefaultConfig`: the defaults, then `CONSUL_HTTP_ADDR`,
    /// `CONSUL_HTTP_TOKEN(_FILE)`, `CONSUL_HTTP_SSL(_VERIFY)`,
    /// `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`,
    /// `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(a) = env_string("CONSUL_HTTP_ADDR") {
            c.address = a;
        }
        c.token = env_string("CONSUL_HTTP_TOKEN");
        c.token_file = env_string("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from);
        c.tls.ca_file = env_string("CONSUL_CACERT").map(PathBuf::from);
        c.tls.ca_path = env_string("CONSUL_CAPATH").map(PathBuf::from);
        c.tls.cert_file = env_string("CONSUL_CLIENT_CERT").map(PathBuf::from);
        c.tls.key_file = env_string("CONSUL_CLIENT_KEY").map(PathBuf::from);
        c.tls.server_name = env_string("CONSUL_TLS_SERVER_NAME");
        c.apply_env_switches()?;
        Ok(c)
    }

    /// The two settings Consul's CLI has no flag for: `CONSUL_HTTP_SSL`
    /// and `CONSUL_HTTP_SSL_VERIFY`.
    pub fn apply_env_switches(&mut self) -> Result<(), ConfigError> {
        if let Some(b) = env_bool("CONSUL_HTTP_SSL")? {
            self.https = b;
        }
        if let Some(b) = env_bool("CONSUL_HTTP_SSL_VERIFY")? {
            self.tls.verify = b;
        }
        Ok(())
    }

    /// The base URL (`scheme://host:port`, no trailing slash).
    pub fn base_url(&self) -> Result<String, ConfigError> {
        let addr = self.address.trim().trim_end_matches('/');
        let bad = |why: &str| ConfigError::Address {
            addr: self.address.clone(),
            why: why.into(),
        };
        if addr.is_empty() {
            return Err(bad("empty"));
        }
        if addr.starts_with("unix://") {
            return Err(bad("unix sockets are not supported; use host:port"));
        }
        if addr.starts_with("http://") || addr.starts_with("https://") {
            return Ok(addr.to_string());
        }
        if addr.contains("://") {
            return Err(bad("unknown scheme; use http:// or https://"));
        }
        let scheme = if self.https { "https" } else { "http" };
        Ok(format!("{scheme}://{addr}"))
    }

    /// The token to send: the token file's content when it has one, else
    /// `token`; an empty token is none.
    pub fn resolved_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.token_file {
            let text = read_token_file(path)?;
            if !text.is_empty() {
                return Ok(Some(text));
            }
        }
        Ok(self.token.clone().filter(|t| !t.is_empty()))
    }
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| ConfigError::TokenFile {
            path: path.to_path_buf(),
            why: crate::goerr::io_text(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_takes_the_scheme_from_the_address_or_the_ssl_switch() {
        let mut c = Config {
            address: "10.0.0.1:8501/".into(),
            ..Config::default()
        };
        assert_eq!(c.base_url().unwrap(), "http://10.0.0.1:8501");
        c.https = true;
        assert_eq!(c.base_url().unwrap(), "https://10.0.0.1:8501");
        c.address = "http://a:1".into();
        assert_eq!(c.base_url().unwrap(), "http://a:1");
        c.address = "unix:///tmp/consul.sock".into();
        assert!(c.base_url().unwrap_err().to_string().contains("unix"));
        c.address = "ftp://a:1".into();
        assert!(c.base_url().is_err());
    }

    #[test]
    fn a_token_file_with_content_wins_over_the_token() {
        let dir = std::env::temp_dir().join(format!("apiclient-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t");
        std::fs::write(&f, "  from-file\n").unwrap();
        let mut c = Config {
            token: Some("from-flag".into()),
            token_file: Some(f.clone()),
            ..Config::default()
        };
        assert_eq!(c.resolved_token().unwrap().as_deref(), Some("from-file"));
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(c.resolved_token().unwrap().as_deref(), Some("from-flag"));
        c.token_file = Some(dir.join("missing"));
        let e = c.resolved_token().unwrap_err().to_string();
        assert!(e.starts_with("Error loading token file:"), "{e}");
        assert!(e.contains("no such file or directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
