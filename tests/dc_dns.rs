//! Prepared-query failover over DNS across two federated datacenters
//! (real processes on 127.0.0.1, `dig`): `<q>.query.consul` runs the same
//! walk as `/v1/query/<q>/execute`, from a client agent's DNS and from a
//! server's; `<q>.query.<dc>.consul` runs the query in that datacenter.

use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::wan::two_dcs;
use tribune_tests::{client, dig, wait_until, Agent};

fn send(a: &Agent, method: &str, path: &str, body: &str) -> (u16, String) {
    send_as(a, method, path, body, None)
}

fn send_as(a: &Agent, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut rb = client()
        .request(method.parse().unwrap(), format!("{}{path}", a.url))
        .body(body.to_string());
    if let Some(t) = token {
        rb = rb.header("X-Consul-Token", t);
    }
    let r = rb.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn json_of(a: &Agent, path: &str) -> Value {
    let (s, t) = send(a, "GET", path, "");
    assert_eq!(s, 200, "{path}: {t}");
    serde_json::from_str(&t).unwrap()
}

/// `web` on its own node of the datacenter `a` is in, its check `status`.
fn register_web(a: &Agent, node: &str, ip: &str, port: u16, status: &str) {
    register_web_as(a, node, ip, port, status, None);
}

fn register_web_as(a: &Agent, node: &str, ip: &str, port: u16, status: &str, token: Option<&str>) {
    let body = json!({
        "Node": node, "Address": ip,
        "Service": {"Service": "web", "ID": "web", "Port": port},
        "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web", "Status": status},
    });
    let (s, t) = send_as(a, "PUT", "/v1/catalog/register", &body.to_string(), token);
    assert_eq!(s, 200, "{t}");
}

/// The SRV answer lines of `dig name SRV`: `(port, target)`.
fn srv_targets(out: &str, name: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| l.starts_with(name) && l.contains("\tSRV\t"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(6)?.to_string(), f.get(7)?.to_string()))
        })
        .collect()
}

#[test]
fn query_failover_answers_over_dns() {
    let dir = tempfile::tempdir().unwrap();
    let f = two_dcs(dir.path(), ["{}", "{}"]);
    let (c1_dns, s1_dns) = (f.c1.dns_port(), f.s1.dns_port());

    // dc1's only web is critical; dc2 has a healthy one.
    register_web(&f.s1, "web-a", "127.0.0.11", 8001, "critical");
    register_web(&f.s2, "web-b", "127.0.0.22", 8002, "passing");
    let (s, t) = send(
        &f.c1,
        "POST",
        "/v1/query",
        r#"{"Name": "web", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc2"]}}}"#,
    );
    assert_eq!(s, 200, "{t}");
    // A query only dc2 has.
    let (s, t) = send(
        &f.c1,
        "POST",
        "/v1/query?dc=dc2",
        r#"{"Name": "only2", "Service": {"Service": "web"}}"#,
    );
    assert_eq!(s, 200, "{t}");

    let v = json_of(&f.c1, "/v1/query/web/execute");
    assert_eq!(v["Failovers"], 1, "{v}");
    assert_eq!(v["Datacenter"], "dc2", "{v}");
    assert_eq!(v["Nodes"][0]["Service"]["Port"], 8002, "{v}");

    // Through dc1's client agent (its servers run the walk): dc2's
    // instance, named in dc2, its address beside it.
    let out = dig(c1_dns, &["web.query.consul", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert_eq!(
        srv_targets(&out, "web.query.consul."),
        [("8002".to_string(), "web-b.node.dc2.consul.".to_string())],
        "{out}"
    );
    let additional_a = out.lines().any(|l| {
        l.split_whitespace().collect::<Vec<_>>()
            == ["web-b.node.dc2.consul.", "0", "IN", "A", "127.0.0.22"]
    });
    assert!(additional_a, "{out}");
    // A server's own DNS runs it too.
    let out = dig(s1_dns, &["+short", "web.query.consul", "A"]);
    assert_eq!(out.trim(), "127.0.0.22", "{out}");

    // `<q>.query.dc2.consul` runs dc2's query, in dc2.
    let out = dig(c1_dns, &["+short", "only2.query.dc2.consul", "A"]);
    assert_eq!(out.trim(), "127.0.0.22", "{out}");
    let out = dig(c1_dns, &["only2.query.dc2.consul", "SRV"]);
    assert_eq!(
        srv_targets(&out, "only2.query.dc2.consul."),
        [("8002".to_string(), "web-b.node.dc2.consul.".to_string())],
        "{out}"
    );
    assert!(
        dig(c1_dns, &["only2.query.consul", "A"]).contains("status: NXDOMAIN"),
        "dc1 has no query only2"
    );

    // dc1's web healthy again: the local one answers, no failover.
    register_web(&f.s1, "web-a", "127.0.0.11", 8001, "passing");
    let local = || dig(c1_dns, &["+short", "web.query.consul", "A"]).trim() == "127.0.0.11";
    assert!(
        wait_until(Duration::from_secs(10), local),
        "{}",
        dig(c1_dns, &["web.query.consul", "A"])
    );
    let out = dig(c1_dns, &["web.query.consul", "SRV"]);
    assert_eq!(
        srv_targets(&out, "web.query.consul."),
        [("8001".to_string(), "web-a.node.dc1.consul.".to_string())],
        "{out}"
    );
    let v = json_of(&f.c1, "/v1/query/web/execute");
    assert_eq!(
        (v["Failovers"].clone(), v["Datacenter"].clone()),
        (json!(0), json!("dc1")),
        "{v}"
    );
}

const ROOT: &str = "3f1e2d4c-0000-4000-8000-00000000bbbb";

/// ACLs on (default deny, dc1 primary): a query over DNS runs with the
/// asking agent's default token, on its server and, failing over, in dc2.
#[test]
fn query_failover_over_dns_with_the_default_token() {
    let acl = |tokens: &str| {
        format!(
            r#"{{"primary_datacenter":"dc1","acl":{{"enabled":true,"default_policy":"deny",
               "tokens":{{"agent":"{ROOT}",{tokens}}}}}}}"#
        )
    };
    let dc1 = acl(&format!(r#""initial_management":"{ROOT}""#));
    let dc2 = acl(&format!(r#""replication":"{ROOT}""#));
    let dir = tempfile::tempdir().unwrap();
    let f = two_dcs(dir.path(), [&dc1, &dc2]);
    let c1_dns = f.c1.dns_port();
    let works = |a: &Agent, t: &str| send_as(a, "GET", "/v1/acl/token/self", "", Some(t)).0 == 200;
    assert!(
        wait_until(Duration::from_secs(20), || works(&f.s1, ROOT)),
        "the management token never worked in dc1:\n{}",
        f.s1.log_text()
    );
    let (s, t) = send_as(
        &f.s1,
        "PUT",
        "/v1/acl/policy",
        r#"{"Name":"web-read","Rules":"service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}"#,
        Some(ROOT),
    );
    assert_eq!(s, 200, "{t}");
    let (s, t) = send_as(
        &f.s1,
        "PUT",
        "/v1/acl/token",
        r#"{"Policies":[{"Name":"web-read"}]}"#,
        Some(ROOT),
    );
    assert_eq!(s, 200, "{t}");
    let reader = serde_json::from_str::<Value>(&t).unwrap()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(30), || works(&f.s2, ROOT)
            && works(&f.s2, &reader)),
        "dc1's tokens never reached dc2:\n{}",
        f.s2.log_text()
    );
    register_web_as(&f.s1, "web-a", "127.0.0.11", 8001, "critical", Some(ROOT));
    register_web_as(&f.s2, "web-b", "127.0.0.22", 8002, "passing", Some(ROOT));
    let (s, t) = send_as(
        &f.s1,
        "POST",
        "/v1/query",
        r#"{"Name": "web", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc2"]}}}"#,
        Some(ROOT),
    );
    assert_eq!(s, 200, "{t}");

    // No default token on c1: anonymous may see web nowhere.
    let out = dig(c1_dns, &["web.query.consul", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    // With the reader as c1's default token (c1's servers have none, dc2's
    // neither): it travels with the lookup, to dc2 too.
    let (s, t) = send_as(
        &f.c1,
        "PUT",
        "/v1/agent/token/default",
        &json!({"Token": reader}).to_string(),
        Some(ROOT),
    );
    assert_eq!(s, 200, "{t}");
    let out = dig(c1_dns, &["+short", "web.query.consul", "A"]);
    assert_eq!(out.trim(), "127.0.0.22", "{out}");
}
