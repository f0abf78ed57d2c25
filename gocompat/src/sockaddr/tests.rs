use super::*;

fn addr(name: &str, index: u32, cidr: &str, flags: &[&'static str]) -> IfAddr {
    let (ip, prefix) = cidr.split_once('/').unwrap();
    IfAddr {
        name: name.into(),
        index,
        ip: ip.parse().unwrap(),
        prefix: prefix.parse().unwrap(),
        flags: flags.to_vec(),
    }
}

const LO: &[&str] = &["up", "loopback", "running"];
const ETH: &[&str] = &["up", "broadcast", "multicast", "running"];

/// A host with loopback, two private NICs (eth0 has the default route), a
/// docker bridge and a public address.
fn host() -> Env {
    Env {
        addrs: vec![
            addr("lo", 1, "127.0.0.1/8", LO),
            addr("lo", 1, "::1/128", LO),
            addr("eth0", 2, "10.0.0.5/24", ETH),
            addr("eth0", 2, "fe80::1/64", ETH),
            addr("eth1", 3, "192.168.1.10/16", ETH),
            addr("docker0", 4, "172.17.0.1/16", ETH),
            addr("wan0", 5, "8.8.4.4/24", ETH),
            addr("down0", 6, "10.9.9.9/24", &["broadcast"]),
        ],
        default_if: Some("eth0".into()),
    }
}

fn render(t: &str) -> String {
    template::render(t, &host()).unwrap_or_else(|e| panic!("{t}: {e}"))
}

#[test]
fn the_forms_guides_use() {
    assert_eq!(render("{{ GetPrivateIP }}"), "10.0.0.5");
    assert_eq!(render("{{GetInterfaceIP \"eth1\"}}"), "192.168.1.10");
    assert_eq!(
        render("{{ GetAllInterfaces | include \"name\" \"^eth\" | attr \"address\" }}"),
        "10.0.0.5"
    );
    assert_eq!(render("{{ GetPublicIP }}"), "8.8.4.4");
    assert_eq!(
        render("{{ GetPrivateInterfaces | include \"network\" \"192.168.0.0/16\" | attr \"address\" }}"),
        "192.168.1.10"
    );
    assert_eq!(
        render("{{ GetPrivateInterfaces | exclude \"name\" \"docker\" | sort \"-address\" | limit 1 | attr \"address\" }}"),
        "192.168.1.10"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"rfc\" \"1918\" | join \"name\" \",\" }}"),
        "eth0,eth1,docker0,down0"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"flags\" \"loopback\" | include \"type\" \"IPv4\" | attr \"address\" }}"),
        "127.0.0.1"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"name\" \"^eth\" | include \"type\" \"ipv4\" | join \"address\" \" \" }}"),
        "10.0.0.5 192.168.1.10"
    );
    assert_eq!(render("{{ GetInterfaceIPs \"eth0\" }}"), "10.0.0.5 fe80::1");
    assert_eq!(
        render("{{ GetPrivateIPs }}"),
        "192.168.1.10 172.17.0.1 10.0.0.5 10.9.9.9"
    );
    assert_eq!(render("{{ GetPublicIPs }}"), "8.8.4.4");
    assert_eq!(
        render("{{ . | include \"name\" \"wan\" | attr \"network\" }}/{{ GetDefaultInterfaces | attr \"mask_bits\" }}"),
        "8.8.4.0/24"
    );
}

#[test]
fn attributes_sorting_and_text() {
    assert_eq!(
        render("bind {{ GetInterfaceIP `eth1` }} ok"),
        "bind 192.168.1.10 ok"
    );
    assert_eq!(render("  {{- GetPrivateIP -}}  "), "10.0.0.5");
    assert_eq!(render("{{/* a comment */}}x"), "x");
    assert_eq!(
        render("{{ (GetAllInterfaces | include \"name\" \"eth1\") | attr \"netmask\" }}"),
        "255.255.0.0"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"name\" \"eth0\" | attr \"broadcast\" }}"),
        "10.0.0.255"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"name\" \"eth0\" | attr \"flags\" }}"),
        "up|broadcast|multicast|running"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"type\" \"IPv4\" | sort \"size,name\" | join \"name\" \" \" }}"),
        "lo docker0 eth1 down0 eth0 wan0"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"type\" \"IPv4\" | sort \"-name\" | offset -1 | attr \"name\" }}"),
        "docker0"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | sort \"name\" | unique \"name\" | join \"name\" \",\" }}"),
        "docker0,down0,eth0,eth1,lo,wan0"
    );
    assert_eq!(
        render("{{ GetAllInterfaces | include \"size\" \"16\" | exclude \"flag\" \"forwardable\" | join \"address\" \" \" }}"),
        ""
    );
    assert_eq!(
        render("{{ GetAllInterfaces | exclude \"flags\" \"up\" | attr \"name\" }}"),
        "down0"
    );
    assert_eq!(render("no template here"), "no template here");
}

#[test]
fn errors_name_the_cause() {
    let env = host();
    let err = |t: &str| template::render(t, &env).unwrap_err().to_string();
    assert!(err("{{ Bogus }}").contains("function \"Bogus\" not defined"));
    assert!(err("{{ GetPrivateIP").contains("unclosed action"));
    assert!(err("{{ GetAllInterfaces | attr \"nope\" }}").contains("unsupported attribute name"));
    assert!(err("{{ GetAllInterfaces | sort \"bogus\" }}").contains("unknown sort type"));
    assert!(err("{{ GetAllInterfaces | include \"name\" \"(\" }}").contains("regexp"));
    assert!(err("{{ GetAllInterfaces }}").contains("pick an attribute"));
    assert!(err("{{ GetAllInterfaces | offset 99 }}").contains("seek past the end"));
    assert!(err("{{ GetInterfaceIP }}").contains("wrong number of args"));
    let e = expand_ips("bind_addr", "{{ GetInterfaceIP \"eth0\" }} nope", &env).unwrap_err();
    assert_eq!(e.to_string(), "bind_addr: invalid ip address: nope");
    let e = expand_one("advertise_addr", "{{ GetPrivateIPs }}", &env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "advertise_addr: multiple addresses found: 192.168.1.10 172.17.0.1 10.0.0.5 10.9.9.9"
    );
    let e = expand_ips("bind_addr", "{{ Nope }}", &env).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "bind_addr: error parsing \"{{ Nope }}\": unable to parse template \"{{ Nope }}\""
        ),
        "{e}"
    );
}

/// Bound to 0.0.0.0, Consul advertises its one private IPv4 address.
#[test]
fn advertise_detection() {
    let any: IpAddr = "0.0.0.0".parse().unwrap();
    let one = vec![
        addr("lo", 1, "127.0.0.1/8", LO),
        addr("eth0", 2, "10.0.0.5/24", ETH),
        addr("eth0", 2, "fe80::1/64", ETH),
    ];
    assert_eq!(
        detect_advertise(any, &one).unwrap(),
        "10.0.0.5".parse::<IpAddr>().unwrap()
    );
    let e = detect_advertise(any, &host().addrs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'."
    );
    let public = vec![
        addr("lo", 1, "127.0.0.1/8", LO),
        addr("eth0", 2, "8.8.4.4/24", ETH),
    ];
    assert_eq!(
        detect_advertise(any, &public).unwrap_err().to_string(),
        "No private IPv4 address found"
    );
    // Only loopback up: Consul falls back to it.
    let lo_only = vec![
        addr("lo", 1, "127.0.0.1/8", LO),
        addr("eth0", 2, "10.0.0.5/24", &["broadcast"]),
    ];
    assert_eq!(
        detect_advertise(any, &lo_only).unwrap(),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );
    let v6: IpAddr = "::".parse().unwrap();
    let with_v6 = vec![
        addr("eth0", 2, "10.0.0.5/24", ETH),
        addr("eth0", 2, "2a01:4f8::5/64", ETH),
        addr("eth0", 2, "fe80::1/64", ETH),
    ];
    assert_eq!(
        detect_advertise(v6, &with_v6).unwrap(),
        "2a01:4f8::5".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        detect_advertise(v6, &one).unwrap_err().to_string(),
        "No public IPv6 address found"
    );
}

/// The real interfaces: loopback is always there.
#[test]
fn host_interfaces() {
    let env = host_env().unwrap();
    assert!(env
        .addrs
        .iter()
        .any(|a| a.name == "lo" && a.ip.is_loopback()));
    assert_eq!(
        template::render("{{ GetAllInterfaces | include \"name\" \"^lo$\" | include \"type\" \"IPv4\" | attr \"address\" }}", &env).unwrap(),
        "127.0.0.1"
    );
}
