//! Durability of a `-server -data-dir` agent: acknowledged writes survive
//! `kill -9` with their indexes, and indexes keep growing after restart.

use std::collections::HashMap;

use serde_json::Value;
use tribune_tests::{client, fill_disk, Agent, Tmpfs};

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

/// The data dir fills up (ENOSPC): the write that hits it and every write
/// after it fail at once with the cause (not a 7 s `No cluster leader`),
/// the node stops naming itself leader, acknowledged data stays readable,
/// writes work again by themselves once space is freed, and after kill -9
/// every acknowledged write is there. (Before: raft's core stopped for good
/// on the first storage error.)
#[test]
fn full_disk_fails_writes_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(dir.path(), "16m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED full_disk_fails_writes_then_recovers: cannot mount a tmpfs ({why}); run as root");
            return;
        }
    };
    let data = fs.path().join("data");
    let a = Agent::server(&data, &[]);
    let c = client();
    let put = |key: &str, v: Vec<u8>| {
        let t = std::time::Instant::now();
        let r = c
            .put(format!("{}/v1/kv/{key}", a.url))
            .body(v)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap(), t.elapsed())
    };
    let get = |key: &str, q: &str| {
        let r = c
            .get(format!("{}/v1/kv/{key}?raw{q}", a.url))
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    let leader = || -> String {
        c.get(format!("{}/v1/status/leader", a.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let value = |i: usize| format!("{i:06}").repeat(10_000).into_bytes();
    let mut acked = Vec::new();
    for i in 0..5 {
        assert_eq!(put(&format!("full/{i}"), value(i)).1, "true");
        acked.push(i);
    }
    assert!(!leader().is_empty());

    fill_disk(&fs.path().join("filler"));
    let mut failure = None;
    for i in 5..300 {
        let (status, body, took) = put(&format!("full/{i}"), value(i));
        if status == 200 && body == "true" {
            acked.push(i);
            continue;
        }
        failure = Some((i, status, body, took));
        break;
    }
    let (first, status, body, took) = failure.expect("writes to a full disk kept succeeding");
    assert_eq!(status, 500, "write #{first} on a full disk: {body}");
    assert!(
        body.contains("No space left on device"),
        "the error names the cause: {body}"
    );
    assert!(took.as_secs() < 5, "the failing write took {took:?}");
    // Later writes fail at once, with the cause.
    let (status, body, took) = put("full/next", b"x".to_vec());
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    assert!(
        took.as_secs() < 2,
        "a write while the disk is full took {took:?}"
    );
    assert_eq!(leader(), "", "a leader that cannot write is not named");
    // Acknowledged data stays readable, default and consistent.
    for &i in &acked {
        assert_eq!(get(&format!("full/{i}"), ""), (200, value(i)));
    }
    assert_eq!(get(&format!("full/{}", acked[0]), "&consistent").0, 200);
    assert!(
        a.log_text().contains("No space left on device"),
        "the agent logs the cause"
    );

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let t = std::time::Instant::now();
    tribune_tests::wait_for(
        "writes to work again after space was freed",
        std::time::Duration::from_secs(10),
        || (put("full/after", b"back".to_vec()).1 == "true").then_some(()),
    );
    eprintln!("writes work again {:?} after space was freed", t.elapsed());
    assert!(!leader().is_empty());
    assert_eq!(get("full/after", ""), (200, b"back".to_vec()));

    let mut a = a;
    a.kill9();
    let log = a.log_text();
    assert!(!log.contains("panicked"), "{log}");
    drop(a);
    let a = Agent::server(&data, &[]);
    for &i in &acked {
        let r = c
            .get(format!("{}/v1/kv/full/{i}?raw", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged write #{i} lost");
        assert_eq!(r.bytes().unwrap().to_vec(), value(i));
    }
    // The write that failed is either absent or whole.
    let r = c
        .get(format!("{}/v1/kv/full/{first}?raw", a.url))
        .send()
        .unwrap();
    if r.status() == 200 {
        assert_eq!(r.bytes().unwrap().to_vec(), value(first));
    }
    tribune_tests::put_kv(&a, "full/restarted", "x");
}

/// SIGTERM while a write waits for a full disk: the agent stops promptly
/// (raft is not left waiting for the disk) and exits 1 naming the cause,
/// as the write was never stored; after a restart the data is intact.
#[test]
fn shutdown_on_a_full_disk_exits_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(dir.path(), "16m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED shutdown_on_a_full_disk_exits_with_the_cause: cannot mount a tmpfs ({why}); run as root");
            return;
        }
    };
    let data = fs.path().join("data");
    let mut a = Agent::server(&data, &[]);
    tribune_tests::put_kv(&a, "kept", "1");
    fill_disk(&fs.path().join("filler"));
    let c = client();
    let big = "x".repeat(60_000);
    let failed = (0..100).any(|i| {
        let r = c
            .put(format!("{}/v1/kv/big{i}", a.url))
            .body(big.clone())
            .send()
            .unwrap();
        r.status() == 500
    });
    assert!(failed, "writes to a full disk kept succeeding");
    assert_eq!(
        a.signal_and_wait(libc::SIGTERM),
        Some(1),
        "{}",
        a.log_text()
    );
    let log = a.log_text();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    drop(a);
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let a = Agent::server(&data, &[]);
    let r = c.get(format!("{}/v1/kv/kept?raw", a.url)).send().unwrap();
    assert_eq!(r.text().unwrap(), "1");
    tribune_tests::put_kv(&a, "after", "2");
}
