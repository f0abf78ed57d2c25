//! The client's connection settings, end to end through the real
//! binaries: the token (`-token`, `-token-file`, `CONSUL_HTTP_TOKEN(_FILE)`,
//! tribune-template's `-consul-token` and `consul { token }`) as the
//! request carries it, read off a plain TCP listener that records each
//! request head (the agent ignores tokens until ACLs); and TLS (`https://`,
//! `CONSUL_HTTP_SSL`, CA file and path, client certificates, the TLS server
//! name, `CONSUL_HTTP_SSL_VERIFY=false`) against a real agent behind a
//! TLS front.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tribune_tests::{bin, put_kv, tls, wait_until, Agent, CliOutput};

/// Records every request head; answers each with one KV entry `k` = `hi`.
struct Capture {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn capture() -> Capture {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            if head.is_empty() {
                // A connection closed before any request (a killed watch).
                continue;
            }
            h.lock().unwrap().push(head.to_ascii_lowercase());
            let body = r#"[{"Key":"k","Value":"aGk=","CreateIndex":1,"ModifyIndex":1,"LockIndex":0,"Flags":0}]"#;
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut rest = [0u8; 0];
            let _ = c.read(&mut rest);
        }
    });
    Capture { addr, heads }
}

impl Capture {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.heads.lock().unwrap())
    }
}

fn run(prog: &str, args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> CliOutput {
    let out = Command::new(bin(prog))
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .envs(envs.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every request head captured carries exactly this token.
fn assert_token(heads: &[String], token: &str, what: &str) {
    assert!(!heads.is_empty(), "{what}: no request seen");
    for h in heads {
        let want = format!("x-consul-token: {token}\r\n");
        assert!(h.contains(&want), "{what}: {h}");
        assert_eq!(h.matches("x-consul-token").count(), 1, "{what}: {h}");
    }
}

#[test]
fn the_cli_sends_the_configured_token() {
    let cap = capture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tok"), "file-token\n").unwrap();
    let tf = d.join("tok").display().to_string();
    let addr = cap.addr.as_str();
    let out = run(
        "tribune",
        &["kv", "get", "-http-addr", addr, "-token", "flag-token", "k"],
        &[],
        d,
    );
    assert_eq!(out.stdout, "hi\n", "{}", out.stderr);
    assert_token(&cap.take(), "flag-token", "-token");
    let out = run(
        "tribune",
        &["kv", "get", "-http-addr", addr, "-token-file", &tf, "k"],
        &[],
        d,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_token(&cap.take(), "file-token", "-token-file");
    let out = run(
        "tribune",
        &["members", "-http-addr", addr],
        &[("CONSUL_HTTP_TOKEN", "env-token")],
        d,
    );
    let _ = out;
    assert_token(&cap.take(), "env-token", "CONSUL_HTTP_TOKEN");
    // The file wins over the token, as in Consul's client.
    let out = run(
        "tribune",
        &["kv", "get", "-token", "flag-token", "k"],
        &[("CONSUL_HTTP_ADDR", addr), ("CONSUL_HTTP_TOKEN_FILE", &tf)],
        d,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_token(&cap.take(), "file-token", "CONSUL_HTTP_TOKEN_FILE");
    // No token: no header.
    let out = run("tribune", &["kv", "get", "-http-addr", addr, "k"], &[], d);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(cap.take().iter().all(|h| !h.contains("x-consul-token")));
    // A token file that cannot be read fails the command, naming it.
    let out = run(
        "tribune",
        &[
            "kv",
            "get",
            "-http-addr",
            addr,
            "-token-file",
            "/nonexistent/tok",
            "k",
        ],
        &[],
        d,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("Error loading token file: /nonexistent/tok: no such file or directory"),
        "{}",
        out.stderr
    );
    assert!(cap.take().is_empty());
}

#[test]
fn watch_and_template_send_the_configured_token() {
    let cap = capture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A watch plan (the async client): its agent/self check and its query.
    let mut w = Command::new(bin("tribune"))
        .args([
            "watch",
            "-http-addr",
            &cap.addr,
            "-token",
            "watch-token",
            "-type",
            "key",
            "-key",
            "k",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || cap
        .heads
        .lock()
        .unwrap()
        .len()
        >= 2));
    let _ = w.kill();
    let _ = w.wait();
    assert_token(&cap.take(), "watch-token", "watch -token");
    std::fs::write(d.join("in.tmpl"), "{{ key \"k\" }}").unwrap();
    let once = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec!["-once", "-template", "in.tmpl:out.txt"];
        args.extend_from_slice(extra);
        let out = run("tribune-template", &args, envs, d);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(std::fs::read_to_string(d.join("out.txt")).unwrap(), "hi");
    };
    once(
        &["-consul-addr", &cap.addr, "-consul-token", "ct-flag"],
        &[],
    );
    assert_token(&cap.take(), "ct-flag", "-consul-token");
    once(
        &["-consul-addr", &cap.addr],
        &[("CONSUL_HTTP_TOKEN", "ct-env")],
    );
    assert_token(&cap.take(), "ct-env", "template CONSUL_HTTP_TOKEN");
    std::fs::write(
        d.join("ct.hcl"),
        format!(
            "consul {{\n  address = \"{}\"\n  token = \"ct-file\"\n}}\n",
            cap.addr
        ),
    )
    .unwrap();
    let out = run(
        "tribune-template",
        &[
            "-once",
            "-config",
            "ct.hcl",
            "-template",
            "in.tmpl:out2.txt",
        ],
        &[],
        d,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_token(&cap.take(), "ct-file", "consul { token }");
}

struct TlsSetup {
    _agent: Agent,
    dir: tempfile::TempDir,
}

fn tls_setup() -> TlsSetup {
    let agent = Agent::dev(&["-node", "tlsclient"]);
    put_kv(&agent, "t/k", "over-tls");
    let dir = tempfile::tempdir().unwrap();
    tls::make_certs(dir.path());
    TlsSetup { _agent: agent, dir }
}

fn upstream(a: &Agent) -> u16 {
    a.addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_cli_speaks_tls_as_configured() {
    let s = tls_setup();
    let d = s.dir.path();
    let front = tls::front(d, upstream(&s._agent), false);
    let https = format!("https://localhost:{}", front.port);
    let get = |args: &[&str], envs: &[(&str, &str)]| {
        let mut a = vec!["kv", "get"];
        a.extend_from_slice(args);
        a.push("t/k");
        run("tribune", &a, envs, d)
    };
    let out = get(&["-http-addr", &https, "-ca-file", "ca.pem"], &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "over-tls\n"),
        "{}",
        out.stderr
    );
    // Without the CA: refused, in Go's words.
    let out = get(&["-http-addr", &https], &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("x509: certificate signed by unknown authority"),
        "{}",
        out.stderr
    );
    let out = get(&["-http-addr", &https, "-ca-file", "other-ca.pem"], &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    // The environment: CONSUL_HTTP_SSL with a bare address, CONSUL_CACERT.
    let bare = format!("localhost:{}", front.port);
    let out = get(
        &[],
        &[
            ("CONSUL_HTTP_ADDR", &bare),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_CACERT", "ca.pem"),
        ],
    );
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    // A CA directory.
    std::fs::create_dir(d.join("cas")).unwrap();
    std::fs::copy(d.join("ca.pem"), d.join("cas/ca.pem")).unwrap();
    std::fs::write(d.join("cas/README"), "not a certificate").unwrap();
    let out = get(&["-http-addr", &https, "-ca-path", "cas"], &[]);
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    // 127.0.0.1 is not in the certificate; the TLS server name is.
    let ip = format!("https://127.0.0.1:{}", front.port);
    let out = get(&["-http-addr", &ip, "-ca-file", "ca.pem"], &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let out = get(
        &[
            "-http-addr",
            &ip,
            "-ca-file",
            "ca.pem",
            "-tls-server-name",
            "agent.tribune.test",
        ],
        &[],
    );
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    let out = get(
        &["-http-addr", &ip, "-ca-file", "ca.pem"],
        &[("CONSUL_TLS_SERVER_NAME", "agent.tribune.test")],
    );
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    // Verification off: no CA needed.
    let out = get(
        &["-http-addr", &https],
        &[("CONSUL_HTTP_SSL_VERIFY", "false")],
    );
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    let out = get(
        &["-http-addr", &https],
        &[("CONSUL_HTTP_SSL_VERIFY", "maybe")],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("CONSUL_HTTP_SSL_VERIFY"),
        "{}",
        out.stderr
    );
    // An unreadable CA file is named.
    let out = get(&["-http-addr", &https, "-ca-file", "missing.pem"], &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("missing.pem: no such file or directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn client_certificates_are_presented_when_configured() {
    let s = tls_setup();
    let d = s.dir.path();
    let front = tls::front(d, upstream(&s._agent), true);
    let https = format!("https://localhost:{}", front.port);
    let base = [
        "kv",
        "get",
        "-http-addr",
        https.as_str(),
        "-ca-file",
        "ca.pem",
    ];
    let mut without = base.to_vec();
    without.push("t/k");
    let out = run("tribune", &without, &[], d);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let mut with = base.to_vec();
    with.extend_from_slice(&[
        "-client-cert",
        "client.pem",
        "-client-key",
        "client.key",
        "t/k",
    ]);
    let out = run("tribune", &with, &[], d);
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    let out = run(
        "tribune",
        &without,
        &[
            ("CONSUL_CLIENT_CERT", "client.pem"),
            ("CONSUL_CLIENT_KEY", "client.key"),
        ],
        d,
    );
    assert_eq!(out.stdout, "over-tls\n", "{}", out.stderr);
    let out = run(
        "tribune",
        &[
            "kv",
            "get",
            "-http-addr",
            &https,
            "-ca-file",
            "ca.pem",
            "-client-cert",
            "client.pem",
            "t/k",
        ],
        &[],
        d,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("must be given together"),
        "{}",
        out.stderr
    );
    // tribune-template: consul-template's flags, then confd's.
    std::fs::write(d.join("in.tmpl"), "{{ key \"t/k\" }}").unwrap();
    let bare = format!("localhost:{}", front.port);
    let ct = [
        "-once",
        "-template",
        "in.tmpl:ct.txt",
        "-consul-addr",
        &bare,
        "-consul-ssl",
        "-consul-ssl-ca-cert",
        "ca.pem",
        "-consul-ssl-cert",
        "client.pem",
        "-consul-ssl-key",
        "client.key",
    ];
    let out = run("tribune-template", &ct, &[], d);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("ct.txt")).unwrap(),
        "over-tls"
    );
    let out = run("tribune-template", &ct[..7], &[], d);
    assert_ne!(out.code, 0, "no client certificate: {}", out.stderr);
    let confd = [
        "-onetime",
        "-backend",
        "consul",
        "-node",
        &bare,
        "-scheme",
        "https",
        "-client-ca-keys",
        "ca.pem",
        "-client-cert",
        "client.pem",
        "-client-key",
        "client.key",
        "-template",
        "in.tmpl:confd.txt",
    ];
    let out = run("tribune-template", &confd, &[], d);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("confd.txt")).unwrap(),
        "over-tls"
    );
}
