//! Registration into the catalog of a real agent: config files and reload, anti-entropy, refused registrations, the services CLI.
use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::{client, Agent};
mod discovery;
use discovery::*;
/// A config-dir service appears in the catalog; edits apply on `tribune reload`
/// (and SIGHUP), removals too; HTTP-registered services are untouched.
#[test]
fn config_dir_services_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("redis.json");
    std::fs::write(
        &conf,
        r#"{"service": {"name": "redis", "tags": ["db"], "port": 6379}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cache.hcl"),
        "service {\n  name = \"memcached\"\n  port = 11211\n  check {\n    ttl = \"30s\"\n  }\n}\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let (a, dns) = dns_agent(&["-config-dir", d]);
    wait_until("redis in catalog", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/redis")
            .as_array()
            .map(|x| x.len())
            == Some(1)
    });
    let e = &get_json(&a, "catalog/service/redis")[0];
    assert_eq!(e["ServiceTags"], json!(["db"]));
    // The issue's dig queries against the config-file redis.
    let srv = dig(dns, &["+short", "redis.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    assert_eq!(
        dig(dns, &["+short", "db.redis.service.consul"]).trim(),
        "127.0.0.1"
    );
    let srv = dig(dns, &["+short", "_redis._db.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    // HCL definitions too, with their checks
    wait_until("memcached from HCL", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/memcached")[0]["ServicePort"] == 11211
    });
    assert_eq!(
        get_json(&a, "agent/checks")["service:memcached"]["Type"],
        "ttl"
    );
    assert_eq!(e["ServicePort"], 6379);
    put_json(
        &a,
        "agent/service/register",
        json!({"name": "api", "port": 80}),
    );

    std::fs::write(
        &conf,
        r#"{"services": [{"name": "redis", "tags": ["db", "v2"], "port": 6380}, {"name": "queue", "port": 5672}]}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Configuration reload triggered");
    wait_until("redis updated", Duration::from_secs(5), || {
        let e = get_json(&a, "catalog/service/redis");
        e[0]["ServicePort"] == 6380 && e[0]["ServiceTags"] == json!(["db", "v2"])
    });
    let srv = dig(dns, &["+short", "_redis._v2.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6380 node1.node.dc1.consul.");
    wait_until("queue registered", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/queue")
            .as_array()
            .map(|x| x.len())
            == Some(1)
    });

    // Removal via SIGHUP; the HTTP-registered service stays.
    std::fs::write(&conf, r#"{"service": {"name": "queue", "port": 5672}}"#).unwrap();
    unsafe {
        libc::kill(a.child.id() as i32, libc::SIGHUP);
    }
    wait_until("redis removed", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/redis")
            .as_array()
            .map(|x| x.is_empty())
            == Some(true)
    });
    assert!(dig(dns, &["db.redis.service.consul"]).contains("status: NXDOMAIN"));
    let services = get_json(&a, "agent/services");
    assert!(services.get("api").is_some(), "{services}");
    assert!(services.get("queue").is_some());

    // A broken file: reload refused, nothing changes.
    std::fs::write(&conf, r#"{"service": {"port": 1}}"#).unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Missing service name"),
        "{}",
        out.stderr
    );
    assert!(get_json(&a, "agent/services").get("queue").is_some());
}

/// A catalog that diverges from the agent is repaired within seconds.
#[test]
fn anti_entropy_repairs_catalog() {
    let a = Agent::dev(&["-node", "ae"]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "keep", "Port": 1}),
    );
    wait_until("keep in catalog", Duration::from_secs(5), || {
        !get_json(&a, "catalog/service/keep")
            .as_array()
            .unwrap()
            .is_empty()
    });
    let r = put_json(
        &a,
        "catalog/deregister",
        json!({"Node": "ae", "ServiceID": "keep"}),
    );
    assert_eq!(r.status(), 200);
    assert!(get_json(&a, "catalog/service/keep")
        .as_array()
        .unwrap()
        .is_empty());
    let took = wait_until("repaired", Duration::from_secs(10), || {
        !get_json(&a, "catalog/service/keep")
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert!(took < Duration::from_secs(7), "{took:?}");
    // the node, its serfHealth and the consul service are there
    let node = get_json(&a, "catalog/node/ae");
    assert!(node["Services"].get("consul").is_some(), "{node}");
    assert!(get_json(&a, "health/node/ae")
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "serfHealth"));
    assert_eq!(get(&a, "catalog/node/nobody").status(), 404);
    let nodes = get_json(&a, "catalog/nodes");
    assert_eq!(nodes[0]["Node"], "ae");
}

/// Bad registrations get clear 4xx errors and change nothing.
#[test]
fn bad_registrations_change_nothing() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "ok", "Check": {"TTL": "10s"}}),
    );
    let before = (get_json(&a, "agent/services"), get_json(&a, "agent/checks"));
    let c = client();
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        (
            "agent/service/register",
            r#"{"Port": 1}"#,
            400,
            "Missing service name",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Port": 99999}"#,
            400,
            "port",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"HTTP": "http://x"}}"#,
            400,
            "Interval",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"HTTP": "ftp://x", "Interval": "1s"}}"#,
            400,
            "scheme",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"TTL": "nonsense"}}"#,
            400,
            "duration",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Tags": [1]}"#,
            400,
            "strings",
        ),
        ("agent/service/register", "not json", 400, "decode"),
        ("agent/service/register", "", 400, "empty body"),
        (
            "agent/check/register",
            r#"{"TTL": "5s"}"#,
            400,
            "Missing check name",
        ),
        (
            "agent/check/register",
            r#"{"Name": "c", "TTL": "5s", "ServiceID": "ghost"}"#,
            400,
            "does not exist",
        ),
        (
            "agent/check/update/service:ok",
            r#"{"Status": "bogus"}"#,
            400,
            "status",
        ),
        ("agent/service/deregister/ghost", "", 404, "Unknown service"),
        ("agent/check/deregister/ghost", "", 404, "Unknown check"),
        ("agent/check/pass/ghost", "", 404, "Unknown check"),
        (
            "agent/service/maintenance/ghost?enable=true",
            "",
            404,
            "Unknown service",
        ),
        ("agent/maintenance?enable=maybe", "", 400, "enable"),
        ("catalog/register", r#"{"Address": "1.2.3.4"}"#, 400, "node"),
        (
            "catalog/register",
            r#"{"Node": "n", "Address": "1.2.3.4", "Check": {"CheckID": "c", "ServiceID": "nope"}}"#,
            400,
            "Unknown service",
        ),
        (
            "catalog/register",
            r#"{"Node": "n", "Address": "1.2.3.4", "Datacenter": "dc9"}"#,
            500,
            "No path to datacenter",
        ),
        ("catalog/deregister", r#"{}"#, 400, "node"),
    ];
    for (path, body, status, needle) in cases {
        let r = c
            .put(format!("{}/v1/{path}", a.url))
            .body(body)
            .send()
            .unwrap();
        let got = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(got, status, "{path} {body}: {text}");
        assert!(
            text.contains(needle),
            "{path} {body}: {text:?} lacks {needle:?}"
        );
    }
    let r = c
        .put(format!("{}/v1/agent/check/register", a.url))
        .body(r#"{"Name": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "1s"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{}/v1/agent/check/pass/h", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "pass on a non-TTL check");
    c.put(format!("{}/v1/agent/check/deregister/h", a.url))
        .send()
        .unwrap();
    assert_eq!(
        (get_json(&a, "agent/services"), get_json(&a, "agent/checks")),
        before
    );
    assert!(
        get(&a, "catalog/node/n").status() == 404,
        "refused catalog registration created a node"
    );
    assert_eq!(get(&a, "health/state/bogus").status(), 400);
}

/// `tribune services register|deregister` with a definition file and flags.
#[test]
fn services_cli() {
    let a = Agent::dev(&[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("svc.json");
    std::fs::write(
        &f,
        r#"{"service": {"name": "cli-svc", "port": 8080, "tags": ["t"], "check": {"ttl": "30s"}}}"#,
    )
    .unwrap();
    let out = a.cli(&["services", "register", f.to_str().unwrap()], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Registered service: cli-svc"),
        "{}",
        out.stderr
    );
    let out = a.cli(
        &[
            "services", "register", "-name", "flagged", "-port", "9", "-tag", "a", "-meta", "k=v",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = get_json(&a, "agent/services");
    assert_eq!(s["cli-svc"]["Port"], 8080);
    assert_eq!(s["flagged"]["Meta"]["k"], "v");
    let out = a.cli(&["services", "deregister", "-id", "flagged"], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Deregistered service: flagged")
    );
    let out = a.cli(&["services", "deregister", f.to_str().unwrap()], None);
    assert_eq!(out.code, 0);
    assert!(get_json(&a, "agent/services")
        .as_object()
        .unwrap()
        .is_empty());
    let out = a.cli(&["services", "deregister", "-id", "ghost"], None);
    assert_eq!(out.code, 1);
    std::fs::write(&f, r#"{"service": {"port": 1}}"#).unwrap();
    let out = a.cli(&["services", "register", f.to_str().unwrap()], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Missing service name"));
    let out = a.cli(&["members"], None);
    assert!(out.stdout.starts_with("Node"), "{}", out.stdout);
    assert!(out.stdout.contains("alive") && out.stdout.contains("server"));
    let out = a.cli(&["catalog", "services"], None);
    assert!(out.stdout.contains("consul"));
}

/// With gossip off (`ports.serf_lan = -1`) the server registers a passing
/// serfHealth for itself, so a default session (which checks serfHealth)
/// can be created.
#[test]
fn no_gossip_server_has_serf_health() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ports.json");
    std::fs::write(&conf, r#"{"ports": {"serf_lan": -1}}"#).unwrap();
    let a = Agent::dev(&["-node", "node1", "-config-file", conf.to_str().unwrap()]);
    wait_until("serfHealth passing", Duration::from_secs(5), || {
        get_json(&a, "health/node/node1")
            .as_array()
            .is_some_and(|v| {
                v.iter()
                    .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
            })
    });
    let r = put_json(&a, "session/create", json!({"Name": "s"}));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let body: Value = r.json().unwrap();
    assert!(body["ID"].as_str().is_some_and(|id| !id.is_empty()));
}
