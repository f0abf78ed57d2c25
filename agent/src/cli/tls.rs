//! `tribune tls ca create` and `tribune tls cert create`: a CA and the
//! agents' certificates, written in the working directory under Consul's
//! file names (see [`crate::tls::certs`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::common::fail;
use crate::tls::certs::{create_ca, create_cert, write_new, CertSpec, Kind};

#[derive(Args, Debug)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub cmd: TlsCmd,
}

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// Helpers for CAs
    Ca(CaArgs),
    /// Helpers for certificates
    Cert(CertArgs),
}

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    pub cmd: CaCmd,
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create a new tribune CA
    Create(CaCreateArgs),
}

#[derive(Args, Debug)]
pub struct CaCreateArgs {
    /// Provide number of days the CA is valid for from now on.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// Domain of tribune cluster. Only used in combination with
    /// -name-constraint.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Common Name of CA. Defaults to Consul Agent CA.
    #[arg(long = "common-name")]
    pub common_name: Option<String>,
}

#[derive(Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    pub cmd: CertCmd,
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Create a new certificate
    Create(CertCreateArgs),
}

#[derive(Args, Debug)]
pub struct CertCreateArgs {
    /// Generate server certificate.
    #[arg(long)]
    pub server: bool,
    /// Generate client certificate.
    #[arg(long)]
    pub client: bool,
    /// Generate cli certificate.
    #[arg(long)]
    pub cli: bool,
    /// Provide the ca. Defaults to #DOMAIN#-agent-ca.pem.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Provide the key. Defaults to #DOMAIN#-agent-ca-key.pem.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Provide the datacenter. Matters only for -server certificates.
    #[arg(long, default_value = "dc1")]
    pub dc: String,
    /// Provide the domain. Matters only for -server certificates.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Provide number of days the certificate is valid for from now on.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// When generating a server cert and this is set an additional dns
    /// name is added: `<node>.server.<datacenter>.<domain>`.
    #[arg(long)]
    pub node: Option<String>,
    /// Provide an additional dnsname for Subject Alternative Names.
    /// localhost is always included. This flag may be provided multiple
    /// times.
    #[arg(long = "additional-dnsname")]
    pub additional_dnsname: Vec<String>,
    /// Provide an additional ipaddress for Subject Alternative Names.
    /// 127.0.0.1 is always included. This flag may be provided multiple
    /// times.
    #[arg(long = "additional-ipaddress")]
    pub additional_ipaddress: Vec<String>,
}

pub fn run(a: TlsArgs) -> ExitCode {
    match a.cmd {
        TlsCmd::Ca(CaArgs {
            cmd: CaCmd::Create(c),
        }) => ca_create(c),
        TlsCmd::Cert(CertArgs {
            cmd: CertCmd::Create(c),
        }) => cert_create(c),
    }
}

fn ca_create(a: CaCreateArgs) -> ExitCode {
    let cert = PathBuf::from(format!("{}-agent-ca.pem", a.domain));
    let key = PathBuf::from(format!("{}-agent-ca-key.pem", a.domain));
    for f in [&cert, &key] {
        if f.exists() {
            return fail(format!("==> CA file {} already exists", f.display()));
        }
    }
    let pair = match create_ca(&a.domain, a.days, a.common_name.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(format!("==> {e}")),
    };
    save(&cert, &key, &pair.cert, &pair.key)
}

fn save(cert: &Path, key: &Path, cert_pem: &str, key_pem: &str) -> ExitCode {
    if let Err(e) = write_new(cert, cert_pem, false) {
        return fail(format!("==> {e}"));
    }
    println!("==> Saved {}", cert.display());
    if let Err(e) = write_new(key, key_pem, true) {
        return fail(format!("==> {e}"));
    }
    println!("==> Saved {}", key.display());
    ExitCode::SUCCESS
}

fn cert_create(a: CertCreateArgs) -> ExitCode {
    let kinds = [
        (a.server, Kind::Server),
        (a.client, Kind::Client),
        (a.cli, Kind::Cli),
    ];
    let chosen: Vec<Kind> = kinds.iter().filter(|k| k.0).map(|k| k.1).collect();
    let [kind] = chosen.as_slice() else {
        return fail("==> Please provide either -server, -client, or -cli");
    };
    if a.node.is_some() && *kind != Kind::Server {
        return fail("==> Please provide the -node flag only with -server");
    }
    let ca =
        a.ca.unwrap_or_else(|| format!("{}-agent-ca.pem", a.domain).into());
    let ca_key = a
        .key
        .unwrap_or_else(|| format!("{}-agent-ca-key.pem", a.domain).into());
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let (ca_pem, key_pem) = match (read(&ca), read(&ca_key)) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) => return fail(format!("==> {e}")),
    };
    // The first free `<dc>-<kind>-<domain>-<n>.pem`.
    let prefix = format!("{}-{}-{}", a.dc, kind.as_str(), a.domain);
    let n = (0..10_000)
        .find(|n| !Path::new(&format!("{prefix}-{n}.pem")).exists())
        .unwrap_or(0);
    let cert = PathBuf::from(format!("{prefix}-{n}.pem"));
    let key = PathBuf::from(format!("{prefix}-{n}-key.pem"));
    let spec = CertSpec {
        kind: *kind,
        dc: &a.dc,
        domain: &a.domain,
        node: a.node.as_deref(),
        days: a.days,
        extra_dns: &a.additional_dnsname,
        extra_ips: &a.additional_ipaddress,
    };
    let pair = match create_cert(&spec, &ca_pem, &key_pem) {
        Ok(p) => p,
        Err(e) => return fail(format!("==> {e}")),
    };
    println!("==> Using {} and {}", ca.display(), ca_key.display());
    save(&cert, &key, &pair.cert, &pair.key)
}
