//! TLS with real processes: `tribune tls ca/cert create` (checked with
//! openssl), the HTTPS API with client certificates required (curl,
//! python-consul, chromium), and certificate rotation by SIGHUP.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tribune_tests::{bin, spawn_logged, wait_until, Agent};

/// `tribune <args>` in `dir`; panics unless it succeeds.
fn tribune_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("tribune"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tribune {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and server, client and cli certificates for dc1 in `dir`.
fn make_pki(dir: &Path) {
    tribune_in(dir, &["tls", "ca", "create"]);
    tribune_in(dir, &["tls", "cert", "create", "-server", "-dc", "dc1"]);
    tribune_in(dir, &["tls", "cert", "create", "-client", "-dc", "dc1"]);
    tribune_in(dir, &["tls", "cert", "create", "-cli", "-dc", "dc1"]);
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn tls_commands_write_consul_files_and_sans() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let out = tribune_in(dir, &["tls", "ca", "create"]);
    assert!(out.contains("==> Saved consul-agent-ca.pem"), "{out}");
    assert!(out.contains("==> Saved consul-agent-ca-key.pem"), "{out}");
    // a second CA would overwrite the first: refused
    let again = Command::new(bin("tribune"))
        .args(["tls", "ca", "create"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let out = tribune_in(
        dir,
        &[
            "tls", "cert", "create", "-server", "-dc", "dc1", "-node", "s1",
        ],
    );
    assert!(out.contains("==> Saved dc1-server-consul-0.pem"), "{out}");
    let out = tribune_in(dir, &["tls", "cert", "create", "-server", "-dc", "dc1"]);
    assert!(out.contains("dc1-server-consul-1.pem"), "{out}");
    tribune_in(dir, &["tls", "cert", "create", "-client"]);
    tribune_in(dir, &["tls", "cert", "create", "-cli"]);
    for f in [
        "consul-agent-ca.pem",
        "consul-agent-ca-key.pem",
        "dc1-server-consul-0.pem",
        "dc1-server-consul-0-key.pem",
        "dc1-client-consul-0.pem",
        "dc1-client-consul-0-key.pem",
        "dc1-cli-consul-0.pem",
        "dc1-cli-consul-0-key.pem",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("consul-agent-ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "private keys are the owner's only");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &p("consul-agent-ca.pem"),
        &p("dc1-server-consul-0.pem"),
        &p("dc1-client-consul-0.pem"),
        &p("dc1-cli-consul-0.pem"),
    ]);
    assert!(ok, "{text}");
    let (_, server) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &p("dc1-server-consul-0.pem"),
    ]);
    for san in [
        "DNS:server.dc1.consul",
        "DNS:s1.server.dc1.consul",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
    ] {
        assert!(server.contains(san), "{san} in\n{server}");
    }
    let (_, client) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &p("dc1-client-consul-0.pem"),
    ]);
    assert!(client.contains("DNS:client.dc1.consul"), "{client}");
    assert!(!client.contains("server.dc1.consul"), "{client}");
    let (_, cli) = openssl(&["x509", "-noout", "-text", "-in", &p("dc1-cli-consul-0.pem")]);
    assert!(cli.contains("DNS:cli.dc1.consul"), "{cli}");
    assert!(!cli.contains("TLS Web Server Authentication"), "{cli}");
    // exactly one kind
    let none = Command::new(bin("tribune"))
        .args(["tls", "cert", "create"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!none.status.success());
}

struct Https {
    agent: Agent,
    port: u16,
}

/// A dev agent with plain HTTP off and HTTPS on (port 0) from `conf`.
fn https_agent(conf: &Path, extra: &[&str]) -> Https {
    let mut cmd = Command::new(bin("tribune"));
    cmd.args([
        "agent",
        "-dev",
        "-dns-port",
        "-1",
        "-config-file",
        conf.to_str().unwrap(),
    ])
    .args(extra)
    .env_remove("CONSUL_HTTP_ADDR");
    let (child, addr, log) = spawn_logged(cmd, "HTTPS API listening on https://");
    let addr = addr.split_whitespace().next().unwrap().to_string();
    let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    Https {
        agent: Agent {
            child,
            url: format!("https://{addr}"),
            addr,
            log,
            data_dir: None,
        },
        port,
    }
}

fn tls_conf(dir: &Path, verify_incoming: bool) -> PathBuf {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let conf = dir.join("tls.json");
    std::fs::write(
        &conf,
        serde_json::json!({
            "ports": {"http": -1, "https": 0},
            "tls": {"defaults": {
                "ca_file": p("consul-agent-ca.pem"),
                "cert_file": p("dc1-server-consul-0.pem"),
                "key_file": p("dc1-server-consul-0-key.pem"),
                "verify_incoming": verify_incoming,
            }}
        })
        .to_string(),
    )
    .unwrap();
    conf
}

/// curl's exit code and body.
fn curl(dir: &Path, url: &str, cert: Option<(&str, &str)>, extra: &[&str]) -> (i32, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("consul-agent-ca.pem"))
        .args(extra);
    if let Some((cert, key)) = cert {
        c.arg("--cert")
            .arg(dir.join(cert))
            .arg("--key")
            .arg(dir.join(key));
    }
    let out = c.arg(url).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn https_with_verify_incoming_requires_a_client_certificate() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    make_pki(dir);
    let h = https_agent(&tls_conf(dir, true), &[]);
    let url = format!("https://127.0.0.1:{}/v1/status/leader", h.port);
    assert!(wait_until(Duration::from_secs(20), || {
        let (code, body) = curl(
            dir,
            &url,
            Some(("dc1-cli-consul-0.pem", "dc1-cli-consul-0-key.pem")),
            &[],
        );
        code == 0 && body.contains("127.0.0.1")
    }));
    // no client certificate: the handshake fails
    let (code, _) = curl(dir, &url, None, &[]);
    assert_ne!(code, 0, "no client certificate must be refused");
    // a certificate from another CA is refused too
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    make_pki(&other);
    let (code, _) = curl(
        dir,
        &url,
        Some((
            "other/dc1-cli-consul-0.pem",
            "other/dc1-cli-consul-0-key.pem",
        )),
        &[],
    );
    assert_ne!(code, 0, "a certificate of another CA must be refused");
    // plain HTTP on the HTTPS port gets nothing
    let (code, _) = curl(dir, &url.replace("https", "http"), None, &[]);
    assert_ne!(code, 0);
    // the server's certificate names localhost and server.dc1.consul
    let (code, _) = curl(
        dir,
        &format!("https://localhost:{}/v1/status/leader", h.port),
        Some(("dc1-client-consul-0.pem", "dc1-client-consul-0-key.pem")),
        &[],
    );
    assert_eq!(code, 0);
    let (code, _) = curl(
        dir,
        &format!("https://server.dc1.consul:{}/v1/status/leader", h.port),
        Some(("dc1-client-consul-0.pem", "dc1-client-consul-0-key.pem")),
        &[
            "--resolve",
            &format!("server.dc1.consul:{}:127.0.0.1", h.port),
        ],
    );
    assert_eq!(code, 0);

    // tribune's own CLI over HTTPS (CONSUL_* environment, as Consul's)
    let cli = |args: &[&str], with_cert: bool| {
        let mut c = Command::new(bin("tribune"));
        c.args(args)
            .env("CONSUL_HTTP_ADDR", format!("https://127.0.0.1:{}", h.port))
            .env("CONSUL_CACERT", dir.join("consul-agent-ca.pem"));
        if with_cert {
            c.env("CONSUL_CLIENT_CERT", dir.join("dc1-cli-consul-0.pem"))
                .env("CONSUL_CLIENT_KEY", dir.join("dc1-cli-consul-0-key.pem"));
        }
        c.output().unwrap()
    };
    let out = cli(&["kv", "put", "tls/cli", "over-https"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["kv", "get", "tls/cli"], true);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-https");
    let out = cli(&["kv", "get", "tls/cli"], false);
    assert!(
        !out.status.success(),
        "the CLI without a client certificate is refused"
    );

    // python-consul over HTTPS with the CA and a client certificate
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let script = format!(
        r#"
import consul
c = consul.Consul(host="127.0.0.1", port={port}, scheme="https", verify={ca:?},
                  cert=({cert:?}, {key:?}))
assert c.kv.put("tls/py", "secret") is True
idx, v = c.kv.get("tls/py")
assert v["Value"] == b"secret", v
print("ok", c.status.leader())
"#,
        port = h.port,
        ca = p("consul-agent-ca.pem"),
        cert = p("dc1-cli-consul-0.pem"),
        key = p("dc1-cli-consul-0-key.pem"),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("ok"),
        "python-consul: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // without the client certificate python-consul fails
    let bad = script.replace(
        &format!(
            "cert=({:?}, {:?})",
            p("dc1-cli-consul-0.pem"),
            p("dc1-cli-consul-0-key.pem")
        ),
        "cert=None",
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    drop(h);
}

/// The UI loads over HTTPS in chromium and fills from the API over HTTPS
/// (tests/ui/https.test.mjs, playwright-core as the UI test uses).
#[test]
fn ui_loads_over_https_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "chromium not found at {chromium}: run ./test.sh (it installs Debian's chromium)"
    );
    let ui = tribune_tests::root().join("tests/ui");
    assert!(
        ui.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in tests/ui (./test.sh does)"
    );
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    make_pki(dir);
    let h = https_agent(&tls_conf(dir, false), &["-ui"]);
    let out = Command::new("node")
        .arg("https.test.mjs")
        .current_dir(&ui)
        .env("TRIBUNE_HTTPS_ADDR", &h.agent.url)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok"),
        "UI over HTTPS: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.agent.log_text()
    );
}

/// SIGHUP re-reads the certificate: new connections get the new one, an
/// open connection goes on.
#[test]
fn sighup_rotates_the_https_certificate_without_dropping_connections() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    make_pki(dir);
    let h = https_agent(&tls_conf(dir, false), &[]);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    // Python holds one connection across the reload and reports the
    // certificate each connection saw.
    let script = format!(
        r#"
import http.client, ssl, sys, hashlib
ctx = ssl.create_default_context(cafile={ca:?})
def cert_of(conn):
    return hashlib.sha256(conn.sock.getpeercert(True)).hexdigest()
old = http.client.HTTPSConnection("127.0.0.1", {port}, context=ctx, timeout=10)
old.request("GET", "/v1/status/leader"); old.getresponse().read()
print("before", cert_of(old), flush=True)
sys.stdin.readline()
old.request("GET", "/v1/status/leader"); r = old.getresponse(); r.read()
print("old-conn", r.status, cert_of(old), flush=True)
new = http.client.HTTPSConnection("127.0.0.1", {port}, context=ctx, timeout=10)
new.request("GET", "/v1/status/leader"); r = new.getresponse(); r.read()
print("new-conn", r.status, cert_of(new), flush=True)
"#,
        ca = p("consul-agent-ca.pem"),
        port = h.port
    );
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let before = lines.next().unwrap().unwrap();
    let before_fp = before.split_whitespace().nth(1).unwrap().to_string();
    // a new server certificate, put where the config points
    tribune_in(dir, &["tls", "cert", "create", "-server", "-dc", "dc1"]);
    std::fs::rename(
        dir.join("dc1-server-consul-1.pem"),
        dir.join("dc1-server-consul-0.pem"),
    )
    .unwrap();
    std::fs::rename(
        dir.join("dc1-server-consul-1-key.pem"),
        dir.join("dc1-server-consul-0-key.pem"),
    )
    .unwrap();
    unsafe {
        libc::kill(h.agent.child.id() as i32, libc::SIGHUP);
    }
    assert!(
        wait_until(Duration::from_secs(10), || h
            .agent
            .log_text()
            .contains("tls: HTTPS certificates reloaded")),
        "{}",
        h.agent.log_text()
    );
    writeln!(py.stdin.as_mut().unwrap()).unwrap();
    let old = lines.next().unwrap().unwrap();
    let new = lines.next().unwrap().unwrap();
    let _ = py.wait();
    assert_eq!(
        old,
        format!("old-conn 200 {before_fp}"),
        "the open connection goes on"
    );
    assert!(new.starts_with("new-conn 200 "), "{new}");
    assert_ne!(
        new.split_whitespace().nth(2).unwrap(),
        before_fp,
        "new connections get the new certificate"
    );

    // a broken certificate file: the reload fails, the old one serves on
    std::fs::write(dir.join("dc1-server-consul-0.pem"), "not a certificate").unwrap();
    unsafe {
        libc::kill(h.agent.child.id() as i32, libc::SIGHUP);
    }
    assert!(wait_until(Duration::from_secs(10), || h
        .agent
        .log_text()
        .contains("tls: reload failed")));
    let (code, _) = curl(
        dir,
        &format!("https://127.0.0.1:{}/v1/status/leader", h.port),
        None,
        &[],
    );
    assert_eq!(code, 0, "still serving the last good certificate");
}
