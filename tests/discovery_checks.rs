//! Health checks of a real agent: HTTP, TCP, TTL, script and gRPC probes, thresholds, check definitions in -config-dir.
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, free_port, root, Agent};
mod discovery;
use discovery::*;
/// python-consul registers services with tcp, http and ttl checks; a backend
/// that goes down turns critical within interval+timeout and leaves ?passing
/// and DNS; it comes back when healthy.
#[test]
fn python_consul_checks_and_backend_failure() {
    let (a, dns) = dns_agent(&[]);
    let http_port = free_port();
    let http = Backend::http(http_port);
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/clients/discovery_python_consul.py"))
        .args([host, port, &http_port.to_string(), &tcp_port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-consul script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(passing_ids(&a, "web"), ["web-http", "web-tcp"]);
    let srv = dig(dns, &["+short", "web.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");

    // HTTP backend down: critical within interval (1s) + timeout (1s) (+ slack).
    drop(http);
    let took = wait_until("web-http critical", Duration::from_secs(6), || {
        passing_ids(&a, "web") == ["web-tcp"]
    });
    assert!(took <= Duration::from_millis(3500), "took {took:?}");
    let srv = dig(dns, &["+short", "web.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 1, "{srv}");
    assert!(srv.contains(&tcp_port.to_string()));
    let checks = get_json(&a, "health/checks/web");
    let c = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ServiceID"] == "web-http")
        .unwrap()
        .clone();
    assert_eq!(c["Status"], "critical");
    assert!(!c["Output"].as_str().unwrap().is_empty());

    // TCP backend down too: DNS has nothing for web.
    drop(tcp);
    wait_until("web-tcp critical", Duration::from_secs(6), || {
        passing_ids(&a, "web").is_empty()
    });
    let out = dig(dns, &["web.service.consul"]);
    assert!(out.contains("NXDOMAIN"), "{out}");

    // Back up: passing again and in DNS.
    let _http = Backend::http(http_port);
    let _tcp = TcpListener::bind(("127.0.0.1", tcp_port)).unwrap();
    wait_until("web back", Duration::from_secs(6), || {
        passing_ids(&a, "web").len() == 2
    });
    let a_records = dig(dns, &["+short", "web.service.consul"]);
    assert_eq!(a_records.lines().count(), 2, "{a_records}");
}

/// Script checks need -enable-script-checks; with it they run (exit 0/1/2).
#[test]
fn script_checks() {
    let a = Agent::dev(&[]);
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"Name": "s", "Args": ["true"], "Interval": "1s"}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Scripts are disabled"));
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "x", "Check": {"Args": ["true"], "Interval": "1s"}}),
    );
    assert_eq!(r.status(), 400);
    assert!(
        get_json(&a, "agent/services")
            .as_object()
            .unwrap()
            .is_empty(),
        "refused service was registered"
    );

    let b = Agent::dev(&["-enable-script-checks"]);
    for (name, code) in [("ok", 0), ("warn", 1), ("crit", 2)] {
        let r = put_json(
            &b,
            "agent/check/register",
            json!({"Name": name,
            "Args": ["sh", "-c", format!("echo out-{name}; exit {code}")], "Interval": "500ms"}),
        );
        assert_eq!(r.status(), 200);
    }
    wait_until("script results", Duration::from_secs(5), || {
        let c = get_json(&b, "agent/checks");
        c["ok"]["Status"] == "passing"
            && c["warn"]["Status"] == "warning"
            && c["crit"]["Status"] == "critical"
    });
    assert_eq!(get_json(&b, "agent/checks")["ok"]["Output"], "out-ok\n");
}

/// TTL checks expire to critical; DeregisterCriticalServiceAfter reaps the service.
#[test]
fn ttl_expiry_and_reaping() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "t", "Check": {"TTL": "1s", "Status": "passing"}}),
    );
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "reap", "Check": {"TTL": "1s", "Status": "passing",
        "DeregisterCriticalServiceAfter": "1s"}}),
    );
    wait_until("t passing in catalog", Duration::from_secs(5), || {
        passing_ids(&a, "t") == ["t"]
    });
    let t0 = Instant::now();
    wait_until("TTL expired", Duration::from_secs(5), || {
        get_json(&a, "agent/checks")["service:t"]["Status"] == "critical"
    });
    assert!(t0.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        get_json(&a, "agent/checks")["service:t"]["Output"],
        "TTL expired"
    );
    wait_until("t left ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "t").is_empty()
    });
    // pass revives it
    assert_eq!(
        client()
            .put(format!("{}/v1/agent/check/pass/service:t?note=back", a.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    wait_until("t back", Duration::from_secs(5), || {
        passing_ids(&a, "t") == ["t"]
    });
    // the other one is reaped from agent and catalog
    wait_until("reap deregistered", Duration::from_secs(6), || {
        get_json(&a, "catalog/service/reap")
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert!(get_json(&a, "agent/services").get("reap").is_none());
    // update endpoint
    let r = put_json(
        &a,
        "agent/check/update/service:t",
        json!({"Status": "warning", "Output": "slow"}),
    );
    assert_eq!(r.status(), 200);
    let c = &get_json(&a, "agent/checks")["service:t"];
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("warning"), Some("slow"))
    );
}

/// GRPC checks speak the gRPC health protocol: `host:port/service` asks about
/// that service; SERVING is passing, NOT_SERVING, an unknown service and a
/// server that is gone are critical, with Consul's output text.
#[test]
fn grpc_checks() {
    let server = GrpcHealth::start();
    let a = Agent::dev(&[]);
    let target = format!("127.0.0.1:{}/my.Service", server.port);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "g", "Check": {"GRPC": target, "Interval": "500ms"}}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let check = || get_json(&a, "agent/checks")["service:g"].clone();
    // the server does not know my.Service yet: NOT_FOUND from the server
    wait_until("unknown service probed", Duration::from_secs(5), || {
        check()["Output"]
            .as_str()
            .is_some_and(|o| o.contains("NotFound"))
    });
    assert_eq!(check()["Status"], "critical");
    assert_eq!(check()["Type"], "grpc");

    server.set("my.Service", tonic_health::ServingStatus::Serving);
    wait_until("passing", Duration::from_secs(5), || {
        check()["Status"] == "passing"
    });
    assert_eq!(check()["Output"], format!("gRPC check {target}: success"));
    wait_until("g in ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "g") == ["g"]
    });

    server.set("my.Service", tonic_health::ServingStatus::NotServing);
    wait_until("critical on NOT_SERVING", Duration::from_secs(5), || {
        check()["Status"] == "critical"
    });
    assert_eq!(
        check()["Output"],
        format!("gRPC check {target}: failed with status NOT_SERVING")
    );
    wait_until("g left ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "g").is_empty()
    });

    server.set("my.Service", tonic_health::ServingStatus::Serving);
    wait_until("passing again", Duration::from_secs(5), || {
        check()["Status"] == "passing"
    });
    server.stop();
    wait_until(
        "critical once the server is gone",
        Duration::from_secs(5),
        || check()["Status"] == "critical",
    );
    let out = check()["Output"].as_str().unwrap().to_string();
    assert!(
        out.starts_with(&format!(
            "gRPC check {target}: failed with status Unavailable"
        )),
        "{out}"
    );

    // like HTTP and TCP checks, GRPC checks need an interval and a host:port
    for (check, needle) in [
        (json!({"GRPC": "127.0.0.1:1"}), "Interval"),
        (json!({"GRPC": "127.0.0.1", "Interval": "1s"}), "host:port"),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": "bad", "Check": check}),
        );
        assert_eq!(r.status(), 400);
        let text = r.text().unwrap();
        assert!(text.contains(needle), "{text}");
    }
    assert!(get_json(&a, "agent/services").get("bad").is_none());
}

/// GRPCUseTLS: TLSSkipVerify accepts a self-signed server, verification
/// refuses it, and TLS against a plaintext server fails.
#[test]
fn grpc_tls_checks() {
    let server = GrpcHealth::start();
    let tls_port = server.tls_front();
    let a = Agent::dev(&[]);
    let checks = [
        json!({"Name": "skip", "GRPC": format!("localhost:{tls_port}"), "GRPCUseTLS": true,
               "TLSSkipVerify": true, "Interval": "500ms"}),
        json!({"Name": "verify", "GRPC": format!("127.0.0.1:{tls_port}"), "grpc_use_tls": true,
               "Interval": "500ms"}),
        json!({"Name": "plain", "GRPC": format!("127.0.0.1:{}", server.port), "GRPCUseTLS": true,
               "TLSSkipVerify": true, "Interval": "500ms", "Timeout": "2s"}),
    ];
    for c in checks {
        let r = put_json(&a, "agent/check/register", c);
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    wait_until("all TLS checks probed", Duration::from_secs(10), || {
        let c = get_json(&a, "agent/checks");
        c["skip"]["Status"] == "passing"
            && ["verify", "plain"].iter().all(|n| {
                c[n]["Output"]
                    .as_str()
                    .is_some_and(|o| o.contains("failed"))
            })
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(
        c["skip"]["Output"],
        format!("gRPC check localhost:{tls_port}: success")
    );
    for n in ["verify", "plain"] {
        assert_eq!(c[n]["Status"], "critical", "{n}: {}", c[n]["Output"]);
    }
    let out = c["verify"]["Output"].as_str().unwrap();
    assert!(out.contains("certificate"), "{out}");
    server.stop();
}

/// A probe whose result does not change writes nothing through raft.
#[test]
fn unchanged_probe_results_cost_no_raft_writes() {
    let a = Agent::dev(&[]);
    let port = free_port();
    let _b = Backend::http(port);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "steady", "Port": port,
        "Check": {"HTTP": format!("http://127.0.0.1:{port}/"), "Interval": "200ms"}}),
    );
    assert_eq!(r.status(), 200);
    wait_until("steady passing", Duration::from_secs(5), || {
        passing_ids(&a, "steady") == ["steady"]
    });
    thread::sleep(Duration::from_millis(500));
    let last = |a: &Agent| {
        get_json(a, "agent/self")["Stats"]["raft"]["last_log_index"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = last(&a);
    thread::sleep(Duration::from_secs(3)); // about three probes (1 s at least apart)
    assert_eq!(
        last(&a),
        before,
        "probes with an unchanged result went through raft"
    );
}

/// HTTP checks send the configured method, headers and body; 2xx is passing,
/// 429 warning, anything else critical.
#[test]
fn http_check_method_headers_body_and_status_mapping() {
    let a = Agent::dev(&[]);
    let port = free_port();
    // Answers 200 only to PUT with header X-Test: 1 and body "ping"; /busy answers 429.
    let server = format!(
        r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code):
        self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        self.reply(429 if self.path == "/busy" else 405)
    def do_PUT(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.reply(200 if self.headers.get("X-Test") == "1" and body == b"ping" else 400)
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(server)
        .spawn()
        .unwrap();
    wait_until("check server up", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/");
    for (name, check) in [
        (
            "good",
            json!({"HTTP": url, "Method": "PUT", "Header": {"X-Test": ["1"]}, "Body": "ping", "Interval": "300ms"}),
        ),
        (
            "nohdr",
            json!({"HTTP": url, "Method": "PUT", "Body": "ping", "Interval": "300ms"}),
        ),
        (
            "busy",
            json!({"HTTP": format!("{url}busy"), "Interval": "300ms"}),
        ),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": name, "Check": check}),
        );
        assert_eq!(r.status(), 200);
    }
    wait_until("check results", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        c["service:good"]["Status"] == "passing"
            && c["service:nohdr"]["Status"] == "critical"
            && c["service:busy"]["Status"] == "warning"
    });
    let c = get_json(&a, "agent/checks");
    assert!(
        c["service:good"]["Output"]
            .as_str()
            .unwrap()
            .contains("200"),
        "{}",
        c["service:good"]
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// HTTP checks: TLSSkipVerify against a self-signed server, output capped at
/// 4 KiB, SuccessBeforePassing / FailuresBeforeCritical holding the status
/// through flips, and Timeout against a backend that never answers.
#[test]
fn http_check_tls_cap_thresholds_and_timeout() {
    let (_backend, plain, tls) = check_backend();
    // Accepts connections (kernel backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let a = Agent::dev(&[]);
    let url = |p: &str| format!("http://127.0.0.1:{plain}{p}");
    let checks = [
        json!({"ID": "tls-verify", "Name": "tls-verify",
               "HTTP": format!("https://localhost:{tls}/"), "Interval": "300ms"}),
        json!({"ID": "tls-skip", "Name": "tls-skip",
               "HTTP": format!("https://localhost:{tls}/"), "TLSSkipVerify": true, "Interval": "300ms"}),
        json!({"ID": "big", "Name": "big", "HTTP": url("/big"), "Interval": "300ms"}),
        // Alternating results: without thresholds the status flips; with
        // both thresholds at 2 no run is long enough, so the initial status holds.
        json!({"ID": "alt-plain", "Name": "alt-plain", "HTTP": url("/alt1"), "Interval": "200ms"}),
        json!({"ID": "alt-hold-pass", "Name": "alt-hold-pass", "HTTP": url("/alt2"),
               "Interval": "200ms", "Status": "passing",
               "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}),
        json!({"ID": "alt-hold-crit", "Name": "alt-hold-crit", "HTTP": url("/alt3"),
               "Interval": "200ms", "Status": "critical",
               "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}),
        json!({"ID": "ctl-plain", "Name": "ctl-plain", "HTTP": url("/ctl"), "Interval": "300ms"}),
        json!({"ID": "ctl-fbc", "Name": "ctl-fbc", "HTTP": url("/ctl"), "Interval": "300ms",
               "FailuresBeforeCritical": 3}),
    ];
    for c in checks {
        let r = put_json(&a, "agent/check/register", c);
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    let t0 = Instant::now();
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"ID": "slow", "Name": "slow", "HTTP": format!("http://127.0.0.1:{silent_port}/"),
               "Interval": "1s", "Timeout": "500ms", "Status": "passing"}),
    );
    assert_eq!(r.status(), 200);
    let status = |c: &Value, id: &str| c[id]["Status"].as_str().unwrap_or("").to_string();

    // Timeout: critical within interval (first-probe stagger) + timeout (+ margin).
    wait_until("slow check critical", Duration::from_secs(6), || {
        status(&get_json(&a, "agent/checks"), "slow") == "critical"
    });
    let took = t0.elapsed();
    assert!(took <= Duration::from_millis(3000), "took {took:?}");

    wait_until("TLS and big checks probed", Duration::from_secs(6), || {
        let c = get_json(&a, "agent/checks");
        status(&c, "tls-skip") == "passing"
            && c["tls-verify"]["Output"]
                .as_str()
                .is_some_and(|o| !o.is_empty())
            && status(&c, "big") == "passing"
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(status(&c, "tls-verify"), "critical", "{}", c["tls-verify"]);
    let out = c["big"]["Output"].as_str().unwrap();
    assert!(
        out.len() <= 4096 + 64 && out.contains("captured 4096 of"),
        "{} bytes: {}",
        out.len(),
        &out[out.len().saturating_sub(80)..]
    );

    // Watch the alternating checks for ~3 s (about three probes each: the
    // 200ms intervals are raised to Consul's 1 s minimum).
    let mut seen_plain = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let c = get_json(&a, "agent/checks");
        seen_plain.insert(status(&c, "alt-plain"));
        assert_eq!(status(&c, "alt-hold-pass"), "passing");
        assert_eq!(status(&c, "alt-hold-crit"), "critical");
        thread::sleep(Duration::from_millis(40));
    }
    assert!(
        seen_plain.contains("passing") && seen_plain.contains("critical"),
        "alt-plain never flipped: {seen_plain:?}"
    );

    // FailuresBeforeCritical 3: still passing when the plain check on the
    // same backend already turned critical; critical after three failures.
    wait_until("ctl checks passing", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        status(&c, "ctl-plain") == "passing" && status(&c, "ctl-fbc") == "passing"
    });
    client().get(url("/set-down")).send().unwrap();
    wait_until("ctl-plain critical", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        let done = status(&c, "ctl-plain") == "critical";
        if done {
            assert_eq!(status(&c, "ctl-fbc"), "passing", "{}", c["ctl-fbc"]);
        }
        done
    });
    wait_until("ctl-fbc critical", Duration::from_secs(5), || {
        status(&get_json(&a, "agent/checks"), "ctl-fbc") == "critical"
    });
    drop(silent);
}

/// Standalone `{"check": ...}` and `{"checks": [...]}` files in -config-dir:
/// registered at start, changed and removed on `tribune reload`; a check
/// registered over HTTP is untouched.
#[test]
fn config_dir_standalone_checks_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("check.json");
    let many = dir.path().join("checks.json");
    std::fs::write(
        &one,
        r#"{"check": {"id": "disk", "name": "Disk", "ttl": "30s", "notes": "v1"}}"#,
    )
    .unwrap();
    std::fs::write(
        &many,
        r#"{"checks": [{"id": "mem", "name": "Mem", "ttl": "30s"}, {"id": "cpu", "name": "CPU", "ttl": "30s"}]}"#,
    )
    .unwrap();
    let a = Agent::dev(&[
        "-node",
        "node1",
        "-config-dir",
        dir.path().to_str().unwrap(),
    ]);
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"ID": "api", "Name": "api", "TTL": "30s"}),
    );
    assert_eq!(r.status(), 200);
    let catalog_ids = || -> Vec<String> {
        let mut ids: Vec<String> = get_json(&a, "health/node/node1")
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    wait_until("file checks in catalog", Duration::from_secs(5), || {
        catalog_ids() == ["api", "cpu", "disk", "mem", "serfHealth"]
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(c["disk"]["Name"], "Disk");
    assert_eq!(c["disk"]["Notes"], "v1");
    assert_eq!(c["cpu"]["Type"], "ttl");

    std::fs::write(
        &one,
        r#"{"check": {"id": "disk", "name": "Disk v2", "ttl": "30s", "notes": "v2"}}"#,
    )
    .unwrap();
    std::fs::write(
        &many,
        r#"{"checks": [{"id": "mem", "name": "Mem", "ttl": "30s"}]}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until("reload applied to catalog", Duration::from_secs(5), || {
        catalog_ids() == ["api", "disk", "mem", "serfHealth"]
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(c["disk"]["Name"], "Disk v2");
    assert_eq!(c["disk"]["Notes"], "v2");
    assert!(c.get("cpu").is_none(), "{c}");
    assert!(c.get("api").is_some(), "HTTP check removed by reload: {c}");

    // Removing the file removes its check.
    std::fs::remove_file(&one).unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until("disk removed", Duration::from_secs(5), || {
        catalog_ids() == ["api", "mem", "serfHealth"]
    });
}
