//! Health checks cannot flood the agent or raft: probe intervals are at
//! least 1 s, and a check whose output changes but not its status is
//! written to the catalog at most every `check_update_interval`.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, wait_for, Agent};

/// A python HTTP server counting its hits: `/` answers `hit N` (200, or 500
/// after `/down` was requested), `/count` answers the count without
/// counting itself.
struct Counter {
    child: Child,
    port: u16,
    _stdout: BufReader<ChildStdout>,
}

impl Counter {
    fn start() -> Counter {
        let script = r#"
import http.server, sys
state = {"hits": 0, "down": False}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body):
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        if self.path == "/count":
            return self.reply(200, str(state["hits"]).encode())
        if self.path == "/down":
            state["down"] = True
            return self.reply(200, b"ok")
        state["hits"] += 1
        self.reply(500 if state["down"] else 200, ("hit %d" % state["hits"]).encode())
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line.trim().parse().expect("counter port");
        Counter {
            child,
            port,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> u64 {
        client()
            .get(self.url("/count"))
            .send()
            .unwrap()
            .text()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn put_json(a: &Agent, path: &str, body: Value) {
    let r = client()
        .put(format!("{}/v1/{path}", a.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}: {}", r.text().unwrap_or_default());
}

fn get_json(a: &Agent, path: &str) -> Value {
    client()
        .get(format!("{}/v1/{path}", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The catalog's copy of check `id` (what raft holds), if there.
fn catalog_check(a: &Agent, id: &str) -> Option<Value> {
    get_json(a, "health/node/node1")
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == id)
        .cloned()
}

fn hit_number(output: &Value) -> u64 {
    let s = output.as_str().unwrap_or("");
    s.rsplit("hit ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `"Interval": "1ns"` used to probe in a tight loop; it is raised to 1 s,
/// with Consul's warning, and shown as such.
#[test]
fn intervals_below_one_second_are_raised() {
    let srv = Counter::start();
    let a = Agent::dev(&["-node", "node1"]);
    put_json(
        &a,
        "agent/check/register",
        json!({"ID": "fast", "Name": "fast", "HTTP": srv.url("/"), "Interval": "1ns"}),
    );
    wait_for("first probe", Duration::from_secs(5), || {
        (srv.hits() > 0).then_some(())
    });
    let (start, t0) = (srv.hits(), Instant::now());
    thread::sleep(Duration::from_secs(4));
    let (n, took) = (srv.hits() - start, t0.elapsed());
    let most = took.as_secs_f64().ceil() as u64 + 1;
    assert!(
        (2..=most).contains(&n),
        "{n} probes in {took:?} with Interval 1ns"
    );
    let checks = get_json(&a, "agent/checks");
    assert_eq!(checks["fast"]["Interval"], "1s", "{checks}");
    let log = a.log_text();
    assert!(
        log.contains("check has interval below minimum") && log.contains("fast"),
        "{log}"
    );
}

/// Output-only changes wait for check_update_interval (default 5 min): the
/// agent shows the latest output at once, the catalog (raft) keeps the
/// older one; a status change is in the catalog within about a second.
#[test]
fn output_only_changes_do_not_write_raft() {
    let srv = Counter::start();
    let a = Agent::dev(&["-node", "node1"]);
    put_json(
        &a,
        "agent/check/register",
        json!({"ID": "chatty", "Name": "chatty", "HTTP": srv.url("/"), "Interval": "1s"}),
    );
    let first = wait_for(
        "chatty passing in the catalog",
        Duration::from_secs(5),
        || catalog_check(&a, "chatty").filter(|c| c["Status"] == "passing"),
    );
    let index = first["ModifyIndex"].as_u64().unwrap();
    // Every probe answers a new body; wait for several.
    let start = srv.hits();
    wait_for("three more probes", Duration::from_secs(8), || {
        (srv.hits() >= start + 3).then_some(())
    });
    let local = get_json(&a, "agent/checks")["chatty"]["Output"].clone();
    assert!(
        hit_number(&local) >= start + 2,
        "agent shows the latest output: {local}"
    );
    let now = catalog_check(&a, "chatty").unwrap();
    assert_eq!(
        (now["ModifyIndex"].as_u64(), &now["Output"]),
        (Some(index), &first["Output"]),
        "an output-only change went through raft"
    );

    // Status change: written at once.
    client().get(srv.url("/down")).send().unwrap();
    let t0 = Instant::now();
    let down = wait_for(
        "chatty critical in the catalog",
        Duration::from_secs(5),
        || catalog_check(&a, "chatty").filter(|c| c["Status"] == "critical"),
    );
    assert!(
        t0.elapsed() <= Duration::from_millis(2500),
        "status change took {:?}",
        t0.elapsed()
    );
    assert!(hit_number(&down["Output"]) > hit_number(&first["Output"]));
}

/// With a short check_update_interval the catalog catches up with the
/// latest output when the interval passes, in a bounded number of writes.
#[test]
fn deferred_output_is_synced_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("checks.json");
    std::fs::write(&conf, r#"{"check_update_interval": "4s"}"#).unwrap();
    let srv = Counter::start();
    let a = Agent::dev(&["-node", "node1", "-config-file", conf.to_str().unwrap()]);
    put_json(
        &a,
        "agent/check/register",
        json!({"ID": "chatty", "Name": "chatty", "HTTP": srv.url("/"), "Interval": "1s"}),
    );
    let first = wait_for(
        "chatty passing in the catalog",
        Duration::from_secs(5),
        || catalog_check(&a, "chatty").filter(|c| c["Status"] == "passing"),
    );
    // Watch the catalog's copy for 10 s while every 1 s probe changes the
    // output: a write at most every 2 s (half the interval), so at most 5
    // besides the first, where one per probe would be 10.
    let mut writes = vec![first["ModifyIndex"].as_u64().unwrap()];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let c = catalog_check(&a, "chatty").unwrap();
        let index = c["ModifyIndex"].as_u64().unwrap();
        if writes.last() != Some(&index) {
            writes.push(index);
            // what is written is the output of that moment, not the first
            // deferred one (which is up to six probes older)
            let (synced, hits) = (hit_number(&c["Output"]), srv.hits());
            assert!(hits <= synced + 2, "wrote hit {synced} when at hit {hits}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        (2..=6).contains(&writes.len()),
        "{} catalog writes for {} probes in 10 s: {writes:?}",
        writes.len(),
        srv.hits()
    );
}
