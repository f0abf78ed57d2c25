//! Mutual TLS for server RPC (raft, forwarding): the client side's
//! configuration, whose CA, certificate and key a reload swaps in place
//! (so pooled connections stay up and new ones use the new files).
//!
//! A server's certificate is always checked against the CA; with
//! `verify_server_hostname` it must also name `server.<dc>.<domain>`, so
//! a client agent's certificate (`client.<dc>.<domain>`) cannot pose as a
//! server. The name dialled (an IP address) is not what is checked.

use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::files::{load_certs, load_key, load_roots, provider, versions, TlsError};
use crate::config::security::TlsSide;

/// What a reload replaces: the CA and this agent's certificate.
struct Files {
    roots: Arc<RootCertStore>,
    cert: Option<Arc<CertifiedKey>>,
}

fn read_files(side: &TlsSide, provider: &CryptoProvider) -> Result<Files, TlsError> {
    let roots = Arc::new(load_roots(side)?);
    let cert = match (&side.cert_file, &side.key_file) {
        (Some(c), Some(k)) => {
            let key = provider
                .key_provider
                .load_private_key(load_key(k)?)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", k.display())))?;
            Some(Arc::new(CertifiedKey::new(load_certs(c)?, key)))
        }
        _ => None,
    };
    Ok(Files { roots, cert })
}

struct Shared {
    files: RwLock<Files>,
    provider: Arc<CryptoProvider>,
    /// `server.<dc>.<domain>` when `verify_server_hostname`.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc tls (server name {:?})", self.server_name)
    }
}

#[derive(Debug)]
struct Verifier(Arc<Shared>);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let roots = self.0.files.read().roots.clone();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.0.provider.signature_verification_algorithms.all,
        )?;
        if let Some(name) = &self.0.server_name {
            rustls::client::verify_server_name(&cert, name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct ClientCert(Arc<Shared>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.files.read().cert.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.files.read().cert.is_some()
    }
}

/// The client side of server RPC over TLS.
pub struct RpcClientTls {
    shared: Arc<Shared>,
    config: Arc<ClientConfig>,
}

impl RpcClientTls {
    pub fn load(side: &TlsSide, verify_name: Option<String>) -> Result<Self, TlsError> {
        let provider = provider(side)?;
        let server_name = verify_name
            .map(|n| {
                ServerName::try_from(n.clone())
                    .map_err(|_| TlsError::Rustls(format!("{n:?} is not a DNS name")))
            })
            .transpose()?;
        let shared = Arc::new(Shared {
            files: RwLock::new(read_files(side, &provider)?),
            provider: provider.clone(),
            server_name,
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(side)?)
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier(shared.clone())))
            .with_client_cert_resolver(Arc::new(ClientCert(shared.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            shared,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Re-read the CA, certificate and key; the old ones stay on an error.
    pub fn reload(&self, side: &TlsSide) -> Result<(), TlsError> {
        let files = read_files(side, &self.shared.provider)?;
        *self.shared.files.write() = files;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::{create_ca, create_cert, CertSpec, Kind};

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn spec(kind: Kind) -> CertSpec<'static> {
        CertSpec {
            kind,
            dc: "dc1",
            domain: "consul",
            node: None,
            days: 1,
            extra_dns: &[],
            extra_ips: &[],
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// The chain is checked against the CA (reloaded in place), and with
    /// verify_server_hostname the name: a client certificate is refused.
    #[test]
    fn server_name_and_ca_are_checked_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca("consul", 1, None).unwrap();
        let server = create_cert(&spec(Kind::Server), &ca.cert, &ca.key).unwrap();
        let client = create_cert(&spec(Kind::Client), &ca.cert, &ca.key).unwrap();
        let other = create_ca("consul", 1, None).unwrap();
        let stranger = create_cert(&spec(Kind::Server), &other.cert, &other.key).unwrap();
        let side = TlsSide {
            ca_file: Some(write(dir.path(), "ca.pem", &ca.cert)),
            cert_file: Some(write(dir.path(), "c.pem", &client.cert)),
            key_file: Some(write(dir.path(), "c-key.pem", &client.key)),
            ..TlsSide::default()
        };
        let t = RpcClientTls::load(&side, Some("server.dc1.consul".into())).unwrap();
        let v = Verifier(t.shared.clone());
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        let check = |pem: &str| v.verify_server_cert(&der(pem), &[], &ip, &[], UnixTime::now());
        assert!(check(&server.cert).is_ok());
        let e = check(&client.cert).unwrap_err().to_string();
        assert!(e.contains("not valid for name"), "{e}");
        assert!(check(&stranger.cert).is_err(), "another CA");
        // without verify_server_hostname the chain alone decides
        let loose = RpcClientTls::load(&side, None).unwrap();
        let lv = Verifier(loose.shared.clone());
        assert!(lv
            .verify_server_cert(&der(&client.cert), &[], &ip, &[], UnixTime::now())
            .is_ok());
        // a reload to the other CA: its server passes, ours no longer
        write(dir.path(), "ca.pem", &other.cert);
        t.reload(&side).unwrap();
        assert!(check(&stranger.cert).is_ok());
        assert!(check(&server.cert).is_err());
        assert!(ClientCert(t.shared.clone()).has_certs());
    }
}
