//! Durability of a `-server -data-dir` agent: acknowledged writes survive
//! `kill -9` with their indexes, and indexes keep growing after restart.

use std::collections::HashMap;

use serde_json::Value;
use tribune_tests::{client, Agent};

/// Write 1,000 keys, kill -9, restart: all present with the same ModifyIndex;
/// the next write gets a higher index.
#[test]
fn thousand_keys_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::server(dir.path(), &[]);
    let c = client();
    // Concurrent writers, so group commit is exercised as well.
    std::thread::scope(|s| {
        for t in 0..8 {
            let url = a.url.clone();
            let c = c.clone();
            s.spawn(move || {
                for i in (t..1000).step_by(8) {
                    let r = c
                        .put(format!("{url}/v1/kv/dur/key{i:04}"))
                        .body(format!("value-{i}"))
                        .send()
                        .unwrap();
                    assert_eq!(r.text().unwrap(), "true");
                }
            });
        }
    });
    // Overwrite some and delete some, so not every entry is a fresh insert.
    for i in 0..50 {
        c.put(format!("{}/v1/kv/dur/key{i:04}", a.url))
            .body(format!("again-{i}"))
            .send()
            .unwrap();
    }
    for i in 990..1000 {
        c.delete(format!("{}/v1/kv/dur/key{i:04}", a.url))
            .send()
            .unwrap();
    }
    let before: Vec<Value> = c
        .get(format!("{}/v1/kv/dur/?recurse", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before.len(), 990);
    let before: HashMap<String, Value> = before
        .into_iter()
        .map(|e| (e["Key"].as_str().unwrap().to_string(), e))
        .collect();
    let max_before = before
        .values()
        .map(|e| e["ModifyIndex"].as_u64().unwrap())
        .max()
        .unwrap();

    a.kill9();
    let a = Agent::server(dir.path(), &[]);
    let after: Vec<Value> = c
        .get(format!("{}/v1/kv/dur/?recurse", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(after.len(), 990, "keys lost across kill -9");
    for e in &after {
        let k = e["Key"].as_str().unwrap();
        let b = &before[k];
        assert_eq!(e, b, "{k} differs after restart");
    }
    for i in 990..1000 {
        let r = c
            .get(format!("{}/v1/kv/dur/key{i:04}", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "deleted key {i} came back");
    }
    c.put(format!("{}/v1/kv/dur/next", a.url))
        .body("n")
        .send()
        .unwrap();
    let next: Value = c
        .get(format!("{}/v1/kv/dur/next", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(next[0]["ModifyIndex"].as_u64().unwrap() > max_before);
}

/// Enough writes to trigger snapshots and log purging, then two restarts
/// (one graceful, one kill -9): the state is rebuilt from snapshot + log.
#[test]
fn restart_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("snap.json");
    std::fs::write(&conf, r#"{"raft_snapshot_threshold": 300}"#).unwrap();
    let conf = conf.to_str().unwrap();
    let mut a = Agent::server(&dir.path().join("data"), &["-config-file", conf]);
    let c = client();
    std::thread::scope(|s| {
        for t in 0..8 {
            let url = a.url.clone();
            let c = c.clone();
            s.spawn(move || {
                // Far more raft entries than the threshold, even with group commit.
                for i in 0..400 {
                    let r = c
                        .put(format!("{url}/v1/kv/snap/{t}"))
                        .body(format!("{i}"))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            });
        }
    });
    let me: Value = c
        .get(format!("{}/v1/agent/self", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let snap: u64 = me["Stats"]["raft"]["last_snapshot_index"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(snap > 0, "no snapshot was taken: {}", me["Stats"]["raft"]);
    let want: Vec<Value> = c
        .get(format!("{}/v1/kv/snap/?recurse", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(a.signal_and_wait(libc::SIGINT), Some(0));
    let mut a = Agent::server(&dir.path().join("data"), &["-config-file", conf]);
    let got: Vec<Value> = c
        .get(format!("{}/v1/kv/snap/?recurse", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got, want);
    c.put(format!("{}/v1/kv/snap/0", a.url))
        .body("last")
        .send()
        .unwrap();
    a.kill9();
    let a = Agent::server(&dir.path().join("data"), &["-config-file", conf]);
    let v = c
        .get(format!("{}/v1/kv/snap/0?raw", a.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(v, "last");
}
