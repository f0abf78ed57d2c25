//! Sessions over HTTP against a real agent: the API, KV locks and
//! lock-delay, txn lock verbs, invalidation by a linked check, TTL renew and
//! expiry, and sessions across a restart (timers restart, never early).

use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};
use tribune_tests::{client, index_of, wait_until, Agent};

const NODE: &str = "sess-node";

fn put(a: &Agent, path: &str, body: impl Into<String>) -> Response {
    client()
        .put(format!("{}/v1/{path}", a.url))
        .body(body.into())
        .send()
        .unwrap()
}

fn get(a: &Agent, path: &str) -> Response {
    client().get(format!("{}/v1/{path}", a.url)).send().unwrap()
}

fn get_json(a: &Agent, path: &str) -> Value {
    get(a, path).json().unwrap()
}

/// Poll `f` until it holds or `limit` passes; returns whether it held.
/// A dev agent named [`NODE`] whose node and serfHealth are in the catalog
/// (anti-entropy registers them just after start).
fn agent() -> Agent {
    let a = Agent::dev(&["-node", NODE]);
    wait_serf(&a);
    a
}

fn wait_serf(a: &Agent) {
    let ok = wait_until(Duration::from_secs(20), || {
        get_json(a, &format!("health/node/{NODE}"))
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["CheckID"] == "serfHealth"))
    });
    assert!(ok, "serfHealth never registered; log:\n{}", a.log_text());
}

fn create(a: &Agent, body: Value) -> String {
    let r = put(a, "session/create", body.to_string());
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

fn info(a: &Agent, id: &str) -> Vec<Value> {
    get_json(a, &format!("session/info/{id}"))
        .as_array()
        .unwrap()
        .clone()
}

fn kv(a: &Agent, key: &str) -> Option<Value> {
    let r = get(a, &format!("kv/{key}"));
    (r.status() == 200).then(|| r.json::<Value>().unwrap()[0].clone())
}

/// Create/info/list/node/renew/destroy with Consul's shapes, blocking list
/// reads, and bad input refused with 400 and nothing created.
#[test]
fn session_api_round_trip() {
    let a = agent();
    let r = get(&a, "session/list");
    assert_eq!(r.status(), 200);
    let idx0 = index_of(&r);
    assert!(idx0 >= 1);
    assert_eq!(r.text().unwrap(), "[]");

    // a blocking list wakes on the create, not before
    let url = a.url.clone();
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = client()
            .get(format!("{url}/v1/session/list?index={idx0}&wait=20s"))
            .send()
            .unwrap();
        (t.elapsed(), index_of(&r), r.json::<Value>().unwrap())
    });
    thread::sleep(Duration::from_millis(500));
    let id = create(&a, json!({}));
    let (took, idx1, list) = waiter.join().unwrap();
    assert!(took >= Duration::from_millis(400), "woke early: {took:?}");
    assert!(took < Duration::from_secs(10), "did not wake: {took:?}");
    assert!(idx1 > idx0);
    assert_eq!(list[0]["ID"], id.as_str());

    let s = &info(&a, &id)[0];
    assert_eq!(s["Node"], NODE);
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(s["ServiceChecks"], Value::Null);
    assert_eq!(s["LockDelay"], 15_000_000_000u64);
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["TTL"], "");
    assert_eq!(s["CreateIndex"], s["ModifyIndex"]);
    assert_eq!(
        get_json(&a, &format!("session/node/{NODE}"))[0]["ID"],
        id.as_str()
    );
    assert_eq!(get_json(&a, "session/node/elsewhere"), json!([]));
    let r = get(&a, "session/info/no-such-session");
    assert_eq!((r.status().as_u16(), index_of(&r)), (200, idx1));
    assert_eq!(r.text().unwrap(), "[]");

    let named = create(
        &a,
        json!({"Name": "web-lock", "TTL": "30s", "Behavior": "delete", "LockDelay": "1s", "Checks": []}),
    );
    let s = &info(&a, &named)[0];
    assert_eq!(
        (&s["Name"], &s["TTL"], &s["Behavior"], &s["LockDelay"]),
        (
            &json!("web-lock"),
            &json!("30s"),
            &json!("delete"),
            &json!(1_000_000_000u64)
        )
    );
    assert_eq!(s["NodeChecks"], json!([]));
    let r = put(&a, &format!("session/renew/{named}"), "");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()[0]["ID"], named.as_str());

    // bad input: 400, nothing created, the index does not move
    let before = index_of(&get(&a, "session/list"));
    for (body, msg) in [
        (json!({"TTL": "5s"}), "Invalid Session TTL '5s'"),
        (json!({"TTL": "86401s"}), "Invalid Session TTL"),
        (json!({"TTL": "soon"}), "Session TTL 'soon' invalid"),
        (
            json!({"Behavior": "explode"}),
            "Invalid Behavior setting 'explode'",
        ),
        (
            json!({"Checks": ["nope"]}),
            "Missing check 'nope' registration",
        ),
        (json!({"Node": "ghost"}), "Missing node registration"),
        (json!({"LockDelay": "forever"}), "Request decode failed"),
    ] {
        let r = put(&a, "session/create", body.to_string());
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().unwrap();
        assert!(text.contains(msg), "{body}: {text}");
    }
    let r = put(&a, "session/create", "{not json");
    assert_eq!(r.status(), 400);
    let r = get(&a, "session/list");
    assert_eq!(index_of(&r), before);
    assert_eq!(r.json::<Value>().unwrap().as_array().unwrap().len(), 2);

    let r = put(&a, "session/renew/no-such-session", "");
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "Session id 'no-such-session' not found");
    assert_eq!(
        put(&a, &format!("session/destroy/{id}"), "")
            .text()
            .unwrap(),
        "true"
    );
    assert_eq!(
        put(&a, "session/destroy/no-such-session", "")
            .text()
            .unwrap(),
        "true"
    );
    assert!(info(&a, &id).is_empty());
    assert_eq!(get(&a, "session/create").status(), 405);
}

/// Acquire/release follow Consul's rules; invalidation releases the lock
/// and lock-delay holds off other sessions for its duration; behavior
/// delete deletes the key.
#[test]
fn kv_locks_and_lock_delay() {
    let a = agent();
    let s1 = create(&a, json!({"LockDelay": "3s"}));
    let s2 = create(&a, json!({"LockDelay": "0s"}));
    let acquire =
        |key: &str, s: &str, v: &str| put(&a, &format!("kv/{key}?acquire={s}"), v).text().unwrap();
    assert_eq!(acquire("lk/a", &s1, "one"), "true");
    let e = kv(&a, "lk/a").unwrap();
    assert_eq!((&e["Session"], &e["LockIndex"]), (&json!(s1), &json!(1)));
    // the holder re-acquiring only updates the value
    assert_eq!(acquire("lk/a", &s1, "two"), "true");
    let e = kv(&a, "lk/a").unwrap();
    assert_eq!((&e["LockIndex"], &e["Value"]), (&json!(1), &json!("dHdv")));
    assert_eq!(acquire("lk/a", &s2, "x"), "false");
    assert_eq!(
        put(&a, &format!("kv/lk/a?release={s2}"), "x")
            .text()
            .unwrap(),
        "false"
    );
    // a plain write keeps the lock
    assert_eq!(put(&a, "kv/lk/a", "plain").text().unwrap(), "true");
    assert_eq!(kv(&a, "lk/a").unwrap()["Session"], s1.as_str());
    // bad input
    let r = put(&a, "kv/lk/a?acquire=no-such-session", "x");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("invalid session"));
    assert_eq!(put(&a, "kv/lk/a?acquire=", "x").status(), 400);
    assert_eq!(
        put(&a, &format!("kv/lk/a?acquire={s1}&cas=1"), "x").status(),
        400
    );
    assert_eq!(
        put(&a, &format!("kv/lk/a?acquire={s1}&release={s1}"), "x").status(),
        400
    );

    // release, then the other session takes it: LockIndex 2
    assert_eq!(
        put(&a, &format!("kv/lk/a?release={s1}"), "rel")
            .text()
            .unwrap(),
        "true"
    );
    let e = kv(&a, "lk/a").unwrap();
    assert_eq!((e.get("Session"), &e["LockIndex"]), (None, &json!(1)));
    assert_eq!(acquire("lk/a", &s2, "s2"), "true");
    assert_eq!(kv(&a, "lk/a").unwrap()["LockIndex"], 2);
    assert_eq!(
        put(&a, &format!("kv/lk/a?release={s2}"), "")
            .text()
            .unwrap(),
        "true"
    );

    // invalidating s1 (lock-delay 3s) releases lk/b, waking a blocking read
    assert_eq!(acquire("lk/b", &s1, "b"), "true");
    let held = kv(&a, "lk/b").unwrap();
    let idx = held["ModifyIndex"].as_u64().unwrap();
    let url = a.url.clone();
    let waiter = thread::spawn(move || {
        client()
            .get(format!("{url}/v1/kv/lk/b?index={idx}&wait=20s"))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    });
    thread::sleep(Duration::from_millis(300));
    let destroyed = Instant::now();
    assert_eq!(
        put(&a, &format!("session/destroy/{s1}"), "")
            .text()
            .unwrap(),
        "true"
    );
    let woke = waiter.join().unwrap();
    assert_eq!(woke[0].get("Session"), None);
    assert!(woke[0]["ModifyIndex"].as_u64().unwrap() > idx);
    assert_eq!(woke[0]["Value"], "Yg==");
    // lock-delay: refused until 3s after the invalidation
    assert_eq!(acquire("lk/b", &s2, "x"), "false");
    assert!(wait_until(Duration::from_secs(10), || acquire(
        "lk/b", &s2, "x"
    ) == "true"));
    assert!(
        destroyed.elapsed() >= Duration::from_millis(2900),
        "lock-delay cut short: {:?}",
        destroyed.elapsed()
    );
    // a key never held by s1 was not delayed
    assert_eq!(acquire("lk/c", &s2, "c"), "true");

    // behavior delete: the key goes with the session
    let s3 = create(&a, json!({"Behavior": "delete", "LockDelay": 0}));
    assert_eq!(acquire("eph/node", &s3, "here"), "true");
    put(&a, &format!("session/destroy/{s3}"), "");
    assert!(kv(&a, "eph/node").is_none());
    // lock-delay 0: free at once
    assert_eq!(acquire("eph/node", &s2, "again"), "true");
}

/// Txn lock/unlock/check-session: all-or-nothing, Consul's messages,
/// lock-delay checked before raft.
#[test]
fn txn_lock_unlock_check_session() {
    let a = agent();
    let s1 = create(&a, json!({"LockDelay": "30s"}));
    let s2 = create(&a, json!({}));
    let txn = |ops: Value| {
        let r = put(&a, "txn", ops.to_string());
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let op = |verb: &str, key: &str, s: &str| json!({"KV": {"Verb": verb, "Key": key, "Value": "dg==", "Session": s}});
    let (st, body) = txn(json!([op("lock", "t/a", &s1), op("lock", "t/b", &s1)]));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["Results"][0]["KV"]["Session"], s1.as_str());
    assert_eq!(body["Results"][1]["KV"]["LockIndex"], 1);
    assert_eq!(kv(&a, "t/b").unwrap()["Session"], s1.as_str());

    let (st, body) = txn(json!([op("set", "t/c", ""), op("lock", "t/a", &s2)]));
    assert_eq!(st, 409);
    assert_eq!(body["Errors"][0]["OpIndex"], 1);
    assert!(body["Errors"][0]["What"]
        .as_str()
        .unwrap()
        .contains("lock is already held"));
    assert!(kv(&a, "t/c").is_none(), "rolled-back set is visible");

    let (st, _) = txn(json!([op("check-session", "t/a", &s1)]));
    assert_eq!(st, 200);
    let (st, body) = txn(json!([op("check-session", "t/a", &s2)]));
    assert_eq!(st, 409, "{body}");
    let (st, body) = txn(json!([op("unlock", "t/a", &s2)]));
    assert_eq!(st, 409);
    assert!(body["Errors"][0]["What"]
        .as_str()
        .unwrap()
        .contains("isn't held"));
    let (st, body) = txn(json!([op("lock", "t/x", "no-such-session")]));
    assert_eq!(st, 409);
    assert!(body["Errors"][0]["What"]
        .as_str()
        .unwrap()
        .contains("invalid session"));

    let (st, body) = txn(json!([op("unlock", "t/a", &s1)]));
    assert_eq!(st, 200, "{body}");
    let e = kv(&a, "t/a").unwrap();
    assert_eq!((e.get("Session"), &e["LockIndex"]), (None, &json!(1)));

    // s1 dies holding t/b: a txn lock by s2 hits the lock-delay
    put(&a, &format!("session/destroy/{s1}"), "");
    let (st, body) = txn(json!([op("lock", "t/b", &s2)]));
    assert_eq!(st, 409);
    assert!(body["Errors"][0]["What"]
        .as_str()
        .unwrap()
        .contains("due to lock delay"));
    let (st, _) = txn(json!([op("lock", "t/a", &s2)]));
    assert_eq!(st, 200);
}

/// A session linked to a check dies when the check goes critical (and its
/// lock is released); a session cannot be linked to a critical check.
#[test]
fn linked_check_invalidates_session() {
    let a = agent();
    let reg = json!({"Name": "app-alive", "TTL": "300s", "Status": "passing"});
    assert_eq!(
        put(&a, "agent/check/register", reg.to_string()).status(),
        200
    );
    assert!(wait_until(Duration::from_secs(20), || {
        get_json(&a, &format!("health/node/{NODE}"))
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["CheckID"] == "app-alive"))
    }));
    let linked = create(
        &a,
        json!({"Checks": ["serfHealth", "app-alive"], "LockDelay": "0s"}),
    );
    let only_serf = create(&a, json!({}));
    assert_eq!(
        info(&a, &linked)[0]["NodeChecks"],
        json!(["serfHealth", "app-alive"])
    );
    assert_eq!(
        put(&a, &format!("kv/leader?acquire={linked}"), "me")
            .text()
            .unwrap(),
        "true"
    );
    assert_eq!(
        put(&a, "agent/check/fail/app-alive?note=down", "").status(),
        200
    );
    assert!(
        wait_until(Duration::from_secs(20), || info(&a, &linked).is_empty()),
        "session survived its critical check"
    );
    assert_eq!(kv(&a, "leader").unwrap().get("Session"), None);
    assert_eq!(info(&a, &only_serf).len(), 1);

    let r = put(
        &a,
        "session/create",
        json!({"Checks": ["app-alive"]}).to_string(),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().unwrap(), "Check 'app-alive' is in critical state");

    // deregistering a linked check invalidates too
    assert_eq!(put(&a, "agent/check/pass/app-alive", "").status(), 200);
    let again = wait_until(Duration::from_secs(20), || {
        put(
            &a,
            "session/create",
            json!({"Checks": ["app-alive"]}).to_string(),
        )
        .status()
            == 200
    });
    assert!(again);
    let n = get_json(&a, "session/list").as_array().unwrap().len();
    assert_eq!(n, 2);
    assert_eq!(
        put(&a, "agent/check/deregister/app-alive", "").status(),
        200
    );
    assert!(wait_until(Duration::from_secs(20), || {
        get_json(&a, "session/list").as_array().unwrap().len() == 1
    }));
    assert_eq!(info(&a, &only_serf).len(), 1);
}

/// Renewing keeps a TTL session alive past 2×TTL; unrenewed, it expires
/// (never before its TTL; Consul's grace allows up to 2×) and its lock goes.
#[test]
fn ttl_renew_and_expiry() {
    let a = agent();
    let id = create(&a, json!({"TTL": "10s", "LockDelay": "0s"}));
    let created = Instant::now();
    assert_eq!(
        put(&a, &format!("kv/ttl/lock?acquire={id}"), "x")
            .text()
            .unwrap(),
        "true"
    );
    let mut last_renew = Instant::now();
    while created.elapsed() < Duration::from_secs(24) {
        thread::sleep(Duration::from_secs(4));
        let r = put(&a, &format!("session/renew/{id}"), "");
        assert_eq!(
            r.status(),
            200,
            "renew failed after {:?}",
            created.elapsed()
        );
        assert_eq!(r.json::<Value>().unwrap()[0]["TTL"], "10s");
        last_renew = Instant::now();
    }
    assert_eq!(info(&a, &id).len(), 1, "renewed session expired");
    let expired = wait_until(Duration::from_secs(45), || info(&a, &id).is_empty());
    let after = last_renew.elapsed();
    assert!(expired, "session never expired; log:\n{}", a.log_text());
    assert!(after >= Duration::from_secs(10), "expired early: {after:?}");
    assert!(after <= Duration::from_secs(40), "expired late: {after:?}");
    assert_eq!(kv(&a, "ttl/lock").unwrap().get("Session"), None);
    assert_eq!(put(&a, &format!("session/renew/{id}"), "").status(), 404);
}

/// Sessions and their locks survive a restart (from a snapshot plus the log),
/// and TTL timers restart with the new leader: a session is not expired
/// early because it was created before the restart.
#[test]
fn sessions_survive_restart_timers_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(&cfg, r#"{"raft_snapshot_threshold": 4}"#).unwrap();
    let data = dir.path().join("data");
    let cfg_s = cfg.to_str().unwrap();
    let extra = ["-node", NODE, "-config-file", cfg_s];
    let mut a = Agent::server(&data, &extra);
    wait_serf(&a);
    let plain = create(&a, json!({"LockDelay": "0s"}));
    let ttl = create(&a, json!({"TTL": "10s", "LockDelay": "0s"}));
    let created = Instant::now();
    assert_eq!(
        put(&a, &format!("kv/r/lock?acquire={plain}"), "v")
            .text()
            .unwrap(),
        "true"
    );
    for i in 0..10 {
        put(&a, &format!("kv/r/filler{i}"), "x");
    }
    let before = get_json(&a, "session/list");
    assert_eq!(before.as_array().unwrap().len(), 2);
    // restart when 12s of the TTL session's life have passed
    thread::sleep(Duration::from_secs(12).saturating_sub(created.elapsed()));
    assert_eq!(a.signal_and_wait(libc::SIGTERM), Some(0));
    let a = Agent::server(&data, &extra);
    let restarted = Instant::now();
    assert_eq!(get_json(&a, "session/list"), before);
    assert_eq!(kv(&a, "r/lock").unwrap()["Session"], plain.as_str());
    // 2×TTL after creation has passed, but timers restarted with the leader
    thread::sleep(Duration::from_secs(22).saturating_sub(created.elapsed()));
    assert_eq!(
        info(&a, &ttl).len(),
        1,
        "TTL session expired early after restart"
    );
    assert!(wait_until(Duration::from_secs(40), || info(&a, &ttl).is_empty()));
    assert!(restarted.elapsed() >= Duration::from_secs(10));
    assert_eq!(info(&a, &plain).len(), 1);
}
