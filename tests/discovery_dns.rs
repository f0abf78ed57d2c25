//! DNS of a real agent, via dig: SRV/A forms, recursors, TTLs.
use std::time::Duration;

use serde_json::json;
use tribune_tests::Agent;
mod discovery;
use discovery::*;
/// dig: SRV with A in additional, tag, RFC 2782, node, case, NXDOMAIN + SOA,
/// TCP, UDP truncation.
#[test]
fn dns_forms() {
    let (a, dns) = dns_agent(&[]);
    for (id, port, tags) in [
        ("redis1", 6379, vec!["db", "primary"]),
        ("redis2", 6380, vec!["db"]),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": "redis", "ID": id, "Port": port, "Tags": tags,
            "Check": {"TTL": "60s", "Status": "passing"}}),
        );
        assert_eq!(r.status(), 200);
    }
    put_json(
        &a,
        "catalog/register",
        json!({"Node": "ext", "Address": "10.1.2.3", "NodeMeta": {"rack": "r1"}}),
    );
    wait_until("redis in catalog", Duration::from_secs(5), || {
        passing_ids(&a, "redis").len() == 2
    });

    let out = dig(dns, &["redis.service.consul", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("ANSWER: 2"), "{out}");
    assert!(
        out.contains("OPT PSEUDOSECTION"),
        "an EDNS query must get an OPT record back: {out}"
    );
    assert!(
        out.contains("SRV\t1 1 6379 node1.node.dc1.consul."),
        "{out}"
    );
    assert!(
        out.contains("node1.node.dc1.consul.\t0\tIN\tA\t127.0.0.1"),
        "{out}"
    );
    let short = dig(dns, &["+short", "primary.redis.service.consul"]);
    assert_eq!(short.trim(), "127.0.0.1");
    let srv = dig(dns, &["+short", "_redis._db.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    let srv = dig(dns, &["+short", "_redis._primary.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    let srv = dig(dns, &["+short", "_redis._tcp.service.dc1.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    assert_eq!(
        dig(dns, &["+short", "node1.node.consul"]).trim(),
        "127.0.0.1"
    );
    assert_eq!(
        dig(dns, &["+short", "EXT.Node.DC1.Consul"]).trim(),
        "10.1.2.3"
    );
    assert_eq!(
        dig(dns, &["+short", "ext.node.consul", "TXT"]).trim(),
        "\"rack=r1\""
    );
    // Case-insensitive: `Redis` (tag `Replica`) on node `CacheHost` answers
    // together with `redis`, by any spelling (and the cached answer for
    // `redis` above is invalidated).
    put_json(
        &a,
        "catalog/register",
        json!({"Node": "CacheHost", "Address": "10.9.9.9",
        "Service": {"Service": "Redis", "ID": "redis3", "Port": 7000, "Tags": ["Replica"]}}),
    );
    for q in ["redis.service.consul", "REDIS.SERVICE.CONSUL"] {
        let srv = dig(dns, &["+short", q, "SRV"]);
        assert_eq!(srv.lines().count(), 3, "{q}: {srv}");
        // DNS names compare ignoring case (the encoder may reuse a label).
        assert!(
            srv.to_ascii_lowercase()
                .contains("1 1 7000 cachehost.node.dc1.consul."),
            "{q}: {srv}"
        );
    }
    for q in [
        "replica.redis.service.consul",
        "REPLICA.Redis.service.consul",
    ] {
        assert_eq!(dig(dns, &["+short", q]).trim(), "10.9.9.9", "{q}");
    }
    let srv = dig(dns, &["+short", "_REDIS._replica.service.consul", "SRV"]);
    assert_eq!(
        srv.trim().to_ascii_lowercase(),
        "1 1 7000 cachehost.node.dc1.consul."
    );
    for q in ["cachehost.node.consul", "CACHEHOST.NODE.CONSUL"] {
        assert_eq!(dig(dns, &["+short", q]).trim(), "10.9.9.9", "{q}");
    }
    put_json(&a, "catalog/deregister", json!({"Node": "CacheHost"}));
    let srv = dig(dns, &["+short", "REDIS.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "after deregister: {srv}");
    assert!(dig(dns, &["cachehost.node.consul"]).contains("status: NXDOMAIN"));

    let out = dig(dns, &["nope.service.consul"]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("SOA"),
        "{out}"
    );
    let out = dig(dns, &["redis.service.dc9.consul"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let out = dig(dns, &["+tcp", "+short", "redis.service.consul", "SRV"]);
    assert_eq!(out.lines().count(), 2, "TCP: {out}");
    // Not our domain and no recursor: refused, not answered.
    assert!(dig(dns, &["example.com"]).contains("status: REFUSED"));

    // Many instances: UDP answer truncated with TC, TCP answer complete.
    for i in 0..40 {
        put_json(
            &a,
            "catalog/register",
            json!({"Node": format!("bulk-node-with-a-long-name-{i:02}"), "Address": format!("10.0.0.{i}"),
            "Service": {"Service": "bulk", "ID": format!("bulk{i}"), "Port": 1000 + i}}),
        );
    }
    // A 512-byte client gets udp_answer_limit (3) answers, without TC
    // (Consul's default, enable_truncate = false); one taking more gets
    // what fits its EDNS size, with TC.
    let udp = dig(dns, &["+ignore", "+noedns", "bulk.service.consul", "SRV"]);
    assert!(
        udp.contains("ANSWER: 3,") && !udp.contains(" tc"),
        "udp_answer_limit: {udp}"
    );
    let udp = dig(
        dns,
        &["+ignore", "+bufsize=1232", "bulk.service.consul", "SRV"],
    );
    assert!(
        udp.contains(" tc"),
        "no TC flag on a large UDP answer: {udp}"
    );
    let tcp = dig(dns, &["+tcp", "+short", "bulk.service.consul", "SRV"]);
    assert_eq!(tcp.lines().count(), 40);
    // Shuffled: the order is not always the same.
    let orders: std::collections::HashSet<String> = (0..6)
        .map(|_| dig(dns, &["+tcp", "+short", "bulk.service.consul"]))
        .collect();
    assert!(orders.len() > 1, "answers are not shuffled");
}

/// `-recursor`: names outside the consul domain are forwarded. The upstream
/// here is a second agent serving the domain `example`.
#[test]
fn dns_recursor_forwards_other_domains() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("domain.json");
    std::fs::write(&conf, r#"{"domain": "example"}"#).unwrap();
    let c = conf.to_str().unwrap();
    let upstream = Agent::spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            "0",
            "-node",
            "far",
            "-config-file",
            c,
        ],
        None,
    );
    let upstream_dns = upstream.dns_port();
    // The upstream registers its own node through anti-entropy, just after start.
    wait_until("upstream node registered", Duration::from_secs(5), || {
        get(&upstream, "catalog/node/far").status() == 200
    });
    let recursor = format!("127.0.0.1:{upstream_dns}");
    let (a, dns) = dns_agent(&["-recursor", &recursor]);
    wait_until("local node registered", Duration::from_secs(5), || {
        get(&a, "catalog/node/node1").status() == 200
    });
    let out = dig(dns, &["far.node.example"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("far.node.example.\t0\tIN\tA\t127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(" ra"),
        "recursion available flag missing: {out}"
    );
    // our own domain still answered locally
    assert_eq!(
        dig(dns, &["+short", "node1.node.consul"]).trim(),
        "127.0.0.1"
    );
}

/// `dns_config` TTLs apply to service (per name, any case, and `*`) and node answers.
#[test]
fn dns_ttls_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dns.json");
    std::fs::write(
        &conf,
        r#"{"dns_config": {"node_ttl": "7s", "service_ttl": {"*": "5s", "DB": "30s"}}}"#,
    )
    .unwrap();
    let (a, dns) = dns_agent(&["-config-file", conf.to_str().unwrap()]);
    for name in ["web", "db"] {
        put_json(
            &a,
            "agent/service/register",
            json!({"Name": name, "Port": 1, "Check": {"TTL": "60s", "Status": "passing"}}),
        );
    }
    wait_until("both passing", Duration::from_secs(5), || {
        passing_ids(&a, "db").len() == 1 && passing_ids(&a, "web").len() == 1
    });
    let ttl = |q: &str| {
        let out = dig(dns, &["+noall", "+answer", q]);
        out.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(ttl("web.service.consul"), "5");
    assert_eq!(ttl("db.service.consul"), "30");
    assert_eq!(ttl("node1.node.consul"), "7");
}
