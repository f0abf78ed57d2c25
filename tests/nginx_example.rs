//! The nginx example end to end: `examples/nginx/run.sh` with the real
//! agent, runner and Debian nginx, in watch, -interval and -exec sidecar modes.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tribune_tests::{bin, client, root};

/// A client that opens a new connection per request: nginx closes idle
/// keep-alive connections when it reloads, which is not what is tested here.
fn fresh() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port p with p+1 free too (nginx listen + fallback).
fn free_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

struct Example {
    child: Child,
    work: PathBuf,
    http: u16,
    nginx: u16,
    backends: [u16; 2],
}

impl Example {
    fn start(mode: &[&str]) -> Example {
        let (http, dns, nginx) = (free_port(), free_port(), free_pair());
        let backends = [free_port(), free_port()];
        let bin_dir = bin("tribune").parent().unwrap().to_path_buf();
        let mut child = Command::new(root().join("examples/nginx/run.sh"))
            .args(mode)
            .env("TRIBUNE_BIN_DIR", &bin_dir)
            .env("HTTP_PORT", http.to_string())
            .env("DNS_PORT", dns.to_string())
            .env("NGINX_PORT", nginx.to_string())
            .env("BACKEND_PORTS", format!("{} {}", backends[0], backends[1]))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run examples/nginx/run.sh");
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
        let work = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("run.sh did not report it was running");
        Example {
            child,
            work: PathBuf::from(work),
            http,
            nginx,
            backends,
        }
    }

    fn put(&self, key: &str, v: &str) {
        let r = client()
            .put(format!("http://127.0.0.1:{}/v1/kv/{key}", self.http))
            .body(v.to_string())
            .send()
            .unwrap();
        assert_eq!(r.text().unwrap(), "true");
    }

    fn knobs(&self) -> String {
        fresh()
            .get(format!("http://127.0.0.1:{}/tribune/knobs", self.nginx))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    fn get_root(&self) -> Option<String> {
        let r = fresh()
            .get(format!("http://127.0.0.1:{}/", self.nginx))
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

    fn conf(&self) -> String {
        std::fs::read_to_string(self.work.join("nginx.conf")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("template.log")).unwrap_or_default()
    }

    /// SIGTERM run.sh (as Ctrl-C would): exits 0, removes its work dir,
    /// leaves no process behind.
    fn stop(mut self) {
        eprintln!("=== stopping run.sh");
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "run.sh did not stop");
            thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        assert!(
            !self.work.exists(),
            "work dir {} left behind",
            self.work.display()
        );
        for port in [self.http, self.nginx, self.backends[0], self.backends[1]] {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "something still listens on {port}"
            );
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // On a failed assertion, still stop everything run.sh started.
        if let Ok(None) = self.child.try_wait() {
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
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
    eprintln!("=== {mode:?}: starting run.sh");
    let ex = Example::start(mode);
    eprintln!("=== {mode:?}: running in {}", ex.work.display());
    // run.sh waited for a healthy upstream; an nginx reload still in flight
    // may let an old worker answer once more, so allow it a moment.
    wait("nginx to serve a backend", Duration::from_secs(5), || {
        ex.get_root()
            .filter(|b| b.starts_with("hello from backend"))
    });
    // 1. A KV change reaches nginx's running config within 2 s (+ poll interval).
    let (_, took) = {
        ex.put("nginx/worker_connections", "2048");
        wait(
            "nginx to serve worker_connections=2048",
            Duration::from_secs(10),
            || ex.knobs().contains("worker_connections=2048").then_some(()),
        )
    };
    assert!(took <= Duration::from_secs(2) + extra, "{mode:?}: {took:?}");
    assert!(ex.conf().contains("worker_connections 2048;"));

    eprintln!("=== {mode:?}: knob change served after {took:?}");
    // 2. Stop backend 1: it leaves the upstream within interval + timeout + 2 s,
    //    and requests keep succeeding through backend 2 meanwhile.
    let pid: i32 = std::fs::read_to_string(ex.work.join("backend-1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let gone = format!("127.0.0.1:{} ", ex.backends[0]);
    let t = Instant::now();
    let mut failures = 0;
    let mut requests = 0;
    while ex.conf().contains(&gone) {
        assert!(
            t.elapsed() <= Duration::from_secs(4) + extra,
            "{mode:?}: backend 1 still in the upstream after {:?}",
            t.elapsed()
        );
        requests += 1;
        if ex.get_root().is_none() {
            failures += 1;
        }
        thread::sleep(Duration::from_millis(50));
    }
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

    eprintln!(
        "=== {mode:?}: backend 1 left the upstream after {:?}",
        t.elapsed()
    );
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
    ex.stop();
}

fn nginx_available() -> bool {
    Path::new("/usr/sbin/nginx").exists() || Command::new("nginx").arg("-v").output().is_ok()
}

/// Watch mode (blocking queries).
#[test]
fn nginx_example_watch_mode() {
    assert!(
        nginx_available(),
        "nginx must be installed (test.sh installs nginx-light)"
    );
    scenario(&[], Duration::ZERO);
}

/// `-interval 2` polling mode.
#[test]
fn nginx_example_interval_mode() {
    assert!(
        nginx_available(),
        "nginx must be installed (test.sh installs nginx-light)"
    );
    scenario(&["-interval", "2"], Duration::from_secs(2));
}

/// `-exec` sidecar mode: tribune-template supervises nginx and sends SIGHUP.
#[test]
fn nginx_example_sidecar_mode() {
    assert!(
        nginx_available(),
        "nginx must be installed (test.sh installs nginx-light)"
    );
    scenario(&["-sidecar"], Duration::ZERO);
}
