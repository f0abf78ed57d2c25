//! Snapshots between real clusters: `tribune snapshot save` on one
//! 3-server cluster, `snapshot restore` on another, every key, session and
//! service there afterwards with the same indexes; corrupt and truncated
//! files refused with the cluster unchanged.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::servers::{start, three_servers, Member};
use tribune_tests::{client, run_cli, wait_for, Agent};

/// A 3-server cluster (raft_multiplier 1) in `dir`, with a leader all
/// agree on and every member answering reads.
fn cluster(dir: &Path, name: &str) -> Vec<Member> {
    let agents = three_servers(dir, name);
    wait_for(
        "the cluster to elect a leader",
        Duration::from_secs(40),
        || {
            let leaders: Vec<String> = agents
                .iter()
                .map(|a| {
                    get_json(&a.url, "/v1/status/leader").and_then(|v| v.as_str().map(String::from))
                })
                .collect::<Option<_>>()?;
            let ok = !leaders[0].is_empty() && leaders.iter().all(|l| *l == leaders[0]);
            let reads = agents.iter().all(|a| {
                client()
                    .get(format!("{}/v1/kv/__probe__", a.url))
                    .send()
                    .is_ok_and(|r| r.status() == 404)
            });
            (ok && reads).then_some(())
        },
    );
    agents
}

fn get_json(url: &str, path: &str) -> Option<Value> {
    let r = client().get(format!("{url}{path}")).send().ok()?;
    r.status().is_success().then_some(())?;
    r.json().ok()
}

/// The leader's index in `agents`, and one follower's.
fn roles(agents: &[Member]) -> (usize, usize) {
    let leader: String = get_json(&agents[0].url, "/v1/status/leader")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap();
    let is_leader = |a: &Member| {
        let v = get_json(&a.url, "/v1/agent/self").unwrap();
        v["Stats"]["raft"]["state"] == "Leader" || v["Stats"]["consul"]["leader"] == "true"
    };
    let l = agents
        .iter()
        .position(is_leader)
        .unwrap_or_else(|| panic!("no leader of {leader}"));
    (l, (l + 1) % agents.len())
}

fn put(url: &str, path: &str, body: &str) -> Value {
    let r = client()
        .put(format!("{url}{path}"))
        .body(body.to_string())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    r.json().unwrap_or(Value::Null)
}

/// Everything the test compares, as a server answers it (`?stale`: that
/// server's own state).
fn state_of(url: &str) -> Value {
    let kv = get_json(url, "/v1/kv/?recurse&stale").unwrap_or(json!([]));
    let sessions = get_json(url, "/v1/session/list?stale").unwrap_or(Value::Null);
    let mut services = Vec::new();
    for n in ["ext-1", "ext-2"] {
        let v = get_json(url, &format!("/v1/catalog/node/{n}?stale")).unwrap_or(Value::Null);
        services.push(json!({"node": v["Node"], "services": v["Services"]}));
    }
    let checks = get_json(url, "/v1/health/node/ext-1?stale").unwrap_or(Value::Null);
    json!({"kv": kv, "sessions": sessions, "catalog": services, "checks": checks})
}

fn populate(url: &str) {
    for i in 0..40 {
        put(
            url,
            &format!("/v1/kv/app/k{i:02}?flags={i}"),
            &format!("value {i}"),
        );
    }
    put(url, "/v1/kv/app/gone", "x");
    client()
        .delete(format!("{url}/v1/kv/app/gone"))
        .send()
        .unwrap();
    for (node, addr) in [("ext-1", "10.0.0.1"), ("ext-2", "10.0.0.2")] {
        let reg = json!({
            "Node": node, "Address": addr,
            "Service": {"ID": format!("db-{node}"), "Service": "db", "Port": 5432, "Tags": ["primary"]},
            "Check": {"CheckID": "db-alive", "Name": "db alive", "Status": "passing", "ServiceID": format!("db-{node}")}
        });
        put(url, "/v1/catalog/register", &reg.to_string());
    }
    let s = put(
        url,
        "/v1/session/create",
        r#"{"Node":"ext-1","Checks":[],"Name":"owner"}"#,
    );
    let id = s["ID"].as_str().unwrap().to_string();
    let r = put(url, &format!("/v1/kv/app/lock?acquire={id}"), "held");
    assert_eq!(r, json!(true));
}

fn cli(a: &Agent, args: &[&str]) -> (i32, String) {
    let o = run_cli(&a.addr, args, None);
    (o.code, format!("{}{}", o.stdout, o.stderr))
}

/// Save on cluster A (through a follower, and `-stale` on another), refuse
/// bad files on cluster B, then restore on B (through a follower): every
/// server of B holds A's state with A's indexes, a parked query woke, and
/// new writes are stamped above every restored index.
#[test]
fn save_on_one_cluster_restore_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let a = cluster(&da, "a");
    let (al, af) = roles(&a);
    populate(&a[al].url);
    // Follower reads see everything before the save.
    let want = state_of(&a[al].url);
    // What is compared is all there, with its indexes.
    assert_eq!(want["kv"].as_array().map(Vec::len), Some(41), "{want}");
    assert!(want["kv"][40]["Session"].is_string(), "{want}");
    assert_eq!(want["sessions"].as_array().map(Vec::len), Some(1), "{want}");
    assert!(want["catalog"][1]["services"]["db-ext-2"]["ModifyIndex"].as_u64() > Some(40));
    assert_eq!(want["checks"][0]["Status"], "passing", "{want}");
    wait_for("A's followers to catch up", Duration::from_secs(10), || {
        a.iter().all(|x| state_of(&x.url) == want).then_some(())
    });
    let file = dir.path().join("backup.snap");
    let f = file.to_str().unwrap();
    let (code, out) = cli(&a[af], &["snapshot", "save", f]);
    assert_eq!(code, 0, "{out}");
    let index: u64 = out
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    let leader_index = client()
        .get(format!("{}/v1/kv/app/?recurse", a[al].url))
        .send()
        .unwrap()
        .headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(
        index >= leader_index,
        "snapshot index {index} < {leader_index}"
    );
    // -stale on a follower answers from the follower itself.
    let stale = dir.path().join("stale.snap");
    let (code, out) = cli(
        &a[(af + 1) % 3],
        &["snapshot", "save", "-stale", stale.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&a[al], &["snapshot", "inspect", f]);
    assert_eq!(code, 0, "{out}");
    for line in [
        " KVS ",
        " Tombstone ",
        " Node ",
        " Service ",
        " Check ",
        " Session ",
        " Index ",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(out.contains(&format!(" Index        {index}\n")), "{out}");
    let kvs: Vec<&str> = out.lines().filter(|l| l.starts_with(" KVS ")).collect();
    assert!(kvs[0].split_whitespace().nth(1) == Some("41"), "{out}");
    drop(a);

    let b = cluster(&db, "b");
    let (bl, bf) = roles(&b);
    put(&b[bl].url, "/v1/kv/b-only", "before");
    let before = state_of(&b[bl].url);
    let bytes = std::fs::read(&file).unwrap();
    refuses_bad_files(&b, bf, &bytes, dir.path(), &before);

    // A query parked on B across the restore answers when it happens.
    let b_only = client()
        .get(format!("{}/v1/kv/b-only", b[bl].url))
        .send()
        .unwrap();
    let parked_at = b_only.headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .to_string();
    let parked_url = format!("{}/v1/kv/b-only?index={parked_at}&wait=60s", b[bl].url);
    let parked = std::thread::spawn(move || {
        let t = Instant::now();
        let r = client().get(parked_url).send().unwrap();
        (r.status().as_u16(), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, out) = cli(&b[bf], &["snapshot", "restore", f]);
    assert_eq!((code, out.trim()), (0, "Restored snapshot"));
    let (status, waited) = parked.join().unwrap();
    assert_eq!(status, 404, "b-only is gone after the restore");
    assert!(
        waited < Duration::from_secs(30),
        "parked query woke: {waited:?}"
    );

    for x in &b {
        wait_for(
            "B's servers to hold A's state",
            Duration::from_secs(15),
            || (state_of(&x.url) == want).then_some(()),
        );
    }
    // New writes are stamped above everything restored, and wake a query
    // parked at the restored index.
    let url = b[bl].url.clone();
    let parked_url = format!("{url}/v1/kv/app/?recurse&index={index}&wait=30s");
    let parked = std::thread::spawn(move || client().get(parked_url).send().unwrap().status());
    std::thread::sleep(Duration::from_millis(300));
    put(&url, "/v1/kv/app/after", "new");
    assert_eq!(parked.join().unwrap(), 200);
    let after = get_json(&url, "/v1/kv/app/after").unwrap();
    let created = after[0]["CreateIndex"].as_u64().unwrap();
    assert!(
        created > index,
        "new write at {created}, restored up to {index}"
    );
    // A server restarted (kill -9) holds the restored state from its disk,
    // and the next write is still above the restored indexes.
    let mut b = b;
    let f_data = b[bf].data_dir.clone().unwrap();
    b[bf].agent.kill9();
    let args = b[bf].args.clone();
    b[bf].agent = start(&args, &f_data);
    let mut want = want;
    let kv = want["kv"].as_array_mut().unwrap();
    kv.push(after[0].clone());
    kv.sort_by_key(|e| e["Key"].as_str().unwrap().to_string());
    wait_for(
        "the restarted server to hold the state",
        Duration::from_secs(20),
        || (state_of(&b[bf].url) == want).then_some(()),
    );
    put(&b[bl].url, "/v1/kv/app/later", "x");
    let later = get_json(&b[bl].url, "/v1/kv/app/later").unwrap();
    assert!(later[0]["ModifyIndex"].as_u64().unwrap() > created);
    for x in &b {
        assert!(!x.log_text().contains("panicked"), "{}", x.log_text());
    }
}

/// Truncated, flipped and foreign files are refused with a clear error
/// and change nothing on any server.
fn refuses_bad_files(b: &[Member], via: usize, good: &[u8], dir: &Path, before: &Value) {
    let mut flipped = good.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", good[..good.len() - 100].to_vec(), "truncated"),
        ("flipped", flipped, "corrupt"),
        ("empty", Vec::new(), "not a tribune snapshot"),
        (
            "foreign",
            b"{\"not\": \"a snapshot\"}".to_vec(),
            "not a tribune snapshot",
        ),
    ];
    for (name, bytes, why) in cases {
        let p = dir.join(format!("{name}.snap"));
        std::fs::write(&p, &bytes).unwrap();
        let (code, out) = cli(&b[via], &["snapshot", "restore", p.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(
            out.starts_with("Error restoring snapshot: Unexpected response code: 400")
                && out.contains(why),
            "{name}: {out}"
        );
    }
    let r = client()
        .put(format!("{}/v1/snapshot", b[via].url))
        .body(good[..good.len() / 3].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    for x in b {
        assert_eq!(&state_of(&x.url), before, "{}", x.url);
    }
    // The method table: only GET and PUT.
    let r = client()
        .delete(format!("{}/v1/snapshot", b[via].url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
}
