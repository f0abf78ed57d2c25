//! WAN network coordinates on real processes: three datacenters of one
//! server each, federated over the WAN pool on 127.0.0.1. Loopback has no
//! latency and this machine no `sch_netem`, so dc2's and dc3's servers
//! hold back their outgoing WAN gossip (`TRIBUNE_TEST_WAN_DELAY_MS`: 40 ms
//! and 5 ms). The real chain runs: probe round trips -> each server's WAN
//! Vivaldi client -> the coordinate exchange over server RPC -> the
//! datacenters sorted by distance. dc3 is the nearer one on purpose: the
//! order by distance (`dc1, dc3, dc2`) is not the order by name.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{bin, client, free_ports, wait_until, Agent};

const DELAY: &str = "TRIBUNE_TEST_WAN_DELAY_MS";

/// Server `s1` of `dc` on `ports` (rpc, lan, wan), its outgoing WAN
/// packets held back `delay_ms`, retry-joining the WAN pool at `wan_join`.
fn server(dir: &std::path::Path, dc: &str, ports: &[u16], delay_ms: u64, wan_join: &str) -> Agent {
    let data = dir.join(dc);
    let perf = dir.join("perf.json");
    std::fs::write(&perf, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    let mut cmd = Command::new(bin("tribune"));
    cmd.args(["agent", "-server", "-bootstrap-expect", "1", "-node", "s1"])
        .args(["-datacenter", dc, "-http-port", "0", "-dns-port", "-1"])
        .args(["-server-port", &ports[0].to_string()])
        .args(["-serf-lan-port", &ports[1].to_string()])
        .args(["-serf-wan-port", &ports[2].to_string()])
        .args(["-retry-interval-wan", "1s", "-retry-join-wan", wan_join])
        .arg("-data-dir")
        .arg(&data)
        .arg("-config-file")
        .arg(&perf)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove(DELAY);
    if delay_ms > 0 {
        cmd.env(DELAY, delay_ms.to_string());
    }
    Agent::start_cmd(cmd, Some(data))
}

fn get(a: &Agent, path: &str) -> Value {
    let r = client().get(format!("{}{path}", a.url)).send().unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().unwrap()
}

/// `tribune rtt -wan a b` on `at`: the estimate in ms (`None` while a
/// coordinate is missing).
fn rtt(at: &Agent, a: &str, b: &str) -> Option<f64> {
    let out = at.cli(&["rtt", "-wan", a, b], None);
    if out.code != 0 {
        assert!(
            out.stderr.contains("Could not find a coordinate"),
            "{}",
            out.stderr
        );
        return None;
    }
    let ms = out
        .stdout
        .strip_prefix(&format!("Estimated {a} <-> {b} rtt: "))
        .and_then(|r| r.strip_suffix(" ms (using WAN coordinates)\n"))
        .filter(|n| n.split_once('.').is_some_and(|(_, d)| d.len() == 3))
        .unwrap_or_else(|| panic!("{:?}", out.stdout))
        .parse()
        .unwrap();
    Some(ms)
}

#[test]
fn datacenters_sorted_by_wan_coordinates() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(9);
    let dc1_wan = format!("127.0.0.1:{}", p[2]);
    let dc1 = server(
        dir.path(),
        "dc1",
        &p[0..3],
        0,
        &format!("127.0.0.1:{}", p[5]),
    );
    let dc2 = server(dir.path(), "dc2", &p[3..6], 40, &dc1_wan);
    let dc3 = server(dir.path(), "dc3", &p[6..9], 5, &dc1_wan);
    for a in [&dc1, &dc2, &dc3] {
        a.wait_leader();
    }
    // The knob says so, once, where it is set; elsewhere it is silent.
    let warned = |a: &Agent, ms: &str| {
        a.log_text()
            .lines()
            .filter(|l| l.contains(&format!("{DELAY}={ms}:")) && l.contains("[WARN]"))
            .count()
    };
    assert_eq!(warned(&dc2, "40"), 1, "{}", dc2.log_text());
    assert_eq!(warned(&dc3, "5"), 1, "{}", dc3.log_text());
    assert!(!dc1.log_text().contains(DELAY), "{}", dc1.log_text());

    // Services only in the remote datacenters, for the failover below.
    for (a, port) in [(&dc2, 8002), (&dc3, 8003)] {
        let body = json!({"Name": "web", "Port": port}).to_string();
        let r = client()
            .put(format!("{}/v1/agent/service/register", a.url))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Converged: the estimates near what was added (dc2 40 ms, dc3 5 ms,
    // each plus loopback and processing) on four polls in a row (early
    // Vivaldi estimates swing), dc1 sorting the nearer dc3 before dc2 (by
    // name it would not), dc3 sorting dc1 (5 ms) before dc2 (45 ms). On
    // this machine that takes about 10 s (a probe a second, two peers).
    let order = |a: &Agent| get(a, "/v1/catalog/datacenters");
    let mut seen = String::new();
    let mut streak = 0;
    let converged = wait_until(Duration::from_secs(45), || {
        // Probes come once a second; no need to ask more often.
        std::thread::sleep(Duration::from_millis(450));
        let (o1, o3) = (order(&dc1), order(&dc3));
        let to_dc2 = rtt(&dc1, "s1.dc1", "s1.dc2");
        let to_dc3 = rtt(&dc1, "s1.dc1", "s1.dc3");
        seen = format!("dc1 {o1} dc3 {o3}, dc1->dc2 {to_dc2:?} ms, dc1->dc3 {to_dc3:?} ms");
        eprintln!("{:?}: {seen}", started.elapsed());
        let good = match (to_dc2, to_dc3) {
            (Some(d2), Some(d3)) => {
                (25.0..100.0).contains(&d2) && (1.0..20.0).contains(&d3) && d2 > 2.0 * d3
            }
            _ => false,
        };
        let good = good && o1 == json!(["dc1", "dc3", "dc2"]) && o3 == json!(["dc3", "dc1", "dc2"]);
        streak = if good { streak + 1 } else { 0 };
        streak >= 4
    });
    assert!(
        converged,
        "{seen} after {:?}; dc1 coordinates {}",
        started.elapsed(),
        get(&dc1, "/v1/coordinate/datacenters")
    );
    assert_eq!(order(&dc2)[0], "dc2");
    eprintln!("converged after {:?}", started.elapsed());

    // Every datacenter with its server's 8-dimensional WAN coordinate, by name.
    let v = get(&dc1, "/v1/coordinate/datacenters");
    let dcs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Datacenter"].as_str().unwrap())
        .collect();
    assert_eq!(dcs, ["dc1", "dc2", "dc3"], "{v}");
    for (d, name) in v
        .as_array()
        .unwrap()
        .iter()
        .zip(["s1.dc1", "s1.dc2", "s1.dc3"])
    {
        assert_eq!(d["AreaID"], "wan", "{v}");
        let c = &d["Coordinates"];
        assert_eq!(c.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(c[0]["Node"], name, "{v}");
        assert_eq!(c[0]["Segment"], "", "{v}");
        assert_eq!(c[0]["Coord"]["Vec"].as_array().unwrap().len(), 8, "{v}");
        assert!(
            c[0]["Coord"]["Error"].as_f64().unwrap() < 1.5,
            "still the initial error: {v}"
        );
    }

    // One name: the other is the agent's own WAN name; dc3 sees dc1 too.
    let out = dc3.cli(&["rtt", "-wan", "s1.dc1"], None);
    assert!(
        out.stdout.starts_with("Estimated s1.dc1 <-> s1.dc3 rtt: "),
        "{} {}",
        out.stdout,
        out.stderr
    );

    // A prepared query in dc1 (no web there) fails over to the nearest
    // datacenter, dc3, not dc2.
    let r = client()
        .post(format!("{}/v1/query", dc1.url))
        .body(r#"{"Name": "web-near", "Service": {"Service": "web", "Failover": {"NearestN": 1}}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let mut last = Value::Null;
    let answered = wait_until(Duration::from_secs(15), || {
        last = get(&dc1, "/v1/query/web-near/execute");
        last["Nodes"].as_array().is_some_and(|n| !n.is_empty())
    });
    assert!(answered, "{last}");
    assert_eq!(last["Datacenter"], "dc3", "{last}");
    assert_eq!(last["Failovers"], 1, "{last}");
    assert_eq!(last["Nodes"][0]["Service"]["Port"], 8003, "{last}");
    eprintln!("done after {:?}", started.elapsed());
}

/// The knob is parsed strictly: anything but 0..=1000 ms refuses to start.
#[test]
fn bad_delay_refuses_to_start() {
    for bad in ["abc", "1001", "-5", "5ms", " 5", ""] {
        let mut child = Command::new(bin("tribune"))
            .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
            .env(DELAY, bad)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let status = status.unwrap_or_else(|| panic!("{bad:?}: still running\n{err}"));
        assert!(!status.success(), "{bad:?}");
        assert!(
            err.contains(
                "TRIBUNE_TEST_WAN_DELAY_MS must be a whole number of milliseconds from 0 to 1000"
            ),
            "{bad:?}: {err}"
        );
    }
}
