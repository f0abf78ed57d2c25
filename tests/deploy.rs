//! Deployment pieces against the real binaries: the systemd units in
//! `examples/systemd/` (checked by `systemd-analyze verify`), readiness on
//! `NOTIFY_SOCKET` and `-pid-file`, the container entrypoint
//! (`examples/docker/docker-entrypoint.sh`, run outside a container), and
//! shell completion.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tribune_tests::{bin, client, free_port, root, spawn_logged, stop_gracefully, wait_for};

fn bin_dir() -> PathBuf {
    bin("tribune").parent().unwrap().to_path_buf()
}

#[test]
fn systemd_units_verify() {
    let d = tempfile::tempdir().unwrap();
    let dir = root().join("examples/systemd");
    let mut units = Vec::new();
    for name in ["tribune-server", "tribune-client", "tribune-template"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.service"))).unwrap();
        // As installed: the binaries where the unit says, here the built ones.
        let text = text.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        let p = d.path().join(format!("{name}.service"));
        std::fs::write(&p, &text).unwrap();
        units.push((name, text, p));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| &u.2))
        .output()
        .expect("systemd-analyze must be installed (test.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Warnings name the unit file; ours must have none.
    for (name, _, _) in &units {
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
        assert!(ours.is_empty(), "{name}: {ours:?}");
    }
    let has = |name: &str, line: &str| {
        let u = units.iter().find(|u| u.0 == name).unwrap();
        assert!(
            u.1.lines().any(|l| l.trim() == line),
            "{name} lacks {line:?}"
        );
    };
    for name in ["tribune-server", "tribune-client"] {
        has(name, "Type=notify");
        has(name, "ExecReload=/bin/kill --signal HUP $MAINPID");
        has(name, "LimitNOFILE=65536");
    }
    has("tribune-client", "KillSignal=SIGINT");
    has("tribune-server", "KillSignal=SIGTERM");
    has(
        "tribune-template",
        "ExecReload=/bin/kill --signal HUP $MAINPID",
    );
    // The sample configurations the units read are valid.
    for f in ["server.hcl", "client.hcl"] {
        let out = Command::new(bin("tribune"))
            .args(["validate", "-quiet"])
            .arg(dir.join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The agent tells systemd READY=1 once its HTTP API answers (the API is
/// asked the moment the message arrives, without retrying), STOPPING=1 on
/// SIGTERM; `-pid-file` holds its pid while it runs.
#[test]
fn notify_socket_ready_once_serving_and_pid_file() {
    let d = tempfile::tempdir().unwrap();
    let sock_path = d.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let port = free_port();
    let pid_file = d.path().join("run/tribune.pid");
    std::fs::create_dir_all(pid_file.parent().unwrap()).unwrap();
    let mut child = Command::new(bin("tribune"))
        .args([
            "agent",
            "-dev",
            "-dns-port",
            "-1",
            "-http-port",
            &port.to_string(),
        ])
        .arg("-pid-file")
        .arg(&pid_file)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("CONSUL_HTTP_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let answer = client()
        .get(format!("http://127.0.0.1:{port}/v1/agent/self"))
        .timeout(Duration::from_secs(5))
        .send();
    assert_eq!(msg, "READY=1\n");
    let answer = answer.expect("the API answers when READY=1 arrives");
    assert_eq!(answer.status(), 200);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id());
    // Nothing else until shutdown, then STOPPING=1.
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(sock.recv(&mut buf).is_err(), "one READY=1 only");
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    // An unwritable pid file stops the agent before it starts.
    let out = Command::new(bin("tribune"))
        .args(["agent", "-dev", "-dns-port", "-1", "-http-port", "0"])
        .arg("-pid-file")
        .arg(d.path().join("no/such/dir/tribune.pid"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid file"));
}

fn entrypoint() -> PathBuf {
    root().join("examples/docker/docker-entrypoint.sh")
}

/// The entrypoint with the built tribune first on PATH, its directories in
/// `dir`, the environment cleared of the variables it reads.
fn entry_cmd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(entrypoint());
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap());
    cmd.args(args)
        .env("PATH", path)
        .env("TRIBUNE_DATA_DIR", dir.join("data"))
        .env("TRIBUNE_CONFIG_DIR", dir.join("config"))
        .env_remove("CONSUL_HTTP_ADDR");
    for v in ["BIND_INTERFACE", "CLIENT_INTERFACE", "LOCAL_CONFIG"] {
        cmd.env_remove(format!("TRIBUNE_{v}"));
        cmd.env_remove(format!("CONSUL_{v}"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn entry_output(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = entry_cmd(dir, args, env).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn container_entrypoint_rewrites_arguments() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("config")).unwrap();
    // `agent`: tribune agent with the data and config dirs, -bind and
    // -client from the interfaces, TRIBUNE_LOCAL_CONFIG in local.json.
    let port = free_port();
    let local = format!(r#"{{"node_name": "docker-node", "ports": {{"http": {port}}}}}"#);
    let cmd = entry_cmd(
        d.path(),
        &[
            "agent",
            "-server",
            "-bootstrap-expect=1",
            "-dns-port=-1",
            "-server-port=0",
        ],
        &[
            ("TRIBUNE_LOCAL_CONFIG", &local),
            ("TRIBUNE_BIND_INTERFACE", "lo"),
            ("CONSUL_CLIENT_INTERFACE", "lo"),
        ],
    );
    let (mut child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    let url = format!("http://{addr}");
    let v: Value = wait_for("agent/self", Duration::from_secs(20), || {
        client()
            .get(format!("{url}/v1/agent/self"))
            .send()
            .ok()?
            .json()
            .ok()
    });
    assert_eq!(v["Config"]["NodeName"], "docker-node");
    assert_eq!(
        std::fs::read_to_string(d.path().join("config/local.json")).unwrap(),
        format!("{local}\n")
    );
    assert!(
        d.path().join("data/node-id").is_file(),
        "data in TRIBUNE_DATA_DIR"
    );
    let text = log.lock().unwrap().join("\n");
    assert!(
        text.contains("==> Found address '127.0.0.1' for interface 'lo', setting bind option..."),
        "{text}"
    );
    assert!(text.contains("setting client option"), "{text}");
    // exec: the process started is the agent itself (signals reach it).
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe.file_name().unwrap(), "tribune");
    stop_gracefully(&mut child, Duration::from_secs(15));

    // A flag or a tribune command runs tribune; anything else as given.
    let (code, out, _) = entry_output(d.path(), &["version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("tribune v"), "{out}");
    let (code, out, _) = entry_output(d.path(), &["-version"], &[]);
    assert_eq!((code, out.starts_with("tribune v")), (0, true), "{out}");
    let (code, out, _) = entry_output(d.path(), &["validate", "-quiet"], &[]);
    assert_eq!(code, 1, "tribune validate ran: {out}");
    let (code, out, _) = entry_output(d.path(), &["echo", "plain", "command"], &[]);
    assert_eq!((code, out.as_str()), (0, "plain command\n"));
    // An interface that does not exist stops it, naming the interface.
    let (code, _, err) = entry_output(
        d.path(),
        &["agent", "-dev"],
        &[("CONSUL_BIND_INTERFACE", "nosuch0")],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Could not find IP for interface 'nosuch0', exiting"
    );
    // -dev gets no data dir (it keeps everything in memory): it starts.
    let cmd = entry_cmd(
        d.path(),
        &["agent", "-dev", "-http-port=0", "-dns-port=-1"],
        &[],
    );
    let (mut child, _, _) = spawn_logged(cmd, "HTTP API listening on http://");
    stop_gracefully(&mut child, Duration::from_secs(15));
}

#[test]
fn shell_completion() {
    let complete = |line: &str| {
        let out = Command::new(bin("tribune"))
            .env("COMP_LINE", line)
            .env("COMP_POINT", line.len().to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(complete("tribune sn"), "snapshot\n");
    assert_eq!(complete("tribune snapshot save -st"), "-stale\n");
    assert_eq!(complete("tribune maint -en"), "-enable\n");
    // COMP_POINT in the middle: only what is before the cursor counts.
    let out = Command::new(bin("tribune"))
        .env("COMP_LINE", "tribune vali x")
        .env("COMP_POINT", "12")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "validate\n");

    let home = tempfile::tempdir().unwrap();
    let run = |arg: &str| {
        Command::new(bin("tribune"))
            .arg(arg)
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let out = run("-autocomplete-install");
    assert_eq!(out.status.code(), Some(1), "no shell rc files yet");
    std::fs::write(home.path().join(".bashrc"), "").unwrap();
    let out = run("-autocomplete-install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rc = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
    let exe = bin("tribune").canonicalize().unwrap();
    assert_eq!(rc, format!("complete -C {} tribune\n", exe.display()));
    // bash itself loads it.
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "source {}/.bashrc; complete -p tribune",
                home.path().display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("complete -C '{}' tribune", exe.display())
    );
    assert!(
        run("--autocomplete-install").status.code() == Some(1),
        "twice"
    );
    assert!(run("-autocomplete-uninstall").status.success());
    assert_eq!(
        std::fs::read_to_string(home.path().join(".bashrc")).unwrap(),
        ""
    );
}
