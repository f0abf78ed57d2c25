//! The nginx example end to end: `examples/nginx/run.sh` with the real
//! agent, runner and Debian nginx, in watch, -interval and -exec sidecar modes,
//! plus its Ctrl-C path and its fast failures.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tribune_tests::{bin, client, free_pair, free_port, root};

/// The demo backends' health check (run.sh registers Interval 1s, Timeout 1s).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A client that opens a new connection per request: nginx closes idle
/// keep-alive connections when it reloads, which is not what is tested here.
fn fresh() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
struct Ports {
    http: u16,
    dns: u16,
    nginx: u16,
    backends: [u16; 2],
}

impl Ports {
    fn free() -> Ports {
        Ports {
            http: free_port(),
            dns: free_port(),
            nginx: free_pair(),
            backends: [free_port(), free_port()],
        }
    }

    fn tcp(&self) -> [u16; 6] {
        let [b1, b2] = self.backends;
        [self.http, self.dns, self.nginx, self.nginx + 1, b1, b2]
    }
}

fn run_sh(mode: &[&str], ports: Ports) -> Command {
    let bin_dir = bin("tribune").parent().unwrap().to_path_buf();
    let mut cmd = Command::new(root().join("examples/nginx/run.sh"));
    cmd.args(mode)
        .env("TRIBUNE_BIN_DIR", &bin_dir)
        .env("HTTP_PORT", ports.http.to_string())
        .env("DNS_PORT", ports.dns.to_string())
        .env("NGINX_PORT", ports.nginx.to_string())
        .env(
            "BACKEND_PORTS",
            format!("{} {}", ports.backends[0], ports.backends[1]),
        );
    cmd
}

fn signal(pid: i32, sig: i32) {
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < limit, "run.sh did not exit within {limit:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Live processes that belong to one run.sh: its process group (when it
/// has its own), or a command line naming its work dir or agent port.
/// The daemonized nginx master names the work dir; its workers hold the
/// ports, which are checked separately.
fn leftovers(work: &Path, http: u16, pgid: Option<i32>) -> Vec<String> {
    let work = work.to_string_lossy().to_string();
    let node = format!("127.0.0.1:{http}\0");
    let flag = format!("-http-port\0{http}\0");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after "(comm)": state ppid pgrp ...
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if rest[0] == "Z" {
            continue;
        }
        let pgrp: i32 = rest[2].parse().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if Some(pgrp) == pgid
            || cmdline.contains(&work)
            || cmdline.contains(&node)
            || cmdline.contains(&flag)
        {
            found.push(format!("{pid}: {}", cmdline.replace('\0', " ")));
        }
    }
    found
}

/// GET / through nginx: the body of a 200, or None (logged).
fn get_root(nginx: u16) -> Option<String> {
    let r = fresh()
        .get(format!("http://127.0.0.1:{nginx}/"))
        .timeout(Duration::from_secs(3))
        .send();
    match r {
        Ok(r) if r.status() == 200 => Some(r.text().unwrap_or_default()),
        Ok(r) => {
            eprintln!("=== GET / answered {}: {:?}", r.status(), r.text());
            None
        }
        Err(e) => {
            eprintln!("=== GET / failed: {e:?}");
            None
        }
    }
}

struct Example {
    child: Child,
    work: PathBuf,
    ports: Ports,
    /// run.sh runs in its own process group (as under a terminal).
    group: bool,
    /// Backends the test restarted itself.
    restarted: Vec<Child>,
    /// What run.sh wrote to stderr.
    stderr: Arc<Mutex<String>>,
}

impl Example {
    fn start(mode: &[&str]) -> Example {
        Example::start_on(mode, Ports::free(), false)
    }

    fn start_on(mode: &[&str], ports: Ports, group: bool) -> Example {
        let mut cmd = run_sh(mode, ports);
        if group {
            cmd.process_group(0);
            // As a terminal's shell starts a job: SIGINT at its default.
            // This test may itself run with SIGINT ignored (a background
            // job of a non-interactive shell, as CI may start it), and bash
            // cannot trap a signal that was ignored when it started.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                    libc::signal(libc::SIGQUIT, libc::SIG_DFL);
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run examples/nginx/run.sh");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, errors) = (child.stderr.take().unwrap(), stderr.clone());
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("run.sh (stderr): {line}");
                errors.lock().unwrap().push_str(&line);
                errors.lock().unwrap().push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("run.sh: {line}");
                if let Some(i) = line.find("Work dir: ") {
                    let _ = tx.send(line[i + 10..].trim().to_string());
                }
            }
        });
        // run.sh has its own (60 s) readiness deadline and fails fast with
        // a message, so its exit is reported as soon as it happens.
        let t = Instant::now();
        let work = loop {
            if let Ok(w) = rx.recv_timeout(Duration::from_millis(200)) {
                break w;
            }
            if let Some(s) = child.try_wait().unwrap() {
                panic!("run.sh exited before it was running: {s:?}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "run.sh did not report it was running"
            );
        };
        Example {
            child,
            work: PathBuf::from(work),
            ports,
            group,
            restarted: Vec::new(),
            stderr,
        }
    }

    fn put(&self, key: &str, v: &str) {
        let r = client()
            .put(format!("http://127.0.0.1:{}/v1/kv/{key}", self.ports.http))
            .body(v.to_string())
            .send()
            .unwrap();
        assert_eq!(r.text().unwrap(), "true");
    }

    fn nginx_get(&self, path: &str) -> Option<String> {
        fresh()
            .get(format!("http://127.0.0.1:{}{path}", self.ports.nginx))
            .send()
            .and_then(|r| r.text())
            .ok()
    }

    fn knobs(&self) -> String {
        self.nginx_get("/tribune/knobs").unwrap_or_default()
    }

    /// The running nginx's upstream servers ("fallback" when none).
    fn upstreams(&self) -> Option<Vec<String>> {
        self.nginx_get("/tribune/upstreams")
            .map(|b| b.lines().map(str::to_string).collect())
    }

    fn get_root(&self) -> Option<String> {
        get_root(self.ports.nginx)
    }

    fn conf(&self) -> String {
        std::fs::read_to_string(self.work.join("nginx.conf")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("template.log")).unwrap_or_default()
    }

    fn pid_file(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.work.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Start backend `i` (1-based) again, as run.sh did.
    fn restart_backend(&mut self, i: usize) {
        let child = Command::new("python3")
            .args(["-m", "http.server"])
            .arg(self.ports.backends[i - 1].to_string())
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(self.work.join(format!("backend-{i}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.restarted.push(child);
    }

    /// Stop run.sh as a user would: SIGTERM to run.sh, or, when it has its
    /// own process group, SIGINT to the whole group (Ctrl-C in a terminal).
    /// It exits 0, removes its work dir and leaves nothing running.
    fn stop(mut self) {
        for c in &mut self.restarted {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid = self.child.id() as i32;
        if self.group {
            eprintln!("=== Ctrl-C to run.sh's process group");
            signal(-pid, libc::SIGINT);
        } else {
            eprintln!("=== SIGTERM to run.sh");
            signal(pid, libc::SIGTERM);
        }
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        self.assert_cleaned_up();
    }

    /// run.sh exited by itself: with `code` and `message` on stderr, and
    /// cleaned up all the same.
    fn assert_died(mut self, code: i32, message: &str) {
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        assert_eq!(status.code(), Some(code), "{status:?}");
        // The stderr reader may lag the exit by a moment.
        wait(message, Duration::from_secs(5), || {
            self.stderr.lock().unwrap().contains(message).then_some(())
        });
        self.assert_cleaned_up();
    }

    /// No work dir, no open port, no process of this run left.
    fn assert_cleaned_up(&self) {
        assert!(
            !self.work.exists(),
            "work dir {} left behind",
            self.work.display()
        );
        for port in self.ports.tcp() {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "something still listens on {port}"
            );
        }
        assert!(
            UdpSocket::bind(("127.0.0.1", self.ports.dns)).is_ok(),
            "DNS UDP port {} still bound",
            self.ports.dns
        );
        let pgid = self.group.then_some(self.child.id() as i32);
        let left = leftovers(&self.work, self.ports.http, pgid);
        assert!(left.is_empty(), "processes left behind: {left:#?}");
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // On a failed assertion, still stop everything run.sh started.
        for c in &mut self.restarted {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id() as i32, libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(v) = f() {
            return (v, t.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// The scenario every mode must pass. `extra` is the extra latency the mode
/// may add (the poll interval).
fn scenario(mode: &[&str], extra: Duration) {
    let sidecar = mode.contains(&"-sidecar");
    eprintln!("=== {mode:?}: starting run.sh");
    let mut ex = Example::start(mode);
    eprintln!("=== {mode:?}: running in {}", ex.work.display());
    // run.sh waited for a healthy upstream; an nginx reload still in flight
    // may let an old worker answer once more, so allow it a moment.
    wait("nginx to serve a backend", Duration::from_secs(5), || {
        ex.get_root()
            .filter(|b| b.starts_with("hello from backend"))
    });
    let master = ex.pid_file("nginx.pid");
    let reloads = ex.log().matches("sending reload signal to child").count();

    // 1. A KV change reaches nginx's running config within 2 s (+ poll interval),
    //    by a reload: the same nginx master keeps running.
    ex.put("nginx/worker_connections", "2048");
    let (_, took) = wait(
        "nginx to serve worker_connections=2048",
        Duration::from_secs(10) + extra,
        || ex.knobs().contains("worker_connections=2048").then_some(()),
    );
    assert!(took <= Duration::from_secs(2) + extra, "{mode:?}: {took:?}");
    assert!(ex.conf().contains("worker_connections 2048;"));
    assert_eq!(ex.pid_file("nginx.pid"), master, "nginx was restarted");
    if sidecar {
        // The runner signalled its nginx child rather than restarting it.
        assert!(
            ex.log().matches("sending reload signal to child").count() > reloads,
            "{}",
            ex.log()
        );
        assert!(!ex.log().contains("restarting child"), "{}", ex.log());
    }
    eprintln!("=== {mode:?}: knob change served after {took:?}");

    // 2. Stop backend 1: nginx's running upstream drops it within
    //    interval + timeout + 2 s, and requests keep succeeding through
    //    backend 2 meanwhile.
    let bound = CHECK_INTERVAL + CHECK_TIMEOUT + Duration::from_secs(2) + extra;
    let gone = format!("127.0.0.1:{}", ex.ports.backends[0]);
    let kept = format!("127.0.0.1:{}", ex.ports.backends[1]);
    signal(ex.pid_file("backend-1.pid"), libc::SIGKILL);
    let t = Instant::now();
    // Requests run beside the observation, so a slow one cannot delay it.
    let stop = AtomicBool::new(false);
    let (removed_at, mut requests, mut failures) = thread::scope(|s| {
        let load = s.spawn(|| {
            let (mut requests, mut failures) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                requests += 1;
                if get_root(ex.ports.nginx).is_none() {
                    failures += 1;
                }
                thread::sleep(Duration::from_millis(50));
            }
            (requests, failures)
        });
        let removed_at = loop {
            let ups = ex.upstreams();
            let now = t.elapsed();
            if ups.is_some_and(|u| !u.contains(&gone) && u.contains(&kept)) {
                break Some(now);
            }
            if now > bound + Duration::from_secs(20) {
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::Relaxed);
        let (requests, failures) = load.join().unwrap();
        (removed_at, requests, failures)
    });
    let Some(removed_at) = removed_at else {
        panic!(
            "{mode:?}: backend 1 still in nginx's upstream after {:?}: {}",
            t.elapsed(),
            ex.conf()
        );
    };
    assert!(
        removed_at <= bound,
        "{mode:?}: backend 1 left nginx's upstream after {removed_at:?} > {bound:?}"
    );
    assert!(!ex.conf().contains(&format!("{gone} ")));
    for _ in 0..10 {
        requests += 1;
        match ex.get_root() {
            Some(body) => assert!(body.contains("backend 2"), "{body}"),
            None => failures += 1,
        }
    }
    if failures > 0 {
        eprintln!(
            "{}",
            std::fs::read_to_string(ex.work.join("error.log")).unwrap_or_default()
        );
    }
    assert_eq!(
        failures, 0,
        "{mode:?}: {failures} of {requests} requests failed during the backend stop"
    );
    eprintln!("=== {mode:?}: backend 1 left nginx's upstream after {removed_at:?}");

    // 3. A value that makes an invalid config is refused by check_cmd:
    //    the old file stays and nginx keeps serving.
    let before = ex.conf();
    ex.put("nginx/worker_connections", "abc");
    wait(
        "check_cmd to refuse",
        Duration::from_secs(10) + extra,
        || ex.log().contains("check_cmd").then_some(()),
    );
    assert_eq!(ex.conf(), before);
    assert!(ex.knobs().contains("worker_connections=2048"));
    assert!(ex.get_root().is_some());
    // and a good value after it goes through
    ex.put("nginx/worker_connections", "512");
    wait("512", Duration::from_secs(5) + extra, || {
        ex.knobs().contains("=512").then_some(())
    });

    // 4. No healthy backend: the fallback config passes nginx -t, nginx
    //    (the same master) serves it and answers 503 from the fallback.
    signal(ex.pid_file("backend-2.pid"), libc::SIGKILL);
    wait(
        "nginx's upstream to be the fallback",
        bound + Duration::from_secs(20),
        || (ex.upstreams()? == ["fallback"]).then_some(()),
    );
    assert!(ex.conf().contains("No healthy instance"), "{}", ex.conf());
    assert_eq!(ex.pid_file("nginx.pid"), master, "nginx was restarted");
    wait("the fallback's 503", Duration::from_secs(5), || {
        let r = fresh()
            .get(format!("http://127.0.0.1:{}/", ex.ports.nginx))
            .send()
            .ok()?;
        (r.status() == 503 && r.text().ok()?.contains("no healthy web backend")).then_some(())
    });
    eprintln!("=== {mode:?}: fallback served");

    // 5. A backend that comes back is served again. (Just after a reload an
    //    old worker may still answer, so both are asked until they agree.)
    ex.restart_backend(1);
    wait(
        "backend 1 to be served again",
        bound + Duration::from_secs(20),
        || {
            let served = ex.get_root()?.starts_with("hello from backend 1");
            (served && ex.upstreams()? == [gone.clone()]).then_some(())
        },
    );
    assert_eq!(ex.pid_file("nginx.pid"), master, "nginx was restarted");
    ex.stop();
}

fn nginx_available() -> bool {
    Path::new("/usr/sbin/nginx").exists() || Command::new("nginx").arg("-v").output().is_ok()
}

fn need_nginx() {
    assert!(
        nginx_available(),
        "nginx must be installed (test.sh installs nginx-light)"
    );
}

/// Watch mode (blocking queries).
#[test]
fn nginx_example_watch_mode() {
    need_nginx();
    scenario(&[], Duration::ZERO);
}

/// `-interval 2` polling mode.
#[test]
fn nginx_example_interval_mode() {
    need_nginx();
    scenario(&["-interval", "2"], Duration::from_secs(2));
}

/// `-exec` sidecar mode: tribune-template supervises nginx and sends SIGHUP.
#[test]
fn nginx_example_sidecar_mode() {
    need_nginx();
    scenario(&["-sidecar"], Duration::ZERO);
}

/// Ctrl-C in a terminal signals run.sh's whole process group: everything
/// stops, the temp dir goes, and running it again on the same ports works
/// (twice in watch mode, then in sidecar mode).
#[test]
fn nginx_example_ctrl_c_then_rerun() {
    need_nginx();
    let ports = Ports::free();
    // Sidecar last: there nginx is in the group and gets the SIGINT too.
    for mode in [&[][..], &[], &["-sidecar"]] {
        eprintln!("=== Ctrl-C test: run {mode:?}");
        let ex = Example::start_on(mode, ports, true);
        wait("nginx to serve a backend", Duration::from_secs(5), || {
            ex.get_root()
                .filter(|b| b.starts_with("hello from backend"))
        });
        ex.stop();
    }
}

/// A runner that dies ends run.sh at once with a non-zero status and a
/// message, and run.sh still stops everything else.
#[test]
fn nginx_example_dead_runner_fails() {
    need_nginx();
    let ex = Example::start(&[]);
    let node = format!("127.0.0.1:{}\0", ex.ports.http);
    let runner = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("tribune-template") && cmd.contains(&node)
        })
        .expect("the runner's process");
    signal(runner, libc::SIGKILL);
    ex.assert_died(1, "tribune-template exited");
}

/// Bad arguments and busy ports fail at once, with a message and a
/// non-zero status, and leave no temp dir behind.
#[test]
fn nginx_example_fails_fast() {
    let quick = Duration::from_secs(20);
    let run = |mode: &[&str], ports: Ports| {
        let t = Instant::now();
        let out = run_sh(mode, ports)
            .stdin(Stdio::null())
            .output()
            .expect("run examples/nginx/run.sh");
        assert!(t.elapsed() < quick, "{mode:?} took {:?}", t.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if let Some(i) = stdout.find("removed ") {
            let dir = stdout[i + 8..].lines().next().unwrap().trim();
            assert!(!Path::new(dir).exists(), "{dir} left behind");
        }
        (out.status.code(), stderr)
    };
    for args in [
        &["-bogus"][..],
        &["-interval"],
        &["-interval", "0"],
        &["-interval", "2s"],
        &["-interval", "2", "extra"],
        &["-sidecar", "extra"],
    ] {
        let (code, err) = run(args, Ports::free());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("usage") || err.contains("-interval"), "{err}");
    }

    let ports = Ports::free();
    let hold = TcpListener::bind(("127.0.0.1", ports.nginx)).unwrap();
    let (code, err) = run(&[], ports);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("TCP port {} is in use", ports.nginx)),
        "{err}"
    );
    drop(hold);

    let ports = Ports::free();
    let hold = UdpSocket::bind(("127.0.0.1", ports.dns)).unwrap();
    let (code, err) = run(&[], ports);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("UDP port {} (DNS)", ports.dns)),
        "{err}"
    );
    drop(hold);
}
