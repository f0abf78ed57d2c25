//! Network lookups: confd's `lookupIP` and `lookupSRV` (resolver:
//! `TRIBUNE_DNS` or /etc/resolv.conf), consul-template's `sockaddr`.

use serde_json::{json, Value};

use super::{both, s_arg, Helper, R};
use crate::render::Ctx;

pub const HELPERS: &[Helper] = &[
    both("lookupIP", lookup_ip),
    both("lookupSRV", lookup_srv),
    both("sockaddr", sockaddr),
];

/// consul-template `sockaddr "expression"` (see [`super::sockaddr`]).
fn sockaddr(_: &Ctx, args: &[Value]) -> R {
    let expr = args.iter().map(super::text).collect::<Vec<_>>().join(" ");
    super::sockaddr::eval(&expr)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

/// Addresses of a host, sorted as text (confd sorts them).
fn lookup_ip(_: &Ctx, args: &[Value]) -> R {
    use std::net::ToSocketAddrs;
    let host = s_arg(args, 0, "host")?;
    let mut ips: Vec<String> = (host.as_str(), 0)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip().to_string()).collect())
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    Ok(json!(ips))
}

/// `lookupSRV service proto name` (or one full name).
fn lookup_srv(_: &Ctx, args: &[Value]) -> R {
    let name = match args.len() {
        1 => s_arg(args, 0, "name")?,
        _ => format!(
            "_{}._{}.{}",
            s_arg(args, 0, "service")?,
            s_arg(args, 1, "proto")?,
            s_arg(args, 2, "name")?
        ),
    };
    srv_records(&name).map(Value::Array)
}

/// The resolver for `lookupSRV`: `TRIBUNE_DNS` (ip:port), else the first
/// nameserver of /etc/resolv.conf.
fn resolver() -> Option<std::net::SocketAddr> {
    if let Ok(v) = std::env::var("TRIBUNE_DNS") {
        return v.parse().ok();
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// SRV records of `name` as confd returns them (`{Target, Port, Priority,
/// Weight}`), sorted by priority, weight, then target.
fn srv_records(name: &str) -> Result<Vec<Value>, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;
    let server = resolver().ok_or("no DNS resolver (set TRIBUNE_DNS or /etc/resolv.conf)")?;
    let qname = Name::from_str(&format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("bad name: {e}"))?;
    let mut m = Message::new();
    m.set_id(rand::random());
    m.set_message_type(MessageType::Query);
    m.set_op_code(OpCode::Query);
    m.set_recursion_desired(true);
    m.add_query(Query::query(qname, RecordType::SRV));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, server)
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let mut buf = vec![0u8; 65535];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let resp = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    let mut out: Vec<(u16, u16, Value)> = resp
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some((
                srv.priority(),
                srv.weight(),
                json!({"Target": srv.target().to_ascii(), "Port": srv.port(),
                       "Priority": srv.priority(), "Weight": srv.weight()}),
            )),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (a.0, a.1, a.2["Target"].as_str()).cmp(&(b.0, b.1, b.2["Target"].as_str())));
    Ok(out.into_iter().map(|(_, _, v)| v).collect())
}
