//! This host's interface addresses as go-sockaddr sees them: one `IfAddr`
//! per address, with its interface's name and flags, and the RFC address
//! blocks go-sockaddr classifies them by.

use std::net::IpAddr;

/// Interface flags, in the order Go's `net.Flags` prints them.
pub const FLAG_NAMES: [&str; 6] = [
    "up",
    "broadcast",
    "loopback",
    "pointtopoint",
    "multicast",
    "running",
];

/// One address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    /// Interface index (enumeration order, as Go's `net.Interfaces`).
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    /// Set flags among [`FLAG_NAMES`].
    pub flags: Vec<&'static str>,
}

impl IfAddr {
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.contains(&f)
    }

    fn bits(&self) -> u8 {
        if self.ip.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn mask(&self) -> u128 {
        let bits = self.bits();
        let p = self.prefix.min(bits);
        if p == 0 {
            0
        } else {
            (u128::MAX << (128 - p)) >> (128 - bits)
        }
    }

    fn value(&self) -> u128 {
        match self.ip {
            IpAddr::V4(v) => u32::from(v) as u128,
            IpAddr::V6(v) => u128::from(v),
        }
    }

    fn same_family_ip(&self, x: u128) -> IpAddr {
        match self.ip {
            IpAddr::V4(_) => IpAddr::V4((x as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(x.into()),
        }
    }

    pub fn network(&self) -> IpAddr {
        self.same_family_ip(self.value() & self.mask())
    }

    /// go-sockaddr's string form: `address/prefix`, or the bare address for
    /// a host mask.
    pub fn sockaddr_string(&self) -> String {
        if self.prefix >= self.bits() {
            self.ip.to_string()
        } else {
            format!("{}/{}", self.ip, self.prefix)
        }
    }

    /// An attribute, as go-sockaddr's `attr` and `join` name them; `None`
    /// for an unknown name.
    pub fn attr(&self, name: &str) -> Option<String> {
        let mask = self.mask();
        Some(match name.to_ascii_lowercase().as_str() {
            "address" | "host" => self.ip.to_string(),
            "name" => self.name.clone(),
            "flags" => self.flags.join("|"),
            "network" => self.network().to_string(),
            "netmask" => self.same_family_ip(mask).to_string(),
            "mask_bits" => self.prefix.to_string(),
            "size" => {
                let host_bits = u32::from(self.bits() - self.prefix.min(self.bits()));
                1u128.checked_shl(host_bits).map_or_else(
                    || "340282366920938463463374607431768211456".into(),
                    |n| n.to_string(),
                )
            }
            "broadcast" if self.ip.is_ipv4() => self
                .same_family_ip(self.value() | (!mask & 0xffff_ffff))
                .to_string(),
            "uint32" if self.ip.is_ipv4() => self.value().to_string(),
            "type" => kind(&self.ip).to_string(),
            "string" => self.sockaddr_string(),
            "port" => "0".to_string(),
            _ => return None,
        })
    }
}

pub fn kind(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// A block `addr/prefix` of an RFC table.
fn contains(block: &str, ip: &IpAddr) -> bool {
    let Some((net, prefix)) = block.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(prefix)) = (net.parse::<IpAddr>(), prefix.parse::<u8>()) else {
        return false;
    };
    if net.is_ipv4() != ip.is_ipv4() {
        return false;
    }
    let probe = IfAddr {
        name: String::new(),
        index: 0,
        ip: *ip,
        prefix,
        flags: vec![],
    };
    probe.network() == net
}

/// RFC 6890's special-purpose blocks: go-sockaddr's "private".
const RFC6890: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "::/128",
    "64:ff9b::/96",
    "::ffff:0:0/96",
    "100::/64",
    "2001::/16",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
];

/// Blocks no router forwards (go-sockaddr's ForwardingBlacklist).
const NOT_FORWARDABLE: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "::/128",
    "::ffff:0:0/96",
    "2001:db8::/32",
    "2001:10::/28",
    "fe80::/10",
];

/// The blocks of the RFCs go-sockaddr knows that `include "rfc"` is used
/// with most.
pub fn rfc_blocks(rfc: u32) -> Option<&'static [&'static str]> {
    Some(match rfc {
        919 => &["255.255.255.255/32"],
        1112 | 3171 => &["224.0.0.0/4"],
        1122 => &["0.0.0.0/8", "127.0.0.0/8"],
        1918 => &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        2544 => &["198.18.0.0/15"],
        3849 => &["2001:db8::/32"],
        3927 => &["169.254.0.0/16"],
        4193 => &["fc00::/7"],
        4291 => &[
            "::/128",
            "::1/128",
            "::/96",
            "::ffff:0:0/96",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ],
        5737 => &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"],
        6598 => &["100.64.0.0/10"],
        6890 => RFC6890,
        _ => return None,
    })
}

pub fn in_rfc(rfc: u32, ip: &IpAddr) -> bool {
    rfc_blocks(rfc).is_some_and(|b| b.iter().any(|x| contains(x, ip)))
}

/// go-sockaddr's private: in RFC 6890.
pub fn is_rfc6890(ip: &IpAddr) -> bool {
    RFC6890.iter().any(|b| contains(b, ip))
}

pub fn forwardable(ip: &IpAddr) -> bool {
    !NOT_FORWARDABLE.iter().any(|b| contains(b, ip))
}

/// Consul's own "private" blocks (its ipaddr package), used to pick the
/// address to advertise when bound to 0.0.0.0.
pub fn consul_private(ip: &IpAddr) -> bool {
    const BLOCKS: &[&str] = &[
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "fec0::/10",
        "2001:db8::/32",
    ];
    BLOCKS.iter().any(|b| contains(b, ip))
}

/// The interface carrying the IPv4 default route (`/proc/net/route`).
pub fn default_interface() -> Option<String> {
    let t = std::fs::read_to_string("/proc/net/route").ok()?;
    t.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })
}

/// Every address of every interface, by interface index, IPv4 before IPv6.
pub fn all() -> std::io::Result<Vec<IfAddr>> {
    use nix::net::if_::InterfaceFlags as F;
    let list = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    let mut out = Vec::new();
    for a in list {
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
        let set = [
            F::IFF_UP,
            F::IFF_BROADCAST,
            F::IFF_LOOPBACK,
            F::IFF_POINTOPOINT,
            F::IFF_MULTICAST,
            F::IFF_RUNNING,
        ];
        let flags = set
            .iter()
            .zip(FLAG_NAMES)
            .filter(|(f, _)| a.flags.contains(**f))
            .map(|(_, n)| n)
            .collect();
        let index = nix::net::if_::if_nametoindex(a.interface_name.as_str()).unwrap_or(u32::MAX);
        out.push(IfAddr {
            name: a.interface_name,
            index,
            ip,
            prefix,
            flags,
        });
    }
    out.sort_by_key(|a| (a.index, a.ip.is_ipv6()));
    Ok(out)
}
