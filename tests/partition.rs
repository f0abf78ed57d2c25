//! A network partition between real hosts: three servers, each in its own
//! network namespace (`ip netns`) on a private bridge, with the default
//! ports on their own addresses. One follower is cut off from the other two
//! (blackhole routes on both sides; the test host still reaches everyone).
//! The minority cannot commit; the majority can; after healing every server
//! holds the same data. Needs root (CI runs as root) and iproute2.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tribune_tests::{bin, client, spawn_logged, wait_for, Agent};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The bridge, namespaces and veths of one test run; removed on drop.
struct Net {
    tag: String,
    subnet: String,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let net = Net {
            tag: format!("tb{id}"),
            subnet: format!("10.231.{}", id % 250),
        };
        let br = format!("{}br", net.tag);
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}.254/24", net.subnet), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for i in 1..=3 {
            let ns = net.ns(i);
            let (host, peer) = (format!("{}h{i}", net.tag), format!("{}p{i}", net.tag));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &host, "master", &br]);
            ip(&["link", "set", &host, "up"]);
            ip(&["link", "set", &peer, "netns", &ns]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                &peer,
            ]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Cut `i` off from the other servers (both directions).
    fn isolate(&self, i: usize, on: bool) {
        let verb = if on { "add" } else { "del" };
        for j in (1..=3).filter(|j| *j != i) {
            ip(&[
                "-n",
                &self.ns(i),
                "route",
                verb,
                "blackhole",
                &format!("{}/32", self.addr(j)),
            ]);
            ip(&[
                "-n",
                &self.ns(j),
                "route",
                verb,
                "blackhole",
                &format!("{}/32", self.addr(i)),
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=3 {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{}h{i}", self.tag)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.tag)])
            .output();
    }
}

fn start(net: &Net, dir: &std::path::Path, i: usize) -> Agent {
    let data = dir.join(format!("s{i}"));
    let perf = dir.join("perf.json");
    std::fs::write(&perf, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    let me = net.addr(i);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.ns(i)])
        .arg(bin("tribune"))
        .args(["agent", "-server", "-bootstrap-expect", "3", "-node"])
        .arg(format!("s{i}"))
        .arg("-data-dir")
        .arg(&data)
        .args([
            "-bind",
            &me,
            "-client",
            &me,
            "-dns-port",
            "-1",
            "-retry-interval",
            "1s",
        ])
        .arg("-config-file")
        .arg(&perf);
    for j in 1..=3 {
        cmd.args(["-retry-join", &net.addr(j)]);
    }
    cmd.env_remove("CONSUL_HTTP_ADDR");
    let (child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
    Agent {
        child,
        url: format!("http://{addr}"),
        addr,
        log,
        data_dir: Some(data),
    }
}

fn leader(a: &Agent) -> Option<String> {
    client()
        .get(format!("{}/v1/status/leader", a.url))
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?
        .json::<String>()
        .ok()
        .filter(|l| !l.is_empty())
}

fn put(a: &Agent, key: &str, v: &str) -> Option<String> {
    put_within(a, key, v, 12)
}

fn put_within(a: &Agent, key: &str, v: &str, secs: u64) -> Option<String> {
    let r = client()
        .put(format!("{}/v1/kv/{key}", a.url))
        .timeout(Duration::from_secs(secs))
        .body(v.to_string())
        .send()
        .ok()?;
    Some(format!(
        "{} {}",
        r.status().as_u16(),
        r.text().unwrap_or_default()
    ))
}

fn stale(a: &Agent, key: &str) -> Option<String> {
    let r = client()
        .get(format!("{}/v1/kv/{key}?raw&stale", a.url))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    (r.status() == 200).then(|| r.text().unwrap())
}

#[test]
fn minority_cannot_commit_and_healing_converges() {
    let net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Agent> = (1..=3).map(|i| start(&net, dir.path(), i)).collect();
    let lead = wait_for("a leader all agree on", Duration::from_secs(30), || {
        let views: Vec<Option<String>> = servers.iter().map(leader).collect();
        let l = views[0].clone()?;
        views
            .iter()
            .all(|v| v.as_deref() == Some(l.as_str()))
            .then_some(l)
    });
    let li = (1..=3)
        .find(|i| lead == format!("{}:8300", net.addr(*i)))
        .expect("leader is one of the servers");
    assert_eq!(
        put(&servers[li - 1], "p/before", "1").as_deref(),
        Some("200 true")
    );

    // Cut off a follower.
    let f = if li == 1 { 2 } else { 1 };
    net.isolate(f, true);
    // The minority cannot commit: its write fails (no leader reachable).
    // It must say so itself (the client waits longer than the server's
    // forwarding timeout): a write reported as failed must never appear.
    let r = put_within(&servers[f - 1], "p/minority", "lost", 30);
    let r = r.expect("the minority answered its write");
    assert!(!r.starts_with("200"), "the minority committed a write: {r}");
    // The majority still commits.
    let majority: Vec<usize> = (1..=3).filter(|i| *i != f).collect();
    wait_for("the majority to commit", Duration::from_secs(15), || {
        (put(&servers[majority[0] - 1], "p/majority", "2").as_deref() == Some("200 true"))
            .then_some(())
    });
    assert_eq!(
        stale(&servers[f - 1], "p/majority"),
        None,
        "partition leaked"
    );

    // Heal: every server agrees on the leader and the data.
    net.isolate(f, false);
    wait_for("one leader after healing", Duration::from_secs(30), || {
        let views: Vec<Option<String>> = servers.iter().map(leader).collect();
        let l = views[0].clone()?;
        views
            .iter()
            .all(|v| v.as_deref() == Some(l.as_str()))
            .then_some(())
    });
    for s in &servers {
        wait_for(
            "every server to hold the majority's write",
            Duration::from_secs(20),
            || (stale(s, "p/majority").as_deref() == Some("2")).then_some(()),
        );
        assert_eq!(stale(s, "p/before").as_deref(), Some("1"));
        assert_eq!(
            stale(s, "p/minority"),
            None,
            "the minority's write appeared"
        );
    }
    // Same raft log position everywhere once idle.
    wait_for("equal applied indexes", Duration::from_secs(10), || {
        let idx: Vec<String> = servers
            .iter()
            .map(|s| {
                let v: Value = client()
                    .get(format!("{}/v1/agent/self", s.url))
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                Some(v["Stats"]["raft"]["applied_index"].as_str()?.to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        idx.iter().all(|i| *i == idx[0]).then_some(())
    });
}
