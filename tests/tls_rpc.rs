//! Server RPC (raft, forwarded requests and writes) over mutual TLS with
//! real agents: a cluster with `verify_incoming`, `verify_outgoing` and
//! `verify_server_hostname` forms and replicates, a client agent forwards
//! through it; plaintext on the RPC port, a server with a certificate of
//! another CA, and a server showing a client certificate get no data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::{bin, client, free_ports, wait_until, Agent};

fn tribune_in(dir: &Path, args: &[&str]) {
    let out = Command::new(bin("tribune"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, four server certificates and a client one in `dir`.
fn pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    tribune_in(dir, &["tls", "ca", "create"]);
    for _ in 0..4 {
        tribune_in(dir, &["tls", "cert", "create", "-server", "-dc", "dc1"]);
    }
    tribune_in(dir, &["tls", "cert", "create", "-client", "-dc", "dc1"]);
}

/// The mTLS config of one agent: `cert` (a file name in `pki`) and its key.
fn conf(dir: &Path, name: &str, pki: &Path, cert: &str) -> PathBuf {
    let f = |n: &str| pki.join(n).to_str().unwrap().to_string();
    let p = dir.join(format!("{name}.json"));
    std::fs::write(
        &p,
        json!({
            "performance": {"raft_multiplier": 1},
            "tls": {
                "defaults": {
                    "ca_file": f("consul-agent-ca.pem"),
                    "cert_file": f(&format!("{cert}.pem")),
                    "key_file": f(&format!("{cert}-key.pem")),
                    "verify_incoming": true,
                    "verify_outgoing": true,
                },
                "internal_rpc": {"verify_server_hostname": true}
            }
        })
        .to_string(),
    )
    .unwrap();
    p
}

fn spawn(
    dir: &Path,
    name: &str,
    ports: (u16, u16),
    server: bool,
    conf: &Path,
    join: &[u16],
) -> Agent {
    let data = dir.join(name);
    let mut args: Vec<String> = vec!["agent".into()];
    if server {
        args.extend(["-server", "-bootstrap-expect", "3"].map(String::from));
    }
    for (f, v) in [
        ("-node", name.to_string()),
        ("-data-dir", data.to_str().unwrap().to_string()),
        ("-http-port", "0".into()),
        ("-dns-port", "-1".into()),
        ("-server-port", ports.0.to_string()),
        ("-serf-lan-port", ports.1.to_string()),
        ("-retry-interval", "1s".into()),
        ("-config-file", conf.to_str().unwrap().to_string()),
    ] {
        args.push(f.into());
        args.push(v);
    }
    for p in join {
        args.push("-retry-join".into());
        args.push(format!("127.0.0.1:{p}"));
    }
    Agent::start(&args, Some(data))
}

fn get_stale(a: &Agent, key: &str) -> Option<String> {
    let r = client()
        .get(format!("{}/v1/kv/{key}?raw&stale", a.url))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    (r.status() == 200).then(|| r.text().unwrap())
}

fn put(a: &Agent, key: &str, v: &str) -> bool {
    client()
        .put(format!("{}/v1/kv/{key}", a.url))
        .body(v.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .is_ok_and(|r| r.status() == 200)
}

#[test]
fn mtls_cluster_replicates_and_refuses_impostors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = dir.join("pki");
    pki(&good);
    let ports = free_ports(14);
    let p: Vec<(u16, u16)> = (0..7).map(|i| (ports[2 * i], ports[2 * i + 1])).collect();
    let serf: Vec<u16> = p[..3].iter().map(|x| x.1).collect();
    let servers: Vec<Agent> = (0..3)
        .map(|i| {
            let c = conf(
                dir,
                &format!("s{i}"),
                &good,
                &format!("dc1-server-consul-{i}"),
            );
            spawn(dir, &format!("s{i}"), p[i], true, &c, &serf)
        })
        .collect();
    let cc = conf(dir, "c0", &good, "dc1-client-consul-0");
    let c0 = spawn(dir, "c0", p[3], false, &cc, &serf);
    assert!(servers[0]
        .log_text()
        .contains("(mutual TLS: client certificates required)"));
    // forms, and a write through the client agent is forwarded over mTLS
    assert!(
        wait_until(Duration::from_secs(40), || put(&c0, "mtls/a", "one")),
        "no write through the client agent:\n{}\n{}",
        servers[0].log_text(),
        c0.log_text()
    );
    for s in &servers {
        assert!(
            wait_until(Duration::from_secs(10), || get_stale(s, "mtls/a")
                .as_deref()
                == Some("one")),
            "replicated over mTLS"
        );
    }
    assert_eq!(
        client()
            .get(format!("{}/v1/kv/mtls/a?raw", c0.url))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "one"
    );

    // plaintext HTTP/2 on the RPC port is refused, and logged
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--http2-prior-knowledge",
            "-X",
            "POST",
        ])
        .arg(format!("http://127.0.0.1:{}/rpc/raft/info", p[0].0))
        .output()
        .unwrap();
    assert!(!out.status.success(), "plaintext RPC must fail");
    assert!(wait_until(Duration::from_secs(5), || servers[0]
        .log_text()
        .contains("TLS handshake from")));

    // impostors: a server of another CA, and one showing a client certificate
    let other = dir.join("other");
    pki(&other);
    let oc = conf(dir, "s3", &other, "dc1-server-consul-0");
    let s3 = spawn(dir, "s3", p[4], true, &oc, &serf);
    let ic = conf(dir, "s4", &good, "dc1-client-consul-0");
    let s4 = spawn(dir, "s4", p[5], true, &ic, &serf);
    // both are in gossip...
    assert!(wait_until(Duration::from_secs(20), || {
        let v: Value = client()
            .get(format!("{}/v1/agent/members", servers[0].url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["Status"] == 1)
            .count()
            == 6
    }));
    // ...but get no raft data while the cluster goes on writing
    for i in 0..20 {
        assert!(
            put(&servers[0], &format!("mtls/n{i}"), "x")
                || put(&servers[1], &format!("mtls/n{i}"), "x")
        );
        thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_until(Duration::from_secs(10), || get_stale(
        &servers[2],
        "mtls/n19"
    )
    .is_some()));
    // the control: a fourth server with a good certificate catches up
    let gc = conf(dir, "s5", &good, "dc1-server-consul-3");
    let s5 = spawn(dir, "s5", p[6], true, &gc, &serf);
    assert!(
        wait_until(Duration::from_secs(20), || get_stale(&s5, "mtls/a")
            .is_some()),
        "a good fourth server replicates:\n{}",
        s5.log_text()
    );
    assert_eq!(
        get_stale(&s3, "mtls/a"),
        None,
        "a server of another CA got data"
    );
    assert_eq!(
        get_stale(&s4, "mtls/a"),
        None,
        "a client certificate posed as a server"
    );
    // the refusals are in the logs
    let all: String = servers
        .iter()
        .map(|s| s.log_text())
        .collect::<Vec<_>>()
        .join("\n")
        + &s3.log_text()
        + &s4.log_text();
    assert!(
        all.contains("TLS handshake from") || all.contains("UnknownIssuer"),
        "the other CA's certificate was refused in the log"
    );
}
