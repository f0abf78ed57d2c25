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
