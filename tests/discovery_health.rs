//! The health API of a real agent: blocking queries per service, maintenance, agent health endpoints.
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, index_of, Agent};
mod discovery;
use discovery::*;
/// A blocking health query on `web` wakes on web's health flip, not on db.
#[test]
fn blocking_health_wakes_per_service() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    wait_until("both passing", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 1 && passing_ids(&a, "db").len() == 1
    });
    let idx = settled_index(&a, "health/service/web?passing");
    let url = format!(
        "{}/v1/health/service/web?passing&index={idx}&wait=20s",
        a.url
    );
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = client().get(url).send().unwrap();
        (t.elapsed(), index_of(&r), r.json::<Value>().unwrap())
    });
    thread::sleep(Duration::from_millis(300));
    client()
        .put(format!("{}/v1/agent/check/fail/service:db", a.url))
        .send()
        .unwrap();
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Tags": ["x"], "Check": {"TTL": "60s"}}),
    );
    thread::sleep(Duration::from_millis(700));
    assert!(!waiter.is_finished(), "web watcher woke on a db change");
    client()
        .put(format!("{}/v1/agent/check/fail/service:web", a.url))
        .send()
        .unwrap();
    let (took, new_idx, body) = waiter.join().unwrap();
    assert!(took < Duration::from_secs(5));
    assert!(new_idx > idx);
    assert_eq!(body, json!([]), "critical web must leave ?passing");
}

/// Maintenance modes and /v1/agent/health/service with 200/429/503.
#[test]
fn maintenance_and_agent_health() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "m", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let code = |p: &str| get(&a, p).status().as_u16();
    assert_eq!(code("agent/health/service/name/m"), 200);
    client()
        .put(format!("{}/v1/agent/check/warn/service:m", a.url))
        .send()
        .unwrap();
    assert_eq!(code("agent/health/service/id/m"), 429);
    client()
        .put(format!("{}/v1/agent/check/fail/service:m", a.url))
        .send()
        .unwrap();
    assert_eq!(code("agent/health/service/name/m"), 503);
    assert_eq!(
        get(&a, "agent/health/service/name/m?format=text")
            .text()
            .unwrap(),
        "critical"
    );
    assert_eq!(code("agent/health/service/name/none"), 404);
    client()
        .put(format!("{}/v1/agent/check/pass/service:m", a.url))
        .send()
        .unwrap();
    wait_until("m passing", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
    let r = client()
        .put(format!(
            "{}/v1/agent/service/maintenance/m?enable=true&reason=upgrade",
            a.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("m out of passing", Duration::from_secs(5), || {
        passing_ids(&a, "m").is_empty()
    });
    let body = get_json(&a, "agent/health/service/id/m");
    assert_eq!(body["AggregatedStatus"], "maintenance");
    client()
        .put(format!(
            "{}/v1/agent/service/maintenance/m?enable=false",
            a.url
        ))
        .send()
        .unwrap();
    wait_until("m back", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
    client()
        .put(format!("{}/v1/agent/maintenance?enable=true", a.url))
        .send()
        .unwrap();
    wait_until("node maintenance", Duration::from_secs(5), || {
        passing_ids(&a, "m").is_empty()
    });
    client()
        .put(format!("{}/v1/agent/maintenance?enable=false", a.url))
        .send()
        .unwrap();
    wait_until("node back", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
}

/// `Checks` array IDs and default names; repeatable `tag` (AND); blocking
/// queries on the catalog and health endpoints wake on relevant changes, and
/// `catalog/service/web` not on a change to `db`.
#[test]
fn checks_array_tags_and_blocking_endpoints() {
    let a = Agent::dev(&["-node", "node1"]);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "x", "Checks": [{"TTL": "30s"}, {"TTL": "30s", "Status": "passing"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let c = get_json(&a, "agent/checks");
    for id in ["service:x:1", "service:x:2"] {
        assert_eq!(c[id]["Name"], "Service 'x' check", "{c}");
        assert_eq!(c[id]["ServiceID"], "x");
    }
    assert!(c.get("service:x").is_none(), "{c}");

    for (id, tags) in [
        ("web1", vec!["a", "b"]),
        ("web2", vec!["a"]),
        ("web3", vec!["b"]),
    ] {
        put_json(
            &a,
            "agent/service/register",
            json!({"Name": "web", "ID": id, "Tags": tags,
                   "Check": {"TTL": "60s", "Status": "passing"}}),
        );
    }
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    wait_until("web instances passing", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 3 && passing_ids(&a, "db").len() == 1
    });
    let ids = |q: &str| -> Vec<String> {
        let mut v: Vec<String> = get_json(&a, &format!("health/service/web?{q}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids("tag=a"), ["web1", "web2"]);
    assert_eq!(ids("tag=a&tag=b"), ["web1"]);
    assert_eq!(ids("tag=b&tag=a&passing"), ["web1"]);
    assert!(ids("tag=a&tag=c").is_empty());
    // Names and tags match ignoring case, as in Consul.
    assert_eq!(ids("tag=A"), ["web1", "web2"]);
    let n = |path: &str| get_json(&a, path).as_array().unwrap().len();
    assert_eq!(n("health/service/WEB?tag=B"), 2);
    assert_eq!(n("catalog/service/Web?tag=a"), 2);
    assert_eq!(n("health/checks/wEb"), 3);
    // A service registered as `Web` joins `web` in lookups, and a blocking
    // query on one spelling wakes on a change to the other.
    let (idx, h) = park(&a, "health/service/web", "10s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "Web", "ID": "web4", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(new_idx > idx && took < Duration::from_secs(9), "{took:?}");
    wait_until("Web counted with web", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 4 && passing_ids(&a, "WEB").len() == 4
    });
    let services = get_json(&a, "catalog/services");
    assert!(
        services.get("Web").is_some() && services.get("web").is_some(),
        "{services}"
    );
    let r = client()
        .put(format!("{}/v1/agent/service/deregister/web4", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("web4 gone", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 3
    });

    // catalog/service/web does not wake on a change to db...
    let (idx, h) = park(&a, "catalog/service/web", "1s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Tags": ["changed"], "Check": {"TTL": "60s"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(took >= Duration::from_millis(900), "woke after {took:?}");
    assert_eq!(
        new_idx, idx,
        "catalog/service/web index moved on a db change"
    );
    // ...but does on a change to web.
    let (idx, h) = park(&a, "catalog/service/web", "10s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "web", "ID": "web3", "Tags": ["b", "c"],
               "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(took < Duration::from_secs(5) && new_idx > idx, "{took:?}");

    // Each endpoint wakes on a change it shows.
    let set = |state: &str, id: &str| {
        let r = client()
            .put(format!("{}/v1/agent/check/{state}/{id}", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    type Change<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "catalog/services",
            Box::new(|| {
                put_json(&a, "agent/service/register", json!({"Name": "cache"}));
            }),
        ),
        (
            "catalog/nodes",
            Box::new(|| {
                put_json(
                    &a,
                    "catalog/register",
                    json!({"Node": "ext", "Address": "10.0.0.9"}),
                );
            }),
        ),
        (
            "catalog/node/node1",
            Box::new(|| {
                put_json(&a, "agent/service/register", json!({"Name": "queue"}));
            }),
        ),
        (
            "health/checks/web",
            Box::new(|| set("fail", "service:web1")),
        ),
        // db's re-registered check started critical.
        ("health/node/node1", Box::new(|| set("pass", "service:db"))),
        (
            "health/state/critical",
            Box::new(|| set("fail", "service:web2")),
        ),
    ];
    for (path, change) in cases {
        let (idx, h) = park(&a, path, "10s");
        change();
        let (took, new_idx) = h.join().unwrap();
        assert!(
            took < Duration::from_secs(5) && new_idx > idx,
            "{path}: took {took:?}, index {idx} -> {new_idx}"
        );
    }
}
