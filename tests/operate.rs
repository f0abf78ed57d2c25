//! Operator commands against the real binary: `tribune maint` (node and
//! service maintenance, seen through `?passing` and DNS) and `tribune
//! validate` on good and bad configurations.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tribune_tests::{bin, client, wait_for, Agent};

fn dig_a(port: u16, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+time=2",
            "+tries=1",
            "+short",
        ])
        .args([name, "A"])
        .output()
        .expect("dig must be installed (test.sh installs dnsutils)");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn passing(a: &Agent, svc: &str) -> usize {
    let v: Value = client()
        .get(format!("{}/v1/health/service/{svc}?passing", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v.as_array().unwrap().len()
}

fn register(a: &Agent, id: &str, name: &str) {
    let body = format!(r#"{{"ID":"{id}","Name":"{name}","Port":80,"Address":"127.0.0.9"}}"#);
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success());
}

/// Wait until `web` has `n` passing instances in the catalog and DNS.
fn wait_serving(a: &Agent, dns: u16, svc: &str, n: usize) {
    wait_for(
        &format!("{n} passing {svc}"),
        Duration::from_secs(10),
        || {
            let dns_n = dig_a(dns, &format!("{svc}.service.consul")).len();
            (passing(a, svc) == n && dns_n == n.min(1)).then_some(())
        },
    );
}

#[test]
fn maint_takes_the_node_and_a_service_out_and_back() {
    let (a, dns) = Agent::dev_dns(&[]);
    register(&a, "web-1", "web");
    register(&a, "db-1", "db");
    wait_serving(&a, dns, "web", 1);
    // Nothing in maintenance: the list is empty.
    let o = a.cli(&["maint"], None);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{}", o.stderr);

    let o = a.cli(&["maint", "-enable", "-reason", "kernel upgrade"], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "Node maintenance is now enabled\n");
    wait_serving(&a, dns, "web", 0);
    wait_serving(&a, dns, "db", 0);
    let o = a.cli(&["maint"], None);
    assert_eq!(
        o.stdout, "Node:\n  Name:   node1\n  Reason: kernel upgrade\n\n",
        "{}",
        o.stderr
    );
    let o = a.cli(&["maint", "-disable"], None);
    assert_eq!(o.stdout, "Node maintenance is now disabled\n");
    wait_serving(&a, dns, "web", 1);
    wait_serving(&a, dns, "db", 1);

    // One service: only it leaves.
    let o = a.cli(&["maint", "-enable", "-service", "web-1"], None);
    assert_eq!(
        o.stdout,
        "Service maintenance is now enabled for \"web-1\"\n"
    );
    wait_serving(&a, dns, "web", 0);
    assert_eq!(passing(&a, "db"), 1);
    let o = a.cli(&["maint"], None);
    assert!(
        o.stdout
            .starts_with("Service:\n  ID:     web-1\n  Reason: "),
        "{}",
        o.stdout
    );
    let o = a.cli(&["maint", "-disable", "-service", "web-1"], None);
    assert_eq!(
        o.stdout,
        "Service maintenance is now disabled for \"web-1\"\n"
    );
    wait_serving(&a, dns, "web", 1);

    // Consul's argument errors, and an unknown service.
    for (args, err) in [
        (
            &["maint", "-enable", "-disable"][..],
            "Only one of -enable or -disable may be provided",
        ),
        (
            &["maint", "-reason", "x"][..],
            "Reason may only be provided with -enable",
        ),
        (
            &["maint", "-service", "web-1"][..],
            "Service requires either -enable or -disable",
        ),
    ] {
        let o = a.cli(args, None);
        assert_eq!((o.code, o.stderr.trim()), (1, err), "{args:?}");
    }
    let o = a.cli(&["maint", "-enable", "-service", "nope"], None);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .starts_with("Error enabling service maintenance: Unexpected response code: 404"),
        "{}",
        o.stderr
    );
}

fn validate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("tribune"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_good_and_bad_configurations() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    std::fs::create_dir(&good).unwrap();
    std::fs::write(
        good.join("agent.hcl"),
        "datacenter = \"east\"\nserver = true\ndata_dir = \"/var/lib/tribune\"\nbootstrap_expect = 3\n",
    )
    .unwrap();
    std::fs::write(
        good.join("web.json"),
        r#"{"service": {"name": "web", "port": 80, "check": {"http": "http://127.0.0.1/", "interval": "10s"}}}"#,
    )
    .unwrap();
    let g = good.to_str().unwrap();
    // Consul's warning for a server that waits for others, then the verdict.
    assert_eq!(
        validate(&[g]),
        (
            0,
            "Configuration is valid!\n".into(),
            "bootstrap_expect > 0: expecting 3 servers\n".into()
        )
    );
    assert_eq!(validate(&["-quiet", g]), (0, String::new(), String::new()));
    // Files and directories mix.
    let extra = d.path().join("extra.json");
    std::fs::write(&extra, r#"{"node_name": "n1", "ui": true}"#).unwrap();
    let (code, out, err) = validate(&["-quiet", g, extra.to_str().unwrap()]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));

    let bad = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (code, out, err) = validate(&[p.to_str().unwrap()]);
        assert_eq!((code, out.as_str()), (1, ""), "{name}: {err}");
        assert!(
            err.starts_with("Config validation failed: "),
            "{name}: {err}"
        );
        err
    };
    assert!(bad("unknown.json", r#"{"no_such_key": 1}"#).contains("invalid config key no_such_key"));
    assert!(bad("syntax.json", "{\"datacenter\": ").contains("syntax.json"));
    assert!(bad("syntax.hcl", "datacenter = = 1").contains("syntax.hcl"));
    assert!(bad("ports.json", r#"{"ports": {"http": "x"}}"#).contains("ports.http"));
    assert!(bad("server.json", r#"{"server": true}"#).contains("data"));
    assert!(bad("svc.json", r#"{"service": {"port": 80}}"#).contains("service"));
    let e = bad(
        "script.json",
        r#"{"check": {"id": "c", "name": "c", "args": ["true"], "interval": "10s"}}"#,
    );
    assert!(e.contains("script"), "{e}");
    assert!(bad("watch.json", r#"{"watches": [{"type": "nope"}]}"#).contains("nope"));
    let (code, _, err) = validate(&["/nonexistent/tribune.json"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Config validation failed: "), "{err}");
    let (code, _, err) = validate(&[]);
    assert_eq!(
        (code, err.trim()),
        (1, "Must specify at least one config file or directory")
    );
}

/// `/v1/agent/version` and `/v1/agent/host` in Consul's shapes, with this
/// machine's figures.
#[test]
fn agent_version_and_host() {
    let a = Agent::dev(&[]);
    let c = client();
    let get = |path: &str| -> Value {
        let r = c.get(format!("{}{path}", a.url)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().unwrap()
    };
    let v = get("/v1/agent/version");
    let me = get("/v1/agent/self");
    assert_eq!(v["HumanVersion"], me["Config"]["Version"], "{v}");
    let date = v["BuildDate"].as_str().unwrap();
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );
    assert_eq!(v["SHA"], "");
    assert_eq!(v["FIPS"], "");

    let h = get("/v1/agent/host");
    assert!(h["Errors"].is_null(), "{}", h["Errors"]);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let t = h["CollectionTime"].as_i64().unwrap();
    assert!(now_ns - t < 60_000_000_000 && t <= now_ns, "{t}");
    // Memory as /proc/meminfo says, in bytes.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(h["Memory"]["total"].as_u64(), Some(total_kb * 1024));
    let used = h["Memory"]["used"].as_u64().unwrap();
    assert!(used > 0 && used < total_kb * 1024);
    // One CPU entry per logical CPU.
    let nproc = std::thread::available_parallelism().unwrap().get();
    assert_eq!(h["CPU"].as_array().unwrap().len(), nproc, "{}", h["CPU"]);
    assert!(!h["CPU"][0]["modelName"].as_str().unwrap().is_empty());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(h["Host"]["hostname"], hostname.trim());
    assert_eq!(h["Host"]["os"], "linux");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(h["Host"]["kernelVersion"], release.trim());
    assert!(h["Host"]["uptime"].as_u64().unwrap() > 0);
    assert!(h["Host"]["procs"].as_u64().unwrap() > 1);
    // The root file system, as `df /` sees it.
    assert_eq!(h["Disk"]["path"], "/");
    let df = Command::new("df")
        .args(["-B1", "--output=size", "/"])
        .output()
        .unwrap();
    let size: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(h["Disk"]["total"].as_u64(), Some(size));
    // Read-only endpoints: other methods change nothing.
    let r = c.put(format!("{}/v1/agent/host", a.url)).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "OPTIONS,GET,HEAD");
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Lines of the active log file and of its archives, by file name.
fn log_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    v.sort();
    v
}

/// `-log-json` on stderr and in `-log-file`, rotated by size with
/// `-log-rotate-max-files` archives kept, and `log_level` changed by
/// `tribune reload` (debug lines appear, then stop again).
#[test]
fn logs_json_file_rotation_and_reload_level() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let level = |l: &str| {
        std::fs::write(cfg.join("log.json"), format!(r#"{{"log_level": "{l}"}}"#)).unwrap()
    };
    level("info");
    let file = logs.join("agent.log");
    let a = Agent::dev(&[
        "-config-dir",
        cfg.to_str().unwrap(),
        "-log-json",
        "-log-file",
        file.to_str().unwrap(),
        "-log-rotate-bytes",
        "1500",
        "-log-rotate-max-files",
        "2",
    ]);
    let c = client();
    // stderr: JSON lines in hclog's keys, no text lines.
    let stderr = a.log_text();
    let listening = stderr
        .lines()
        .find(|l| l.contains("HTTP API listening"))
        .unwrap();
    let v: Value = serde_json::from_str(listening).unwrap();
    assert_eq!(v["@level"], "info", "{v}");
    assert!(v["@module"].as_str().unwrap().starts_with("agent"), "{v}");
    assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(!stderr.contains("[INFO]"), "{stderr}");

    let fire = |name: &str| {
        let r = c
            .put(format!("{}/v1/event/fire/{name}", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let active = || std::fs::read_to_string(&file).unwrap();
    // At info the event's debug line is written nowhere.
    fire("quiet");
    let reload = |want: i32| {
        let o = a.cli(&["reload"], None);
        assert_eq!(o.code, want, "{} {}", o.stdout, o.stderr);
    };
    // Enough reloads (an info line each) to rotate several times.
    for _ in 0..30 {
        reload(0);
    }
    let files = log_files(&logs);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 3, "active + 2 archives: {names:?}");
    assert_eq!(names[2], "agent.log");
    for (name, text) in &files {
        if name != "agent.log" {
            let ts = name
                .strip_prefix("agent-")
                .unwrap()
                .strip_suffix(".log")
                .unwrap();
            assert!(
                ts.len() >= 19 && ts.bytes().all(|b| b.is_ascii_digit()),
                "{name}"
            );
            // Rotated once it held 1,500 bytes: at most one line over.
            assert!(
                text.len() >= 1500 && text.len() < 1500 + 600,
                "{name}: {}",
                text.len()
            );
        }
        for v in json_lines(text) {
            assert_ne!(v["@level"], "debug", "{v}");
            assert!(!v["@message"].as_str().unwrap().is_empty(), "{v}");
        }
    }
    assert!(!stderr.contains("event fired") && !a.log_text().contains("event fired"));

    // log_level = "debug" and reload: the debug line appears in the file.
    level("debug");
    reload(0);
    fire("loud");
    wait_for(
        "the debug line in the log file",
        Duration::from_secs(10),
        || {
            json_lines(&active())
                .into_iter()
                .find(|v| v["@message"] == "event fired" && v["event"] == "loud")
                .filter(|v| v["@level"] == "debug")
        },
    );
    // A bad level is refused by reload and changes nothing.
    level("loud");
    reload(1);
    fire("still-debug");
    wait_for("debug still on", Duration::from_secs(10), || {
        active().contains("still-debug").then_some(())
    });
    // Back to info: debug lines stop.
    level("info");
    reload(0);
    fire("quiet-again");
    std::thread::sleep(Duration::from_millis(500));
    let all: String = log_files(&logs).into_iter().map(|(_, t)| t).collect();
    assert!(!all.contains("quiet-again") && !a.log_text().contains("quiet-again"));
    assert!(
        !all.contains("\"quiet\""),
        "the first event was logged at info"
    );
}
