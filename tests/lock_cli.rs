//! `tribune lock` processes against a real agent: one holder at a time,
//! takeover when the holder's session is destroyed or lapses (kill -9), the
//! loser's child terminated with SIGTERM, semaphores, exit codes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{bin, client, run_cli, wait_until, Agent};

const NODE: &str = "lock-node";

fn agent() -> Agent {
    let a = Agent::dev(&["-node", NODE]);
    let ok = wait_until(Duration::from_secs(20), || {
        get_json(&a, &format!("health/node/{NODE}"))
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["CheckID"] == "serfHealth"))
    });
    assert!(ok, "serfHealth never registered");
    a
}

fn get_json(a: &Agent, path: &str) -> Value {
    client()
        .get(format!("{}/v1/{path}", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap_or(Value::Null)
}

/// A `tribune lock` process; output goes to files in `dir`, killed on drop.
struct LockProc {
    child: Child,
    name: String,
    out: PathBuf,
}

impl LockProc {
    fn spawn(a: &Agent, dir: &Path, name: &str, args: &[&str]) -> LockProc {
        let out = dir.join(format!("{name}.out"));
        let f = File::create(&out).unwrap();
        let child = Command::new(bin("tribune"))
            .arg("lock")
            .args(args)
            .env("CONSUL_HTTP_ADDR", &a.addr)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        LockProc {
            child,
            name: name.into(),
            out,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "lock {} did not exit; output:\n{}",
            self.name,
            self.output()
        );
    }
}

impl Drop for LockProc {
    /// SIGTERM first, so the lock process stops its child too.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(8) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child that logs `start-<name> <pid>` and, on SIGTERM, `term-<name>`.
/// It gives up by itself after 3 minutes, so a failed test leaves nothing behind.
fn child_script(log: &Path, name: &str) -> String {
    let log = log.display();
    format!(
        "echo start-{name} $$ >> {log}; trap 'echo term-{name} >> {log}; exit 0' TERM; \
         i=0; while [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done"
    )
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn has_line(log: &Path, prefix: &str) -> bool {
    log_lines(log).iter().any(|l| l.starts_with(prefix))
}

/// Child pid from its `start-<name> <pid>` line.
fn child_pid(log: &Path, name: &str) -> i32 {
    let l = log_lines(log)
        .into_iter()
        .find(|l| l.starts_with(&format!("start-{name} ")))
        .unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The session holding `<prefix>/.lock`, and its name.
fn holder(a: &Agent, prefix: &str) -> Option<(String, String)> {
    let pair = get_json(a, &format!("kv/{prefix}/.lock"));
    let id = pair[0]["Session"].as_str()?.to_string();
    let info = get_json(a, &format!("session/info/{id}"));
    Some((id, info[0]["Name"].as_str().unwrap_or("").to_string()))
}

/// Running children: those started and not yet terminated (or killed).
fn running(log: &Path) -> Vec<String> {
    let mut up = Vec::new();
    for l in log_lines(log) {
        if let Some(rest) = l.strip_prefix("start-") {
            up.push(rest.split_whitespace().next().unwrap().to_string());
        } else if let Some(n) = l.strip_prefix("term-").or(l.strip_prefix("killed-")) {
            up.retain(|x| x != n);
        }
    }
    up
}

/// Two (then three) lock processes on one prefix: exactly one child runs at
/// a time; destroying the holder's session hands the lock over (after the
/// lock-delay) and the loser's child gets SIGTERM; a holder killed with -9
/// loses the lock when its session TTL lapses.
#[test]
fn one_holder_takeover_on_destroy_and_on_expiry() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("children.log");
    let opts = |name: &'static str| {
        vec![
            "-verbose",
            "-name",
            name,
            "-session-ttl",
            "10s",
            "-lock-delay",
            "2s",
            "svc/leader",
        ]
    };
    let script_a = child_script(&log, "A");
    let mut args_a = opts("A");
    args_a.push(&script_a);
    let mut pa = LockProc::spawn(&a, dir.path(), "A", &args_a);
    assert!(
        wait_until(Duration::from_secs(20), || has_line(&log, "start-A")),
        "A never ran its child:\n{}",
        pa.output()
    );
    let script_b = child_script(&log, "B");
    let mut args_b = opts("B");
    args_b.push(&script_b);
    let mut pb = LockProc::spawn(&a, dir.path(), "B", &args_b);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&log), ["A"], "B ran while A held the lock");
    let (sess_a, name) = holder(&a, "svc/leader").unwrap();
    assert_eq!(name, "A");

    // A loses its session: its child gets SIGTERM, B takes over after the lock-delay
    let r = client()
        .put(format!("{}/v1/session/destroy/{sess_a}", a.url))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    assert!(
        wait_until(Duration::from_secs(30), || has_line(&log, "start-B")),
        "B never took over; A:\n{}\nB:\n{}",
        pa.output(),
        pb.output()
    );
    let lines = log_lines(&log);
    let term_a = lines
        .iter()
        .position(|l| l == "term-A")
        .expect("A's child got no SIGTERM");
    let start_b = lines.iter().position(|l| l.starts_with("start-B")).unwrap();
    assert!(
        term_a < start_b,
        "B started before A's child stopped: {lines:?}"
    );
    assert_eq!(pa.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(
        pa.output().contains("Lock lost, killing child"),
        "{}",
        pa.output()
    );
    assert_eq!(holder(&a, "svc/leader").unwrap().1, "B");

    // B's lock process dies with kill -9 (its machine, child included, goes):
    // its session is no longer renewed and lapses; C takes over.
    let script_c = child_script(&log, "C");
    let mut args_c = opts("C");
    args_c.push(&script_c);
    let mut pc = LockProc::spawn(&a, dir.path(), "C", &args_c);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(running(&log), ["B"]);
    let killed = Instant::now();
    pb.signal(libc::SIGKILL);
    pb.wait_exit(Duration::from_secs(10));
    let pid_b = child_pid(&log, "B");
    unsafe {
        libc::kill(-pid_b, libc::SIGKILL);
    }
    std::fs::write(&log, log_lines(&log).join("\n") + "\nkilled-B\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || has_line(&log, "start-C")),
        "C never took over after B's session lapsed; C:\n{}",
        pc.output()
    );
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(8),
        "B's session lapsed too early: {took:?}"
    );
    assert_eq!(running(&log), ["C"]);

    // C shuts down cleanly: child terminated, lock released and cleaned up
    pc.signal(libc::SIGTERM);
    assert_eq!(pc.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(has_line(&log, "term-C"));
    assert!(wait_until(Duration::from_secs(10), || {
        get_json(&a, "session/list") == Value::Array(vec![])
    }));
    let r = client()
        .get(format!("{}/v1/kv/svc/leader/.lock", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "lock key not cleaned up");
}

/// `-n 2`: two holders at once, the third waits; when a holder stops, the
/// third gets its slot. Consul's layout: contender keys plus `.lock`.
#[test]
fn semaphore_admits_n_holders() {
    let a = agent();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("children.log");
    let mut procs = Vec::new();
    for name in ["S1", "S2", "S3"] {
        let script = child_script(&log, name);
        let args = [
            "-n",
            "2",
            "-name",
            name,
            "-session-ttl",
            "10s",
            "-lock-delay",
            "0s",
            "sem/pool",
            &script,
        ];
        procs.push(LockProc::spawn(&a, dir.path(), name, &args));
        thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_until(Duration::from_secs(20), || running(&log).len() == 2));
    thread::sleep(Duration::from_secs(2));
    let up = running(&log);
    assert_eq!(up.len(), 2, "{up:?}");
    let raw = client()
        .get(format!("{}/v1/kv/sem/pool/.lock?raw", a.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lock: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(lock["Limit"], 2);
    assert_eq!(lock["Holders"].as_object().unwrap().len(), 2);
    let keys = get_json(&a, "kv/sem/pool/?keys");
    assert_eq!(keys.as_array().unwrap().len(), 4, "{keys}");

    let waiting = ["S1", "S2", "S3"]
        .into_iter()
        .find(|n| !up.iter().any(|u| u == n))
        .unwrap();
    let first = procs.iter_mut().find(|p| p.name == up[0]).unwrap();
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(
        wait_until(Duration::from_secs(20), || has_line(
            &log,
            &format!("start-{waiting}")
        )),
        "{waiting} never got a slot"
    );
    assert_eq!(running(&log).len(), 2);
    for p in procs.iter_mut() {
        p.signal(libc::SIGTERM);
    }
    for p in procs.iter_mut() {
        p.wait_exit(Duration::from_secs(20));
    }
    assert!(running(&log).is_empty());
    assert!(wait_until(Duration::from_secs(10), || {
        get_json(&a, "kv/sem/?keys") == Value::Null
    }));
}

/// Exit codes and flags: the child sees CONSUL_LOCK_HELD=true; a failing
/// child gives 0, or 2 with -child-exit-code; -timeout gives up with 1;
/// -shell=false runs the arguments directly; bad usage is refused.
#[test]
fn exit_codes_env_and_usage() {
    let a = agent();
    let ok = run_cli(
        &a.addr,
        &["lock", "x/p", "test \"$CONSUL_LOCK_HELD\" = true"],
        None,
    );
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let failed = run_cli(&a.addr, &["lock", "x/p", "exit 3"], None);
    assert_eq!(failed.code, 0);
    let failed = run_cli(
        &a.addr,
        &["lock", "-child-exit-code", "x/p", "exit 3"],
        None,
    );
    assert_eq!(failed.code, 2);
    let direct = run_cli(
        &a.addr,
        &[
            "lock",
            "-shell=false",
            "x/p",
            "sh",
            "-c",
            "test \"$CONSUL_LOCK_HELD\" = true",
        ],
        None,
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);

    // hold x/q in the background; a second lock with -timeout gives up
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let script = child_script(&log, "H");
    let mut holder = LockProc::spawn(&a, dir.path(), "H", &["x/q", &script]);
    assert!(wait_until(Duration::from_secs(20), || has_line(
        &log, "start-H"
    )));
    let t = Instant::now();
    let timed = run_cli(&a.addr, &["lock", "-timeout", "1s", "x/q", "true"], None);
    assert_eq!(timed.code, 1);
    assert!(
        timed.stderr.contains("timeout during lock acquisition"),
        "{}",
        timed.stderr
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    holder.signal(libc::SIGTERM);
    assert_eq!(holder.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(has_line(&log, "term-H"));

    for (args, msg) in [
        (
            vec!["lock", "x/p"],
            "Key prefix and child command must be specified",
        ),
        (
            vec!["lock", "-n", "0", "x/p", "true"],
            "Lock holder limit must be positive",
        ),
        (
            vec!["lock", "-monitor-retry", "-1", "x/p", "true"],
            "monitor-retry",
        ),
    ] {
        let out = run_cli(&a.addr, &args, None);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(out.stderr.contains(msg), "{args:?}: {}", out.stderr);
    }
    // a semaphore runs and cleans up like a lock
    let sem = run_cli(&a.addr, &["lock", "-n", "2", "x/p", "true"], None);
    assert_eq!(sem.code, 0, "{}", sem.stderr);
    // nothing left under the prefix: 404, as Consul
    assert_eq!(get_json(&a, "kv/x/?keys"), Value::Null);
    // a key that is not a lock is a conflict, not a hang
    let out = run_cli(&a.addr, &["kv", "put", "x/r/.lock", "not-a-lock"], None);
    assert_eq!(out.code, 0);
    let out = run_cli(&a.addr, &["lock", "x/r", "true"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Lock acquisition failed"),
        "{}",
        out.stderr
    );
}

/// `kv put -acquire/-release -session` with Consul's messages; `kv get
/// -detailed` shows the holder.
#[test]
fn kv_put_acquire_release_cli() {
    let a = agent();
    let id = client()
        .put(format!("{}/v1/session/create", a.url))
        .body(r#"{"LockDelay":"0s"}"#)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let session = format!("-session={id}");
    let out = run_cli(
        &a.addr,
        &["kv", "put", "-acquire", &session, "cli/lk", "v"],
        None,
    );
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Lock acquired on: cli/lk")
    );
    let out = run_cli(&a.addr, &["kv", "get", "-detailed", "cli/lk"], None);
    assert!(
        out.stdout.contains(&format!("Session          {id}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("LockIndex        1"), "{}", out.stdout);
    let out = run_cli(
        &a.addr,
        &["kv", "put", "-acquire", "-session=nope", "cli/lk", "v"],
        None,
    );
    assert_eq!(out.code, 1);
    let out = run_cli(
        &a.addr,
        &["kv", "put", "-release", &session, "cli/lk", "v"],
        None,
    );
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Lock released on: cli/lk")
    );
    let out = run_cli(
        &a.addr,
        &["kv", "put", "-release", &session, "cli/lk", "v"],
        None,
    );
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "Error! Did not release lock")
    );
    let out = run_cli(&a.addr, &["kv", "put", "-acquire", "cli/lk", "v"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Missing -session"), "{}", out.stderr);
}
