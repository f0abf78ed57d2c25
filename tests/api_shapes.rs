//! The JSON answers carry exactly the keys Consul's do: a field Consul tags
//! `omitempty` is absent when empty, every other field is present (issue
//! 13). One test per endpoint family against a real agent, each asserting
//! the whole key set of a realistic answer. The key sets are those of
//! Consul 1.21's structs (`api.AgentService`, `structs.NodeService`,
//! `structs.ServiceNode`, `structs.HealthCheck`, `structs.DirEntry`, ...).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, wait_until, Agent};

fn get(a: &Agent, path: &str) -> Value {
    let r = client().get(format!("{}/v1/{path}", a.url)).send().unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().unwrap()
}

fn put(a: &Agent, path: &str, body: Value) {
    let r = client()
        .put(format!("{}/v1/{path}", a.url))
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `v` has exactly the keys `want`.
fn assert_keys(what: &str, v: &Value, want: &[&str]) {
    assert_eq!(keys(v), set(want), "{what}: {v:#}");
}

/// `api.AgentService` without `Kind`, `SocketPath`, `Proxy`, `Connect`,
/// the raft indexes (zero in local state) and, when empty, `TaggedAddresses`.
const AGENT_SERVICE: &[&str] = &[
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "Weights",
    "EnableTagOverride",
    "Datacenter",
];

/// `structs.HealthCheck`: no `omitempty` but `PeerName`.
const HEALTH_CHECK: &[&str] = &[
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
];

/// `structs.Node`.
const NODE: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
];

/// `structs.NodeService` without `Kind`, `SocketPath`, `Locality` and, when
/// empty, `TaggedAddresses` and `Port`.
const NODE_SERVICE: &[&str] = &[
    "ID",
    "Service",
    "Tags",
    "Address",
    "Meta",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
    "PeerName",
    "CreateIndex",
    "ModifyIndex",
];

/// A key set plus the keys an answer has when those fields are set.
fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

/// Two services: `bare` (no address, port 0), `web` (an IP address: the
/// agent adds `lan_ipv4`/`wan_ipv4` tagged addresses, as Consul's does).
fn register_two(a: &Agent) {
    put(a, "agent/service/register", json!({"Name": "bare"}));
    put(
        a,
        "agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Address": "10.1.2.3", "Port": 8080,
               "Tags": ["v1"], "Check": {"TTL": "10m", "Status": "passing"}}),
    );
    assert!(wait_until(Duration::from_secs(10), || {
        get(a, "catalog/service/web").as_array().unwrap().len() == 1
            && get(a, "catalog/service/bare").as_array().unwrap().len() == 1
    }));
}

/// `/v1/agent/*`: services, service (with `ContentHash`), checks, the
/// health of a local service, members, self.
#[test]
fn agent_endpoints() {
    let a = Agent::dev(&["-node", "shape-a"]);
    register_two(&a);
    let svcs = get(&a, "agent/services");
    assert_keys("agent/services bare", &svcs["bare"], AGENT_SERVICE);
    assert_keys(
        "agent/services web",
        &svcs["web-1"],
        &with(AGENT_SERVICE, &["TaggedAddresses"]),
    );
    assert_eq!(
        svcs["web-1"]["TaggedAddresses"],
        json!({"lan_ipv4": {"Address": "10.1.2.3", "Port": 8080},
               "wan_ipv4": {"Address": "10.1.2.3", "Port": 8080}})
    );
    assert_eq!(svcs["bare"]["Datacenter"], "dc1");

    // One service: ContentHash in the body and the header; ?hash= blocks
    // until the service changes.
    let r = client()
        .get(format!("{}/v1/agent/service/web-1", a.url))
        .send()
        .unwrap();
    let hash = r.headers()["x-consul-contenthash"]
        .to_str()
        .unwrap()
        .to_string();
    let one: Value = r.json().unwrap();
    assert_keys(
        "agent/service/web-1",
        &one,
        &with(AGENT_SERVICE, &["TaggedAddresses", "ContentHash"]),
    );
    assert_eq!(one["ContentHash"], hash.as_str());
    let t = Instant::now();
    let r = client()
        .get(format!(
            "{}/v1/agent/service/web-1?hash={hash}&wait=400ms",
            a.url
        ))
        .send()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(350), "did not block");
    assert_eq!(r.headers()["x-consul-contenthash"], hash.as_str());
    let url = format!("{}/v1/agent/service/web-1?hash={hash}&wait=30s", a.url);
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let v: Value = client().get(url).send().unwrap().json().unwrap();
        (t.elapsed(), v)
    });
    std::thread::sleep(Duration::from_millis(300));
    put(
        &a,
        "agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Address": "10.1.2.3", "Port": 9090,
               "Check": {"TTL": "10m", "Status": "passing"}}),
    );
    let (took, v) = waiter.join().unwrap();
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
    assert_eq!(v["Port"], 9090);
    assert_ne!(v["ContentHash"], hash.as_str());

    let checks = get(&a, "agent/checks");
    assert_keys("agent/checks", &checks["service:web-1"], HEALTH_CHECK);

    // api.HealthCheck, as Consul fills it here: no Interval/Timeout, a
    // zero Definition with all its fields.
    let h = get(&a, "agent/health/service/name/web");
    assert_keys(
        "agent/health/service",
        &h[0],
        &["AggregatedStatus", "Service", "Checks"],
    );
    assert_keys(
        "agent/health Service",
        &h[0]["Service"],
        &with(AGENT_SERVICE, &["TaggedAddresses"]),
    );
    assert_keys(
        "agent/health Checks",
        &h[0]["Checks"][0],
        &[
            "Node",
            "CheckID",
            "Name",
            "Status",
            "Notes",
            "Output",
            "ServiceID",
            "ServiceName",
            "ServiceTags",
            "Type",
            "ExposedPort",
            "Definition",
            "CreateIndex",
            "ModifyIndex",
        ],
    );
    assert_keys(
        "agent/health Definition",
        &h[0]["Checks"][0]["Definition"],
        &[
            "Interval",
            "Timeout",
            "DeregisterCriticalServiceAfter",
            "HTTP",
            "Header",
            "Method",
            "Body",
            "TLSServerName",
            "TLSSkipVerify",
            "TCP",
            "UDP",
            "GRPC",
            "OSService",
            "GRPCUseTLS",
        ],
    );

    let members = get(&a, "agent/members");
    assert_keys(
        "agent/members",
        &members[0],
        &[
            "Name",
            "Addr",
            "Port",
            "Tags",
            "Status",
            "ProtocolMin",
            "ProtocolMax",
            "ProtocolCur",
            "DelegateMin",
            "DelegateMax",
            "DelegateCur",
        ],
    );

    // agent/self: no xDS (Consul leaves it out without an xDS server).
    let me = get(&a, "agent/self");
    assert_keys(
        "agent/self",
        &me,
        &["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"],
    );
    assert_keys(
        "agent/self Config",
        &me["Config"],
        &[
            "Datacenter",
            "PrimaryDatacenter",
            "NodeName",
            "NodeID",
            "Revision",
            "Server",
            "Version",
            "BuildDate",
            "TribuneVersion",
        ],
    );
}

/// `/v1/catalog/*`: service (ServiceNode), node (Node + NodeService), nodes.
#[test]
fn catalog_endpoints() {
    let a = Agent::dev(&["-node", "shape-c"]);
    register_two(&a);
    let service_node = [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceKind",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "ServiceAddress",
        "ServiceWeights",
        "ServiceMeta",
        "ServicePort",
        "ServiceSocketPath",
        "ServiceEnableTagOverride",
        "ServiceProxy",
        "ServiceConnect",
        "ServiceLocality",
        "CreateIndex",
        "ModifyIndex",
    ];
    let bare = get(&a, "catalog/service/bare");
    assert_keys("catalog/service bare", &bare[0], &service_node);
    assert_eq!(
        bare[0]["ServiceProxy"],
        json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
    );
    assert_eq!(bare[0]["ServiceConnect"], json!({}));
    assert_eq!(bare[0]["ServiceLocality"], Value::Null);
    let web = get(&a, "catalog/service/web");
    assert_keys(
        "catalog/service web",
        &web[0],
        &with(&service_node, &["ServiceTaggedAddresses"]),
    );

    let node = get(&a, "catalog/node/shape-c");
    assert_keys("catalog/node", &node, &["Node", "Services"]);
    assert_keys("catalog/node Node", &node["Node"], NODE);
    assert_eq!(node["Node"]["Meta"]["consul-network-segment"], "");
    assert_keys("catalog/node bare", &node["Services"]["bare"], NODE_SERVICE);
    assert_keys(
        "catalog/node web",
        &node["Services"]["web-1"],
        &with(NODE_SERVICE, &["TaggedAddresses", "Port"]),
    );
    let nodes = get(&a, "catalog/nodes");
    assert_keys("catalog/nodes", &nodes[0], NODE);
}

/// `/v1/health/*`: service entries and every check list.
#[test]
fn health_endpoints() {
    let a = Agent::dev(&["-node", "shape-h"]);
    register_two(&a);
    let entries = get(&a, "health/service/web");
    assert_keys(
        "health/service",
        &entries[0],
        &["Node", "Service", "Checks"],
    );
    assert_keys("health/service Node", &entries[0]["Node"], NODE);
    assert_keys(
        "health/service Service",
        &entries[0]["Service"],
        &with(NODE_SERVICE, &["TaggedAddresses", "Port"]),
    );
    for c in entries[0]["Checks"].as_array().unwrap() {
        assert_keys("health/service Checks", c, HEALTH_CHECK);
    }
    let bare = get(&a, "health/service/bare");
    assert_keys("health/service bare", &bare[0]["Service"], NODE_SERVICE);
    for path in [
        "health/checks/web",
        "health/node/shape-h",
        "health/state/any",
    ] {
        let list = get(&a, path);
        assert!(!list.as_array().unwrap().is_empty(), "{path}");
        for c in list.as_array().unwrap() {
            assert_keys(path, c, HEALTH_CHECK);
        }
    }
}

/// KV entries (`Session` only when locked), sessions, events, txn results.
#[test]
fn kv_session_event_txn() {
    let a = Agent::dev(&["-node", "shape-k"]);
    let c = client();
    a.wait_serf_health();
    let dir_entry = [
        "LockIndex",
        "Key",
        "Flags",
        "Value",
        "CreateIndex",
        "ModifyIndex",
    ];
    c.put(format!("{}/v1/kv/k", a.url))
        .body("v")
        .send()
        .unwrap();
    assert_keys("kv", &get(&a, "kv/k")[0], &dir_entry);

    let sid = c
        .put(format!("{}/v1/session/create", a.url))
        .json(&json!({"Name": "s"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(c
        .put(format!("{}/v1/kv/k?acquire={sid}", a.url))
        .body("v")
        .send()
        .unwrap()
        .json::<bool>()
        .unwrap());
    assert_keys(
        "kv locked",
        &get(&a, "kv/k")[0],
        &with(&dir_entry, &["Session"]),
    );
    assert_keys(
        "session/info",
        &get(&a, &format!("session/info/{sid}"))[0],
        &[
            "ID",
            "Name",
            "Node",
            "LockDelay",
            "Behavior",
            "TTL",
            "NodeChecks",
            "ServiceChecks",
            "CreateIndex",
            "ModifyIndex",
        ],
    );

    let ev: Value = c
        .put(format!("{}/v1/event/fire/deploy", a.url))
        .body("x")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let user_event = [
        "ID",
        "Name",
        "Payload",
        "NodeFilter",
        "ServiceFilter",
        "TagFilter",
        "Version",
        "LTime",
    ];
    assert_keys("event/fire", &ev, &user_event);
    assert_keys("event/list", &get(&a, "event/list")[0], &user_event);

    let r: Value = c
        .put(format!("{}/v1/txn", a.url))
        .json(&json!([{"KV": {"Verb": "get", "Key": "k"}}]))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_keys("txn", &r, &["Results", "Errors"]);
    assert_keys(
        "txn KV",
        &r["Results"][0]["KV"],
        &with(&dir_entry, &["Session"]),
    );
}
