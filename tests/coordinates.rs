//! Network coordinates on real agents: one server and two client agents on
//! loopback, joined by gossip, with a 1 s sync interval and update period.
//! Their Vivaldi coordinates come from the gossip probes; `?near` sorting,
//! `tribune rtt`, and `PUT /v1/coordinate/update` (batched, validated).

use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::{client, free_ports, index_of, wait_for, wait_until, Agent};

const CONFIG: &str = r#"{"performance":{"raft_multiplier":1},
  "sync_coordinate_interval_min":"1s","coordinate_update_period":"1s"}"#;

struct Three {
    _dir: tempfile::TempDir,
    s1: Agent,
    c1: Agent,
    _c2: Agent,
}

fn agent(dir: &std::path::Path, name: &str, serf: u16, server: Option<u16>, join: u16) -> Agent {
    let data = dir.join(name);
    let cfg = dir.join("coord.json");
    let mut args: Vec<String> = vec!["agent".into()];
    if let Some(port) = server {
        args.extend(["-server", "-bootstrap-expect", "1", "-server-port"].map(String::from));
        args.push(port.to_string());
    }
    for (flag, v) in [
        ("-node", name.to_string()),
        ("-data-dir", data.to_str().unwrap().to_string()),
        ("-http-port", "0".into()),
        ("-dns-port", "-1".into()),
        ("-serf-lan-port", serf.to_string()),
        ("-retry-interval", "1s".into()),
        ("-retry-join", format!("127.0.0.1:{join}")),
        ("-config-file", cfg.to_str().unwrap().to_string()),
    ] {
        args.push(flag.into());
        args.push(v);
    }
    Agent::start(&args, Some(data))
}

fn start() -> Three {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("coord.json"), CONFIG).unwrap();
    let p = free_ports(4);
    let s1 = agent(dir.path(), "s1", p[0], Some(p[1]), p[0]);
    s1.wait_leader();
    let c1 = agent(dir.path(), "c1", p[2], None, p[0]);
    let c2 = agent(dir.path(), "c2", p[3], None, p[0]);
    c1.wait_leader();
    c2.wait_leader();
    Three {
        _dir: dir,
        s1,
        c1,
        _c2: c2,
    }
}

fn get(a: &Agent, path: &str) -> (u16, Value, u64) {
    let r = client().get(format!("{}{path}", a.url)).send().unwrap();
    let status = r.status().as_u16();
    let index = match r.headers().contains_key("x-consul-index") {
        true => index_of(&r),
        false => 0,
    };
    (status, r.json().unwrap_or(Value::Null), index)
}

fn put(a: &Agent, path: &str, body: &str) -> (u16, String) {
    let r = client()
        .put(format!("{}{path}", a.url))
        .body(body.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn coord(x: f64) -> Value {
    let mut v = vec![0.0; 8];
    v[0] = x;
    json!({"Vec": v, "Error": 0.2, "Adjustment": 0.0, "Height": 0.00001})
}

fn names(v: &Value, f: impl Fn(&Value) -> &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| f(e).as_str().unwrap().to_string())
        .collect()
}

#[test]
fn coordinates_from_gossip_near_sorting_rtt_and_updates() {
    let t = start();
    // Every agent measures its probes and sends its coordinate.
    let list = wait_for("three coordinates", Duration::from_secs(40), || {
        let (s, v, _) = get(&t.s1, "/v1/coordinate/nodes");
        (s == 200 && v.as_array().is_some_and(|a| a.len() == 3)).then_some(v)
    });
    for e in list.as_array().unwrap() {
        assert_eq!(e["Segment"], "");
        assert_eq!(e["Coord"]["Vec"].as_array().unwrap().len(), 8, "{e}");
        assert!(e["Coord"]["Error"].as_f64().unwrap() <= 1.5);
        assert!(e["Coord"]["Height"].as_f64().unwrap() >= 10.0e-6);
    }
    // A client agent's reads are the servers' (forwarded).
    let (s, one, _) = get(&t.c1, "/v1/coordinate/node/c2");
    assert_eq!(s, 200);
    assert_eq!(one[0]["Node"], "c2");
    assert_eq!(get(&t.c1, "/v1/coordinate/node/nobody").0, 404);

    // Estimates on loopback: small and positive.
    let out = t.c1.cli(&["rtt", "c1", "c2"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ms: f64 = out
        .stdout
        .strip_prefix("Estimated c1 <-> c2 rtt: ")
        .and_then(|r| r.strip_suffix(" ms (using LAN coordinates)\n"))
        .filter(|n| n.split_once('.').is_some_and(|(_, d)| d.len() == 3))
        .unwrap_or_else(|| panic!("{:?}", out.stdout))
        .parse()
        .unwrap();
    assert!(ms > 0.0 && ms < 100.0, "{ms} ms");
    let out = t.c1.cli(&["rtt", "s1"], None);
    assert!(
        out.stdout.starts_with("Estimated s1 <-> c1 rtt: "),
        "{}",
        out.stdout
    );
    // -wan names servers as <node>.<dc>; a client agent has no WAN
    // coordinate (the second name defaults to it), the server has one.
    let out = t.c1.cli(&["rtt", "-wan", "s1"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("Node names must be specified as <node name>.<datacenter> with -wan"),
        "{}",
        out.stderr
    );
    let out = t.c1.cli(&["rtt", "-wan", "s1.dc1"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("Could not find a coordinate for node \"c1.dc1\""),
        "{}",
        out.stderr
    );
    let out = t.c1.cli(&["rtt", "-wan", "s1.dc1", "s1.dc1"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Estimated s1.dc1 <-> s1.dc1 rtt: ")
            && out.stdout.ends_with(" ms (using WAN coordinates)\n"),
        "{}",
        out.stdout
    );
    let out = t.c1.cli(&["rtt", "c1", "ghost"], None);
    assert_eq!(out.code, 1);
    assert!(out
        .stderr
        .contains("Could not find a coordinate for node \"ghost\""));

    // Two nodes without agents: one given a far coordinate, one none.
    for n in ["far", "nocoord"] {
        let body =
            json!({"Node": n, "Address": "127.0.0.9", "Service": {"Service": "web", "Port": 80}});
        assert_eq!(put(&t.c1, "/v1/catalog/register", &body.to_string()).0, 200);
    }
    for n in ["c1", "c2", "s1"] {
        let body = json!({"Node": n, "Address": "127.0.0.1", "SkipNodeUpdate": true,
                          "Service": {"Service": "web", "ID": format!("web-{n}"), "Port": 80}});
        assert_eq!(put(&t.c1, "/v1/catalog/register", &body.to_string()).0, 200);
    }
    let (_, _, before) = get(&t.s1, "/v1/coordinate/nodes");
    let body = json!({"Node": "far", "Segment": "", "Coord": coord(2.0)}).to_string();
    let (s, text) = put(&t.c1, "/v1/coordinate/update", &body);
    assert_eq!((s, text.as_str()), (200, ""));
    // A blocking read wakes when the batch is applied.
    let (s, v, after) = get(
        &t.s1,
        &format!("/v1/coordinate/nodes?index={before}&wait=10s"),
    );
    assert_eq!(s, 200);
    assert!(after > before);
    assert!(
        names(&v, |e| &e["Node"]).contains(&"far".to_string()),
        "{v}"
    );

    let (_, v, _) = get(&t.c1, "/v1/catalog/service/web?near=_agent");
    let order = names(&v, |e| &e["Node"]);
    assert_eq!(order[0], "c1", "{order:?}");
    assert_eq!(&order[3..], ["far", "nocoord"], "{order:?}");
    let (_, v, _) = get(&t.c1, "/v1/health/service/web?near=c2");
    let order = names(&v, |e| &e["Node"]["Node"]);
    assert_eq!(order[0], "c2", "{order:?}");
    assert_eq!(&order[3..], ["far", "nocoord"], "{order:?}");
    let (_, v, _) = get(&t.s1, "/v1/catalog/nodes?near=s1");
    let order = names(&v, |e| &e["Node"]);
    assert_eq!(order[0], "s1", "{order:?}");
    assert_eq!(&order[3..], ["far", "nocoord"], "{order:?}");
    // Without ?near the catalog's order (by name) stands.
    let (_, v, _) = get(&t.s1, "/v1/catalog/nodes");
    assert_eq!(
        names(&v, |e| &e["Node"]),
        ["c1", "c2", "far", "nocoord", "s1"]
    );

    // The coordinate goes with its node.
    let body = json!({"Node": "far"}).to_string();
    assert_eq!(put(&t.c1, "/v1/catalog/deregister", &body).0, 200);
    assert!(wait_until(Duration::from_secs(5), || get(
        &t.s1,
        "/v1/coordinate/node/far"
    )
    .0 == 404));
}

#[test]
fn bad_updates_are_400_and_methods_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("coord.json");
    std::fs::write(&cfg, CONFIG).unwrap();
    let a = Agent::dev(&["-node", "n1", "-config-file", cfg.to_str().unwrap()]);
    let ok = json!({"Node": "n1", "Coord": coord(0.001)});
    let mut short = coord(0.0);
    short["Vec"] = json!([0.0, 0.0]);
    let mut big_error = coord(0.0);
    big_error["Error"] = json!(9.0);
    let mut negative_height = coord(0.0);
    negative_height["Height"] = json!(-1.0);
    let mut huge = coord(0.0);
    huge["Vec"][3] = json!(1e300);
    let mut strings = coord(0.0);
    strings["Vec"][0] = json!("x");
    for (body, want) in [
        ("not json".to_string(), ""),
        (json!([1, 2]).to_string(), "expected an object"),
        (
            json!({"Coord": coord(0.0)}).to_string(),
            "Must provide node",
        ),
        (json!({"Node": "n1"}).to_string(), "Must provide Coord"),
        (
            json!({"Node": "n1", "Coord": short}).to_string(),
            "incompatible coordinate",
        ),
        (
            json!({"Node": "n1", "Coord": big_error}).to_string(),
            "Error must be within",
        ),
        (
            json!({"Node": "n1", "Coord": negative_height}).to_string(),
            "Height must be within",
        ),
        (json!({"Node": "n1", "Coord": huge}).to_string(), "within"),
        (
            json!({"Node": "n1", "Coord": strings}).to_string(),
            "Vec must hold numbers",
        ),
        (
            json!({"Node": 5, "Coord": coord(0.0)}).to_string(),
            "Node must be a string",
        ),
    ] {
        let (s, text) = put(&a, "/v1/coordinate/update", &body);
        assert_eq!(s, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    // Nothing was queued: after two update periods there is still nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&a, "/v1/coordinate/node/n1").0, 404);
    let (s, v, _) = get(&a, "/v1/coordinate/nodes");
    assert_eq!((s, v), (200, json!([])));
    // A good one lands.
    assert_eq!(put(&a, "/v1/coordinate/update", &ok.to_string()).0, 200);
    assert!(wait_until(Duration::from_secs(5), || get(
        &a,
        "/v1/coordinate/node/n1"
    )
    .0 == 200));
    // An update for a node the catalog does not know is dropped.
    let ghost = json!({"Node": "ghost", "Coord": coord(0.0)}).to_string();
    assert_eq!(put(&a, "/v1/coordinate/update", &ghost).0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&a, "/v1/coordinate/node/ghost").0, 404);

    let (s, v, _) = get(&a, "/v1/coordinate/datacenters");
    assert_eq!(s, 200);
    assert_eq!(v[0]["Datacenter"], "dc1");
    assert_eq!(v[0]["AreaID"], "wan");
    assert_eq!(v[0]["Coordinates"][0]["Node"], "n1.dc1", "{v}");

    let c = client();
    for (method, path, allow) in [
        ("GET", "/v1/coordinate/update", "OPTIONS,PUT"),
        ("POST", "/v1/coordinate/update", "OPTIONS,PUT"),
        ("PUT", "/v1/coordinate/nodes", "OPTIONS,GET,HEAD"),
        ("DELETE", "/v1/coordinate/node/n1", "OPTIONS,GET,HEAD"),
        ("POST", "/v1/coordinate/datacenters", "OPTIONS,GET,HEAD"),
    ] {
        let r = c
            .request(method.parse().unwrap(), format!("{}{path}", a.url))
            .body(ok.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
    }
    // The refused PUT changed nothing.
    let (_, v, _) = get(&a, "/v1/coordinate/nodes");
    assert_eq!(v.as_array().unwrap().len(), 1);
}

/// `disable_coordinates`: every coordinate route answers Consul's 401.
#[test]
fn disabled_coordinates_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("off.json");
    std::fs::write(&cfg, r#"{"disable_coordinates": true}"#).unwrap();
    let a = Agent::dev(&["-node", "off", "-config-file", cfg.to_str().unwrap()]);
    for path in [
        "/v1/coordinate/nodes",
        "/v1/coordinate/node/off",
        "/v1/coordinate/datacenters",
    ] {
        let r = client().get(format!("{}{path}", a.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert_eq!(r.text().unwrap(), "Coordinate support disabled");
    }
    let body = json!({"Node": "off", "Coord": coord(0.0)}).to_string();
    assert_eq!(put(&a, "/v1/coordinate/update", &body).0, 401);
}
