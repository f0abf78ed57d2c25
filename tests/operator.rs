//! Operator commands on a real 3-server cluster: `operator raft
//! transfer-leader` moves leadership (to a named server or the most
//! caught-up one); autopilot's configuration (GET/PUT with `?cas`, the
//! CLI's get-config/set-config) and its health and state, a stopped
//! server reported unhealthy and healthy again once it is back.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tribune_tests::servers::{start, three_servers, Member};
use tribune_tests::{client, run_cli, wait_for};

/// A 3-server cluster (raft_multiplier 1) in `dir`, with a leader all
/// agree on and writes going through.
fn cluster(dir: &Path) -> Vec<Member> {
    let members = three_servers(dir, "s");
    wait_for("one leader all agree on", Duration::from_secs(40), || {
        let l = leader_of(&members)?;
        let writes = put(&members[0].agent.url, "probe", "x") == Some(true);
        (writes).then_some(l)
    });
    members
}

fn get_json(url: &str, path: &str) -> Option<Value> {
    let r = client().get(format!("{url}{path}")).send().ok()?;
    r.status().is_success().then_some(())?;
    r.json().ok()
}

fn put(url: &str, key: &str, v: &str) -> Option<bool> {
    let r = client()
        .put(format!("{url}/v1/kv/{key}"))
        .body(v.to_string())
        .send()
        .ok()?;
    r.json().ok()
}

/// The index of the server every live member names as leader.
fn leader_of(members: &[Member]) -> Option<usize> {
    let named: Vec<String> = members
        .iter()
        .map(|m| {
            get_json(&m.agent.url, "/v1/status/leader")?
                .as_str()
                .map(String::from)
        })
        .collect::<Option<_>>()?;
    (named.iter().all(|l| *l == named[0]) && !named[0].is_empty()).then_some(())?;
    members.iter().position(|m| m.rpc == named[0])
}

/// The node ID of `m` (what `-id` takes).
fn node_id(m: &Member) -> String {
    get_json(&m.agent.url, "/v1/agent/self").unwrap()["Config"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn transfer_leader_moves_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(dir.path());
    let first = leader_of(&members).unwrap();
    let target = (first + 1) % 3;
    let other = (first + 2) % 3;
    // Asked on a follower (forwarded to the leader), to a named server.
    let out = run_cli(
        &members[other].agent.addr,
        &[
            "operator",
            "raft",
            "transfer-leader",
            "-id",
            &node_id(&members[target]),
        ],
        None,
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Success\n"),
        "{}",
        out.stderr
    );
    let now = wait_for(
        "every server names the target",
        Duration::from_secs(10),
        || leader_of(&members),
    );
    assert_eq!(now, target);
    assert_eq!(put(&members[other].agent.url, "after/1", "v"), Some(true));
    let cfg = get_json(&members[first].agent.url, "/v1/operator/raft/configuration").unwrap();
    let leaders: Vec<&Value> = cfg["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Leader"] == true)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0]["Address"], members[target].rpc.as_str());

    // No -id: the most caught-up other server takes over.
    let out = run_cli(
        &members[first].agent.addr,
        &["operator", "raft", "transfer-leader"],
        None,
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let next = wait_for("a new leader", Duration::from_secs(10), || {
        leader_of(&members).filter(|l| *l != target)
    });
    assert_eq!(put(&members[target].agent.url, "after/2", "v"), Some(true));

    // To itself, or to no such server: refused, the leader stays.
    let r = client()
        .post(format!(
            "{}/v1/operator/raft/transfer-leader?id={}",
            members[next].agent.url,
            node_id(&members[next])
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("itself"));
    let out = run_cli(
        &members[target].agent.addr,
        &["operator", "raft", "transfer-leader", "-id", "nope"],
        None,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Error transfering leadership"),
        "{}",
        out.stderr
    );
    assert_eq!(leader_of(&members), Some(next));
    // Other methods change nothing.
    let r = client()
        .get(format!(
            "{}/v1/operator/raft/transfer-leader",
            members[next].agent.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(leader_of(&members), Some(next));

    // Two at once on the leader: one moves leadership, the other is
    // refused while it runs (a transfer waits out the lease, ~650 ms here).
    let url = format!(
        "{}/v1/operator/raft/transfer-leader",
        members[next].agent.url
    );
    let (a, b) = std::thread::scope(|sc| {
        let one = sc.spawn(|| client().post(&url).send().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let two = sc.spawn(|| client().post(&url).send().unwrap());
        (one.join().unwrap(), two.join().unwrap())
    });
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 400);
    assert!(b.text().unwrap().contains("in progress"));
    wait_for(
        "a leader other than the last",
        Duration::from_secs(10),
        || leader_of(&members).filter(|l| *l != next),
    );
}

fn health(url: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{url}/v1/operator/autopilot/health"))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn autopilot_configuration_health_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(dir.path());
    let url = members[0].agent.url.clone();
    let conf = || get_json(&url, "/v1/operator/autopilot/configuration").unwrap();
    // Consul's defaults until written.
    let c = conf();
    assert_eq!(c["CleanupDeadServers"], true, "{c}");
    assert_eq!(c["LastContactThreshold"], "200ms");
    assert_eq!(c["MaxTrailingLogs"], 250);
    assert_eq!(c["ServerStabilizationTime"], "10s");
    let out = run_cli(
        &members[1].agent.addr,
        &["operator", "autopilot", "get-config"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n"
        ),
        "{}",
        out.stdout
    );
    // set-config reads, changes what it is given, writes back with ?cas.
    let out = run_cli(
        &members[2].agent.addr,
        &[
            "operator",
            "autopilot",
            "set-config",
            "-max-trailing-logs",
            "100",
            "-last-contact-threshold",
            "300ms",
            "-cleanup-dead-servers=false",
        ],
        None,
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Configuration updated!\n"),
        "{}",
        out.stderr
    );
    let c = conf();
    assert_eq!(c["MaxTrailingLogs"], 100, "{c}");
    assert_eq!(c["LastContactThreshold"], "300ms");
    assert_eq!(c["CleanupDeadServers"], false);
    assert_eq!(c["ServerStabilizationTime"], "10s");
    let index = c["ModifyIndex"].as_u64().unwrap();
    assert!(index > 0 && c["CreateIndex"] == index, "{c}");
    // Replicated: every server holds it.
    for m in &members {
        wait_for(
            "the configuration on every server",
            Duration::from_secs(5),
            || {
                let v = get_json(&m.agent.url, "/v1/operator/autopilot/configuration?stale")?;
                (v["MaxTrailingLogs"] == 100).then_some(())
            },
        );
    }
    // ?cas: a stale index is refused (false), the current one accepted.
    let body = |n: u64| {
        format!(
            r#"{{"CleanupDeadServers":true,"LastContactThreshold":"250ms","MaxTrailingLogs":{n},"ServerStabilizationTime":"10s"}}"#
        )
    };
    let cas = |i: u64, n: u64| -> String {
        client()
            .put(format!("{url}/v1/operator/autopilot/configuration?cas={i}"))
            .body(body(n))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(cas(index - 1, 7), "false");
    assert_eq!(conf()["MaxTrailingLogs"], 100);
    assert_eq!(cas(index, 200), "true");
    let c = conf();
    assert_eq!(
        (c["MaxTrailingLogs"].as_u64(), c["CreateIndex"].as_u64()),
        (Some(200), Some(index))
    );
    // A body of the wrong shape changes nothing.
    let r = client()
        .put(format!("{url}/v1/operator/autopilot/configuration"))
        .body(r#"{"MaxTrailingLogs":"lots"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(conf()["MaxTrailingLogs"], 200);

    // Health: three healthy voters, one failure tolerated.
    let h = wait_for("a healthy cluster", Duration::from_secs(15), || {
        let (code, h) = health(&url);
        (code == 200 && h["Healthy"] == true).then_some(h)
    });
    assert_eq!(h["FailureTolerance"], 1, "{h}");
    let servers = h["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    assert!(servers
        .iter()
        .all(|s| s["SerfStatus"] == "alive" && s["Voter"] == true));
    // ?stale on a follower still answers the leader's view.
    let follower = (leader_of(&members).unwrap() + 1) % 3;
    let stale = get_json(
        &members[follower].agent.url,
        "/v1/operator/autopilot/health?stale",
    )
    .unwrap();
    let leaders: Vec<&Value> = stale["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Leader"] == true)
        .collect();
    assert_eq!(leaders.len(), 1, "{stale}");
    assert_ne!(
        leaders[0]["Address"],
        members[follower].rpc.as_str(),
        "{stale}"
    );
    let state = get_json(&url, "/v1/operator/autopilot/state").unwrap();
    assert_eq!(state["Voters"].as_array().unwrap().len(), 3, "{state}");
    let leader_id = state["Leader"].as_str().unwrap();
    assert_eq!(state["Servers"][leader_id]["Status"], "leader");

    // A follower stops: unhealthy (429), no failure tolerated.
    let leader = leader_of(&members).unwrap();
    let victim = (leader + 1) % 3;
    let watcher = (leader + 2) % 3;
    let victim_id = node_id(&members[victim]);
    members[victim].agent.kill9();
    let wurl = members[watcher].agent.url.clone();
    let h = wait_for(
        "the stopped server unhealthy",
        Duration::from_secs(10),
        || {
            let (code, h) = health(&wurl);
            (code == 429).then_some(h)
        },
    );
    assert_eq!(h["Healthy"], false, "{h}");
    assert_eq!(h["FailureTolerance"], 0, "{h}");
    let bad: Vec<&Value> = h["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Healthy"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{h}");
    assert_eq!(bad[0]["ID"], victim_id.as_str());
    let out = run_cli(
        &members[watcher].agent.addr,
        &["operator", "autopilot", "state"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("Healthy:                      false\n"),
        "{}",
        out.stdout
    );

    // It comes back: healthy again.
    let (args, data) = (members[victim].args.clone(), members[victim].data.clone());
    members[victim].agent = start(&args, &data);
    let h = wait_for("healthy again", Duration::from_secs(30), || {
        let (code, h) = health(&wurl);
        (code == 200).then_some(h)
    });
    assert_eq!(h["FailureTolerance"], 1, "{h}");
    let out = run_cli(
        &members[victim].agent.addr,
        &["operator", "autopilot", "state", "-format", "json"],
        None,
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Servers"][victim_id.as_str()]["Healthy"], true, "{v}");
}
