//! The commands and output a Consul user meets in the getting-started
//! guides (issue 13), typed as they type them against real agents: Go-style
//! flag help and errors, error texts naming their cause, `version`,
//! `members -detailed`/`-status`, `info`, `monitor`, `exec`, `-bootstrap`,
//! the start-up banner and the log lines.
//!
//! The cluster test runs its agents on 127.0.0.81-83 with the default ports,
//! as separate hosts would have them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{bin, client, run_cli, spawn_logged, wait_for, wait_until, Agent};

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `tribune <args>` with nothing listening where it looks for the agent.
fn offline(args: &[&str]) -> tribune_tests::CliOutput {
    run_cli(&format!("127.0.0.1:{}", closed_port()), args, None)
}

/// Help is Consul's (`-flag`, never `--flag`) on stdout; an unknown flag is
/// Go's error and usage on stderr, exit 1, with no hint at another flag.
#[test]
fn flags_help_and_errors_are_gos() {
    let out = offline(&["members", "-h"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("Usage: tribune members [options]\n\n"),
        "{}",
        out.stdout
    );
    for needle in [
        "\nHTTP API Options\n",
        "\nCommand Options\n",
        "\n  -detailed\n     Provides detailed information about nodes.\n",
        "\n  -status=<string>\n",
        "\n  -http-addr=<address>\n",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} in:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("--"), "{}", out.stdout);
    assert_eq!(offline(&["members", "-help"]).stdout, out.stdout);
    assert_eq!(offline(&["members", "--help"]).stdout, out.stdout);

    // (`-wan` is a real flag since the WAN pool: another unknown one.)
    let out = offline(&["members", "-segment"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .starts_with("flag provided but not defined: -segment\nUsage:\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\n  -detailed\n    \t"),
        "{}",
        out.stderr
    );
    for bad in ["--detailed", "tip", "similar", "error:"] {
        assert!(!out.stderr.contains(bad), "{bad:?} in {}", out.stderr);
    }

    // Go's other flag errors, each with the usage and exit 1.
    let cases: [(&[&str], &str); 5] = [
        (
            &["members", "-detailed=maybe"],
            "invalid boolean value \"maybe\" for -detailed: parse error\n",
        ),
        (
            &["kv", "put", "-flags=abc", "k", "v"],
            "invalid value \"abc\" for flag -flags: parse error\n",
        ),
        (
            &["agent", "-dev", "-http-port"],
            "flag needs an argument: -http-port\n",
        ),
        (&["members", "---x"], "bad flag syntax: ---x\n"),
        (
            &["kv", "get", "-no-such-flag", "x"],
            "flag provided but not defined: -no-such-flag\n",
        ),
    ];
    for (args, first) in cases {
        let out = offline(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(first) && out.stderr.contains("\nUsage:\n"),
            "{args:?}: {}",
            out.stderr
        );
    }

    // The command list, as mitchellh/cli shows it (127: no command ran).
    let out = offline(&[]);
    assert_eq!(out.code, 127);
    assert!(out.stdout.starts_with(
        "Usage: tribune [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n"
    ));
    for cmd in ["exec", "info", "members", "monitor", "version"] {
        assert!(out.stdout.contains(&format!("\n    {cmd} ")), "{cmd}");
    }
    assert_eq!(offline(&["no-such-command"]).code, 127);
    // A command with subcommands shows them (exit 1 without one).
    let out = offline(&["kv"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("\nSubcommands:\n    delete "),
        "{}",
        out.stdout
    );
    // Missing arguments get Consul's words and the help.
    let out = offline(&["join"]);
    assert_eq!(out.code, 1);
    assert!(out
        .stderr
        .starts_with("At least one address to join must be specified.\n\nUsage: tribune join"));
}

/// A failed request says what failed, as Go's client does, in the CLI and
/// in an HTTP check's output.
#[test]
fn errors_name_their_cause() {
    let port = closed_port();
    let out = run_cli(&format!("127.0.0.1:{port}"), &["members"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "Error retrieving members: Get \"http://127.0.0.1:{port}/v1/agent/members\": \
             dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
    let out = run_cli(&format!("127.0.0.1:{port}"), &["kv", "get", "app/x"], None);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "Error querying Consul agent: Get \"http://127.0.0.1:{port}/v1/kv/app/x\": \
             dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );

    let a = Agent::dev(&[]);
    let check = format!(
        r#"{{"Name": "down", "HTTP": "http://127.0.0.1:{port}/health", "Interval": "1s"}}"#
    );
    let r = client()
        .put(format!("{}/v1/agent/check/register", a.url))
        .body(check)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let output = wait_for("the check's first result", Duration::from_secs(10), || {
        let v: Value = client()
            .get(format!("{}/v1/agent/checks", a.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        let out = v["down"]["Output"].as_str()?.to_string();
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(
        output,
        format!(
            "Get \"http://127.0.0.1:{port}/health\": dial tcp 127.0.0.1:{port}: connect: \
             connection refused"
        )
    );
}

/// `version`, `version -format=json`, `-v`, `--version`.
#[test]
fn version_formats() {
    let out = offline(&["version"]);
    assert_eq!(out.code, 0);
    let first = out.stdout.lines().next().unwrap().to_string();
    assert!(first.starts_with("tribune v"), "{}", out.stdout);
    assert!(out.stdout.contains("\nBuild Date 20"), "{}", out.stdout);
    for flag in ["-v", "--version", "-version"] {
        let o = offline(&[flag]);
        assert_eq!(
            (o.code, o.stdout.clone()),
            (0, out.stdout.clone()),
            "{flag}"
        );
    }
    let out = offline(&["version", "-format=json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Version"], first.trim_start_matches("tribune v"));
    for k in ["Revision", "Prerelease", "BuildDate", "RPC"] {
        assert!(v.get(k).is_some(), "{k} in {v}");
    }
    assert!(
        out.stdout.contains("\n   \"Version\""),
        "Consul's indent: {}",
        out.stdout
    );
    let out = offline(&["version", "-format", "xml"]);
    assert_eq!((out.code, out.stderr.trim()), (1, "Unknown format: xml"));
}

/// `members -detailed` lists the tags; `-status` filters by a regexp and
/// exits 2 when nothing matches.
#[test]
fn members_detailed_and_status() {
    let a = Agent::dev(&["-node", "walk-members"]);
    let out = a.cli(&["members"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("Node "), "{}", out.stdout);
    assert!(lines[1].contains(" alive ") && lines[1].contains(" server "));
    assert!(lines[1].ends_with("  default    <all>"), "{}", out.stdout);

    let out = a.cli(&["members", "-detailed"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Node", "Address", "Status", "Tags"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "walk-members");
    assert_eq!(row[2], "alive");
    let tags: Vec<&str> = row[3].split(',').collect();
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(tags, sorted, "tags sorted by key");
    for t in [
        "dc=dc1",
        "role=consul",
        "segment=<all>",
        "partition=default",
        "vsn=2",
    ] {
        assert!(tags.contains(&t), "{t} in {tags:?}");
    }

    let out = a.cli(&["members", "-status", "alive"], None);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("walk-members"));
    let out = a.cli(&["members", "-status=(left|failed)"], None);
    assert_eq!((out.code, out.stdout.as_str()), (2, ""));
    let out = a.cli(&["members", "-status", "("], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Failed to compile status regexp: "),
        "{}",
        out.stderr
    );
}

/// `info` prints the agent's Stats in Consul's sections, keys sorted.
#[test]
fn info_prints_consul_sections() {
    let a = Agent::dev(&[]);
    let svc = r#"{"Name": "web", "Port": 80, "Check": {"TTL": "30s"}}"#;
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .body(svc)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = a.cli(&["info"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sections: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .collect();
    assert_eq!(
        sections,
        [
            "agent:",
            "build:",
            "consul:",
            "raft:",
            "runtime:",
            "serf_lan:"
        ]
    );
    for line in [
        "\tcheck_ttls = 1",
        "\tchecks = 1",
        "\tservices = 1",
        "\tleader = true",
        "\tserver = true",
        "\tstate = Leader",
        "\tnum_peers = 0",
        "\tmembers = 1",
        "\tos = linux",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line:?} in:\n{}",
            out.stdout
        );
    }
    // Keys within a section are sorted.
    let agent: Vec<&str> = out.stdout.lines().skip(1).take(4).collect();
    let mut sorted = agent.clone();
    sorted.sort();
    assert_eq!(agent, sorted);
    let v: Value = client()
        .get(format!("{}/v1/agent/self", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for (_, section) in v["Stats"].as_object().unwrap() {
        for (k, val) in section.as_object().unwrap() {
            assert!(val.is_string(), "Stats value {k} is a string: {val}");
        }
    }
}

/// A long-running `tribune` CLI process whose output is collected.
struct Running {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(addr: &str, args: &[&str]) -> Running {
        let mut child = Command::new(bin("tribune"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        for (pipe, buf) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                out.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ] {
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        Running { child, out, err }
    }

    fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_out(&self, needle: &str) {
        let ok = wait_until(Duration::from_secs(20), || self.out().contains(needle));
        assert!(
            ok,
            "no {needle:?} in the output:\n{}\nstderr:\n{}",
            self.out(),
            self.err.lock().unwrap()
        );
    }

    fn signal_and_wait(&mut self, sig: i32) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit after signal {sig}");
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("process did not exit within {limit:?}:\n{}", self.out());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn register(a: &Agent, name: &str) {
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .body(format!(r#"{{"Name": "{name}", "Port": 80}}"#))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn register_web(a: &Agent) {
    register(a, "web");
}

/// Wait until `m` shows the agent's log: register services until one
/// appears in it.
fn wait_attached(a: &Agent, m: &Running) {
    let mut n = 0;
    let attached = wait_until(Duration::from_secs(10), || {
        n += 1;
        register(a, &format!("probe-{n}"));
        thread::sleep(Duration::from_millis(200));
        m.out().contains("service registered")
    });
    assert!(attached, "monitor output:\n{}", m.out());
}

/// `monitor -log-level debug` streams the agent's log live, debug lines
/// included, while the agent itself logs at info; Ctrl-C ends it with 0.
#[test]
fn monitor_streams_the_log() {
    let a = Agent::dev(&[]);
    let mut m = Running::spawn(&a.addr, &["monitor", "-log-level", "debug"]);
    wait_attached(&a, &m);
    register_web(&a);
    m.wait_out("Synced service: service=web");
    let out = a.cli(&["event", "-name", "deploy"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    m.wait_out("[DEBUG] agent: new event: event_name=deploy");
    // The agent's own log stays at info.
    assert!(!a.log_text().contains("[DEBUG]"), "{}", a.log_text());
    // Lines in the shape hclog writes them.
    let line = m
        .out()
        .lines()
        .find(|l| l.contains("Synced service"))
        .unwrap()
        .to_string();
    assert!(
        line.len() > 24 && line.as_bytes()[4] == b'-' && line[19..].starts_with('.'),
        "timestamp first: {line}"
    );
    assert!(line.contains("Z [INFO]  agent: Synced service"), "{line}");
    assert_eq!(m.signal_and_wait(libc::SIGINT), Some(0));

    // -log-json gives hclog's JSON lines.
    let j = Running::spawn(&a.addr, &["monitor", "-log-json"]);
    wait_attached(&a, &j);
    register(&a, "json-web");
    // The sync of json-web's own registration (a probe's may come first).
    let synced_line = |out: &str| {
        out.lines()
            .find(|l| l.contains("\"@message\":\"Synced service\"") && l.contains("json-web"))
            .map(str::to_string)
    };
    assert!(
        wait_until(Duration::from_secs(10), || synced_line(&j.out()).is_some()),
        "monitor output:\n{}",
        j.out()
    );
    let synced: Value = serde_json::from_str(&synced_line(&j.out()).unwrap()).unwrap();
    assert_eq!(synced["@module"], "agent");
    assert_eq!(synced["@level"], "info");
    assert_eq!(synced["service"], "json-web");
    assert!(synced["@timestamp"].is_string());

    let out = a.cli(&["monitor", "-log-level", "loud"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "Error starting monitor: Unexpected response code: 400 (Unknown log level: loud)"
    );
}

/// A TCP connection to `addr` (ipv4) whose receive window is small, so
/// the kernel's buffers fill soon when nothing is read.
fn small_window_connect(addr: &str) -> TcpStream {
    use std::os::fd::FromRawFd;
    let sa: std::net::SocketAddrV4 = addr.parse().unwrap();
    // SAFETY: plain socket calls on a descriptor created and owned here;
    // the structs passed are valid for the sizes given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let small: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: sa.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*sa.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// A watcher that reads nothing cannot hold the agent up: its lines are
/// dropped (and counted in the log once it leaves), writes go on.
#[test]
fn monitor_slow_reader_does_not_block_the_agent() {
    let a = Agent::dev(&[]);
    let mut stuck = small_window_connect(&a.addr);
    write!(
        stuck,
        "GET /v1/agent/monitor?loglevel=trace HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    // Trace lines by the thousand, none read.
    let c = client();
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..400 {
        let w = Instant::now();
        let r = c
            .put(format!("{}/v1/kv/flood/{i}", a.url))
            .body("x".repeat(512))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(w.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a write took {slowest:?} with a stuck monitor ({:?} in all)",
        t.elapsed()
    );
    // Gone: the agent sees it at its next write to it (there are more lines
    // while this watcher is still counted), and says what it dropped.
    drop(stuck);
    let dropped = wait_until(Duration::from_secs(10), || {
        let _ = c.put(format!("{}/v1/kv/after", a.url)).body("x").send();
        a.log_text()
            .contains("[WARN]  agent: Dropped logs during monitor request: dropped_count=")
    });
    assert!(dropped, "{}", a.log_text());
}

/// The stream ends when the agent stops (shutdown does not wait for it);
/// the monitor says so and exits 1, as Consul's does.
#[test]
fn monitor_ends_when_the_agent_stops() {
    let mut a = Agent::dev(&[]);
    let mut m = Running::spawn(&a.addr, &["monitor"]);
    wait_attached(&a, &m);
    let t = Instant::now();
    assert_eq!(a.signal_and_wait(libc::SIGTERM), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(m.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        m.out().contains("Remote side ended the monitor!"),
        "{}",
        m.out()
    );
}

fn remote_exec_config(dir: &std::path::Path) -> String {
    let f = dir.join("exec.json");
    std::fs::write(&f, r#"{"disable_remote_exec": false}"#).unwrap();
    f.to_str().unwrap().to_string()
}

/// Sessions need the node's `serfHealth`, which the leader writes soon
/// after the start; `exec` creates one.
fn wait_serf_health(a: &Agent, node: &str) {
    wait_for("serfHealth", Duration::from_secs(20), || {
        let v: Value = client()
            .get(format!("{}/v1/health/node/{node}", a.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        v.as_array()?
            .iter()
            .any(|c| c["CheckID"] == "serfHealth")
            .then_some(())
    });
}

/// `exec` runs a command on the agents that allow it and prints what each
/// said, Consul's way; the exit code tells whether every node succeeded.
#[test]
fn exec_runs_commands_on_agents() {
    let dir = tempfile::tempdir().unwrap();
    let conf = remote_exec_config(dir.path());
    let a = Agent::dev(&["-node", "walk-exec", "-config-file", &conf]);
    wait_serf_health(&a, "walk-exec");
    let out = a.cli(&["exec", "echo hello; echo oops >&2"], None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "    walk-exec: hello",
            "    walk-exec: oops",
            "    walk-exec:",
            "==> walk-exec: finished with exit code 0",
            "1 / 1 node(s) completed / acknowledged",
        ],
        "{}",
        out.stdout
    );
    assert!(a.log_text().contains("[INFO]  agent: remote exec: script="));

    // A failing command: exit 2, and -verbose tells each step.
    let out = a.cli(&["exec", "-verbose", "-wait=1s", "exit 3"], None);
    assert_eq!(out.code, 2, "{}", out.stdout);
    for needle in [
        "Created remote execution session: ",
        "Uploaded remote execution spec",
        "Fired remote execution event: ",
        "==> walk-exec: acknowledged",
        "==> walk-exec: finished with exit code 3",
        "Completed in ",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }

    // -shell=false runs the words as they are; `-` reads a script.
    let out = a.cli(
        &["exec", "-shell=false", "printf", "%s-%s", "a b", "c"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("    walk-exec: a b-c"),
        "{}",
        out.stdout
    );
    let out = a.cli(&["exec", "-"], Some(b"#!/bin/sh\necho from-stdin\n"));
    assert!(
        out.stdout.contains("    walk-exec: from-stdin"),
        "{}",
        out.stdout
    );

    // Filters: nobody matches, nobody runs.
    let out = a.cli(&["exec", "-node", "^other$", "-wait=500ms", "true"], None);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.trim(), "0 / 0 node(s) completed / acknowledged");

    // Nothing is left in the KV store.
    let r = client()
        .get(format!("{}/v1/kv/_rexec/?recurse", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "{:?}", r.text());

    // Usage errors, in Consul's words.
    let out = a.cli(&["exec"], None);
    assert_eq!(out.code, 1);
    assert!(out
        .stderr
        .starts_with("Must specify a command to execute\n\nUsage: tribune exec"));
    let out = a.cli(&["exec", "-tag", "x", "true"], None);
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "Cannot provide tag filter without service filter.")
    );
    let out = a.cli(&["exec", "-shell=false", "-"], None);
    assert_eq!(
        out.stderr.trim(),
        "Cannot configure -shell=false when reading from stdin"
    );
}

/// Remote execution is off unless the config turns it on: the event is
/// ignored (and said to be), nothing runs.
#[test]
fn exec_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let a = Agent::dev(&["-node", "walk-exec-off"]);
    wait_serf_health(&a, "walk-exec-off");
    let cmd = format!("touch {}", marker.display());
    let out = a.cli(&["exec", "-wait=1s", &cmd], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "0 / 0 node(s) completed / acknowledged");
    assert!(a.log_text().contains(
        "[INFO]  agent: ignoring remote exec event, disabled.: event_name=_rexec event_id="
    ));
    assert!(!marker.exists());
    // And the job is not kept as a user event.
    let v: Value = client()
        .get(format!("{}/v1/event/list", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v, serde_json::json!([]));
}

/// `-bootstrap` makes a lone server its own cluster at once; with
/// `-bootstrap-expect` it is refused with Consul's words; an even
/// `-bootstrap-expect` is warned about.
#[test]
fn bootstrap_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("b");
    let d = d.to_str().unwrap();
    let a = Agent::spawn(
        &[
            "agent",
            "-server",
            "-bootstrap",
            "-data-dir",
            d,
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-server-port",
            "0",
            "-serf-lan-port",
            "0",
        ],
        None,
    );
    let log = a.log_text();
    assert!(
        log.contains("               Server: true (Bootstrap: true)\n"),
        "{log}"
    );
    assert!(
        log.contains("[WARN]  agent: bootstrap = true: do not enable unless necessary"),
        "{log}"
    );
    let out = a.cli(&["info"], None);
    assert!(
        out.stdout.contains("\tbootstrap = true\n"),
        "{}",
        out.stdout
    );
    drop(a);

    let out = run_cli(
        "127.0.0.1:1",
        &[
            "agent",
            "-server",
            "-bootstrap",
            "-bootstrap-expect",
            "3",
            "-data-dir",
            d,
        ],
        None,
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "==> 'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"
    );
    let out = run_cli(
        "127.0.0.1:1",
        &["agent", "-bootstrap", "-data-dir", d],
        None,
    );
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "==> 'bootstrap = true' requires 'server = true'")
    );

    let even = dir.path().join("even");
    let mut cmd = Command::new(bin("tribune"));
    cmd.args([
        "agent",
        "-server",
        "-bootstrap-expect",
        "4",
        "-data-dir",
        even.to_str().unwrap(),
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-server-port",
        "0",
        "-serf-lan-port",
        "0",
    ]);
    let (mut child, _addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
    let text = log.lock().unwrap().join("\n");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains(
            "[WARN]  agent: bootstrap_expect is even number: A cluster with an even number of \
             servers does not achieve optimum fault tolerance. See \
             https://www.consul.io/docs/internals/consensus.html#deployment-table"
        ),
        "{text}"
    );
    assert!(text.contains("[WARN]  agent: bootstrap_expect > 0: expecting 4 servers"));
}

/// Lines of hclog's text shape: `2024-05-01T10:00:00.123Z [INFO]  name: ...`.
fn hclog_shaped(line: &str) -> bool {
    let b = line.as_bytes();
    let levels = ["[TRACE] ", "[DEBUG] ", "[INFO]  ", "[WARN]  ", "[ERROR] "];
    b.len() > 34
        && b[4] == b'-'
        && b[10] == b'T'
        && &line[23..25] == "Z "
        && levels.iter().any(|l| line[25..].starts_with(l))
}

/// The banner comes first, laid out as Consul's; every log line after it
/// is in hclog's shape, with Consul's words for leadership and sync and no
/// Rust debug text.
#[test]
fn banner_and_log_lines() {
    let a = Agent::dev(&["-node", "walk-banner"]);
    register_web(&a);
    let ok = wait_until(Duration::from_secs(10), || {
        a.log_text().contains("Synced service: service=web")
    });
    assert!(ok, "{}", a.log_text());
    let log = a.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "==> Starting tribune agent...");
    let labels = [
        "Version",
        "Build Date",
        "Node ID",
        "Node name",
        "Datacenter",
        "Server",
        "Client Addr",
        "Cluster Addr",
        "Gossip Encryption",
    ];
    for (i, label) in labels.iter().enumerate() {
        let line = lines[i + 1];
        // Labels right-aligned so the colons line up, after 4 spaces.
        assert_eq!(line.find(':'), Some(21), "{line}");
        assert_eq!(line[..21].trim_start(), *label, "{line}");
    }
    assert!(lines.contains(&"            Node name: 'walk-banner'"));
    assert!(lines.contains(&"           Datacenter: 'dc1' (Segment: '<all>')"));
    assert!(lines.contains(&"               Server: true (Bootstrap: false)"));
    assert!(lines.iter().any(|l| l.starts_with(
        "          Client Addr: [127.0.0.1] (HTTP: 0, HTTPS: -1, gRPC: -1, DNS: -1)"
    )));
    let start = lines
        .iter()
        .position(|l| *l == "==> Log data will now stream in as it occurs:")
        .expect("the log-data line");
    assert_eq!(lines[start + 1], "");
    for line in &lines[start + 2..] {
        assert!(hclog_shaped(line), "not hclog-shaped: {line:?}");
        for rust in ["Some(", "None", "tribune::", "data_dir=", "{ ", "\\\""] {
            assert!(!line.contains(rust), "Rust debug text {rust:?} in {line:?}");
        }
    }
    for needle in [
        "[INFO]  agent.server.raft: entering leader state: leader=\"Node at 127.0.0.1:",
        "[INFO]  agent.server: cluster leadership acquired",
        "[INFO]  agent.server: New leader elected: payload=walk-banner",
        "[INFO]  agent: Synced node info",
        "[INFO]  agent: Synced service: service=web",
        "[INFO]  agent: tribune agent running!",
        // The marker the integration tests read stays.
        "[INFO]  agent: HTTP API listening on http://127.0.0.1:",
    ] {
        assert!(log.contains(needle), "{needle:?} in:\n{log}");
    }
}

/// A cluster on 127.0.0.81-83, default ports, as three hosts: Consul's
/// member lines (join, leave, failed), one "failed to contact" for a dead
/// server instead of openraft's per-attempt errors, `members -status`, and
/// `exec` reaching a client agent's job through the servers.
#[test]
fn cluster_log_lines_on_loopback_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = remote_exec_config(dir.path());
    let ip = |i: usize| format!("127.0.0.{}", 80 + i);
    let spawn = |name: &str, i: usize, server: bool| -> Agent {
        let data = dir.path().join(name);
        let mut args: Vec<String> = ["agent", "-node", name, "-data-dir", data.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        if server {
            args.extend(["-server", "-bootstrap-expect", "2"].map(String::from));
        } else {
            args.extend(["-config-file".to_string(), conf.clone()]);
        }
        args.extend(["-bind", &ip(i), "-client", &ip(i), "-retry-join", &ip(1)].map(String::from));
        args.extend(["-retry-interval", "1s"].map(String::from));
        Agent::start(&args, Some(data))
    };
    let s1 = spawn("s1", 1, true);
    let mut s2 = spawn("s2", 2, true);
    assert_eq!(s1.addr, "127.0.0.81:8500");
    s1.wait_leader();
    s2.wait_leader();
    let c1 = spawn("c1", 3, false);
    c1.wait_leader();
    let server_log = |needle: &str| {
        let ok = wait_until(Duration::from_secs(20), || s1.log_text().contains(needle));
        assert!(ok, "{needle:?} in s1's log:\n{}", s1.log_text());
    };
    server_log("[WARN]  agent: bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance.");
    server_log("[INFO]  agent.server.serf.lan: serf: EventMemberJoin: s2 127.0.0.82");
    server_log("[INFO]  agent.server.serf.lan: serf: EventMemberJoin: c1 127.0.0.83");
    assert!(c1
        .log_text()
        .contains("[INFO]  agent.client.serf.lan: serf: EventMemberJoin: s1 127.0.0.81"));
    server_log("New leader elected: payload=s");
    wait_serf_health(&s1, "s1");

    // exec from a server: only the client allows it, its answers come back.
    let out = s1.cli(
        &[
            "exec",
            "-wait=1s",
            "echo from $(hostname -s >/dev/null; echo c1)",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("    c1: from c1\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("1 / 1 node(s) completed / acknowledged\n"),
        "{}",
        out.stdout
    );

    let out = c1.cli(&["leave"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    server_log("[INFO]  agent.server.serf.lan: serf: EventMemberLeave: c1 127.0.0.83");

    s2.kill9();
    server_log("[INFO]  agent.server.serf.lan: serf: EventMemberFailed: s2 127.0.0.82");
    server_log("[WARN]  agent.server.raft: failed to contact peer: peer=127.0.0.82:8300 error=");
    let out = s1.cli(&["members", "-status", "failed"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    assert!(rows[0].starts_with("s2  ") && rows[0].contains(" failed "));
    // Some seconds of a dead peer: one line about it, none of openraft's.
    thread::sleep(Duration::from_secs(3));
    let log = s1.log_text();
    let contacts = log.matches("failed to contact peer").count();
    assert_eq!(contacts, 1, "{log}");
    for noise in [
        "RPCError",
        "while requesting vote",
        "Unreachable node",
        "openraft",
    ] {
        assert!(!log.contains(noise), "{noise:?} in s1's log:\n{log}");
    }
    drop(c1);
}
