//! `tribune watch`, user events (`/v1/event/*`, `tribune event`) and
//! `watches` in agent config files, against real processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{bin, client, index_of, put_kv, run_cli, wait_until, Agent};

/// A long-running `tribune` CLI process whose stdout lines are collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
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
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let e = stderr.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            e.lock().unwrap().push_str(&s);
        });
        Running {
            child,
            lines,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_lines(&self, n: usize) -> Vec<String> {
        let ok = wait_until(Duration::from_secs(20), || self.lines().len() >= n);
        assert!(
            ok,
            "fewer than {n} lines: {:?}\nstderr: {}",
            self.lines(),
            self.stderr.lock().unwrap()
        );
        self.lines()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `watch -type key` with a handler runs it once at start and once per
/// change of the key: not on wait timeouts, not on writes to other keys.
#[test]
fn watch_key_fires_once_per_change() {
    let a = Agent::dev(&[]);
    let w = Running::spawn(
        &a.addr,
        &[
            "watch", "-type", "key", "-key", "app/x", "-wait", "1s", "cat",
        ],
    );
    assert_eq!(w.wait_lines(1), ["null"]);
    put_kv(&a, "app/x", "one");
    let lines = w.wait_lines(2);
    let v: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (&v["Key"], &v["Value"], &v["Session"]),
        (&"app/x".into(), &"b25l".into(), &"".into())
    );
    // several wait timeouts and writes elsewhere: nothing
    for i in 0..5 {
        put_kv(&a, &format!("app/other{i}"), "x");
        thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(w.lines().len(), 2, "{:?}", w.lines());
    put_kv(&a, "app/x", "two");
    let lines = w.wait_lines(3);
    let v: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(v["Value"], "dHdv");
    client()
        .delete(format!("{}/v1/kv/app/x", a.url))
        .send()
        .unwrap();
    assert_eq!(w.wait_lines(4)[3], "null");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(w.lines().len(), 4);

    // a failing handler ends the watch with exit 1, as Consul's does
    let out = run_cli(
        &a.addr,
        &["watch", "-type", "key", "-key", "app/x", "exit 7"],
        None,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Error executing handler"),
        "{}",
        out.stderr
    );
    let out = run_cli(&a.addr, &["watch", "-key", "app/x"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Watch type must be specified"));
    let out = run_cli(
        &a.addr,
        &["watch", "-type", "key", "-prefix", "p", "-key", "k"],
        None,
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Invalid parameters: [prefix]"),
        "{}",
        out.stderr
    );
}

/// Consul's event index: the last event's UUID, high half XOR low half.
fn event_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let hi = u64::from_str_radix(&hex[..16], 16).unwrap();
    let lo = u64::from_str_radix(&hex[16..], 16).unwrap();
    (hi ^ lo).max(1)
}

/// Fire then list, the event index and blocking list, receive-side filters,
/// bad input, and `watch -type event` printing each new event once.
#[test]
fn events_fire_list_and_watch() {
    let a = Agent::dev(&["-node", "ev-node"]);
    let c = client();
    let r = c.get(format!("{}/v1/event/list", a.url)).send().unwrap();
    assert_eq!(index_of(&r), 1);
    assert_eq!(r.text().unwrap(), "[]");

    let w = Running::spawn(&a.addr, &["watch", "-type", "event", "-name", "deploy"]);
    assert_eq!(w.wait_lines(1), ["[]"]);

    let out = run_cli(
        &a.addr,
        &["event", "-name", "deploy", "-node", "^ev-", "v1.2"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out
        .stdout
        .trim()
        .strip_prefix("Event ID: ")
        .unwrap()
        .to_string();
    let r = c
        .get(format!("{}/v1/event/list?name=deploy", a.url))
        .send()
        .unwrap();
    assert_eq!(index_of(&r), event_index(&id));
    let list: Value = r.json().unwrap();
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(list[0]["Payload"], "djEuMg==");
    assert_eq!(list[0]["NodeFilter"], "^ev-");
    assert_eq!(list[0]["Version"], 1);

    // the watch prints the new event (pretty JSON), once
    assert!(wait_until(Duration::from_secs(20), || {
        w.lines().iter().any(|l| l.contains(&id))
    }));

    // filtered out on this agent: another node, a service it does not run
    let other = run_cli(
        &a.addr,
        &["event", "-name", "deploy", "-node", "^elsewhere$"],
        None,
    );
    assert_eq!(other.code, 0);
    let svc = run_cli(
        &a.addr,
        &["event", "-name", "deploy", "-service", "nosuch"],
        None,
    );
    assert_eq!(svc.code, 0);
    // a blocking list returns when the index differs, i.e. on a new event
    let idx = event_index(&id);
    let url = a.url.clone();
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = client()
            .get(format!(
                "{url}/v1/event/list?name=deploy&index={idx}&wait=20s"
            ))
            .send()
            .unwrap();
        (t.elapsed(), r.json::<Value>().unwrap())
    });
    thread::sleep(Duration::from_millis(500));
    let r = c
        .put(format!("{}/v1/event/fire/deploy", a.url))
        .body("second")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let second: Value = r.json().unwrap();
    let (took, list) = waiter.join().unwrap();
    assert!(
        took >= Duration::from_millis(400),
        "returned early: {took:?}"
    );
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), second["ID"].as_str().unwrap()]);
    assert!(second["LTime"].as_u64().unwrap() > list[0]["LTime"].as_u64().unwrap());
    // other names do not reach this watch; the second deploy does, once
    run_cli(&a.addr, &["event", "-name", "restart"], None);
    let sid = second["ID"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || {
        w.lines().iter().any(|l| l.contains(&sid))
    }));
    thread::sleep(Duration::from_secs(1));
    let text = w.lines().join("\n");
    assert_eq!(text.matches(&id).count(), 1, "{text}");
    assert_eq!(text.matches(&sid).count(), 1, "{text}");
    assert!(!text.contains("restart"));

    // bad input
    for (q, status) in [
        ("event/fire/x?tag=t", 400),
        ("event/fire/x?node=(", 400),
        ("event/fire/x?dc=other", 500),
    ] {
        let r = c.put(format!("{}/v1/{q}", a.url)).send().unwrap();
        assert_eq!(r.status(), status, "{q}");
    }
    let r = c
        .put(format!("{}/v1/event/fire/big", a.url))
        .body(vec![b'x'; 600])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let out = run_cli(&a.addr, &["event", "-name", "x", "-tag", "t"], None);
    assert_eq!(out.code, 1);
    assert!(out
        .stderr
        .contains("Cannot provide tag filter without service filter"));
    let out = run_cli(&a.addr, &["event", "payload"], None);
    assert!(out.stderr.contains("Event name must be specified"));
    let list: Value = c
        .get(format!("{}/v1/event/list", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
}

/// Requests a hook server received: (head, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A tiny HTTP server recording each request's head and body.
fn hook_server() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            g.lock()
                .unwrap()
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

/// `watches` in config files (JSON and HCL) run inside the agent: an `args`
/// handler gets the JSON on stdin, an `http` handler receives it with the
/// configured method and headers; a bad watch stops the agent from starting.
#[test]
fn config_watches_run_in_agent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("key.out");
    let hcl_out = dir.path().join("prefix.out");
    let (hook, got) = hook_server();
    let cfg = serde_json::json!({"watches": [
        {"type": "key", "key": "cfg/x", "args": ["sh", "-c", format!("cat >> {}", out.display())]},
        {"type": "event", "name": "hook", "handler_type": "http",
         "http_handler_config": {"path": format!("http://{hook}/hook"), "method": "PUT",
                                 "header": {"X-Test": ["yes"]}, "timeout": "5s"}}
    ]});
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("a.json"), cfg.to_string()).unwrap();
    std::fs::write(
        conf.join("b.hcl"),
        format!(
            "watches = [{{\n  type = \"keyprefix\"\n  prefix = \"hcl/\"\n  handler = \"cat >> {}\"\n}}]\n",
            hcl_out.display()
        ),
    )
    .unwrap();
    let a = Agent::dev(&["-config-dir", conf.to_str().unwrap()]);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(20), || read(&out).contains("null")));
    put_kv(&a, "cfg/x", "hello");
    assert!(
        wait_until(Duration::from_secs(20), || read(&out).contains("aGVsbG8=")),
        "key handler output: {:?}\nlog:\n{}",
        read(&out),
        a.log_text()
    );
    put_kv(&a, "hcl/y", "v");
    assert!(wait_until(Duration::from_secs(20), || read(&hcl_out).contains("hcl/y")));

    // first answer (no events yet), then the fired event
    assert!(wait_until(Duration::from_secs(20), || !got
        .lock()
        .unwrap()
        .is_empty()));
    let r = client()
        .put(format!("{}/v1/event/fire/hook", a.url))
        .body("ping")
        .send()
        .unwrap();
    let id = r.json::<Value>().unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(wait_until(Duration::from_secs(20), || {
        got.lock().unwrap().iter().any(|(_, b)| b.contains(&id))
    }));
    let reqs = got.lock().unwrap().clone();
    let (head, body) = reqs.iter().find(|(_, b)| b.contains(&id)).unwrap();
    assert!(head.starts_with("PUT /hook "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("x-test: yes"), "{head}");
    assert!(
        lower.contains(&format!("x-consul-index: {}", event_index(&id))),
        "{head}"
    );
    let events: Value = serde_json::from_str(body).unwrap();
    assert_eq!(events[0]["Payload"], "cGluZw==");

    // an invalid watch is a configuration error
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"watches": [{"type": "key", "args": ["true"]}]}"#).unwrap();
    let out = Command::new(bin("tribune"))
        .args([
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-config-file",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("watch #1: Must specify a single key to watch"),
        "{err}"
    );
}
