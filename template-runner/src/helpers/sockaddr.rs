//! consul-template's `sockaddr`: go-sockaddr's template language over this
//! host's interface addresses, e.g. `sockaddr "GetPrivateIP"` or
//! `sockaddr "GetAllInterfaces | include \"name\" \"^eth\" | attr \"address\""`.
//!
//! The expression is Go template syntax, so it runs on the Go engine with
//! go-sockaddr's functions: `GetAllInterfaces GetDefaultInterfaces
//! GetPrivateInterfaces GetPublicInterfaces GetPrivateIP GetPrivateIPs
//! GetPublicIP GetPublicIPs GetInterfaceIP GetInterfaceIPs` and `include
//! exclude sort limit offset unique attr join` (selectors `name address
//! type flags network`; sort keys `name address type default size`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use gotmpl::{Template, TemplateError, Value};

/// One address of one interface.
#[derive(Clone, Debug)]
struct IfAddr {
    name: String,
    ip: IpAddr,
    prefix: u8,
    flags: Vec<&'static str>,
    default: bool,
}

fn err(m: impl Into<String>) -> TemplateError {
    TemplateError::Exec(m.into())
}

/// The interface carrying the IPv4 default route (/proc/net/route).
fn default_interface() -> Option<String> {
    let t = std::fs::read_to_string("/proc/net/route").ok()?;
    t.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })
}

fn private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v) => (v.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn interfaces() -> Vec<IfAddr> {
    use nix::net::if_::InterfaceFlags as F;
    let dflt = default_interface();
    let Ok(it) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    let mut out = Vec::new();
    for a in it {
        let addr = a.address.as_ref();
        let ip: IpAddr = match (
            addr.and_then(|s| s.as_sockaddr_in()),
            addr.and_then(|s| s.as_sockaddr_in6()),
        ) {
            (Some(v4), _) => IpAddr::V4(v4.ip()),
            (_, Some(v6)) => IpAddr::V6(v6.ip()),
            _ => continue,
        };
        let mask = a.netmask.as_ref();
        let prefix = match (
            mask.and_then(|s| s.as_sockaddr_in()),
            mask.and_then(|s| s.as_sockaddr_in6()),
        ) {
            (Some(m), _) => u32::from(m.ip()).count_ones() as u8,
            (_, Some(m)) => u128::from(m.ip()).count_ones() as u8,
            _ => 0,
        };
        let mut flags = Vec::new();
        for (f, n) in [
            (F::IFF_UP, "up"),
            (F::IFF_BROADCAST, "broadcast"),
            (F::IFF_LOOPBACK, "loopback"),
            (F::IFF_POINTOPOINT, "pointtopoint"),
            (F::IFF_MULTICAST, "multicast"),
        ] {
            if a.flags.contains(f) {
                flags.push(n);
            }
        }
        if !a.flags.contains(F::IFF_LOOPBACK) && !link_local(&ip) {
            flags.push("forwardable");
        }
        out.push(IfAddr {
            default: dflt.as_deref() == Some(a.interface_name.as_str()),
            name: a.interface_name,
            ip,
            prefix,
            flags,
        });
    }
    out
}

fn kind(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The value a template sees for one address.
fn to_value(a: &IfAddr) -> Value {
    let s = |x: &str| Value::String(Arc::from(x));
    let mut m: BTreeMap<Arc<str>, Value> = BTreeMap::new();
    m.insert("name".into(), s(&a.name));
    m.insert("address".into(), s(&a.ip.to_string()));
    m.insert("type".into(), s(kind(&a.ip)));
    m.insert("network".into(), s(&format!("{}/{}", network(a), a.prefix)));
    m.insert("mask".into(), Value::Int(a.prefix as i64));
    m.insert("default".into(), Value::Bool(a.default));
    m.insert(
        "flags".into(),
        Value::List(a.flags.iter().map(|f| s(f)).collect()),
    );
    Value::Map(Arc::new(m))
}

fn network(a: &IfAddr) -> IpAddr {
    match a.ip {
        IpAddr::V4(v) => {
            let m = if a.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - a.prefix.min(32))
            };
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let m = if a.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - a.prefix.min(128))
            };
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

fn field(v: &Value, k: &str) -> String {
    match v.field(k) {
        Some(Value::List(l)) => l
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("|"),
        Some(x) => x.to_string(),
        None => String::new(),
    }
}

fn list_arg(args: &[Value]) -> Result<Vec<Value>, TemplateError> {
    match args.last() {
        Some(Value::List(l)) => Ok(l.to_vec()),
        _ => Err(err("expected a list of interface addresses (piped)")),
    }
}

fn str_at(args: &[Value], i: usize) -> Result<String, TemplateError> {
    args.get(i)
        .map(|v| v.to_string())
        .ok_or_else(|| err(format!("missing argument {}", i + 1)))
}

/// go-sockaddr's default order: default-route interface first, IPv4 before
/// IPv6, larger networks first, then by address.
fn default_sort(v: &mut [IfAddr]) {
    v.sort_by(|a, b| {
        (!a.default, a.ip.is_ipv6(), a.prefix, a.ip).cmp(&(
            !b.default,
            b.ip.is_ipv6(),
            b.prefix,
            b.ip,
        ))
    });
}

fn select(filter: impl Fn(&IfAddr) -> bool) -> Value {
    let mut v: Vec<IfAddr> = interfaces().into_iter().filter(filter).collect();
    default_sort(&mut v);
    Value::List(v.iter().map(to_value).collect())
}

fn up_forwardable(a: &IfAddr) -> bool {
    a.flags.contains(&"up") && a.flags.contains(&"forwardable")
}

/// First address of a list, or "".
fn first_address(l: &Value) -> Value {
    match l {
        Value::List(l) => l
            .first()
            .map(|a| Value::String(Arc::from(field(a, "address"))))
            .unwrap_or_else(|| Value::String(Arc::from(""))),
        _ => Value::String(Arc::from("")),
    }
}

fn addresses(l: &Value) -> Value {
    let s = match l {
        Value::List(l) => l
            .iter()
            .map(|a| field(a, "address"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    Value::String(Arc::from(s))
}

fn matches(a: &Value, sel: &str, pat: &str) -> Result<bool, TemplateError> {
    Ok(match sel {
        "name" | "address" | "network" => regex::Regex::new(pat)
            .map_err(|e| err(e.to_string()))?
            .is_match(&field(a, sel)),
        "type" => pat.eq_ignore_ascii_case("ip") || field(a, "type").eq_ignore_ascii_case(pat),
        "flags" | "flag" => {
            matches!(a.field("flags"), Some(Value::List(f)) if f.iter().any(|x| x.to_string() == pat))
        }
        other => return Err(err(format!("unsupported selector {other:?}"))),
    })
}

fn filter(args: &[Value], keep: bool) -> Result<Value, TemplateError> {
    let (sel, pat) = (str_at(args, 0)?, str_at(args, 1)?);
    let mut out = Vec::new();
    for a in list_arg(args)? {
        if matches(&a, &sel, &pat)? == keep {
            out.push(a);
        }
    }
    Ok(Value::List(out.into()))
}

fn sort(args: &[Value]) -> Result<Value, TemplateError> {
    let keys = str_at(args, 0)?;
    let mut l = list_arg(args)?;
    for k in keys.split(',').rev() {
        let (k, rev) = match k.trim().strip_prefix('-') {
            Some(k) => (k, true),
            None => (k.trim().trim_start_matches('+'), false),
        };
        let key = |v: &Value| -> String {
            match k {
                "default" => (if field(v, "default") == "true" {
                    "0"
                } else {
                    "1"
                })
                .into(),
                "size" => format!("{:03}", field(v, "mask").parse::<u32>().unwrap_or(0)),
                "address" => field(v, "address")
                    .parse::<IpAddr>()
                    .map(|ip| match ip {
                        IpAddr::V4(x) => format!("4{:010}", u32::from(x)),
                        IpAddr::V6(x) => format!("6{:039}", u128::from(x)),
                    })
                    .unwrap_or_default(),
                other => field(v, other),
            }
        };
        l.sort_by_key(key);
        if rev {
            l.reverse();
        }
    }
    Ok(Value::List(l.into()))
}

fn functions() -> gotmpl::FuncMap {
    let mut fm = gotmpl::FuncMap::new();
    let mut add = |n: &str, f: gotmpl::ValueFunc| {
        fm.insert(n.into(), f);
    };
    add("GetAllInterfaces", Arc::new(|_| Ok(select(|_| true))));
    add(
        "GetDefaultInterfaces",
        Arc::new(|_| Ok(select(|a| a.default))),
    );
    add(
        "GetPrivateInterfaces",
        Arc::new(|_| Ok(select(|a| up_forwardable(a) && private(&a.ip)))),
    );
    add(
        "GetPublicInterfaces",
        Arc::new(|_| Ok(select(|a| up_forwardable(a) && !private(&a.ip)))),
    );
    add(
        "GetPrivateIP",
        Arc::new(|_| {
            Ok(first_address(&select(|a| {
                up_forwardable(a) && private(&a.ip) && a.ip.is_ipv4()
            })))
        }),
    );
    add(
        "GetPrivateIPs",
        Arc::new(|_| Ok(addresses(&select(|a| up_forwardable(a) && private(&a.ip))))),
    );
    add(
        "GetPublicIP",
        Arc::new(|_| {
            Ok(first_address(&select(|a| {
                up_forwardable(a) && !private(&a.ip) && a.ip.is_ipv4()
            })))
        }),
    );
    add(
        "GetPublicIPs",
        Arc::new(|_| Ok(addresses(&select(|a| up_forwardable(a) && !private(&a.ip))))),
    );
    add(
        "GetInterfaceIP",
        Arc::new(|args| {
            let n = str_at(args, 0)?;
            Ok(first_address(&select(|a| a.name == n && a.ip.is_ipv4())))
        }),
    );
    add(
        "GetInterfaceIPs",
        Arc::new(|args| {
            let n = str_at(args, 0)?;
            Ok(addresses(&select(|a| a.name == n)))
        }),
    );
    add("include", Arc::new(|args| filter(args, true)));
    add("exclude", Arc::new(|args| filter(args, false)));
    add("sort", Arc::new(sort));
    add(
        "limit",
        Arc::new(|args| {
            let n = args.first().and_then(Value::as_int).unwrap_or(0).max(0) as usize;
            Ok(Value::List(list_arg(args)?.into_iter().take(n).collect()))
        }),
    );
    add(
        "offset",
        Arc::new(|args| {
            let n = args.first().and_then(Value::as_int).unwrap_or(0).max(0) as usize;
            Ok(Value::List(list_arg(args)?.into_iter().skip(n).collect()))
        }),
    );
    add(
        "unique",
        Arc::new(|args| {
            let k = str_at(args, 0)?;
            let mut seen = std::collections::BTreeSet::new();
            let l: Vec<Value> = list_arg(args)?
                .into_iter()
                .filter(|a| seen.insert(field(a, &k)))
                .collect();
            Ok(Value::List(l.into()))
        }),
    );
    add(
        "attr",
        Arc::new(|args| {
            let k = str_at(args, 0)?;
            let l = list_arg(args)?;
            Ok(Value::String(Arc::from(
                l.first().map(|a| field(a, &k)).unwrap_or_default(),
            )))
        }),
    );
    add(
        "join",
        Arc::new(|args| {
            let (k, sep) = (str_at(args, 0)?, str_at(args, 1)?);
            let l = list_arg(args)?;
            Ok(Value::String(Arc::from(
                l.iter()
                    .map(|a| field(a, &k))
                    .collect::<Vec<_>>()
                    .join(&sep),
            )))
        }),
    );
    fm
}

/// Evaluate a go-sockaddr expression (its arguments joined by spaces).
pub fn eval(expr: &str) -> Result<String, String> {
    static BASE: OnceLock<Template> = OnceLock::new();
    let base = BASE.get_or_init(|| Template::new("sockaddr").funcs(functions()));
    base.clone()
        .parse(&format!("{{{{ {expr} }}}}"))
        .and_then(|t| t.execute_to_string(&Value::Nil))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_expressions() {
        assert_eq!(eval("GetInterfaceIP \"lo\"").unwrap(), "127.0.0.1");
        assert_eq!(
            eval("GetAllInterfaces | include \"name\" \"^lo$\" | include \"type\" \"IPv4\" | attr \"address\"").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            eval("GetAllInterfaces | include \"flags\" \"loopback\" | include \"type\" \"IPv4\" | join \"name\" \",\"").unwrap(),
            "lo"
        );
        assert!(eval("Bogus").is_err());
    }
}
