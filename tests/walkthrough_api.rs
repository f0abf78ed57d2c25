//! Issue 13, the API side of the getting-started guides, run the way the
//! guides run them: the node's `consul-network-segment` meta and its DNS
//! TXT record, a service name DNS cannot serve (accepted, with Consul's
//! warning), unknown keys in definition files and config files (Consul's
//! `invalid config key ...` errors), and the versions `/v1/agent/self`
//! reports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{bin, client, dig, free_port, run_cli, wait_until, Agent};

/// The records of one section of `dig` output, as "name type data" lines.
fn section(out: &str, name: &str) -> Vec<String> {
    let mut lines = out.lines().skip_while(|l| !l.contains(name));
    lines.next();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // name ttl class type data...
            format!("{} {} {}", f[0], f[3], f[4..].join(" "))
        })
        .collect()
}

fn get(a: &Agent, path: &str) -> Value {
    client()
        .get(format!("{}/v1/{path}", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Run `tribune agent ...` that must refuse to start; its exit code and stderr.
fn agent_refuses(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(bin("tribune"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dig @127.0.0.1 -p 8600 n1.node.consul` answers the address with the
/// node's meta as TXT in the additional section, `ANY` puts the TXT in the
/// answer, and the catalog shows `Meta {"consul-network-segment": ""}`,
/// beside the configured `node_meta`; an SRV answer carries the TXT of its
/// target, as Consul's guides show.
#[test]
fn node_meta_segment_and_its_txt_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meta.json"),
        r#"{"node_meta": {"rack": "r1"}}"#,
    )
    .unwrap();
    let dns = free_port();
    let d = dns.to_string();
    let cfg = dir.path().to_str().unwrap();
    let a = Agent::spawn(
        &[
            "agent",
            "-dev",
            "-node",
            "n1",
            "-http-port",
            "0",
            "-dns-port",
            &d,
            "-config-dir",
            cfg,
        ],
        None,
    );
    // The leader registers the node from gossip first; anti-entropy then
    // writes the agent's own view of it, meta included.
    assert!(wait_until(Duration::from_secs(10), || {
        get(&a, "catalog/nodes")[0]["Meta"]
            .get("consul-network-segment")
            .is_some()
    }));
    let nodes = get(&a, "catalog/nodes");
    assert_eq!(
        nodes[0]["Meta"],
        json!({"consul-network-segment": "", "rack": "r1"})
    );
    assert_eq!(get(&a, "agent/self")["Meta"], nodes[0]["Meta"]);

    let out = dig(dns, &["n1.node.consul"]);
    assert_eq!(
        section(&out, "ANSWER SECTION"),
        ["n1.node.consul. A 127.0.0.1"],
        "{out}"
    );
    let mut extra = section(&out, "ADDITIONAL SECTION");
    extra.sort();
    assert_eq!(
        extra,
        [
            "n1.node.consul. TXT \"consul-network-segment=\"",
            "n1.node.consul. TXT \"rack=r1\""
        ],
        "{out}"
    );
    let out = dig(dns, &["n1.node.consul", "ANY"]);
    let mut answer = section(&out, "ANSWER SECTION");
    answer.sort();
    assert_eq!(
        answer,
        [
            "n1.node.consul. A 127.0.0.1",
            "n1.node.consul. TXT \"consul-network-segment=\"",
            "n1.node.consul. TXT \"rack=r1\""
        ],
        "{out}"
    );

    // The "register a service" guide: an SRV answer's target comes with
    // its address and its node's meta as TXT.
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&json!({"Name": "web", "Port": 80}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(10), || {
        dig(dns, &["+short", "web.service.consul"]).trim() == "127.0.0.1"
    }));
    let out = dig(dns, &["web.service.consul", "SRV"]);
    assert_eq!(
        section(&out, "ANSWER SECTION"),
        ["web.service.consul. SRV 1 1 80 n1.node.dc1.consul."],
        "{out}"
    );
    assert_eq!(
        section(&out, "ADDITIONAL SECTION"),
        [
            "n1.node.dc1.consul. A 127.0.0.1",
            "n1.node.dc1.consul. TXT \"consul-network-segment=\"",
            "n1.node.dc1.consul. TXT \"rack=r1\""
        ],
        "{out}"
    );

    // A node read back from the catalog registers again as it is: its
    // reserved key is not refused (user keys with `consul-` still are, in
    // agent config and service meta).
    let r = client()
        .put(format!("{}/v1/catalog/register", a.url))
        .json(&json!({"Node": "ext", "Address": "10.0.0.9", "NodeMeta": nodes[0]["Meta"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// A user's `node_meta` may not use the reserved prefix (Consul's words),
/// though the agent's own key carries it.
#[test]
fn node_meta_reserved_prefix_is_refused_in_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("meta.json");
    std::fs::write(&f, r#"{"node_meta": {"consul-network-segment": "x"}}"#).unwrap();
    let (code, err) = agent_refuses(&[
        "agent",
        "-dev",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-config-file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Key prefix 'consul-' is reserved for internal use"),
        "{err}"
    );
}

const DNS_WARNING: &str = "Service name will not be discoverable via DNS due to invalid \
                           characters. Valid characters include all alpha-numerics and dashes.";

/// `redis.db` is accepted (HTTP and `-config-dir`) with Consul's warning
/// naming the service; a DNS-valid name gets none.
#[test]
fn service_name_dns_cannot_serve_is_accepted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("redis.json"),
        r#"{"service": {"name": "redis.db", "port": 6379}}"#,
    )
    .unwrap();
    let a = Agent::dev(&["-config-dir", dir.path().to_str().unwrap()]);
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&json!({"Name": "my_cache", "Port": 11211}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&json!({"Name": "web", "Port": 80}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = get(&a, "agent/services");
    assert!(
        s.get("redis.db").is_some() && s.get("my_cache").is_some(),
        "{s}"
    );
    let log = a.log_text();
    for name in ["redis.db", "my_cache"] {
        assert!(
            log.lines()
                .any(|l| l.contains(DNS_WARNING) && l.contains(name)),
            "no DNS warning for {name}:\n{log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.contains(DNS_WARNING) && l.contains("=web")),
        "{log}"
    );
}

/// Unknown keys in definition files are errors naming the key, as Consul's
/// `invalid config key service.bogus_key`: `-config-dir` refuses to start,
/// `tribune services register FILE` registers nothing, a reload keeps the
/// running state; Consul's spellings (`Name`/`name`, `enable_tag_override`,
/// `EnableTagOverride`, `deregister_critical_service_after`,
/// `tls_skip_verify`, ...) all pass.
#[test]
fn unknown_keys_in_definition_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("web.json");
    std::fs::write(
        &bad,
        r#"{"service": {"name": "web", "port": 80, "bogus_key": true}}"#,
    )
    .unwrap();
    let (code, err) = agent_refuses(&[
        "agent",
        "-dev",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-config-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "failed to parse {}: invalid config key service.bogus_key",
        bad.display()
    );
    assert!(err.contains(&want), "{err}");

    // Consul's spellings load.
    let good = tempfile::tempdir().unwrap();
    std::fs::write(
        good.path().join("web.json"),
        r#"{"service": {"Name": "web", "port": 80, "enable_tag_override": true,
            "Checks": [{"http": "http://127.0.0.1:1/health", "interval": "10s",
                        "tls_skip_verify": true, "deregister_critical_service_after": "90m"},
                       {"TTL": "30s", "DeregisterCriticalServiceAfter": "1h", "ServiceID": "web"}]}}"#,
    )
    .unwrap();
    std::fs::write(
        good.path().join("db.hcl"),
        "service {\n  name = \"db\"\n  EnableTagOverride = true\n  check {\n    args = [\"true\"]\n    interval = \"30s\"\n  }\n}\n",
    )
    .unwrap();
    let a = Agent::dev(&[
        "-enable-script-checks",
        "-config-dir",
        good.path().to_str().unwrap(),
    ]);
    let s = get(&a, "agent/services");
    assert_eq!(s["web"]["EnableTagOverride"], true, "{s}");
    assert_eq!(s["db"]["EnableTagOverride"], true, "{s}");

    // services register FILE: the same error, nothing registered.
    let regfile = dir.path().join("api.json");
    std::fs::write(
        &regfile,
        r#"{"service": {"name": "api", "check": {"ttl": "10s", "intervall": "5s"}}}"#,
    )
    .unwrap();
    let out = run_cli(
        &a.addr,
        &["services", "register", regfile.to_str().unwrap()],
        None,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "failed to parse {}: invalid config key service.check.intervall",
            regfile.display()
        )),
        "{}",
        out.stderr
    );
    assert!(get(&a, "agent/services").get("api").is_none());

    // A reload that meets a bad file fails with the same words and keeps
    // what runs.
    std::fs::write(
        good.path().join("web.json"),
        r#"{"service": {"name": "web", "port": 81, "bogus_key": 1}}"#,
    )
    .unwrap();
    let r = client()
        .put(format!("{}/v1/agent/reload", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .unwrap()
        .contains("invalid config key service.bogus_key"),);
    assert_eq!(get(&a, "agent/services")["web"]["Port"], 80);
}

/// Unknown top-level config keys are Consul's error too; a Consul key
/// tribune does not implement (`telemetry.statsd_address`) only warns.
#[test]
fn unknown_top_level_keys_error_consul_keys_warn() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("agent.json");
    std::fs::write(&f, r#"{"datacentre": "east"}"#).unwrap();
    let (code, err) = agent_refuses(&[
        "agent",
        "-dev",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-config-file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "failed to parse {}: invalid config key datacentre",
            f.display()
        )),
        "{err}"
    );
    std::fs::write(
        &f,
        r#"{"datacenter": "east", "telemetry": {"disable_hostname": true, "statsd_address": "127.0.0.1:8125"}}"#,
    )
    .unwrap();
    let a = Agent::dev(&["-config-file", f.to_str().unwrap()]);
    assert_eq!(get(&a, "agent/self")["Config"]["Datacenter"], "east");
    assert!(a.log_text().contains("telemetry"), "{}", a.log_text());
}

/// `/v1/agent/self` `Config.Version` is the Consul version whose API
/// tribune implements (clients gate features on it); tribune's own is in
/// `Config.TribuneVersion` and `Stats.build.tribune_version`.
#[test]
fn agent_self_versions() {
    let a = Agent::dev(&[]);
    let me = get(&a, "agent/self");
    assert_eq!(me["Config"]["Version"], "1.21.0");
    assert_eq!(me["Stats"]["build"]["version"], "1.21.0");
    let own = env!("CARGO_PKG_VERSION");
    assert_eq!(me["Config"]["TribuneVersion"], own);
    assert_eq!(me["Stats"]["build"]["tribune_version"], own);
}
