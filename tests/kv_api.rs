//! KV, txn and status endpoints of a real `tribune agent -dev`, over HTTP.

use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};
use tribune_tests::{client, index_of, Agent};

fn put(a: &Agent, key: &str, body: &str) -> Response {
    client()
        .put(format!("{}/v1/kv/{key}", a.url))
        .body(body.to_string())
        .send()
        .unwrap()
}

fn get(a: &Agent, path_and_query: &str) -> Response {
    client()
        .get(format!("{}/v1/{path_and_query}", a.url))
        .send()
        .unwrap()
}

/// One HTTP/1.1 request over a plain socket, path sent byte for byte.
fn raw_request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Snapshot of the whole KV table, to prove rejected requests change nothing.
fn dump(a: &Agent) -> (u64, String) {
    let r = get(a, "kv/?recurse");
    let idx = index_of(&r);
    (idx, r.text().unwrap())
}

/// Every read carries the Consul headers, 404s included, and the index is never 0.
#[test]
fn read_headers_on_200_and_404() {
    let a = Agent::dev(&[]);
    let r = get(&a, "kv/missing");
    assert_eq!(r.status(), 404);
    assert!(index_of(&r) >= 1);
    assert_eq!(r.headers()["x-consul-knownleader"], "true");
    assert_eq!(r.headers()["x-consul-effective-consistency"], "leader");
    assert!(r.headers()["x-consul-lastcontact"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(put(&a, "k", "v").text().unwrap(), "true");
    let r = get(&a, "kv/k?stale");
    assert_eq!(r.headers()["x-consul-effective-consistency"], "stale");
    let r = get(&a, "kv/k?consistent");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-consul-effective-consistency"], "consistent");
    // ?keys under a prefix that holds none is 404, as Consul answers (with
    // the index, so a blocking query can wait for the first key); only the
    // root answers an empty list.
    let r = get(&a, "kv/nothing/?keys");
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-consul-index"));
}

/// GET forms: single, raw, recurse, keys with separator (and the old spelling), flags, cas.
#[test]
fn kv_get_forms_flags_and_cas() {
    let a = Agent::dev(&[]);
    for k in ["web/a", "web/sub/x", "web/sub/y", "webby", "other"] {
        assert_eq!(put(&a, k, k).text().unwrap(), "true");
    }
    let v: Value = get(&a, "kv/web/a").json().unwrap();
    assert_eq!(v[0]["Key"], "web/a");
    assert_eq!(v[0]["Value"], "d2ViL2E="); // base64("web/a")
    assert_eq!(get(&a, "kv/web/a?raw").text().unwrap(), "web/a");
    let keys: Vec<String> = get(&a, "kv/web/?keys&separator=/").json().unwrap();
    assert_eq!(keys, ["web/a", "web/sub/"]);
    let keys: Vec<String> = get(&a, "kv/web?keys&seperator=/").json().unwrap();
    assert_eq!(keys, ["web/", "webby"]);
    let all: Vec<Value> = get(&a, "kv/web/?recurse").json().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(get(&a, "kv/none/?recurse").status(), 404);

    // flags round-trip; empty value is null
    let r = client()
        .put(format!("{}/v1/kv/f?flags=42", a.url))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    let v: Value = get(&a, "kv/f").json().unwrap();
    assert_eq!(v[0]["Flags"], 42);
    assert_eq!(v[0]["Value"], Value::Null);

    // cas=0 creates only; cas=N must match
    let cas = |q: &str| {
        client()
            .put(format!("{}/v1/kv/c?{q}", a.url))
            .body("x")
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(cas("cas=0"), "true");
    assert_eq!(cas("cas=0"), "false");
    let mi = get(&a, "kv/c").json::<Value>().unwrap()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(cas(&format!("cas={}", mi + 1000)), "false");
    assert_eq!(cas(&format!("cas={mi}")), "true");
    // delete with cas
    let mi = get(&a, "kv/c").json::<Value>().unwrap()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    let del = |q: &str| {
        client()
            .delete(format!("{}/v1/kv/c?{q}", a.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(del("cas=1"), "false");
    assert_eq!(del(&format!("cas={mi}")), "true");
    assert_eq!(get(&a, "kv/c").status(), 404);
    // recursive delete
    let r = client()
        .delete(format!("{}/v1/kv/web/?recurse", a.url))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    assert_eq!(get(&a, "kv/web/?recurse").status(), 404);
    assert_eq!(get(&a, "kv/webby").status(), 200);
    // unicode and dotted keys are valid
    assert_eq!(put(&a, "cfg/app.json", "{}").text().unwrap(), "true");
    assert_eq!(
        put(&a, "cfg/%D0%BA%D0%BB%D1%8E%D1%87", "ü").text().unwrap(),
        "true"
    );
    let keys: Vec<String> = get(&a, "kv/cfg/?keys").json().unwrap();
    assert_eq!(keys, ["cfg/app.json", "cfg/ключ"]);
}

/// A blocking GET parks and wakes on a change to its key with the new index.
#[test]
fn blocking_wakes_on_change() {
    let a = Agent::dev(&[]);
    put(&a, "app/x", "1");
    let idx = index_of(&get(&a, "kv/app/x"));
    let url = format!("{}/v1/kv/app/x?index={idx}&wait=30s", a.url);
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = client().get(url).send().unwrap();
        (t.elapsed(), index_of(&r), r.json::<Value>().unwrap())
    });
    thread::sleep(Duration::from_millis(300));
    put(&a, "app/x", "2");
    let (took, new_idx, body) = waiter.join().unwrap();
    assert!(
        took >= Duration::from_millis(250),
        "returned before the change: {took:?}"
    );
    assert!(took < Duration::from_secs(5));
    assert!(new_idx > idx);
    assert_eq!(body[0]["Value"], "Mg==");
}

/// A 1s wait times out and returns the same index.
#[test]
fn blocking_timeout_keeps_index() {
    let a = Agent::dev(&[]);
    put(&a, "t", "1");
    let idx = index_of(&get(&a, "kv/t"));
    let t = Instant::now();
    let r = get(&a, &format!("kv/t?index={idx}&wait=1s"));
    let took = t.elapsed();
    assert_eq!(index_of(&r), idx);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // jitter is at most wait/16
    assert!(
        took < Duration::from_millis(1000 + 1000 / 16 + 500),
        "{took:?}"
    );
    // a missing key blocks too, on its own index, and times out unchanged
    let r = get(&a, "kv/missing/key");
    let midx = index_of(&r);
    let r = get(&a, &format!("kv/missing/key?index={midx}&wait=1s"));
    assert_eq!(r.status(), 404);
    assert_eq!(index_of(&r), midx);
}

/// A delete under a prefix advances and wakes a recurse watcher and a keys
/// watcher; a write under another prefix wakes neither.
#[test]
fn prefix_watchers_wake_on_delete_not_on_other_prefix() {
    let a = Agent::dev(&[]);
    put(&a, "app/a", "1");
    put(&a, "app/b", "1");
    put(&a, "web/a", "1");
    let idx = index_of(&get(&a, "kv/app/?recurse"));
    let spawn = |q: String| {
        let url = format!("{}/v1/kv/app/?{q}&index={idx}&wait=20s", a.url);
        thread::spawn(move || {
            let t = Instant::now();
            let r = client().get(url).send().unwrap();
            (
                t.elapsed(),
                index_of(&r),
                r.status().as_u16(),
                r.text().unwrap(),
            )
        })
    };
    let recurse = spawn("recurse".into());
    let keys = spawn("keys".into());
    thread::sleep(Duration::from_millis(300));
    // Unrelated writes: must not wake them.
    put(&a, "web/a", "2");
    put(&a, "apple", "2");
    thread::sleep(Duration::from_millis(500));
    assert!(
        !recurse.is_finished(),
        "recurse watcher woke on a write to web/ or apple"
    );
    assert!(
        !keys.is_finished(),
        "keys watcher woke on a write to web/ or apple"
    );
    let r = client()
        .delete(format!("{}/v1/kv/app/b", a.url))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    for (h, name) in [(recurse, "recurse"), (keys, "keys")] {
        let (took, new_idx, status, body) = h.join().unwrap();
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
        assert!(new_idx > idx, "{name}: index {new_idx} not past {idx}");
        assert_eq!(status, 200);
        assert!(
            body.contains("app/a") && !body.contains("app/b"),
            "{name}: {body}"
        );
    }
}

/// Every kind of bad input gets its status code and leaves the store unchanged.
#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let a = Agent::dev(&[]);
    put(&a, "keep", "v");
    let before = dump(&a);
    let c = client();
    let big = "x".repeat(524_289);
    let cases: Vec<(reqwest::blocking::RequestBuilder, u16, &str)> = vec![
        (c.put(format!("{}/v1/kv/big", a.url)).body(big.clone()), 413, "too large"),
        (c.get(format!("{}/v1/kv/keep?index=abc", a.url)), 400, "Invalid index"),
        (c.get(format!("{}/v1/kv/keep?index=1&wait=10", a.url)), 400, "Invalid wait time"),
        (c.get(format!("{}/v1/kv/keep?wait=-1s", a.url)), 400, "Invalid wait time"),
        (c.get(format!("{}/v1/kv/keep?stale&consistent", a.url)), 400, "stale"),
        (c.put(format!("{}/v1/kv/keep?cas=1&acquire=x", a.url)).body("z"), 400, "Conflicting flags"),
        (c.put(format!("{}/v1/kv/keep?cas=1&release=x", a.url)).body("z"), 400, "Conflicting flags"),
        (c.delete(format!("{}/v1/kv/keep?recurse&cas=1", a.url)), 400, "Conflicting flags"),
        (c.put(format!("{}/v1/kv/keep?flags=-3", a.url)).body("z"), 400, "flags"),
        (c.put(format!("{}/v1/kv/keep?cas=x", a.url)).body("z"), 400, "cas"),
        (c.put(format!("{}/v1/kv/%20keep", a.url)).body("z"), 400, "whitespace"),
        (c.put(format!("{}/v1/kv/keep%20", a.url)).body("z"), 400, "whitespace"),
        (c.put(format!("{}/v1/kv/", a.url)).body("z"), 400, "Missing key name"),
        (c.delete(format!("{}/v1/kv/", a.url)), 400, "Missing key name"),
        (c.put(format!("{}/v1/kv/keep?acquire=abc", a.url)).body("z"), 400, "session"),
        (c.put(format!("{}/v1/kv/keep?dc=elsewhere", a.url)).body("z"), 500, "No path to datacenter"),
        (c.get(format!("{}/v1/kv/keep?dc=elsewhere", a.url)), 500, "No path to datacenter"),
        (c.put(format!("{}/v1/txn", a.url)).body("{not json"), 400, "Failed to parse body"),
        (c.put(format!("{}/v1/txn", a.url)).body("{}"), 400, "array"),
        (
            c.put(format!("{}/v1/txn", a.url))
                .body(r#"[{"KV":{"Verb":"set","Key":"n1","Value":"eA=="}},{"KV":{"Verb":"bogus","Key":"k"}}]"#),
            400,
            "unknown KV verb",
        ),
        (
            c.put(format!("{}/v1/txn", a.url))
                .body(r#"[{"KV":{"Verb":"set","Key":"n1","Value":"not base64!"}}]"#),
            400,
            "base64",
        ),
        (
            c.put(format!("{}/v1/txn", a.url)).body(r#"[{"KV":{"Verb":"set","Key":"../x","Value":""}}]"#),
            400,
            "Invalid key",
        ),
        (c.put(format!("{}/v1/txn", a.url)).body(big.clone()), 413, "too large"),
    ];
    for (i, (req, status, needle)) in cases.into_iter().enumerate() {
        let r = req.send().unwrap();
        let got = r.status().as_u16();
        let body = r.text().unwrap();
        assert_eq!(got, status, "case {i}: body {body:?}");
        assert!(body.contains(needle), "case {i}: {body:?} lacks {needle:?}");
    }
    // Path traversal, sent raw: HTTP client libraries normalize `..` away.
    for (method, path) in [
        ("PUT", "/v1/kv/a/../keep"),
        ("PUT", "/v1/kv/a/%2E%2E/keep"),
        ("GET", "/v1/kv/.."),
        ("DELETE", "/v1/kv/x/../keep"),
    ] {
        let (status, body) = raw_request(&a.addr, method, path, "z");
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("Invalid key"), "{body}");
    }
    // 129 operations -> 413 with Consul's message
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"KV": {"Verb": "set", "Key": format!("many/{i}"), "Value": "eA=="}}))
        .collect();
    let r = c
        .put(format!("{}/v1/txn", a.url))
        .json(&ops)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.text().unwrap(),
        "Transaction contains too many operations (129 > 128)"
    );
    // wrong method -> 405 with Allow
    let r = c
        .post(format!("{}/v1/kv/keep", a.url))
        .body("z")
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    for m in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
    let r = c.get(format!("{}/v1/txn", a.url)).send().unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("PUT"));
    // exactly the limit is accepted
    let ok = "y".repeat(524_288);
    assert_eq!(
        c.put(format!("{}/v1/kv/edge", a.url))
            .body(ok)
            .send()
            .unwrap()
            .status(),
        200
    );
    c.delete(format!("{}/v1/kv/edge", a.url)).send().unwrap();
    // Nothing changed except the edge key's own write/delete (same content).
    let after = dump(&a);
    assert_eq!(before.1, after.1);
    for k in ["big", "n1", "many/0", "x"] {
        assert_eq!(get(&a, &format!("kv/{k}")).status(), 404, "{k} was written");
    }
    // and the agent is still healthy
    assert_eq!(get(&a, "kv/keep?raw").text().unwrap(), "v");
}

/// Garbage on the wire never panics the agent.
#[test]
fn fuzzish_inputs_do_not_panic() {
    let a = Agent::dev(&[]);
    let c = client();
    let paths = [
        "kv/%ff%fe",
        "kv/%",
        "kv/a?index=18446744073709551616",
        "kv/a?wait=99999999999h",
        "kv/a?wait=1e3s",
        "kv/?keys&separator=",
        "kv/?recurse&keys&raw",
        "kv/a?index=0&wait=0",
        "txn",
        "status/leader?dc=dc1",
        "agent/self?pretty",
        "catalog/datacenters",
    ];
    for p in paths {
        let _ = c.get(format!("{}/v1/{p}", a.url)).send().unwrap();
        let _ = c
            .put(format!("{}/v1/{p}", a.url))
            .body(vec![0xffu8, 0, 1])
            .send()
            .unwrap();
    }
    for body in [
        "[",
        "[null]",
        "[{\"KV\":null}]",
        "[{\"KV\":{\"Verb\":5}}]",
        "[{\"kv\":{\"verb\":\"get\",\"key\":\"\"}}]",
        "[[]]",
    ] {
        let r = c
            .put(format!("{}/v1/txn", a.url))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(put(&a, "alive", "yes").text().unwrap(), "true");
}

/// Txn: all verbs commit atomically; a failing check rolls everything back with 409.
#[test]
fn txn_atomic_and_rollback() {
    let a = Agent::dev(&[]);
    let c = client();
    put(&a, "t/a", "1");
    let mi = get(&a, "kv/t/a").json::<Value>().unwrap()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    let ops = json!([
        {"KV": {"Verb": "cas", "Key": "t/a", "Value": "Mg==", "Index": mi}},
        {"kv": {"verb": "set", "key": "t/b", "value": "Mw==", "flags": 7}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/zzz"}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
        {"KV": {"Verb": "get-tree", "Key": "t/"}},
        {"KV": {"Verb": "get-or-empty", "Key": "t/none"}},
    ]);
    let r = c
        .put(format!("{}/v1/txn", a.url))
        .json(&ops)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["Errors"], Value::Null);
    let res = v["Results"].as_array().unwrap();
    assert_eq!(res.len(), 6); // cas, set, get, 2 x tree, get-or-empty
    assert_eq!(
        res[0]["KV"]["Value"],
        Value::Null,
        "write results carry no value"
    );
    assert_eq!(res[2]["KV"]["Value"], "Mg==");
    assert_eq!(res[1]["KV"]["Flags"], 7);
    let b_idx = res[1]["KV"]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(
        res[0]["KV"]["ModifyIndex"].as_u64().unwrap(),
        b_idx,
        "one txn, one index"
    );

    let before = get(&a, "kv/t/?recurse").text().unwrap();
    let bad = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": "NA=="}},
        {"KV": {"Verb": "delete-tree", "Key": "t/"}},
        {"KV": {"Verb": "check-index", "Key": "t/a", "Index": 1}},
    ]);
    let r = c
        .put(format!("{}/v1/txn", a.url))
        .json(&bad)
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().unwrap();
    assert_eq!(v["Results"], Value::Null);
    assert_eq!(v["Errors"][0]["OpIndex"], 2);
    assert!(v["Errors"][0]["What"].as_str().unwrap().contains("t/a"));
    assert_eq!(
        get(&a, "kv/t/?recurse").text().unwrap(),
        before,
        "rollback left changes"
    );
    // read-only txn answers with index headers
    let r = c
        .put(format!("{}/v1/txn", a.url))
        .json(&json!([{"KV": {"Verb": "get", "Key": "t/missing"}}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(index_of(&r) >= 1);
}

/// Status, agent/self and datacenters report what clients expect.
#[test]
fn status_agent_self_datacenters() {
    let a = Agent::dev(&["-node", "n-one", "-datacenter", "east"]);
    let leader: String = get(&a, "status/leader").json().unwrap();
    // -dev picks a free server RPC port, as a lone server needs no well-known one.
    let port: u16 = leader.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    assert!(port > 0, "{leader}");
    let peers: Vec<String> = get(&a, "status/peers").json().unwrap();
    assert_eq!(peers, [leader]);
    let me: Value = get(&a, "agent/self").json().unwrap();
    for k in ["Config", "DebugConfig", "Coord", "Member", "Meta", "Stats"] {
        assert!(me.get(k).is_some(), "agent/self lacks {k}");
    }
    // Consul omits xDS when it runs no xDS server; tribune has none.
    assert!(me.get("xDS").is_none());
    assert_eq!(me["Config"]["Datacenter"], "east");
    assert_eq!(me["Config"]["NodeName"], "n-one");
    assert_eq!(me["Config"]["Server"], true);
    assert!(me["Config"]["Version"].is_string());
    assert_eq!(me["Config"]["NodeID"].as_str().unwrap().len(), 36);
    let dcs: Vec<String> = get(&a, "catalog/datacenters").json().unwrap();
    assert_eq!(dcs, ["east"]);
    assert_eq!(get(&a, "kv/x?dc=east").status(), 404);
    assert_eq!(get(&a, "kv/x?dc=dc1").status(), 500);
}

/// SIGTERM: in-flight blocking queries are answered, then the agent exits 0.
#[test]
fn graceful_shutdown_answers_parked_queries() {
    let mut a = Agent::dev(&[]);
    put(&a, "g", "1");
    let idx = index_of(&get(&a, "kv/g"));
    let url = format!("{}/v1/kv/g?index={idx}&wait=60s", a.url);
    let waiter = thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(a.signal_and_wait(libc::SIGTERM), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(waiter.join().unwrap().unwrap(), 200);
}
