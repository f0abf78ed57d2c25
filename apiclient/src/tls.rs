//! A [`Config`] made ready for reqwest: the base URL, the token, and the
//! TLS material (roots, client identity, the server name), read once; then
//! applied to either of reqwest's client builders (blocking or async).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use reqwest::{Certificate, Identity};

use crate::config::{Config, ConfigError};

/// What a client is built from.
pub(crate) struct Prepared {
    pub base: String,
    pub token: Option<String>,
    pub https: bool,
    pub roots: Vec<Certificate>,
    pub identity: Option<Identity>,
    /// With a TLS server name: the name the base URL carries, and the
    /// addresses it stands for (the configured host's).
    pub resolve: Option<(String, Vec<SocketAddr>)>,
}

impl Prepared {
    pub fn new(c: &Config) -> Result<Prepared, ConfigError> {
        if let Some(e) = &c.invalid {
            return Err(e.clone());
        }
        let mut base = c.base_url()?;
        let token = c.resolved_token()?;
        let https = base.starts_with("https://");
        let mut p = Prepared {
            base: String::new(),
            token,
            https,
            roots: Vec::new(),
            identity: None,
            resolve: None,
        };
        // As Consul's client: TLS settings only matter for an https address.
        if https {
            p.roots = roots(c)?;
            p.identity = identity(c)?;
            if let Some(name) = &c.tls.server_name {
                let (url, addrs) = server_name(&base, name)?;
                base = url;
                p.resolve = Some((name.clone(), addrs));
            }
        }
        p.base = base;
        Ok(p)
    }
}

/// Apply a [`Config`]'s timeouts and a [`Prepared`]'s TLS to a reqwest
/// client builder; both builders have the same methods, not one trait.
macro_rules! configure {
    ($builder:expr, $config:expr, $prepared:expr) => {{
        let c: &$crate::config::Config = $config;
        let p: &$crate::tls::Prepared = $prepared;
        let mut b = $builder.timeout(c.timeout);
        if let Some(t) = c.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(n) = c.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        if p.https {
            if !p.roots.is_empty() {
                // A CA given replaces the built-in roots, as in Go.
                b = b.tls_built_in_root_certs(false);
                for r in &p.roots {
                    b = b.add_root_certificate(r.clone());
                }
            }
            if let Some(id) = &p.identity {
                b = b.identity(id.clone());
            }
            if !c.tls.verify {
                tracing::warn!("TLS verification is off: the agent's certificate is not checked");
                b = b.danger_accept_invalid_certs(true);
            }
            if let Some((name, addrs)) = &p.resolve {
                b = b.resolve_to_addrs(name, addrs);
            }
        }
        b
    }};
}
pub(crate) use configure;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::TlsFile {
        what,
        path: path.to_path_buf(),
        why: crate::goerr::io_text(&e),
    })
}

fn pem_certs(what: &'static str, path: &Path) -> Result<Vec<Certificate>, ConfigError> {
    let bad = |why: String| ConfigError::TlsFile {
        what,
        path: path.to_path_buf(),
        why,
    };
    let certs = Certificate::from_pem_bundle(&read(what, path)?).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The CA file's certificates, then those of every file in the CA path
/// (the files that hold none are skipped, as go-rootcerts does).
fn roots(c: &Config) -> Result<Vec<Certificate>, ConfigError> {
    let mut out = Vec::new();
    if let Some(f) = &c.tls.ca_file {
        out.extend(pem_certs("CA file", f)?);
    }
    if let Some(dir) = &c.tls.ca_path {
        let rd = std::fs::read_dir(dir).map_err(|e| ConfigError::TlsFile {
            what: "CA path",
            path: dir.clone(),
            why: crate::goerr::io_text(&e),
        })?;
        let mut files: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let before = out.len();
        for f in files {
            if let Ok(certs) = pem_certs("CA file", &f) {
                out.extend(certs);
            }
        }
        if out.len() == before {
            return Err(ConfigError::TlsFile {
                what: "CA path",
                path: dir.clone(),
                why: "no PEM certificate in any file".into(),
            });
        }
    }
    Ok(out)
}

fn identity(c: &Config) -> Result<Option<Identity>, ConfigError> {
    match (&c.tls.cert_file, &c.tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read("client certificate", cert)?;
            pem.push(b'\n');
            pem.extend(read("client key", key)?);
            Identity::from_pem(&pem)
                .map(Some)
                .map_err(|e| ConfigError::TlsFile {
                    what: "client certificate",
                    path: cert.clone(),
                    why: crate::goerr::chain_text(&e),
                })
        }
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::Tls(
            "a client certificate and its key must be given together".into(),
        )),
        (None, None) => Ok(None),
    }
}

/// The TLS server name: TLS sends it (SNI) and checks the agent's
/// certificate against it instead of the address's host. reqwest takes
/// the name from the URL, so the URL carries the name and the client
/// resolves it to the configured host's addresses.
fn server_name(base: &str, name: &str) -> Result<(String, Vec<SocketAddr>), ConfigError> {
    let bad = |m: String| ConfigError::Tls(format!("TLS server name: {m}"));
    if name.is_empty() || name.contains(['/', ':', '@', ' ']) {
        return Err(bad(format!("{name:?} is not a host name")));
    }
    let mut u = reqwest::Url::parse(base).map_err(|e| bad(format!("{base}: {e}")))?;
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("resolving {host}: {e}")))?
        .collect();
    u.set_host(Some(name))
        .map_err(|e| bad(format!("{name:?}: {e}")))?;
    Ok((u.as_str().trim_end_matches('/').to_string(), addrs))
}
