//! Reading the files of a `tls` side (certificates, keys, CAs) and the
//! protocol versions and cipher suites it allows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::{RootCertStore, SupportedProtocolVersion};

use crate::config::security::TlsSide;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("{0}: no certificate in it")]
    NoCert(PathBuf),
    #[error("{what} needs {missing}")]
    Missing {
        what: &'static str,
        missing: &'static str,
    },
    #[error("tls_min_version {0:?}: use TLSv1_2 or TLSv1_3")]
    Version(String),
    #[error("tls_cipher_suites: {0:?} is not a cipher suite tribune offers")]
    Cipher(String),
    #[error("TLS: {0}")]
    Rustls(String),
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.into(),
        msg: e.to_string(),
    }
}

/// The certificate chain in a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.into()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_err(path, e))
}

/// The CAs of `ca_file` and every `*.pem`/`*.crt` file of `ca_path`.
pub fn load_roots(side: &TlsSide) -> Result<RootCertStore, TlsError> {
    let mut files = Vec::new();
    if let Some(f) = &side.ca_file {
        files.push(f.clone());
    }
    if let Some(dir) = &side.ca_path {
        let rd = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut roots = RootCertStore::empty();
    for f in &files {
        for c in load_certs(f)? {
            roots
                .add(c)
                .map_err(|e| read_err(f, format!("not a CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

/// ring with the cipher suites of `tls_cipher_suites` (TLS 1.2 ones; TLS
/// 1.3 suites are not configurable, as in Go).
pub fn provider(side: &TlsSide) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(list) = &side.tls_cipher_suites {
        let wanted: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for w in &wanted {
            if !p.cipher_suites.iter().any(|s| suite_name(s) == *w) {
                return Err(TlsError::Cipher(w.clone()));
            }
        }
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&suite_name(s)));
    }
    Ok(Arc::new(p))
}

fn suite_name(s: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

pub fn versions(side: &TlsSide) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    match side.tls_min_version.as_deref() {
        None | Some("TLSv1_2") | Some("tls12") => {
            Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12])
        }
        Some("TLSv1_3") | Some("tls13") => Ok(vec![&rustls::version::TLS13]),
        Some(other) => Err(TlsError::Version(other.into())),
    }
}
