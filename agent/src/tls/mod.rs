//! TLS for the HTTPS API and server RPC (rustls, ring): certificates and
//! CAs read from the files of the `tls` config block, the server and client
//! configurations built from them, and their reload on SIGHUP (new
//! connections get the new files; open ones keep theirs).
//!
//! [`certs`] makes a CA and the certificates it signs (`tribune tls`).

pub mod certs;
pub mod files;
pub mod rpc;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;

pub use files::TlsError;
use files::{load_certs, load_key, load_roots, provider, versions};

use crate::config::security::{TlsConfig, TlsSide};

/// A server configuration from one side's files: client certificates
/// signed by its CA required when `verify_incoming`.
pub fn server_config(
    side: &TlsSide,
    what: &'static str,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&side.cert_file, &side.key_file) else {
        return Err(TlsError::Missing {
            what,
            missing: "cert_file and key_file",
        });
    };
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    let provider = provider(side)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(side)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if side.verify_incoming == Some(true) {
        let roots = load_roots(side)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut c = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?;
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(c)
}

/// A server configuration that a reload replaces: each new connection
/// takes the current one.
pub struct Reloadable {
    what: &'static str,
    alpn: &'static [&'static [u8]],
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn load(
        side: &TlsSide,
        what: &'static str,
        alpn: &'static [&'static [u8]],
    ) -> Result<Self, TlsError> {
        Ok(Self {
            what,
            alpn,
            current: RwLock::new(Arc::new(server_config(side, what, alpn)?)),
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Re-read the files; on an error the old configuration stays.
    pub fn reload(&self, side: &TlsSide) -> Result<(), TlsError> {
        let c = server_config(side, self.what, self.alpn)?;
        *self.current.write() = Arc::new(c);
        Ok(())
    }
}

/// The agent's TLS state: what its listeners serve and its RPC client
/// presents.
#[derive(Default)]
pub struct AgentTls {
    /// The HTTPS API's (when `ports.https` is set).
    pub https: Option<Arc<Reloadable>>,
    /// The server RPC listener's (servers, when RPC TLS is on).
    pub rpc_server: Option<Arc<Reloadable>>,
    /// How this agent dials servers (when RPC TLS is on).
    pub rpc_client: Option<Arc<rpc::RpcClientTls>>,
}

impl AgentTls {
    pub fn load(c: &crate::config::AgentConfig) -> Result<Self, TlsError> {
        let tls = &c.security.tls;
        let https = if c.ports.https >= 0 {
            Some(Arc::new(Reloadable::load(
                &tls.https(),
                "HTTPS",
                &[b"http/1.1"],
            )?))
        } else {
            None
        };
        let mut me = Self {
            https,
            ..Self::default()
        };
        if tls.rpc_enabled() {
            if c.server {
                me.rpc_server = Some(Arc::new(Reloadable::load(
                    &tls.rpc(),
                    "server RPC",
                    &[b"h2"],
                )?));
            }
            let name = tls
                .verify_server_hostname
                .then(|| format!("server.{}.{}", c.datacenter, c.dns.domain));
            me.rpc_client = Some(Arc::new(rpc::RpcClientTls::load(&tls.rpc(), name)?));
        }
        Ok(me)
    }

    /// Re-read every certificate, key and CA (SIGHUP, `tribune reload`).
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), TlsError> {
        if let Some(h) = &self.https {
            h.reload(&tls.https())?;
            tracing::info!("tls: HTTPS certificates reloaded");
        }
        if let Some(r) = &self.rpc_server {
            r.reload(&tls.rpc())?;
        }
        if let Some(r) = &self.rpc_client {
            r.reload(&tls.rpc())?;
        }
        if self.rpc_server.is_some() || self.rpc_client.is_some() {
            tracing::info!("tls: server RPC certificates reloaded");
        }
        Ok(())
    }
}
