//! A CA and the certificates it signs, as `consul tls ca create` and
//! `consul tls cert create` make them: ECDSA P-256 keys, the same file
//! names (`<domain>-agent-ca.pem`, `<dc>-server-<domain>-0.pem`...) and
//! SANs (`server.<dc>.<domain>`, `localhost`, `127.0.0.1`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Gen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What a certificate is for (`-server`, `-client`, `-cli`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Cli,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Cli => "cli",
        }
    }
}

/// A PEM certificate and its PEM private key.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// What a new certificate says.
pub struct CertSpec<'a> {
    pub kind: Kind,
    pub dc: &'a str,
    pub domain: &'a str,
    pub node: Option<&'a str>,
    pub days: u32,
    pub extra_dns: &'a [String],
    pub extra_ips: &'a [String],
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    // A minute back, so a peer with a clock slightly behind accepts it.
    p.not_before = epoch + now.saturating_sub(Duration::from_secs(60));
    p.not_after = epoch + now + Duration::from_secs(u64::from(days) * 86_400);
    p.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
}

/// A self-signed CA (`tribune tls ca create`).
pub fn create_ca(domain: &str, days: u32, common_name: Option<&str>) -> Result<Pair, CertError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let cn = common_name.map_or_else(
        || format!("{} Agent CA {}", title(domain), rand::random::<u32>()),
        str::to_string,
    );
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, days);
    let cert = p.self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A certificate signed by the CA in `ca_pem`/`ca_key_pem`.
pub fn create_cert(spec: &CertSpec, ca_pem: &str, ca_key_pem: &str) -> Result<Pair, CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca = CertificateParams::from_ca_cert_pem(ca_pem)?.self_signed(&ca_key)?;
    let name = format!("{}.{}.{}", spec.kind.as_str(), spec.dc, spec.domain);
    let mut dns = vec![name.clone()];
    if let (Kind::Server, Some(n)) = (spec.kind, spec.node) {
        dns.push(format!("{n}.{name}"));
    }
    dns.push("localhost".into());
    dns.extend(spec.extra_dns.iter().cloned());
    let mut p = CertificateParams::default();
    for d in dns {
        p.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| CertError::Invalid(format!("{d:?} is not a DNS name")))?,
        ));
    }
    if spec.kind != Kind::Cli {
        let mut ips = vec!["127.0.0.1".to_string()];
        ips.extend(spec.extra_ips.iter().cloned());
        for ip in ips {
            let a = ip
                .parse()
                .map_err(|_| CertError::Invalid(format!("{ip:?} is not an IP address")))?;
            p.subject_alt_names.push(SanType::IpAddress(a));
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match spec.kind {
        Kind::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, spec.days);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Write a new file (never over an existing one); keys readable by the
/// owner only.
pub fn write_new(path: &Path, text: &str, private: bool) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}
