//! Parsing query names of the consul domain.

/// What a name asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lookup {
    Node(String),
    Service {
        service: String,
        tag: Option<String>,
    },
    /// `<hex ip>.addr[.dc].consul`, the SRV target of a service address.
    Addr(std::net::IpAddr),
    /// `<query ID or name>.query[.dc].consul`: a prepared query.
    Query(String),
}

/// The `.addr.` label of an IP, as Consul writes it.
pub fn addr_label(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02x}")).collect(),
        std::net::IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn parse_addr_label(l: &str) -> Option<std::net::IpAddr> {
    let bytes: Option<Vec<u8>> = (0..l.len())
        .step_by(2)
        .map(|i| l.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    match bytes?.as_slice() {
        b if b.len() == 4 => Some(std::net::IpAddr::from([b[0], b[1], b[2], b[3]])),
        b if b.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(std::net::IpAddr::from(a))
        }
        _ => None,
    }
}

/// Parse a lowercase, dot-terminated or not, query name. `None` means the
/// name cannot exist (NXDOMAIN): another datacenter, unknown form.
pub fn parse(name: &str, domain: &str, datacenter: &str) -> Option<Lookup> {
    match parse_dc(name, domain, datacenter)? {
        (l, None) => Some(l),
        (_, Some(_)) => None,
    }
}

/// [`parse`], and the other datacenter the name names (`web.service.dc2.consul`),
/// if it names one (`.addr.` names need no datacenter's data).
pub fn parse_dc(name: &str, domain: &str, datacenter: &str) -> Option<(Lookup, Option<String>)> {
    let name = name.trim_end_matches('.');
    let rest = name.strip_suffix(domain)?.strip_suffix('.')?;
    let mut labels: Vec<&str> = rest.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let mut dc = None;
    // Optional datacenter after the type label (`_svc._tag.<dc>` too).
    if labels.len() >= 2 {
        let last = labels[labels.len() - 1];
        let kind = labels[labels.len() - 2];
        let typed = matches!(kind, "service" | "node" | "addr" | "query");
        let rfc = labels[0].starts_with('_') && labels.len() == 3;
        if (typed || rfc) && !matches!(last, "service" | "node" | "query") {
            // An address is decoded from the name: any datacenter's is here.
            if last != datacenter && kind != "addr" {
                dc = Some(last.to_string());
            }
            labels.pop();
        }
    }
    let kind = *labels.last()?;
    let lookup = match kind {
        "node" if labels.len() >= 2 => Some(Lookup::Node(labels[..labels.len() - 1].join("."))),
        "addr" if labels.len() == 2 => parse_addr_label(labels[0]).map(Lookup::Addr),
        "query" if labels.len() >= 2 => Some(Lookup::Query(labels[..labels.len() - 1].join("."))),
        "service" => {
            let l = &labels[..labels.len() - 1];
            rfc2782(l).or(match l {
                [svc] => Some(Lookup::Service {
                    service: svc.to_string(),
                    tag: None,
                }),
                [tag, svc] => Some(Lookup::Service {
                    service: svc.to_string(),
                    tag: Some(tag.to_string()),
                }),
                _ => None,
            })
        }
        _ => rfc2782(&labels),
    }?;
    Some((lookup, dc))
}

/// `_<service>._<tag|tcp>`.
fn rfc2782(l: &[&str]) -> Option<Lookup> {
    match l {
        [svc, proto] if svc.starts_with('_') && proto.starts_with('_') => {
            let tag = &proto[1..];
            Some(Lookup::Service {
                service: svc[1..].to_string(),
                tag: (tag != "tcp" && !tag.is_empty()).then(|| tag.to_string()),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(s: &str, t: Option<&str>) -> Option<Lookup> {
        Some(Lookup::Service {
            service: s.into(),
            tag: t.map(Into::into),
        })
    }

    #[test]
    fn forms() {
        let p = |n: &str| parse(n, "consul", "dc1");
        assert_eq!(p("redis.service.consul."), svc("redis", None));
        assert_eq!(p("redis.service.dc1.consul"), svc("redis", None));
        assert_eq!(p("db.redis.service.consul"), svc("redis", Some("db")));
        assert_eq!(p("_redis._db.service.consul"), svc("redis", Some("db")));
        assert_eq!(p("_redis._tcp.service.consul"), svc("redis", None));
        assert_eq!(p("_redis._tcp.service.dc1.consul"), svc("redis", None));
        assert_eq!(p("_redis._tcp.consul"), svc("redis", None));
        assert_eq!(p("_redis._db.dc1.consul"), svc("redis", Some("db")));
        assert_eq!(p("web1.node.consul"), Some(Lookup::Node("web1".into())));
        assert_eq!(p("web1.node.dc1.consul"), Some(Lookup::Node("web1".into())));
        assert_eq!(p("redis.service.dc2.consul"), None);
        assert_eq!(p("a.b.c.service.consul"), None);
        assert_eq!(p("nothing.consul"), None);
        assert_eq!(p("consul"), None);
        assert_eq!(p("redis.service.example.com"), None);
        assert_eq!(p("node.consul"), None);
        assert_eq!(
            p("7f000005.addr.dc1.consul"),
            Some(Lookup::Addr([127, 0, 0, 5].into()))
        );
        assert_eq!(addr_label([127, 0, 0, 5].into()), "7f000005");
        assert_eq!(p("zz.addr.dc1.consul"), None);
    }

    #[test]
    fn other_datacenters() {
        let p = |n: &str| parse_dc(n, "consul", "dc1");
        let dc2 = Some("dc2".to_string());
        assert_eq!(
            p("web.service.dc2.consul"),
            Some((svc("web", None).unwrap(), dc2.clone()))
        );
        assert_eq!(
            p("v1.web.service.dc2.consul."),
            Some((svc("web", Some("v1")).unwrap(), dc2.clone()))
        );
        assert_eq!(
            p("_web._tcp.service.dc2.consul"),
            Some((svc("web", None).unwrap(), dc2.clone()))
        );
        assert_eq!(
            p("_web._v1.dc2.consul"),
            Some((svc("web", Some("v1")).unwrap(), dc2.clone()))
        );
        assert_eq!(
            p("n1.node.dc2.consul"),
            Some((Lookup::Node("n1".into()), dc2))
        );
        assert_eq!(
            p("web.service.dc1.consul"),
            Some((svc("web", None).unwrap(), None))
        );
        assert_eq!(
            p("web.service.consul"),
            Some((svc("web", None).unwrap(), None))
        );
        assert_eq!(
            p("7f000005.addr.dc2.consul"),
            Some((Lookup::Addr([127, 0, 0, 5].into()), None))
        );
        assert_eq!(p("a.b.c.service.dc2.consul"), None);
    }
}
