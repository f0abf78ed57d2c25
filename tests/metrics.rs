//! Metrics: `/v1/agent/metrics` in Consul's JSON shape and as Prometheus
//! text (parsed by the real `prometheus_client` parser), the `telemetry`
//! config block, and tribune-template's `-metrics-addr`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tribune_tests::{client, root, run_cli, wait_for, Agent};

/// Parse `url`'s Prometheus text with prometheus_client; family -> data.
pub fn prom(url: &str) -> Value {
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(root().join("tests/clients/prom_parse.py"))
        .arg(url)
        .output()
        .expect("python3 must be installed (test.sh installs it)");
    assert!(
        out.status.success(),
        "prometheus_client could not parse {url} (is it installed? test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output is JSON")
}

/// A family's sample value: `suffix` picks `_count`, `_sum` or "" (the
/// value itself), `labels` must all match.
pub fn sample(fams: &Value, family: &str, suffix: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want = format!("{family}{suffix}");
    fams.get(family)?["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == want.as_str() && labels.iter().all(|(k, v)| s[1][*k] == *v))
        .and_then(|s| s[2].as_f64())
}

fn agent_with(dir: &Path, telemetry: &str) -> Agent {
    let f = dir.join("telemetry.json");
    std::fs::write(&f, format!("{{\"telemetry\": {telemetry}}}")).unwrap();
    Agent::dev(&["-config-file", f.to_str().unwrap()])
}

/// An agent with Prometheus output kept `retention`, and its metrics URL.
fn prometheus_agent(retention: &str) -> (tempfile::TempDir, Agent, String) {
    let d = tempfile::tempdir().unwrap();
    let a = agent_with(
        d.path(),
        &format!(r#"{{"prometheus_retention_time": "{retention}", "disable_hostname": true}}"#),
    );
    let url = format!("{}/v1/agent/metrics?format=prometheus", a.url);
    (d, a, url)
}

fn put(a: &Agent, key: &str, v: &str) {
    let r = client()
        .put(format!("{}/v1/kv/{key}", a.url))
        .body(v.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Prometheus text: parsed by prometheus_client; the HTTP timer of
/// `PUT /v1/kv/...` counts each PUT.
#[test]
fn prometheus_text_parses_and_counters_move() {
    let (_d, a, url) = prometheus_agent("60s");
    put(&a, "m/a", "1");
    let before = prom(&url);
    let n0 = sample(&before, "consul_http_PUT_v1_kv__", "_count", &[]).expect("PUT timer");
    assert_eq!(before["consul_http_PUT_v1_kv__"]["type"], "summary");
    put(&a, "m/b", "2");
    put(&a, "m/c", "3");
    let after = prom(&url);
    let n1 = sample(&after, "consul_http_PUT_v1_kv__", "_count", &[]).unwrap();
    assert_eq!(n1, n0 + 2.0, "PUT count did not move by the two PUTs");
    // Gauges sampled each second, without the host name (disable_hostname).
    wait_for("runtime gauges", Duration::from_secs(10), || {
        let f = prom(&url);
        let rss = sample(&f, "consul_runtime_alloc_bytes", "", &[])?;
        let tasks = sample(&f, "consul_runtime_num_goroutines", "", &[])?;
        (rss > 1e6 && tasks >= 1.0).then_some(())
    });
}

/// A series idle for its retention time leaves the Prometheus output, and
/// the route's next request brings it back (a kept handle would record
/// into the dropped series for good).
#[test]
fn idle_series_comes_back() {
    let (_d, a, url) = prometheus_agent("2s");
    let fam = "consul_http_PUT_v1_kv__";
    put(&a, "idle/a", "1");
    assert!(
        sample(&prom(&url), fam, "_count", &[]).is_some(),
        "PUT timer"
    );
    wait_for(
        "the idle PUT timer to expire",
        Duration::from_secs(20),
        || {
            sample(&prom(&url), fam, "_count", &[])
                .is_none()
                .then_some(())
        },
    );
    put(&a, "idle/b", "2");
    let n = sample(&prom(&url), fam, "_count", &[]);
    assert_eq!(
        n,
        Some(1.0),
        "the PUT timer did not come back after its idle time"
    );
}

/// Without a positive retention Prometheus output is refused as Consul
/// refuses it; the JSON has Consul's MetricsSummary shape; other methods 405.
#[test]
fn json_shape_and_prometheus_off() {
    let a = Agent::dev(&[]);
    let c = client();
    let r = c
        .get(format!("{}/v1/agent/metrics?format=prometheus", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.text().unwrap(),
        "Prometheus is not enabled since its retention time is not positive"
    );
    put(&a, "j/a", "1");
    let v: Value = wait_for(
        "the PUT's sample and a gauge",
        Duration::from_secs(25),
        || {
            let v: Value = c
                .get(format!("{}/v1/agent/metrics", a.url))
                .send()
                .ok()?
                .json()
                .ok()?;
            let has_put = v["Samples"]
                .as_array()?
                .iter()
                .any(|s| s["Name"] == "consul.http.PUT.v1.kv._");
            (has_put && !v["Gauges"].as_array()?.is_empty()).then_some(v)
        },
    );
    let keys = |o: &Value| {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        ["Counters", "Gauges", "Points", "Samples", "Timestamp"]
    );
    let ts = v["Timestamp"].as_str().unwrap();
    assert!(ts.len() == 29 && ts.ends_with(" +0000 UTC"), "{ts}");
    let s = v["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "consul.http.PUT.v1.kv._")
        .unwrap();
    assert_eq!(
        keys(s),
        ["Count", "Labels", "Max", "Mean", "Min", "Name", "Rate", "Stddev", "Sum"]
    );
    assert!(s["Count"].as_u64().unwrap() >= 1 && s["Max"].as_f64().unwrap() > 0.0);
    // Gauges carry the host name unless disable_hostname is set.
    let g = &v["Gauges"][0];
    assert_eq!(keys(g), ["Labels", "Name", "Value"]);
    let host = hostname();
    assert!(
        v["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["Name"] == format!("consul.{host}.runtime.alloc_bytes")),
        "no consul.{host}.runtime.alloc_bytes in {v}"
    );
    for m in ["POST", "PUT", "DELETE"] {
        let r = c
            .request(m.parse().unwrap(), format!("{}/v1/agent/metrics", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{m}");
        assert_eq!(r.headers()["allow"], "OPTIONS,GET,HEAD");
    }
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('.', "_")
}

/// `metrics_prefix` renames every Consul series; the config keys pass
/// `tribune validate`, bad values are refused with the key named.
#[test]
fn telemetry_config_keys() {
    let d = tempfile::tempdir().unwrap();
    let a = agent_with(
        d.path(),
        r#"{"prometheus_retention_time": "1m", "disable_hostname": true, "metrics_prefix": "tb"}"#,
    );
    put(&a, "p/a", "1");
    let f = prom(&format!("{}/v1/agent/metrics?format=prometheus", a.url));
    assert!(f.get("tb_http_PUT_v1_kv__").is_some(), "{f}");
    assert!(f.get("consul_http_PUT_v1_kv__").is_none());
    let good = d.path().join("telemetry.json");
    let out = run_cli(&a.addr, &["validate", good.to_str().unwrap()], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let bad = d.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"telemetry": {"prometheus_retention_time": "soon"}}"#,
    )
    .unwrap();
    let out = run_cli(&a.addr, &["validate", bad.to_str().unwrap()], None);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("prometheus_retention_time"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

/// Consul's series at their choke points: a KV PUT moves consul.kvs.apply,
/// consul.raft.apply, consul.raft.commitTime and the group-commit batch
/// size; a txn moves consul.txn.apply, a catalog register
/// consul.catalog.register, a DNS lookup (dig) consul.dns.domain_query; a
/// parked blocking query shows in tribune.blocking.parked and its wake-up
/// in tribune.blocking.wakeups; the leader counted its election and
/// reports autopilot healthy.
#[test]
fn consul_series_move() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("telemetry.json");
    std::fs::write(
        &f,
        r#"{"telemetry": {"prometheus_retention_time": "60s", "disable_hostname": true}}"#,
    )
    .unwrap();
    let (a, dns) = Agent::dev_dns(&["-config-file", f.to_str().unwrap()]);
    a.wait_leader();
    let url = format!("{}/v1/agent/metrics?format=prometheus", a.url);
    let c = client();
    let count = |f: &Value, fam: &str| sample(f, fam, "_count", &[]).unwrap_or(0.0);
    let value = |f: &Value, fam: &str| sample(f, fam, "", &[]).unwrap_or(0.0);
    // The parser names a counter's sample `<family>_total`.
    let counter = |f: &Value, fam: &str| sample(f, fam, "_total", &[]).unwrap_or(0.0);
    let f0 = prom(&url);
    put(&a, "s/a", "1");
    let f1 = prom(&url);
    assert_eq!(
        count(&f1, "consul_kvs_apply"),
        count(&f0, "consul_kvs_apply") + 1.0
    );
    assert!(counter(&f1, "consul_raft_apply") >= counter(&f0, "consul_raft_apply") + 1.0);
    assert!(count(&f1, "consul_raft_commitTime") > count(&f0, "consul_raft_commitTime"));
    assert!(
        count(&f1, "tribune_group_commit_batch_size")
            > count(&f0, "tribune_group_commit_batch_size")
    );
    assert_eq!(f1["consul_raft_apply"]["type"], "counter");
    assert!(counter(&f1, "consul_raft_state_leader") >= 1.0, "{f1}");

    let txn = r#"[{"KV": {"Verb": "set", "Key": "s/t", "Value": "eA=="}}]"#;
    let r = c.put(format!("{}/v1/txn", a.url)).body(txn).send().unwrap();
    assert_eq!(r.status(), 200);
    let reg = r#"{"Node": "ext1", "Address": "10.0.0.9", "Service": {"Service": "db"}}"#;
    let r = c
        .put(format!("{}/v1/catalog/register", a.url))
        .body(reg)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let dig = Command::new("dig")
        .args(["@127.0.0.1", "-p", &dns.to_string(), "+time=2", "+tries=1"])
        .args(["db.service.consul", "A"])
        .output()
        .expect("dig must be installed (test.sh installs dnsutils)");
    assert!(String::from_utf8_lossy(&dig.stdout).contains("10.0.0.9"));
    let f2 = prom(&url);
    assert_eq!(
        count(&f2, "consul_txn_apply"),
        count(&f1, "consul_txn_apply") + 1.0
    );
    assert_eq!(
        count(&f2, "consul_catalog_register"),
        count(&f1, "consul_catalog_register") + 1.0
    );
    assert!(count(&f2, "consul_dns_domain_query") >= 1.0, "{f2}");

    // A blocking query parks, then a PUT wakes it.
    let index = tribune_tests::index_of(&c.get(format!("{}/v1/kv/s/a", a.url)).send().unwrap());
    let wakeups0 = counter(&f2, "tribune_blocking_wakeups");
    let blocking = {
        let url = format!("{}/v1/kv/s/a?index={index}&wait=30s", a.url);
        std::thread::spawn(move || client().get(url).send().unwrap().status())
    };
    wait_for("a parked query", Duration::from_secs(10), || {
        (value(&prom(&url), "tribune_blocking_parked") >= 1.0).then_some(())
    });
    put(&a, "s/a", "2");
    assert_eq!(blocking.join().unwrap(), 200);
    let f3 = prom(&url);
    assert_eq!(value(&f3, "tribune_blocking_parked"), 0.0);
    assert!(counter(&f3, "tribune_blocking_wakeups") > wakeups0);
    wait_for("autopilot healthy", Duration::from_secs(20), || {
        (value(&prom(&url), "consul_autopilot_healthy") == 1.0).then_some(())
    });
}

/// tribune-template `-metrics-addr`: after renders, its Prometheus text
/// (parsed by prometheus_client) counts renders by template and outcome,
/// render and command durations, a failing reload command, the
/// dependency fetches, and the age of each template's data; a PUT moves the
/// render count; other methods are refused.
#[test]
fn template_runner_metrics() {
    let a = Agent::dev(&[]);
    put(&a, "app/port", "8080");
    let w = tempfile::tempdir().unwrap();
    std::fs::write(w.path().join("a.tmpl"), "port={{getv \"/app/port\"}}\n").unwrap();
    std::fs::write(w.path().join("b.tmpl"), "p={{getv \"/app/port\"}}\n").unwrap();
    let r = tribune_tests::Renderer::spawn(
        w.path(),
        &[
            "-node",
            &a.addr,
            "-template",
            "a.tmpl:a.conf:true",
            "-template",
            "b.tmpl:b.conf:false",
            "-metrics-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = wait_for(
        "the metrics address in the log",
        Duration::from_secs(20),
        || {
            let log = r.log_text();
            let line = log
                .lines()
                .find(|l| l.contains("serving Prometheus metrics"))?;
            let at = line.find("addr=")? + 5;
            Some(line[at..].split_whitespace().next()?.to_string())
        },
    );
    let url = format!("http://{addr}/metrics");
    let renders = |f: &Value, t: &str, outcome: &str| {
        sample(
            f,
            "tribune_template_renders",
            "_total",
            &[("template", t), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    let f = wait_for("both templates rendered", Duration::from_secs(20), || {
        let f = prom(&url);
        (renders(&f, "a.tmpl", "changed") >= 1.0 && renders(&f, "b.tmpl", "changed") >= 1.0)
            .then_some(f)
    });
    let fam = |n: &str| f[n]["type"].as_str().unwrap_or("missing").to_string();
    assert_eq!(fam("tribune_template_render_duration_seconds"), "summary");
    let durations = sample(
        &f,
        "tribune_template_render_duration_seconds",
        "_count",
        &[("template", "a.tmpl")],
    );
    assert!(durations >= Some(1.0), "{f}");
    let reloads = sample(
        &f,
        "tribune_template_command_duration_seconds",
        "_count",
        &[("kind", "reload")],
    );
    assert!(reloads >= Some(2.0), "{f}");
    let failed = sample(
        &f,
        "tribune_template_failures",
        "_total",
        &[("template", "b.tmpl"), ("stage", "command")],
    );
    assert_eq!(failed, Some(1.0), "{f}");
    let fetches = sample(
        &f,
        "tribune_template_dependency_fetches",
        "_total",
        &[("outcome", "ok")],
    );
    assert!(fetches >= Some(1.0), "{f}");
    let age = |f: &Value| {
        sample(
            f,
            "tribune_template_data_age_seconds",
            "",
            &[("template", "a.tmpl")],
        )
    };
    let age0 = age(&f).expect("data age of a.tmpl");
    assert!(age0 >= 0.0);
    // A change renders again (and the age starts over).
    std::thread::sleep(Duration::from_millis(1500));
    let before = renders(&prom(&url), "a.tmpl", "changed");
    put(&a, "app/port", "9090");
    let f2 = wait_for("a.tmpl rendered again", Duration::from_secs(20), || {
        let f = prom(&url);
        (renders(&f, "a.tmpl", "changed") > before).then_some(f)
    });
    assert!(age(&f2).unwrap() < 1.5, "age did not start over: {f2}");
    assert_eq!(
        std::fs::read_to_string(w.path().join("a.conf")).unwrap(),
        "port=9090\n"
    );
    let c = client();
    let resp = c.post(&url).send().unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        c.get(format!("http://{addr}/other"))
            .send()
            .unwrap()
            .status(),
        404
    );
    // A bad address is a start-up error naming the flag.
    let out = tribune_tests::run_renderer(
        w.path(),
        &[
            "-onetime",
            "-backend",
            "env",
            "-template",
            "a.tmpl:x.conf",
            "-metrics-addr",
            "bogus",
        ],
        &[],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("invalid -metrics-addr"),
        "{}",
        out.stderr
    );
}

/// Gossip and RPC: a client agent joining counts consul.serf.member.join
/// on the server, its KV write forwarded over server RPC counts
/// consul.rpc.request, and its SIGKILL ends in consul.serf.member.failed.
#[test]
fn serf_and_rpc_series() {
    let d = tempfile::tempdir().unwrap();
    let ports: Vec<String> = tribune_tests::free_ports(2)
        .iter()
        .map(u16::to_string)
        .collect();
    let f = d.path().join("telemetry.json");
    std::fs::write(
        &f,
        r#"{"telemetry": {"prometheus_retention_time": "60s", "disable_hostname": true}}"#,
    )
    .unwrap();
    let server = Agent::dev(&[
        "-serf-lan-port",
        &ports[0],
        "-config-file",
        f.to_str().unwrap(),
    ]);
    let url = format!("{}/v1/agent/metrics?format=prometheus", server.url);
    let counter = |f: &Value, fam: &str| sample(f, fam, "_total", &[]).unwrap_or(0.0);
    let f0 = prom(&url);
    let data = d.path().join("c1");
    let join = format!("127.0.0.1:{}", ports[0]);
    let mut client_agent = Agent::spawn(
        &[
            "agent",
            "-node",
            "c1",
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-serf-lan-port",
            &ports[1],
            "-data-dir",
            data.to_str().unwrap(),
            "-retry-join",
            &join,
        ],
        Some(data.clone()),
    );
    wait_for("the join counted", Duration::from_secs(20), || {
        (counter(&prom(&url), "consul_serf_member_join") > counter(&f0, "consul_serf_member_join"))
            .then_some(())
    });
    // memberlist's traffic counters (bytes) moved with the join.
    let now = prom(&url);
    assert!(counter(&now, "consul_memberlist_udp_sent") > 0.0);
    assert!(counter(&now, "consul_memberlist_udp_received") > 0.0);
    let rpc0 = counter(&prom(&url), "consul_rpc_request");
    put(&client_agent, "via/client", "1");
    assert!(counter(&prom(&url), "consul_rpc_request") > rpc0);
    client_agent.kill9();
    wait_for("the failure counted", Duration::from_secs(30), || {
        (counter(&prom(&url), "consul_serf_member_failed") >= 1.0).then_some(())
    });
}

/// consul.session_ttl.invalidate: the leader expiring a TTL session (10 s,
/// Consul's minimum; expired after twice that) is timed.
#[test]
fn session_ttl_invalidation_is_timed() {
    let d = tempfile::tempdir().unwrap();
    let a = agent_with(
        d.path(),
        r#"{"prometheus_retention_time": "2m", "disable_hostname": true}"#,
    );
    let url = format!("{}/v1/agent/metrics?format=prometheus", a.url);
    a.wait_serf_health();
    let r: Value = client()
        .put(format!("{}/v1/session/create", a.url))
        .body(r#"{"TTL": "10s", "Behavior": "delete"}"#)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(r["ID"].is_string(), "{r}");
    assert!(sample(&prom(&url), "consul_session_ttl_invalidate", "_count", &[]).is_none());
    // The leader's gauge of TTL sessions counts it (it scans every second).
    let active = |want: f64| {
        (sample(&prom(&url), "consul_session_ttl_active", "", &[]) == Some(want)).then_some(())
    };
    wait_for("session_ttl.active 1", Duration::from_secs(5), || {
        active(1.0)
    });
    wait_for("the TTL expiry timed", Duration::from_secs(45), || {
        let n = sample(&prom(&url), "consul_session_ttl_invalidate", "_count", &[])?;
        (n >= 1.0).then_some(())
    });
    wait_for("session_ttl.active 0", Duration::from_secs(5), || {
        active(0.0)
    });
}
