//! The start-up banner, laid out as Consul's agent prints it:
//! `==> Starting tribune agent...`, the agent's identity and addresses with
//! right-aligned labels, then `==> Log data will now stream in as it
//! occurs:` before the first log line.

use std::io::Write as _;
use std::net::IpAddr;

use crate::config::AgentConfig;

/// Where the agent listens, as far as the banner tells.
pub struct Addrs {
    pub advertise: IpAddr,
    /// Gossip (LAN) port; -1 when gossip is off.
    pub serf_lan: i32,
    /// A server's bound WAN gossip port (else the configured one).
    pub serf_wan: i32,
    /// Gossip is sealed (a key given, or kept in the keyring file).
    pub gossip_encrypted: bool,
}

/// The banner's lines (without the trailing blank line).
pub fn lines(c: &AgentConfig, node_id: &str, a: &Addrs) -> Vec<String> {
    let segment = if c.server { "<all>" } else { "" };
    let bootstrap = c.server && !c.dev && (c.bootstrap || c.bootstrap_expect == Some(1));
    let rows: Vec<(&str, String)> = vec![
        ("Version", format!("'{}'", crate::cli::version::VERSION)),
        (
            "Build Date",
            format!("'{}'", crate::cli::version::BUILD_DATE),
        ),
        ("Node ID", format!("'{node_id}'")),
        ("Node name", format!("'{}'", c.node_name)),
        (
            "Datacenter",
            format!("'{}' (Segment: '{segment}')", c.datacenter),
        ),
        ("Server", format!("{} (Bootstrap: {bootstrap})", c.server)),
        (
            "Client Addr",
            format!(
                "[{}] (HTTP: {}, HTTPS: {}, gRPC: -1, DNS: {})",
                c.client_addr, c.ports.http, c.ports.https, c.ports.dns
            ),
        ),
        (
            "Cluster Addr",
            format!("{} (LAN: {}, WAN: {})", a.advertise, a.serf_lan, a.serf_wan),
        ),
        ("Gossip Encryption", a.gossip_encrypted.to_string()),
        ("Auto-Encrypt-TLS", "false".into()),
        ("ACLs Enabled", "false".into()),
    ];
    let mut out = vec!["==> Starting tribune agent...".to_string()];
    for (label, value) in rows {
        out.push(format!("    {label:>17}: {value}"));
    }
    out.push(String::new());
    out.push("==> Log data will now stream in as it occurs:".into());
    out
}

/// Print the banner to stderr, where the log follows it.
pub fn print(c: &AgentConfig, node_id: &str, a: &Addrs) {
    let mut text = lines(c, node_id, a).join("\n");
    text.push_str("\n\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_align_as_consuls() {
        let c = AgentConfig {
            node_name: "n1".into(),
            server: true,
            bootstrap: true,
            ..Default::default()
        };
        let a = Addrs {
            advertise: IpAddr::from([127, 0, 0, 1]),
            serf_lan: 8301,
            serf_wan: 8302,
            gossip_encrypted: false,
        };
        let l = lines(&c, "0000", &a);
        assert_eq!(l[0], "==> Starting tribune agent...");
        assert!(l.contains(&"               Server: true (Bootstrap: true)".to_string()));
        assert!(l.contains(&"         Cluster Addr: 127.0.0.1 (LAN: 8301, WAN: 8302)".to_string()));
        assert!(l.contains(
            &"          Client Addr: [127.0.0.1] (HTTP: 8500, HTTPS: -1, gRPC: -1, DNS: 8600)"
                .to_string()
        ));
        assert!(l.contains(&"    Gossip Encryption: false".to_string()));
        assert_eq!(
            l.last().unwrap(),
            "==> Log data will now stream in as it occurs:"
        );
    }
}
