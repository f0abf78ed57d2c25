//! Addresses as Consul reads them: go-sockaddr templates in `-bind`,
//! `-client`, `-advertise` and their config keys, and the address Consul
//! advertises when bound to `0.0.0.0` or `::`.
//!
//! - [`ifaddr`]: this host's interface addresses (getifaddrs) and the RFC
//!   address blocks go-sockaddr classifies them by.
//! - [`template`]: the template language.

pub mod ifaddr;
pub mod template;

use std::net::IpAddr;

pub use ifaddr::IfAddr;
pub use template::Env;

#[derive(Debug, thiserror::Error)]
pub enum SockaddrError {
    #[error("{key}: error parsing {input:?}: {source}")]
    Template {
        key: String,
        input: String,
        source: template::RenderError,
    },
    #[error("{key}: invalid ip address: {addr}")]
    NotAnIp { key: String, addr: String },
    #[error("{0}")]
    Config(String),
    #[error("unable to query interface addresses: {0}")]
    Interfaces(std::io::Error),
    #[error("{0}")]
    Render(#[from] template::RenderError),
}

/// This host's interfaces and default route, as templates see them.
pub fn host_env() -> Result<Env, SockaddrError> {
    Ok(Env {
        addrs: ifaddr::all().map_err(SockaddrError::Interfaces)?,
        default_if: ifaddr::default_interface(),
    })
}

/// Expand the template in `input` (the value of `key`) into the IP
/// addresses it names, separated by white space as Consul splits them.
pub fn expand_ips(key: &str, input: &str, env: &Env) -> Result<Vec<IpAddr>, SockaddrError> {
    let text = template::render(input, env).map_err(|source| SockaddrError::Template {
        key: key.into(),
        input: input.into(),
        source,
    })?;
    text.split_whitespace()
        .map(|a| {
            // `[::]` is how the unspecified IPv6 address is often written.
            let a = if a == "[::]" { "::" } else { a };
            a.parse::<IpAddr>().map_err(|_| SockaddrError::NotAnIp {
                key: key.into(),
                addr: a.into(),
            })
        })
        .collect()
}

/// Consul's `expandFirstIP`: at most one address.
pub fn expand_one(key: &str, input: &str, env: &Env) -> Result<Option<IpAddr>, SockaddrError> {
    let ips = expand_ips(key, input, env)?;
    if ips.len() > 1 {
        let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        return Err(SockaddrError::Config(format!(
            "{key}: multiple addresses found: {}",
            list.join(" ")
        )));
    }
    Ok(ips.first().copied())
}

/// Addresses of the interfaces that are up, loopback ones only when no
/// other interface has an address (Consul's `activeInterfaceAddresses`).
fn active(addrs: &[IfAddr]) -> Vec<IpAddr> {
    let up: Vec<&IfAddr> = addrs.iter().filter(|a| a.has_flag("up")).collect();
    let other: Vec<IpAddr> = up
        .iter()
        .filter(|a| !a.has_flag("loopback"))
        .map(|a| a.ip)
        .collect();
    if other.is_empty() {
        up.iter().map(|a| a.ip).collect()
    } else {
        other
    }
}

/// Consul's `GetPrivateIPv4`: the private IPv4 addresses of active
/// interfaces.
pub fn private_ipv4(addrs: &[IfAddr]) -> Vec<IpAddr> {
    active(addrs)
        .into_iter()
        .filter(|ip| ip.is_ipv4() && ifaddr::consul_private(ip))
        .collect()
}

/// Consul's `GetPublicIPv6`: the public IPv6 addresses of active interfaces.
pub fn public_ipv6(addrs: &[IfAddr]) -> Vec<IpAddr> {
    active(addrs)
        .into_iter()
        .filter(|ip| ip.is_ipv6() && !ifaddr::consul_private(ip))
        .collect()
}

/// The address to advertise for a bind address of `0.0.0.0` (the one
/// private IPv4 address) or `::` (the one public IPv6 address), in
/// Consul's words when there is none or more than one.
pub fn detect_advertise(bind: IpAddr, addrs: &[IfAddr]) -> Result<IpAddr, SockaddrError> {
    let (kind, found) = if bind.is_ipv4() {
        ("private IPv4", private_ipv4(addrs))
    } else {
        ("public IPv6", public_ipv6(addrs))
    };
    match found.as_slice() {
        [] => Err(SockaddrError::Config(format!("No {kind} address found"))),
        [one] => Ok(*one),
        _ => Err(SockaddrError::Config(format!(
            "Multiple {kind} addresses found. Please configure one with 'bind' and/or 'advertise'."
        ))),
    }
}

#[cfg(test)]
mod tests;
