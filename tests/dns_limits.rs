//! DNS under hostile data and sizes, against a real agent with `dig`:
//! node and service metadata validated as Consul does, long meta answered
//! as split TXT strings, UDP answers within the client's size (TC when
//! cut), `dns_config.udp_answer_limit`, `a_record_limit`, `enable_truncate`.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::{bin, client, dig, wait_until, Agent};

fn put_json(a: &Agent, path: &str, body: Value) -> (u16, String) {
    let r = client()
        .put(format!("{}/v1/{path}", a.url))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn dns_agent(extra: &[&str]) -> (Agent, u16) {
    Agent::dev_dns(extra)
}

/// dig's `;; MSG SIZE  rcvd: N`.
fn msg_size(out: &str) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no message size in {out}"))
}

/// dig's `ANSWER: N,` of the header line.
fn answers(out: &str) -> usize {
    out.split("ANSWER: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no answer count in {out}"))
}

fn truncated(out: &str) -> bool {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| l.split(';').nth(2).unwrap_or("").contains(" tc"))
}

/// The character-strings of `dig +short` TXT output, joined per record.
fn txt_records(short: &str) -> Vec<String> {
    short
        .lines()
        .map(|l| {
            l.split('"')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect::<String>()
        })
        .collect()
}

fn assert_no_panic(a: &Agent) {
    let log = a.log_text();
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
}

/// Meta values up to Consul's 512 characters answer A, TXT (split into
/// 255-byte strings) and TCP queries; they used to SERVFAIL past ~253
/// characters and panic the DNS task in debug builds.
#[test]
fn long_node_meta_is_answered_as_split_txt() {
    let (a, dns) = dns_agent(&[]);
    for n in [253, 254, 400, 512] {
        let node = format!("meta{n}");
        let value = "v".repeat(n);
        let (code, body) = put_json(
            &a,
            "catalog/register",
            json!({"Node": node, "Address": "10.9.8.1", "NodeMeta": {"k": value}}),
        );
        assert_eq!(code, 200, "{body}");
        let q = format!("{node}.node.consul");
        let want = format!("k={value}");
        for args in [vec!["+short"], vec!["+short", "+tcp"]] {
            let out = dig(dns, &[&args[..], &[q.as_str(), "TXT"]].concat());
            assert_eq!(
                txt_records(&out),
                std::slice::from_ref(&want),
                "{args:?} {q}: {out}"
            );
        }
        let out = dig(dns, &["+short", "+tcp", &q, "TXT"]);
        for s in out.trim().split("\" \"") {
            assert!(s.trim_matches('"').len() <= 255, "{out}");
        }
        // A over UDP without EDNS: the address; the TXT additional record
        // is left out when it does not fit.
        let out = dig(dns, &["+noedns", &q]);
        assert!(
            out.contains("status: NOERROR") && out.contains("10.9.8.1"),
            "{out}"
        );
        assert!(msg_size(&out) <= 512, "{out}");
        // TXT without EDNS: sent even when one record alone exceeds 512
        // bytes (as Consul does), with TC so the client can retry over TCP.
        let out = dig(dns, &["+noedns", "+ignore", &q, "TXT"]);
        assert!(
            out.contains("status: NOERROR") && answers(&out) == 1,
            "{out}"
        );
        assert_eq!(truncated(&out), msg_size(&out) > 512, "{out}");
    }
    assert_no_panic(&a);
}

/// Metadata is refused on every path with Consul's limits and words:
/// catalog NodeMeta and Service Meta, agent service registration, config
/// `node_meta` and config service definitions.
#[test]
fn meta_is_validated_everywhere() {
    let a = Agent::dev(&[]);
    let long = "v".repeat(513);
    let value_err = format!(
        "Couldn't load metadata pair ('k', '{long}'): Value is too long (limit: 512 characters)"
    );
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (
            "catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"k": long}}),
            format!("Invalid Node Meta for node n1: {value_err}"),
        ),
        (
            "catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1", "NodeMeta": many}),
            "Invalid Node Meta for node n1: Node metadata cannot contain more than 64 key/value pairs"
                .into(),
        ),
        (
            "catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1",
                   "Service": {"Service": "s", "ID": "s1", "Meta": {"k": long}}}),
            format!("Invalid Service Meta for node n1 and serviceID s1: {value_err}"),
        ),
        (
            "agent/service/register",
            json!({"Name": "s", "Meta": {"k": long}}),
            format!("Invalid Service Meta: {value_err}"),
        ),
        (
            "agent/service/register",
            json!({"Name": "s", "Meta": {"a.b": "1"}}),
            "Invalid Service Meta: Couldn't load metadata pair ('a.b', '1'): Key contains invalid characters"
                .into(),
        ),
        (
            "agent/service/register",
            json!({"Name": "s", "Meta": {"consul-x": "1"}}),
            "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use"
                .into(),
        ),
    ];
    for (path, body, want) in cases {
        let (code, text) = put_json(&a, path, body);
        assert_eq!((code, text.trim()), (400, want.as_str()), "{path}");
    }
    // nothing was written
    let nodes: Value = client()
        .get(format!("{}/v1/catalog/nodes", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        nodes.as_array().unwrap().iter().all(|n| n["Node"] != "n1"),
        "{nodes}"
    );
    // the limits themselves pass
    let (code, text) = put_json(
        &a,
        "catalog/register",
        json!({"Node": "n2", "Address": "10.0.0.2", "NodeMeta": {"k".repeat(128): "v".repeat(512)}}),
    );
    assert_eq!(code, 200, "{text}");

    // Config files: the agent refuses to start, naming the problem.
    let dir = tempfile::tempdir().unwrap();
    for (file, want) in [
        (
            json!({"node_meta": {"k": long}}),
            format!("node_meta invalid: {value_err}"),
        ),
        (
            json!({"service": {"name": "web", "meta": {"k": long}}}),
            format!("invalid meta for service web: {value_err}"),
        ),
    ] {
        let f = dir.path().join("bad.json");
        std::fs::write(&f, file.to_string()).unwrap();
        let out = Command::new(bin("tribune"))
            .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
            .arg("-config-file")
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "started with {file}: {text}");
        assert!(text.contains(&want), "{file}: {text}");
    }
}

/// 200 instances: a UDP answer never exceeds the client's size (512 bytes
/// without EDNS, else its EDNS size up to 1232), TC is set when answers
/// are cut, a 512-byte client gets udp_answer_limit (3) answers, and TCP
/// answers hold them all.
#[test]
fn udp_answers_fit_the_client() {
    let (a, dns) = dns_agent(&[]);
    register_instances(&a, 200);
    for qtype in ["A", "SRV"] {
        let out = dig(dns, &["+noedns", "+ignore", "amp.service.consul", qtype]);
        assert_eq!(answers(&out), 3, "{qtype}: {out}");
        assert!(!truncated(&out), "udp_answer_limit alone sets no TC: {out}");
        assert!(msg_size(&out) <= 512, "{out}");
        // the RFC 2782 form too (it used to reach 523 bytes)
        let out = dig(
            dns,
            &["+noedns", "+ignore", "_amp._tcp.service.consul", qtype],
        );
        assert!(msg_size(&out) <= 512 && answers(&out) == 3, "{out}");
        for (bufsize, limit) in [
            ("+bufsize=1232", 1232),
            ("+bufsize=4096", 1232),
            ("+bufsize=65535", 1232),
            ("+bufsize=700", 700),
        ] {
            let out = dig(dns, &[bufsize, "+ignore", "amp.service.consul", qtype]);
            assert!(truncated(&out), "{bufsize} {qtype}: {out}");
            assert!(answers(&out) > 3, "{bufsize} {qtype}: {out}");
            assert!(msg_size(&out) <= limit, "{bufsize} {qtype}: {out}");
            // our OPT record advertises the size we keep to
            assert!(out.contains(&format!("udp: {limit}")), "{out}");
        }
        let out = dig(dns, &["+tcp", "amp.service.consul", qtype]);
        assert_eq!(answers(&out), 200, "{qtype} over TCP: {out}");
        assert!(!truncated(&out), "{out}");
    }
    // SRV answers keep their targets' addresses as additional records
    let out = dig(
        dns,
        &["+bufsize=1232", "+ignore", "amp.service.consul", "SRV"],
    );
    let additional = out
        .split("ADDITIONAL: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    assert_eq!(
        additional,
        answers(&out) + 1,
        "one A per SRV, plus OPT: {out}"
    );
    assert_no_panic(&a);
}

/// `dns_config`: udp_answer_limit with enable_truncate sets TC, and
/// a_record_limit bounds A answers over TCP too.
#[test]
fn dns_config_answer_limits() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dns.json");
    std::fs::write(
        &conf,
        r#"{"dns_config": {"udp_answer_limit": 5, "enable_truncate": true, "a_record_limit": 4}}"#,
    )
    .unwrap();
    let (a, dns) = dns_agent(&["-config-file", conf.to_str().unwrap()]);
    register_instances(&a, 20);
    let out = dig(dns, &["+noedns", "+ignore", "amp.service.consul", "SRV"]);
    assert_eq!(answers(&out), 5, "{out}");
    assert!(truncated(&out), "enable_truncate: {out}");
    for args in [vec!["+noedns", "+ignore"], vec!["+tcp"]] {
        let out = dig(dns, &[&args[..], &["amp.service.consul"]].concat());
        assert_eq!(answers(&out), 4, "a_record_limit {args:?}: {out}");
    }
    // A negative limit is refused, in Consul's words.
    std::fs::write(&conf, r#"{"dns_config": {"udp_answer_limit": -1}}"#).unwrap();
    let out = Command::new(bin("tribune"))
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .arg("-config-file")
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("cannot be -1. Must be greater than or equal to zero"),
        "{text}"
    );
}

fn register_instances(a: &Agent, n: usize) {
    for i in 0..n {
        let (code, body) = put_json(
            a,
            "catalog/register",
            json!({"Node": format!("ampnode{i}"), "Address": format!("10.1.{}.{}", i / 250, i % 250 + 1),
                   "Service": {"Service": "amp", "Port": 1000 + i}}),
        );
        assert_eq!(code, 200, "{body}");
    }
    let all = wait_until(Duration::from_secs(10), || {
        let v: Value = client()
            .get(format!("{}/v1/catalog/service/amp", a.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v.as_array().map(Vec::len) == Some(n)
    });
    assert!(all, "{n} instances of amp not in the catalog");
}
