//! Shared helpers for the integration tests: build and spawn the real
//! `tribune` / `tribune-template` binaries on free ports, read the bound
//! address from their "listening on" log line, and kill them on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub mod ports;
pub mod servers;
pub mod tls;
pub mod wan;

pub use ports::{free_pair, free_port, free_ports};

static BUILD: Once = Once::new();

/// Workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build the binaries once per test process so tests never run stale ones.
fn build() {
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--bins", "-p", "tribune", "-p", "tribune-template"])
            .current_dir(root())
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
}

/// Path of a built binary (`tribune`, `tribune-template`).
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("TRIBUNE_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    build();
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

/// A running agent process.
pub struct Agent {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub data_dir: Option<PathBuf>,
}

/// A server binds its WAN pool on 8302 unless told otherwise: tests run
/// side by side, so a server started without `-serf-wan-port` gets a port
/// the system picks (nothing joins it by address).
fn wan_port_unless_named(cmd: &mut Command) {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let named = |f: &str| args.iter().any(|a| a == f || a == &format!("-{f}"));
    if args.first().map(String::as_str) == Some("agent")
        && named("-server")
        && !named("-serf-wan-port")
    {
        cmd.args(["-serf-wan-port", "0"]);
    }
}

/// Spawn a process and wait for its "`<marker>http://ADDR`" log line.
pub fn spawn_logged(mut cmd: Command, marker: &str) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    wan_port_unless_named(&mut cmd);
    cmd.stderr(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning binary");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        let tx = tx.clone();
        let marker = marker.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find(&marker) {
                    let rest = &line[i + marker.len()..];
                    // A JSON log line (-log-json): the value ends at its quote.
                    let rest = match line.starts_with('{') {
                        true => rest.split('"').next().unwrap_or(rest),
                        false => rest,
                    };
                    let _ = tx.send(rest.trim().to_string());
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (child, addr, log),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "process did not log {marker:?} within 30s; log:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    }
}

impl Agent {
    /// `tribune agent -dev` on a free port, plus `extra` flags.
    pub fn dev(extra: &[&str]) -> Agent {
        let mut args = vec!["agent", "-dev", "-http-port", "0", "-dns-port", "-1"];
        args.extend_from_slice(extra);
        Self::spawn(&args, None)
    }

    /// A durable single server with its data in `dir`.
    pub fn server(dir: &Path, extra: &[&str]) -> Agent {
        let d = dir.to_str().unwrap();
        let mut args = vec![
            "agent",
            "-server",
            "-bootstrap-expect",
            "1",
            "-data-dir",
            d,
            "-dns-port",
            "-1",
        ];
        // Any free ports: tests run side by side.
        for flag in ["-http-port", "-server-port", "-serf-lan-port"] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, "0"]);
            }
        }
        args.extend_from_slice(extra);
        Self::spawn(&args, Some(dir.to_path_buf()))
    }

    /// `tribune agent -dev` with DNS on a port the agent picks (read from its
    /// log: a port chosen by the test could be taken by the time it binds),
    /// node name `node1`, plus `extra` flags. Returns the agent and its DNS port.
    pub fn dev_dns(extra: &[&str]) -> (Agent, u16) {
        let mut args = vec![
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            "0",
            "-node",
            "node1",
        ];
        args.extend_from_slice(extra);
        let a = Self::spawn(&args, None);
        let port = a.dns_port();
        (a, port)
    }

    /// The DNS port from the agent's "DNS listening on dns://ADDR" line.
    pub fn dns_port(&self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.log.lock().unwrap().iter().find_map(|l| {
                let rest = &l[l.find("DNS listening on dns://")? + 23..];
                let addr = rest.split_whitespace().next()?;
                addr.rsplit_once(':')?.1.parse().ok()
            });
            if let Some(p) = found {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no DNS listening line in the agent's log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn spawn(args: &[&str], data_dir: Option<PathBuf>) -> Agent {
        let agent = Agent::start(args, data_dir);
        agent.wait_leader();
        agent
    }

    /// Start `tribune <args>` (with `-http-port 0` among them) and return
    /// once it names its HTTP address; no wait for a leader (a cluster
    /// member has none until its peers come).
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], data_dir: Option<PathBuf>) -> Agent {
        let mut cmd = Command::new(bin("tribune"));
        cmd.args(args).env_remove("CONSUL_HTTP_ADDR");
        Agent::start_cmd(cmd, data_dir)
    }

    /// [`Agent::start`] for a command built by the caller (its own
    /// environment, say).
    pub fn start_cmd(cmd: Command, data_dir: Option<PathBuf>) -> Agent {
        let (child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
        Agent {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
            data_dir,
        }
    }

    /// Wait until the agent answers default-consistency reads.
    pub fn wait_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let c = client();
        while Instant::now() < deadline {
            if let Ok(r) = c.get(format!("{}/v1/kv/__leader_probe__", self.url)).send() {
                // 403: answered, and refused by ACLs (default deny).
                if r.status() == 404 || r.status() == 200 || r.status() == 403 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent had no leader within 20s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until anti-entropy has registered this agent's serfHealth check,
    /// passing, in the catalog (just after start): a default session checks
    /// it, so creating one before then is refused (as in Consul).
    pub fn wait_serf_health(&self) {
        let c = client();
        let url = format!("{}/v1/agent/self", self.url);
        let node = wait_for("the agent's node name", Duration::from_secs(20), || {
            let v: serde_json::Value = c.get(&url).send().ok()?.json().ok()?;
            v["Config"]["NodeName"].as_str().map(str::to_string)
        });
        let url = format!("{}/v1/health/node/{node}", self.url);
        let ok = wait_until(Duration::from_secs(20), || {
            c.get(&url)
                .send()
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|v| {
                    v.iter()
                        .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
                })
        });
        assert!(ok, "serfHealth never passing; log:\n{}", self.log_text());
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a signal and wait for exit; returns the exit code.
    pub fn signal_and_wait(&mut self, sig: i32) -> Option<i32> {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent did not exit after signal {sig}");
    }

    /// Run the `tribune` CLI against this agent.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        run_cli(&self.addr, args, stdin)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The child's limit of open files (`RLIMIT_NOFILE`), soft and hard.
pub fn limit_open_files(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub fn run_cli(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    use std::io::Write;
    let mut child = Command::new(bin("tribune"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tribune cli");
    {
        let mut si = child.stdin.take().unwrap();
        if let Some(b) = stdin {
            si.write_all(b).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `dig @127.0.0.1 -p <port> <args>` (one try, 3 s): its standard output.
pub fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (test.sh installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `X-Consul-Index` of a response.
pub fn index_of(r: &reqwest::blocking::Response) -> u64 {
    r.headers()
        .get("x-consul-index")
        .expect("X-Consul-Index header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A running `tribune-template`.
pub struct Renderer {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Renderer {
    /// Spawn `tribune-template` in `cwd` with `args`, reading logs in the background.
    pub fn spawn(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Renderer {
        let mut cmd = Command::new(bin("tribune-template"));
        cmd.args(args).current_dir(cwd);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::from_command(cmd)
    }

    /// Spawn `cmd` (which must end up as the tribune-template process, e.g.
    /// `sh -c 'exec ...'` for a command line as a user types it).
    pub fn from_command(mut cmd: Command) -> Renderer {
        cmd.env_remove("CONSUL_HTTP_ADDR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tribune-template");
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        Renderer { child, log }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Count of log lines containing every needle.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Wait until at least `n` log lines contain every needle.
    pub fn wait_log(&self, needles: &[&str], n: usize, limit: Duration) {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.count(needles) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {n} log lines with {needles:?} within {limit:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Wait for exit and return the code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tribune-template did not exit; log:\n{}", self.log_text());
    }
}

impl Drop for Renderer {
    /// SIGTERM first, so an `-exec` child is stopped by the runner rather
    /// than orphaned (an orphan would keep the test's output pipe open);
    /// SIGKILL if it has not exited within 10 s.
    fn drop(&mut self) {
        stop_gracefully(&mut self.child, Duration::from_secs(10));
    }
}

/// SIGTERM `child`, wait up to `limit` for it to exit, then SIGKILL it.
pub fn stop_gracefully(child: &mut Child, limit: Duration) {
    if let Ok(None) = child.try_wait() {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < limit {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGSTOP process `pid` and wait (up to 5 s) until every one of its
/// threads is stopped. kill(2) returns before that: the group stop is
/// carried out by the thread the signal was given to, and on a loaded
/// machine the other threads can go on answering requests until it runs.
pub fn pause(pid: u32) {
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                // The state follows the `(comm)` field, which may hold spaces.
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), all_stopped),
        "process {pid} did not stop"
    );
}

/// A process stopped by [`paused`]: SIGCONT on drop, so a failing test
/// never leaves a stopped server behind.
pub struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// [`pause`] `pid` until the guard is dropped.
pub fn paused(pid: u32) -> Paused {
    pause(pid);
    Paused(pid)
}

/// Run `tribune-template` to completion (for -onetime runs).
pub fn run_renderer(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Command::new(bin("tribune-template"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("CONSUL_HTTP_ADDR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tribune-template");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copy a directory tree (fixtures into temp dirs).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Poll `f` (every 50 ms) until it holds; false if `limit` passes first.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Poll `f` (every 50 ms) until it gives a value; panics naming `what`
/// after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PUT a KV value; the agent must answer `true`.
pub fn put_kv(a: &Agent, key: &str, v: &str) {
    let r = client()
        .put(format!("{}/v1/kv/{key}", a.url))
        .body(v.to_string())
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
}

/// A tmpfs mounted on a directory (a small disk to fill); unmounted
/// (lazily: agents may still hold files) on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `16m`) on `path`, created if missing.
    /// `Err` says why that is not possible here (not root, no tmpfs).
    pub fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

/// Write zeros to `path` until its file system is full (ENOSPC).
pub fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}
