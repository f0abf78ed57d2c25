//! Prepared queries on a real agent: python-consul's `query` API, a
//! template by name prefix, `dig` on `<name>.query.consul`, health and tag
//! filters, refused bodies and methods.

use std::process::Command;

use serde_json::{json, Value};
use tribune_tests::{client, dig, root, Agent};

fn send(a: &Agent, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut r = client().request(method.parse().unwrap(), format!("{}{path}", a.url));
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn register(a: &Agent) {
    for (node, ip, tags, status) in [
        ("n-a", "127.0.0.2", vec!["primary"], "passing"),
        ("n-b", "127.0.0.3", vec!["secondary"], "critical"),
        ("n-c", "127.0.0.4", vec!["primary", "canary"], "warning"),
    ] {
        let body = json!({
            "Node": node, "Address": ip,
            "Service": {"Service": "web", "ID": "web", "Port": 8080, "Tags": tags},
            "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web", "Status": status},
        });
        let (s, t) = send(a, "PUT", "/v1/catalog/register", Some(&body.to_string()));
        assert_eq!(s, 200, "{t}");
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn python_consul_queries_templates_and_dns() {
    let (a, dns) = Agent::dev_dns(&[]);
    register(&a);
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(root().join("tests/clients/query_python_consul.py"))
        .args([host, port])
        .output()
        .expect("python3 must be installed (the test command installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A template: any name starting with "geo-", the service from the regexp.
    let t = json!({"Name": "geo-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.+)$"},
                   "Service": {"Service": "${match(1)}", "OnlyPassing": true}, "DNS": {"TTL": "3s"}});
    let (s, body) = send(&a, "POST", "/v1/query", Some(&t.to_string()));
    assert_eq!(s, 200, "{body}");
    let (s, body) = send(&a, "GET", "/v1/query/geo-web/execute", None);
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Service"], "web");
    assert_eq!(names(&v), ["n-a"]);
    let (_, body) = send(&a, "GET", "/v1/query/geo-web/explain", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Query"]["Service"]["Service"], "web", "{v}");
    assert_eq!(v["Query"]["Name"], "geo-");
    // A name no query matches.
    let (s, body) = send(&a, "GET", "/v1/query/nothing/execute", None);
    assert_eq!((s, body.as_str()), (404, "Query not found"));

    // DNS: the healthy instances, with the query's TTL.
    let srv = dig(dns, &["web-query.query.consul", "SRV"]);
    let answers: Vec<&str> = srv
        .lines()
        .filter(|l| l.starts_with("web-query.query.consul.") && l.contains("SRV"))
        .collect();
    assert_eq!(answers.len(), 2, "{srv}");
    assert!(
        answers
            .iter()
            .all(|l| l.split_whitespace().nth(1) == Some("7")),
        "{srv}"
    );
    let mut a_recs: Vec<String> = dig(dns, &["+short", "web-passing.query.dc1.consul", "A"])
        .lines()
        .map(str::to_string)
        .collect();
    a_recs.sort();
    assert_eq!(a_recs, ["127.0.0.2"]);
    let geo = dig(dns, &["+short", "geo-web.query.consul", "A"]);
    assert_eq!(geo.trim(), "127.0.0.2");
    let nx = dig(dns, &["nothing.query.consul", "A"]);
    assert!(nx.contains("NXDOMAIN"), "{nx}");
    let other_dc = dig(dns, &["web-query.query.dc2.consul", "A"]);
    assert!(other_dc.contains("NXDOMAIN"), "{other_dc}");
}

#[test]
fn bad_definitions_and_methods_are_refused() {
    let a = Agent::dev(&[]);
    let ok = json!({"Name": "q1", "Service": {"Service": "web"}}).to_string();
    let (s, body) = send(&a, "POST", "/v1/query", Some(&ok));
    assert_eq!(s, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, want) in [
        ("{".to_string(), ""),
        (json!({"Name": "x"}).to_string(), "Must provide a Service name to query"),
        (json!({"Service": {"Service": "web", "Failover": {"NearestN": -1}}}).to_string(), "Bad NearestN '-1', must be >= 0"),
        (json!({"Service": {"Service": "web"}, "DNS": {"TTL": "-1s"}}).to_string(), "Bad DNS TTL '-1s', must be >=0"),
        (json!({"Service": {"Service": "web"}, "Template": {"Type": "exact"}}).to_string(), "Bad Template.Type 'exact'"),
        (json!({"Service": {"Service": "web"}, "Template": {"Type": "name_prefix_match", "Regexp": "("}}).to_string(), "Bad Regexp"),
        (json!({"Service": {"Service": "${nope}"}, "Template": {"Type": "name_prefix_match"}}).to_string(), "unknown variable"),
        (json!({"Name": "q1", "Service": {"Service": "db"}}).to_string(), "aliases an existing query name"),
        (json!({"Name": id, "Service": {"Service": "db"}}).to_string(), "aliases an existing query ID"),
        (json!({"Service": {"Service": "web", "Tags": "primary"}}).to_string(), "Tags must be a list of strings"),
        (json!({"Session": "00000000-0000-0000-0000-000000000000", "Service": {"Service": "web"}}).to_string(), "invalid session"),
    ] {
        let (s, text) = send(&a, "POST", "/v1/query", Some(&body));
        assert_eq!(s, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    // An update with a bad body changes nothing either.
    let (s, _) = send(
        &a,
        "PUT",
        &format!("/v1/query/{id}"),
        Some(r#"{"Name":"q1"}"#),
    );
    assert_eq!(s, 400);
    let (s, _) = send(&a, "PUT", "/v1/query/no-such-id", Some(&ok));
    assert_eq!(s, 404);
    let (_, list) = send(&a, "GET", "/v1/query", None);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["Service"]["Service"], "web");
    for (method, path, allow) in [
        ("DELETE", "/v1/query".to_string(), "OPTIONS,GET,HEAD,POST"),
        ("PUT", "/v1/query".to_string(), "OPTIONS,GET,HEAD,POST"),
        (
            "POST",
            format!("/v1/query/{id}"),
            "OPTIONS,GET,HEAD,PUT,DELETE",
        ),
        (
            "POST",
            format!("/v1/query/{id}/execute"),
            "OPTIONS,GET,HEAD",
        ),
        (
            "DELETE",
            format!("/v1/query/{id}/explain"),
            "OPTIONS,GET,HEAD",
        ),
    ] {
        let r = client()
            .request(method.parse().unwrap(), format!("{}{path}", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
    }
    // Still there after the refused DELETE on /v1/query.
    assert_eq!(send(&a, "GET", &format!("/v1/query/{id}"), None).0, 200);
    assert_eq!(send(&a, "DELETE", &format!("/v1/query/{id}"), None).0, 200);
    assert_eq!(send(&a, "GET", &format!("/v1/query/{id}"), None).0, 404);
}

/// `?near` (and the query's own `Service.Near`) sort the answer by the
/// coordinates the servers hold.
#[test]
fn execute_sorts_by_near() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(&cfg, r#"{"coordinate_update_period":"1s"}"#).unwrap();
    let a = Agent::dev(&["-config-file", cfg.to_str().unwrap()]);
    register(&a);
    let origin = json!({"Node": "origin", "Address": "127.0.0.9"}).to_string();
    assert_eq!(
        send(&a, "PUT", "/v1/catalog/register", Some(&origin)).0,
        200
    );
    for (node, x) in [("origin", 0.0), ("n-a", 0.5), ("n-c", 0.01)] {
        let mut v = vec![0.0; 8];
        v[0] = x;
        let body = json!({"Node": node, "Coord": {"Vec": v, "Error": 0.1, "Adjustment": 0.0, "Height": 0.00001}});
        assert_eq!(
            send(&a, "PUT", "/v1/coordinate/update", Some(&body.to_string())).0,
            200
        );
    }
    assert!(tribune_tests::wait_until(
        std::time::Duration::from_secs(10),
        || {
            let (_, b) = send(&a, "GET", "/v1/coordinate/nodes", None);
            serde_json::from_str::<Value>(&b)
                .is_ok_and(|v| v.as_array().is_some_and(|l| l.len() == 3))
        }
    ));
    let q =
        json!({"Name": "near-web", "Service": {"Service": "web", "Near": "origin"}}).to_string();
    assert_eq!(send(&a, "POST", "/v1/query", Some(&q)).0, 200);
    let order = |path: &str| -> Vec<String> {
        let (_, b) = send(&a, "GET", path, None);
        let v: Value = serde_json::from_str(&b).unwrap();
        v["Nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"]["Node"].as_str().unwrap().to_string())
            .collect()
    };
    for _ in 0..5 {
        // The query's Near, then ?near overriding it; never the shuffle.
        assert_eq!(order("/v1/query/near-web/execute"), ["n-c", "n-a"]);
        assert_eq!(order("/v1/query/near-web/execute?near=n-a"), ["n-a", "n-c"]);
        assert_eq!(
            order("/v1/query/near-web/execute?near=origin&limit=1"),
            ["n-c"]
        );
    }
}
