//! A real cluster: three `tribune agent -server -bootstrap-expect 3` processes
//! and client agents on one machine (127.0.0.1, distinct free ports), joined
//! by gossip, with `performance.raft_multiplier = 1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use tribune_tests::{client, free_ports, run_cli, wait_for, Agent};

/// Ports of one agent that others must know (its HTTP port is 0).
#[derive(Clone, Copy)]
struct Ports {
    server: u16,
    serf: u16,
}

impl Ports {
    fn many(n: usize) -> Vec<Ports> {
        free_ports(2 * n)
            .chunks(2)
            .map(|p| Ports {
                server: p[0],
                serf: p[1],
            })
            .collect()
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    servers: Vec<Option<Agent>>,
    server_ports: Vec<Ports>,
    clients: Vec<Option<Agent>>,
    client_ports: Vec<Ports>,
}

fn perf_file(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("perf.json");
    if !p.exists() {
        std::fs::write(&p, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    }
    p
}

impl Cluster {
    fn new(servers: usize, clients: usize) -> Self {
        let mut ports = Ports::many(servers + clients);
        let client_ports = ports.split_off(servers);
        Self {
            dir: tempfile::tempdir().unwrap(),
            servers: (0..servers).map(|_| None).collect(),
            server_ports: ports,
            clients: (0..clients).map(|_| None).collect(),
            client_ports,
        }
    }

    fn retry_join(&self) -> Vec<String> {
        self.server_ports
            .iter()
            .flat_map(|p| ["-retry-join".to_string(), format!("127.0.0.1:{}", p.serf)])
            .collect()
    }

    fn spawn(&self, name: &str, p: Ports, server: bool) -> Agent {
        let data = self.dir.path().join(name);
        let perf = perf_file(self.dir.path());
        let mut args: Vec<String> = vec!["agent".into()];
        if server {
            args.extend(["-server", "-bootstrap-expect", "3"].map(String::from));
        }
        args.extend(
            [
                "-node",
                name,
                "-data-dir",
                data.to_str().unwrap(),
                // Port 0: the agent logs the one it got. A port picked here
                // and freed can be taken by another test before the agent
                // binds it (it was, once); the others must be known up front.
                "-http-port",
                "0",
                "-dns-port",
                "-1",
                "-server-port",
                &p.server.to_string(),
                "-serf-lan-port",
                &p.serf.to_string(),
                "-retry-interval",
                "1s",
                "-config-file",
                perf.to_str().unwrap(),
            ]
            .map(String::from),
        );
        args.extend(self.retry_join());
        Agent::start(&args, Some(data))
    }

    fn start_server(&mut self, i: usize) {
        let a = self.spawn(&format!("s{i}"), self.server_ports[i], true);
        self.servers[i] = Some(a);
    }

    /// The first three servers (the `-bootstrap-expect 3` set).
    fn start_servers(&mut self) {
        for i in 0..3 {
            self.start_server(i);
        }
    }

    /// Three servers and `clients` client agents up, and the leader's index.
    fn running(clients: usize) -> (Self, usize) {
        let mut c = Self::new(3, clients);
        c.start_servers();
        for i in 0..clients {
            c.start_client(i);
        }
        let leader = c.wait_leader(Duration::from_secs(30));
        (c, leader)
    }

    fn start_client(&mut self, i: usize) {
        let a = self.spawn(&format!("c{i}"), self.client_ports[i], false);
        self.clients[i] = Some(a);
    }

    fn server(&self, i: usize) -> &Agent {
        self.servers[i].as_ref().expect("server running")
    }

    fn client(&self, i: usize) -> &Agent {
        self.clients[i].as_ref().expect("client running")
    }

    /// Index of the server whose RPC address is the leader, per `from`.
    fn leader_of(&self, from: &Agent) -> Option<usize> {
        let r = client()
            .get(format!("{}/v1/status/leader", from.url))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        let leader: String = r.json().ok()?;
        self.server_ports
            .iter()
            .position(|p| leader == format!("127.0.0.1:{}", p.server))
    }

    /// Wait until every running server agrees on one leader that answers
    /// default reads; returns its index.
    fn wait_leader(&self, limit: Duration) -> usize {
        let t = Instant::now();
        loop {
            let views: Vec<Option<usize>> = self
                .servers
                .iter()
                .flatten()
                .map(|a| self.leader_of(a))
                .collect();
            if let Some(Some(l)) = views.first() {
                if views.iter().all(|v| *v == Some(*l)) && self.servers[*l].is_some() {
                    let r = client()
                        .get(format!("{}/v1/kv/__probe__", self.server(*l).url))
                        .send();
                    if r.is_ok_and(|r| r.status() == 404 || r.status() == 200) {
                        return *l;
                    }
                }
            }
            assert!(
                t.elapsed() < limit,
                "no agreed leader within {limit:?}: {views:?}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, a) in self.servers.iter().enumerate() {
            if let Some(a) = a {
                let log = a.log_text();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                out += &format!(
                    "--- s{i}\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        out
    }
}

fn members(a: &Agent) -> BTreeMap<String, (u64, String)> {
    let v: Value = client()
        .get(format!("{}/v1/agent/members", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_string(),
                (
                    m["Status"].as_u64().unwrap(),
                    m["Tags"]["role"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn put(url: &str, key: &str, value: &str) -> reqwest::Result<reqwest::blocking::Response> {
    client()
        .put(format!("{url}/v1/kv/{key}"))
        .timeout(Duration::from_secs(15))
        .body(value.to_string())
        .send()
}

fn get_raw(url: &str, key: &str, query: &str) -> Option<String> {
    let r = client()
        .get(format!("{url}/v1/kv/{key}?raw&{query}"))
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    (r.status() == 200).then(|| r.text().unwrap())
}

fn formation(client_first: bool) {
    let mut c = Cluster::new(3, 1);
    if client_first {
        c.start_client(0);
    }
    c.start_servers();
    if !client_first {
        c.start_client(0);
    }
    let leader = c.wait_leader(Duration::from_secs(30));
    // Exactly one cluster: every server lists the same three voters.
    let peers: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let mut p: Vec<String> = client()
                .get(format!("{}/v1/status/peers", c.server(i).url))
                .send()
                .unwrap()
                .json()
                .unwrap();
            p.sort();
            p
        })
        .collect();
    assert_eq!(peers[0].len(), 3, "{peers:?}");
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");

    // Membership as every agent sees it.
    wait_for(
        "4 alive members seen by the client",
        Duration::from_secs(15),
        || {
            let m = members(c.client(0));
            (m.len() == 4 && m.values().all(|(s, _)| *s == 1)).then_some(())
        },
    );
    let m = members(c.server(leader));
    assert_eq!(m["c0"].1, "node");
    assert_eq!(m["s0"].1, "consul");
    let out = run_cli(&c.client(0).addr, &["members"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.matches(" alive ").count(), 4, "{}", out.stdout);
    assert_eq!(out.stdout.matches(" server ").count(), 3, "{}", out.stdout);
    assert_eq!(out.stdout.matches(" client ").count(), 1, "{}", out.stdout);
    let out = run_cli(&c.client(0).addr, &["operator", "raft", "list-peers"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.matches("leader").count(), 1, "{}", out.stdout);
    assert_eq!(out.stdout.matches("true").count(), 3, "{}", out.stdout);

    // KV written through the client is read from every server, default and stale.
    let r = put(&c.client(0).url, "app/config", "from-the-client").unwrap();
    assert_eq!(r.text().unwrap(), "true");
    for i in 0..3 {
        assert_eq!(
            get_raw(&c.server(i).url, "app/config", "").as_deref(),
            Some("from-the-client")
        );
        wait_for("stale read on a follower", Duration::from_secs(5), || {
            (get_raw(&c.server(i).url, "app/config", "stale").as_deref() == Some("from-the-client"))
                .then_some(())
        });
    }
    // Stale reads say how stale; a follower's default read is the leader's.
    let follower = (leader + 1) % 3;
    let r = client()
        .get(format!("{}/v1/kv/app/config?stale", c.server(follower).url))
        .send()
        .unwrap();
    assert!(r.headers().contains_key("x-consul-lastcontact"));
    assert_eq!(r.headers()["x-consul-knownleader"], "true");

    // A service registered on the client is in every server's catalog,
    // with its node's serfHealth passing.
    let r = client()
        .put(format!("{}/v1/agent/service/register", c.client(0).url))
        .json(&json!({"Name": "web", "ID": "web-1", "Port": 8080, "Check": {"TTL": "30s", "Status": "passing"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..3 {
        wait_for(
            "service in each server's catalog",
            Duration::from_secs(10),
            || {
                let v: Value = client()
                    .get(format!(
                        "{}/v1/health/service/web?passing&stale",
                        c.server(i).url
                    ))
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                let a = v.as_array()?;
                (a.len() == 1 && a[0]["Node"]["Node"] == "c0").then_some(())
            },
        );
    }
    // `tribune join` succeeds when an address answers, fails when none does.
    let out = run_cli(
        &c.client(0).addr,
        &["join", &format!("127.0.0.1:{}", c.server_ports[1].serf)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("contacting 1 nodes"), "{}", out.stdout);
    let nobody = format!("127.0.0.1:{}", free_ports(1)[0]);
    let out = run_cli(&c.client(0).addr, &["join", &nobody], None);
    assert_ne!(out.code, 0, "joining nobody succeeded: {}", out.stdout);
    assert!(out.stderr.contains("Error joining"), "{}", out.stderr);

    // The client's CLI reaches the catalog through a server.
    let out = run_cli(&c.client(0).addr, &["catalog", "services"], None);
    assert!(out.stdout.contains("web"), "{}", out.stdout);

    // A user event fired on the client reaches every server by gossip.
    let out = run_cli(
        &c.client(0).addr,
        &["event", "-name", "deploy", "v42"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for i in 0..3 {
        wait_for("the event on every server", Duration::from_secs(10), || {
            let v: Value = client()
                .get(format!("{}/v1/event/list?name=deploy", c.server(i).url))
                .send()
                .ok()?
                .json()
                .ok()?;
            (v.as_array()?.len() == 1).then_some(())
        });
    }
}

/// HEAD through a follower and through a client agent (both forward to
/// the leader, in the RPC envelope) reads like GET and deletes nothing
/// (issue 12: `curl -I ...?recurse` through a follower wiped the store);
/// methods a route does not answer are refused before forwarding; and no
/// server's RPC port answers the public API, over HTTP/1.1 or h2c.
#[test]
fn head_through_a_follower_deletes_nothing() {
    let (c, leader) = Cluster::running(1);
    let follower = (leader + 1) % 3;
    for k in ["hd/a", "hd/b"] {
        let r = put(&c.server(follower).url, k, "1").unwrap();
        assert_eq!(r.text().unwrap(), "true");
    }
    let h = client();
    for url in [&c.server(follower).url, &c.client(0).url] {
        let r = wait_for("a HEAD answered", Duration::from_secs(15), || {
            h.head(format!("{url}/v1/kv/hd/a")).send().ok()
        });
        assert_eq!(r.status(), 200, "HEAD via {url}");
        let get = h.get(format!("{url}/v1/kv/hd/a")).send().unwrap();
        assert_eq!(
            r.headers().get("content-length"),
            Some(&get.bytes().unwrap().len().to_string().parse().unwrap()),
            "HEAD's Content-Length is GET's"
        );
        assert!(r.headers().contains_key("x-consul-index"));
        assert_eq!(r.headers()["x-consul-knownleader"], "true");
        let r = h.head(format!("{url}/v1/kv/hd/?recurse")).send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().unwrap().is_empty());
        let r = h.head(format!("{url}/v1/kv/hd/none")).send().unwrap();
        assert_eq!(r.status(), 404);
        let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
        for m in [reqwest::Method::PATCH, reqwest::Method::POST, brew] {
            let r = h
                .request(m.clone(), format!("{url}/v1/kv/hd/?recurse"))
                .send()
                .unwrap();
            assert_eq!(r.status(), 405, "{m} via {url}");
            assert_eq!(r.headers()["allow"], "OPTIONS,GET,HEAD,PUT,DELETE");
        }
    }
    for k in ["hd/a", "hd/b"] {
        assert_eq!(
            get_raw(&c.server(leader).url, k, "").as_deref(),
            Some("1"),
            "{k} deleted"
        );
    }
    // The RPC ports: h2c has no API routes, HTTP/1.1 is not spoken.
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for p in &c.server_ports {
        let rpc = format!("127.0.0.1:{}", p.server);
        let r = h2
            .get(format!("http://{rpc}/v1/kv/hd/a?raw"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "h2c API read on {rpc}");
        let r = h2
            .delete(format!("http://{rpc}/v1/kv/hd/a"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "h2c API delete on {rpc}");
        let r = client()
            .get(format!("http://{rpc}/v1/kv/hd/a?raw"))
            .timeout(Duration::from_secs(5))
            .send();
        assert!(
            r.as_ref().map_or(true, |r| !r.status().is_success()),
            "HTTP/1.1 API read on {rpc}: {r:?}"
        );
    }
    assert_eq!(
        get_raw(&c.server(leader).url, "hd/a", "").as_deref(),
        Some("1")
    );
}

/// 3 servers + 1 client, the client started first.
#[test]
fn cluster_forms_client_first() {
    formation(true);
}

/// 3 servers + 1 client, the client started last.
#[test]
fn cluster_forms_client_last() {
    formation(false);
}

/// Failover timing at raft_multiplier 1 (issue 21): a write sent through a
/// follower just after `kill -9` of the leader is held there and answered
/// 200 by the new leader within 1.3 s, in each of three rounds; and no
/// survivor names a new leader sooner than 600 ms after the kill (a
/// follower waits out its lease on the leader plus its election timeout,
/// 750 ms at least, so an election this early would be trigger-happy).
/// Each round starts from a cluster whose servers have all caught up.
#[test]
fn write_after_a_leader_kill_is_acknowledged_within_the_failover_bound() {
    let mut c = Cluster::new(3, 0);
    c.start_servers();
    for round in 0..3 {
        let leader = c.wait_leader(Duration::from_secs(30));
        // Every server caught up first (as bench/run.sh waits): a server
        // restarted just before, still behind, would campaign in vain with
        // its shorter log and cost a second election timeout.
        let mark = format!("fb/{round}/synced");
        assert_eq!(
            put(&c.server(leader).url, &mark, "s").unwrap().status(),
            200
        );
        for i in 0..3 {
            let u = c.server(i).url.clone();
            wait_for(
                "every server to hold the mark",
                Duration::from_secs(15),
                || (get_raw(&u, &mark, "stale").as_deref() == Some("s")).then_some(()),
            );
        }
        let follower = (leader + 1) % 3;
        let url = c.server(follower).url.clone();
        for n in 0..3 {
            let r = put(&url, &format!("fb/{round}/warm{n}"), "w").unwrap();
            assert_eq!(r.status(), 200, "warm-up write {n}: {:?}", r.text());
        }
        // Watch the other survivor's view of the leader meanwhile.
        let other = (0..3).find(|i| *i != leader && *i != follower).unwrap();
        let other_url = c.server(other).url.clone();
        let old = format!("127.0.0.1:{}", c.server_ports[leader].server);
        let killed = Instant::now();
        c.servers[leader].as_mut().unwrap().kill9();
        c.servers[leader] = None;
        let watcher = thread::spawn(move || loop {
            let named = client()
                .get(format!("{other_url}/v1/status/leader"))
                .timeout(Duration::from_secs(1))
                .send()
                .ok()
                .and_then(|r| r.json::<String>().ok());
            if named.is_some_and(|l| !l.is_empty() && l != old) {
                return killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(10) {
                return killed.elapsed();
            }
            thread::sleep(Duration::from_millis(5));
        });
        // Some answers are 500 (the write reached the dying leader and its
        // outcome is unknown): written again, as a client would.
        let mut answers = Vec::new();
        let acked = loop {
            let r = put(&url, &format!("fb/{round}/after"), "a").unwrap();
            let status = r.status().as_u16();
            answers.push(status);
            if status == 200 {
                break killed.elapsed();
            }
            assert!(killed.elapsed() < Duration::from_secs(10), "{answers:?}");
            thread::sleep(Duration::from_millis(10));
        };
        let named = watcher.join().unwrap();
        eprintln!(
            "round {round}: s{other} named a new leader {named:?} after the kill of s{leader}; \
             the write was acknowledged after {acked:?} (answers {answers:?})"
        );
        assert!(
            named >= Duration::from_millis(600),
            "round {round}: a new leader after {named:?}"
        );
        assert!(
            acked <= Duration::from_millis(1300),
            "round {round}: the write after the kill acknowledged after {acked:?}\n{}",
            c.logs()
        );
        c.start_server(leader);
    }
}

/// kill -9 the leader under a writer loop: a new leader within 5 s, writes
/// resume, the old leader catches up after restart, and every acknowledged
/// write is there with its acknowledged value on every server.
#[test]
fn failover_loses_no_acknowledged_write() {
    let (mut c, leader) = Cluster::running(1);
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let last_ack = Arc::new(Mutex::new(Instant::now()));
    let acks = Arc::new(AtomicU64::new(0));
    // Writers through the client agent and through each follower.
    let mut urls = vec![c.client(0).url.clone()];
    urls.extend(
        (0..3)
            .filter(|i| *i != leader)
            .map(|i| c.server(i).url.clone()),
    );
    let writers: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(w, url)| {
            let (acked, stop, last_ack, acks) =
                (acked.clone(), stop.clone(), last_ack.clone(), acks.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Few keys, many overwrites: the latest ack must win.
                    let key = format!("f/{w}/{}", n % 7);
                    let value = format!("w{w}-{n}");
                    if let Ok(r) = put(&url, &key, &value) {
                        if r.status() == 200 && r.text().unwrap_or_default() == "true" {
                            acked.lock().unwrap().insert(key, value);
                            *last_ack.lock().unwrap() = Instant::now();
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let before = acks.load(Ordering::Relaxed);
    assert!(before > 0, "no writes acknowledged before the kill");
    let killed_at = Instant::now();
    c.servers[leader].as_mut().unwrap().kill9();
    c.servers[leader] = None;
    // A new leader within 5 s.
    let new_leader = wait_for("a new leader", Duration::from_secs(5), || {
        (0..3)
            .filter(|i| *i != leader)
            .find_map(|i| c.leader_of(c.server(i)).filter(|l| *l != leader))
    });
    let elected = killed_at.elapsed();
    // Writes resume.
    wait_for("writes to resume", Duration::from_secs(10), || {
        (*last_ack.lock().unwrap() > killed_at + Duration::from_millis(1)).then_some(())
    });
    let resumed = last_ack.lock().unwrap().duration_since(killed_at);
    eprintln!("new leader s{new_leader} after {elected:?}; first ack after {resumed:?}");
    thread::sleep(Duration::from_secs(1));
    // The old leader restarts with its data and catches up.
    c.start_server(leader);
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total = acks.load(Ordering::Relaxed);
    eprintln!("{total} acknowledged writes, {before} before the kill");
    assert!(total > before);
    let final_leader = c.wait_leader(Duration::from_secs(15));
    for i in 0..3 {
        let url = c.server(i).url.clone();
        wait_for(
            &format!("s{i} (leader s{final_leader}) to hold every acknowledged write"),
            Duration::from_secs(15),
            || {
                acked
                    .iter()
                    .all(|(k, v)| get_raw(&url, k, "stale").as_deref() == Some(v.as_str()))
                    .then_some(())
            },
        );
    }
    // And through the leader with default consistency.
    for (k, v) in &acked {
        assert_eq!(
            get_raw(&c.server(final_leader).url, k, "").as_deref(),
            Some(v.as_str())
        );
    }
}

/// One register per key: the value last written (values are unique per
/// write), so Consul's `?cas=<ModifyIndex>` is a compare-and-set on values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Register(Option<String>);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Op {
    Read,
    Write(String),
    Cas(Option<String>, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ret {
    Read(Option<String>),
    Written,
    Cas(bool),
}

impl SequentialSpec for Register {
    type Op = Op;
    type Ret = Ret;
    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Read => Ret::Read(self.0.clone()),
            Op::Write(v) => {
                self.0 = Some(v.clone());
                Ret::Written
            }
            Op::Cas(expect, new) => {
                if self.0 == *expect {
                    self.0 = Some(new.clone());
                    Ret::Cas(true)
                } else {
                    Ret::Cas(false)
                }
            }
        }
    }
}

enum Event {
    Invoke(u64, String, Op),
    Return(u64, String, Ret),
}

/// Several clients read, write and CAS a few keys through different agents
/// while the leader is killed; the history must be linearizable (checked
/// per key with stateright's tester).
#[test]
fn history_is_linearizable_across_a_leader_kill() {
    let (mut c, leader) = Cluster::running(1);
    let history: Arc<Mutex<Vec<Event>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next_thread = Arc::new(AtomicU64::new(0));
    let mut urls = vec![c.client(0).url.clone()];
    urls.extend((0..3).map(|i| c.server(i).url.clone()));
    let keys = ["lin/a", "lin/b", "lin/c"];
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let url = urls[w % urls.len()].clone();
            let (history, stop, next_thread) = (history.clone(), stop.clone(), next_thread.clone());
            thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                // A logical thread id per run of completed ops: an op with an
                // unknown outcome stays in flight and retires its thread.
                let mut tid = next_thread.fetch_add(1, Ordering::Relaxed);
                let mut n = 0u64;
                let mut last_read: BTreeMap<&str, (Option<String>, u64)> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = keys[(n as usize + w) % keys.len()];
                    let value = format!("v{w}-{n}");
                    let choice = (n + w as u64) % 3;
                    let (op, req) = match (choice, last_read.get(key)) {
                        (0, _) | (_, None) if choice != 1 => {
                            (Op::Read, http.get(format!("{url}/v1/kv/{key}")))
                        }
                        (1, _) | (_, None) => (
                            Op::Write(value.clone()),
                            http.put(format!("{url}/v1/kv/{key}")).body(value.clone()),
                        ),
                        (_, Some((seen, index))) => (
                            Op::Cas(seen.clone(), value.clone()),
                            http.put(format!("{url}/v1/kv/{key}?cas={index}"))
                                .body(value.clone()),
                        ),
                    };
                    history
                        .lock()
                        .unwrap()
                        .push(Event::Invoke(tid, key.to_string(), op.clone()));
                    let mut never_sent = false;
                    let ret = match req.send() {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().unwrap_or_default();
                            match (&op, status) {
                                (Op::Read, 200) => {
                                    let v: Value = serde_json::from_str(&body).unwrap();
                                    let entry = &v[0];
                                    let val = entry["Value"].as_str().map(|b| {
                                        use base64::Engine;
                                        String::from_utf8(
                                            base64::engine::general_purpose::STANDARD
                                                .decode(b)
                                                .unwrap(),
                                        )
                                        .unwrap()
                                    });
                                    let mi = entry["ModifyIndex"].as_u64().unwrap();
                                    last_read.insert(key, (val.clone(), mi));
                                    Some(Ret::Read(val))
                                }
                                (Op::Read, 404) => {
                                    last_read.insert(key, (None, 0));
                                    Some(Ret::Read(None))
                                }
                                (Op::Write(_), 200) if body == "true" => Some(Ret::Written),
                                (Op::Cas(..), 200) if body == "true" || body == "false" => {
                                    last_read.remove(key);
                                    Some(Ret::Cas(body == "true"))
                                }
                                _ => None,
                            }
                        }
                        Err(e) => {
                            never_sent = e.is_connect();
                            None
                        }
                    };
                    match ret {
                        Some(ret) => {
                            history
                                .lock()
                                .unwrap()
                                .push(Event::Return(tid, key.to_string(), ret))
                        }
                        None if never_sent || op == Op::Read => {
                            // Refused connections never reached a server, and a
                            // read without an answer constrains nothing: drop it.
                            let mut h = history.lock().unwrap();
                            if let Some(i) = h
                                .iter()
                                .rposition(|e| matches!(e, Event::Invoke(t, ..) if *t == tid))
                            {
                                h.remove(i);
                            }
                            drop(h);
                            last_read.remove(key);
                            thread::sleep(Duration::from_millis(50));
                        }
                        None => {
                            // Unknown outcome: leave it in flight, go on as a new thread.
                            tid = next_thread.fetch_add(1, Ordering::Relaxed);
                            last_read.remove(key);
                            thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    c.servers[leader].as_mut().unwrap().kill9();
    c.servers[leader] = None;
    thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let history = std::mem::take(&mut *history.lock().unwrap());
    let mut testers: BTreeMap<String, LinearizabilityTester<u64, Register>> = BTreeMap::new();
    let mut ops = 0usize;
    // Threads whose last operation never returned: outcome unknown.
    let mut open = std::collections::BTreeSet::new();
    for e in history {
        match e {
            Event::Invoke(t, k, op) => {
                ops += 1;
                open.insert(t);
                testers
                    .entry(k)
                    .or_insert_with(|| LinearizabilityTester::new(Register::default()))
                    .on_invoke(t, op)
                    .unwrap();
            }
            Event::Return(t, k, ret) => {
                open.remove(&t);
                testers.get_mut(&k).unwrap().on_return(t, ret).unwrap();
            }
        }
    }
    eprintln!("{ops} operations, {} with unknown outcome", open.len());
    assert!(ops > 100, "too few operations: {ops}");
    // The checker searches recursively, a few frames per operation: a
    // long history overflows a test thread's 2 MiB stack (it did in CI).
    let verdicts: Vec<(String, bool, usize)> = thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            testers
                .iter()
                .map(|(k, t)| (k.clone(), t.is_consistent(), t.len()))
                .collect()
        })
        .unwrap()
        .join()
        .unwrap();
    for (k, consistent, len) in verdicts {
        assert!(consistent, "history of {k} is not linearizable ({len} ops)");
    }
}

/// A killed client turns failed and its services critical; a client that
/// leaves turns left and its node leaves the catalog; force-leave moves a
/// failed member to left.
#[test]
fn members_failed_and_left() {
    let (mut c, leader) = Cluster::running(2);
    for i in 0..2 {
        let r = client()
            .put(format!("{}/v1/agent/service/register", c.client(i).url))
            .json(&json!({"Name": "api", "ID": format!("api-{i}"), "Port": 9000 + i, "Check": {"TTL": "60s", "Status": "passing"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let srv = c.server(leader).url.clone();
    let passing = |n: usize| {
        let srv = srv.clone();
        move || {
            let v: Value = client()
                .get(format!("{srv}/v1/health/service/api?passing"))
                .send()
                .ok()?
                .json()
                .ok()?;
            (v.as_array()?.len() == n).then_some(())
        }
    };
    wait_for(
        "both api instances passing",
        Duration::from_secs(15),
        passing(2),
    );
    // A session defaults to the node's serfHealth, which the leader registers
    // when it sees c0 join; c0's own services can be in the catalog first (as
    // in Consul, a session created before that is refused).
    wait_for("c0's serfHealth passing", Duration::from_secs(15), || {
        let v: Value = client()
            .get(format!("{srv}/v1/health/node/c0"))
            .send()
            .ok()?
            .json()
            .ok()?;
        v.as_array()?
            .iter()
            .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
            .then_some(())
    });
    // A lock held by a session of c0 (through c0's own API, forwarded).
    let session: Value = client()
        .put(format!("{}/v1/session/create", c.client(0).url))
        .json(&json!({"Name": "c0-lock", "LockDelay": "0s"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let sid = session["ID"].as_str().unwrap().to_string();
    let r = client()
        .put(format!("{}/v1/kv/locks/c0?acquire={sid}", c.client(0).url))
        .body("held")
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    let info: Value = client()
        .get(format!("{srv}/v1/session/info/{sid}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        info[0]["Node"], "c0",
        "a session defaults to the agent's node"
    );

    // kill -9 client 0: failed within seconds, serfHealth critical, out of ?passing.
    let t = Instant::now();
    c.clients[0].as_mut().unwrap().kill9();
    c.clients[0] = None;
    wait_for("c0 failed", Duration::from_secs(15), || {
        (members(c.server(leader)).get("c0").map(|m| m.0) == Some(4)).then_some(())
    });
    eprintln!("c0 failed after {:?}", t.elapsed());
    wait_for(
        "c0's instance out of ?passing",
        Duration::from_secs(10),
        passing(1),
    );
    let checks: Value = client()
        .get(format!("{srv}/v1/health/node/c0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let serf = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap();
    assert_eq!(serf["Status"], "critical");
    // Its session died with it (linked to serfHealth): the lock is free.
    wait_for("c0's session invalidated", Duration::from_secs(10), || {
        let v: Value = client()
            .get(format!("{srv}/v1/kv/locks/c0"))
            .send()
            .ok()?
            .json()
            .ok()?;
        v[0].get("Session")
            .is_none_or(|s| s.is_null())
            .then_some(())
    });

    // force-leave moves the failed member to left and deregisters it.
    let out = run_cli(&c.server(leader).addr, &["force-leave", "c0"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for("c0 left after force-leave", Duration::from_secs(10), || {
        (members(c.server(leader)).get("c0").map(|m| m.0) == Some(3)).then_some(())
    });
    wait_for("c0 gone from the catalog", Duration::from_secs(10), || {
        let r = client()
            .get(format!("{srv}/v1/catalog/node/c0"))
            .send()
            .ok()?;
        (r.status() == 404).then_some(())
    });
    // force-leave of an alive member is refused.
    let out = run_cli(&c.client(1).addr, &["force-leave", "s0"], None);
    assert_ne!(out.code, 0);

    // `tribune leave` on client 1: it exits, shows left, its node leaves the catalog.
    let out = run_cli(&c.client(1).addr, &["leave"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let code = {
        let a = c.clients[1].as_mut().unwrap();
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = a.child.try_wait() {
                break st.code();
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "c1 did not exit after leave"
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(code, Some(0));
    wait_for("c1 left", Duration::from_secs(10), || {
        (members(c.server(leader)).get("c1").map(|m| m.0) == Some(3)).then_some(())
    });
    wait_for("c1 out of the catalog", Duration::from_secs(10), || {
        let v: Value = client()
            .get(format!("{srv}/v1/catalog/service/api"))
            .send()
            .ok()?
            .json()
            .ok()?;
        v.as_array()?.is_empty().then_some(())
    });
}

/// A server that leaves is removed from the voters; a fourth server started
/// later is added; `operator raft remove-peer` drops a dead one.
#[test]
fn servers_leave_join_and_remove_peer() {
    let mut c = Cluster::new(4, 0);
    c.start_servers();
    let leader = c.wait_leader(Duration::from_secs(30));
    let voters = |c: &Cluster, from: usize| -> Vec<String> {
        let v: Value = client()
            .get(format!(
                "{}/v1/operator/raft/configuration",
                c.server(from).url
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["Servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Voter"] == true)
            .map(|s| s["Node"].as_str().unwrap().to_string())
            .collect()
    };
    // A fourth server (started without -bootstrap-expect 3 it would wait;
    // with it, it finds an existing cluster) is added as a voter.
    c.start_server(3);
    wait_for("s3 becomes a voter", Duration::from_secs(20), || {
        (voters(&c, leader).len() == 4).then_some(())
    });
    // s3 leaves gracefully: removed from the voters, shown as left.
    let out = run_cli(&c.server(3).addr, &["leave"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_for("s3 removed from raft", Duration::from_secs(15), || {
        let v = voters(&c, leader);
        (v.len() == 3 && !v.contains(&"s3".to_string())).then_some(())
    });
    wait_for("s3 left", Duration::from_secs(10), || {
        (members(c.server(leader)).get("s3").map(|m| m.0) == Some(3)).then_some(())
    });
    // A dead follower is removed with remove-peer; the other two keep a quorum.
    let victim = (leader + 1) % 3;
    c.servers[victim].as_mut().unwrap().kill9();
    c.servers[victim] = None;
    // Only once gossip has it failed: a server still alive in gossip is
    // added back by the leader's reconciliation, as Consul's is.
    let name = format!("s{victim}");
    wait_for("the killed server failed", Duration::from_secs(30), || {
        (members(c.server(leader)).get(&name).map(|m| m.0) == Some(4)).then_some(())
    });
    let address = format!("127.0.0.1:{}", c.server_ports[victim].server);
    let out = run_cli(
        &c.server(leader).addr,
        &["operator", "raft", "remove-peer", "-address", &address],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = voters(&c, leader);
    assert_eq!(v.len(), 2, "{v:?}");
    let r = put(&c.server(leader).url, "after/remove", "ok").unwrap();
    assert_eq!(r.text().unwrap(), "true");
    // Bad input changes nothing.
    let r = client()
        .delete(format!(
            "{}/v1/operator/raft/peer?id=nope",
            c.server(leader).url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(voters(&c, leader).len(), 2);
}

/// The checker wiring catches a violation: a read that starts after a write
/// was acknowledged must not see the older value.
#[test]
fn checker_rejects_a_stale_read() {
    let mut t = LinearizabilityTester::<u64, Register>::new(Register::default());
    t.on_invoke(1, Op::Write("a".into())).unwrap();
    t.on_return(1, Ret::Written).unwrap();
    t.on_invoke(2, Op::Read).unwrap();
    t.on_return(2, Ret::Read(None)).unwrap();
    assert!(!t.is_consistent());
    // ...while the same read overlapping the write may see either value.
    let mut t = LinearizabilityTester::<u64, Register>::new(Register::default());
    t.on_invoke(1, Op::Write("a".into())).unwrap();
    t.on_invoke(2, Op::Read).unwrap();
    t.on_return(2, Ret::Read(None)).unwrap();
    t.on_return(1, Ret::Written).unwrap();
    assert!(t.is_consistent());
    // A CAS that expected a value already overwritten must fail.
    let mut t = LinearizabilityTester::<u64, Register>::new(Register::default());
    t.on_invoke(1, Op::Write("a".into())).unwrap();
    t.on_return(1, Ret::Written).unwrap();
    t.on_invoke(1, Op::Write("b".into())).unwrap();
    t.on_return(1, Ret::Written).unwrap();
    t.on_invoke(2, Op::Cas(Some("a".into()), "c".into()))
        .unwrap();
    t.on_return(2, Ret::Cas(true)).unwrap();
    assert!(!t.is_consistent());
}

/// With a small snapshot threshold the log is compacted; a server that
/// joins afterwards (and one wiped and restarted) catches up from a
/// snapshot sent over the server RPC port, not from the log.
#[test]
fn new_server_catches_up_from_a_snapshot() {
    let mut c = Cluster::new(4, 0);
    std::fs::write(
        c.dir.path().join("perf.json"),
        r#"{"performance":{"raft_multiplier":1},"raft_snapshot_threshold":64}"#,
    )
    .unwrap();
    c.start_servers();
    let leader = c.wait_leader(Duration::from_secs(30));
    let url = c.server(leader).url.clone();
    for n in 0..400 {
        let r = put(&url, &format!("snap/{n:03}"), &format!("v{n}")).unwrap();
        assert_eq!(r.text().unwrap(), "true");
    }
    let stats = |a: &Agent| -> Option<(u64, u64)> {
        let v: Value = client()
            .get(format!("{}/v1/agent/self", a.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        let r = &v["Stats"]["raft"];
        Some((
            r["last_snapshot_index"].as_str()?.parse().ok()?,
            r["applied_index"].as_str()?.parse().ok()?,
        ))
    };
    let (snap, _) = stats(c.server(leader)).unwrap();
    assert!(
        snap > 64,
        "the leader compacted its log (snapshot at {snap})"
    );
    c.start_server(3);
    let s3 = c.server(3).url.clone();
    wait_for("s3 to hold all 400 keys", Duration::from_secs(30), || {
        let v: Value = client()
            .get(format!("{s3}/v1/kv/snap/?keys&stale"))
            .send()
            .ok()?
            .json()
            .ok()?;
        (v.as_array()?.len() == 400).then_some(())
    });
    assert_eq!(get_raw(&s3, "snap/399", "stale").as_deref(), Some("v399"));
    let (s3_snap, _) = stats(c.server(3)).unwrap();
    assert!(s3_snap > 0, "s3 was sent a snapshot");
    let log = c.server(3).log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// Send a GET on a new connection and leave it to be answered later (the
/// server may be stopped: the kernel accepts the connection meanwhile).
fn queue_get(url: &str, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// Status and body of the answer on a [`queue_get`] connection.
fn finish_get(mut s: std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// A leader paused (SIGSTOP) while the others elect a new leader and take a
/// write must not answer the old value when it resumes: neither the reads
/// queued while it was stopped (default and `?consistent`) nor the default
/// reads right after. Its lease ran out while it was stopped. (Before: the
/// default reads answered the old value with `X-Consul-KnownLeader: true`.)
#[test]
fn paused_leader_serves_no_stale_reads() {
    let mut c = Cluster::new(3, 0);
    c.start_servers();
    for round in 0..3 {
        let old_leader = c.wait_leader(Duration::from_secs(30));
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        let url = c.server(old_leader).url.clone();
        assert_eq!(put(&url, "lin", &old).unwrap().text().unwrap(), "true");
        let pid = c.server(old_leader).child.id();
        let paused = tribune_tests::paused(pid);
        let new_leader = wait_for("a new leader", Duration::from_secs(15), || {
            (0..3)
                .filter(|i| *i != old_leader)
                .find_map(|i| c.leader_of(c.server(i)).filter(|l| *l != old_leader))
        });
        let r = put(&c.server(new_leader).url, "lin", &new).unwrap();
        assert_eq!(r.text().unwrap(), "true", "write via the new leader");
        let queued: Vec<(&str, std::net::TcpStream)> = ["", "&consistent"]
            .into_iter()
            .map(|q| (q, queue_get(&url, &format!("/v1/kv/lin?raw{q}"))))
            .collect();
        thread::sleep(Duration::from_millis(200));
        drop(paused);
        for (q, s) in queued {
            let (status, body) = finish_get(s);
            assert!(
                !(status == 200 && body == old),
                "round {round}: read{q} queued on the paused leader answered {old:?} after {new:?} was acked"
            );
        }
        // Right after resuming, default reads there never answer the old value.
        let t = Instant::now();
        let mut answered = 0;
        while t.elapsed() < Duration::from_millis(1500) {
            if let Some(v) = get_raw(&url, "lin", "") {
                assert_eq!(
                    v, new,
                    "round {round}: default read on the resumed old leader"
                );
                answered += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        eprintln!("round {round}: s{old_leader} paused, s{new_leader} elected; {answered} reads answered after resuming");
        wait_for(
            "the old leader to answer the new value",
            Duration::from_secs(10),
            || (get_raw(&url, "lin", "").as_deref() == Some(new.as_str())).then_some(()),
        );
    }
}

/// The leader's disk fills up (each server's data dir is a small tmpfs):
/// its writes fail at once naming the cause, it stops naming itself leader
/// and refuses default reads at once rather than answer from a state that
/// may be stale; the others elect a leader and take writes. Once space is
/// freed the old leader follows again and serves the new data, without a
/// restart. (Before: raft's core stopped for good on the storage error and
/// the node named itself leader while every write hung for 7 s.)
#[test]
fn leader_with_a_full_disk_steps_aside_and_recovers() {
    let mut c = Cluster::new(3, 0);
    let mut disks = Vec::new();
    for i in 0..3 {
        match tribune_tests::Tmpfs::mount(&c.dir.path().join(format!("s{i}")), "16m") {
            Ok(d) => disks.push(d),
            Err(why) => {
                eprintln!("SKIPPED leader_with_a_full_disk_steps_aside_and_recovers: cannot mount a tmpfs ({why}); run as root");
                return;
            }
        }
    }
    c.start_servers();
    let old = c.wait_leader(Duration::from_secs(30));
    let url = c.server(old).url.clone();
    assert_eq!(put(&url, "full/a", "1").unwrap().text().unwrap(), "true");
    let filler = disks[old].path().join("filler");
    tribune_tests::fill_disk(&filler);
    let big = "x".repeat(60_000);
    let failed = (0..50).find_map(|i| {
        let t = Instant::now();
        let r = put(&url, &format!("full/big{i}"), &big).unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        (body != "true").then(|| (status, body, t.elapsed()))
    });
    let (status, body, took) = failed.expect("writes to a full disk kept succeeding");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the failing write took {took:?}"
    );
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = wait_for("a leader among the others", Duration::from_secs(15), || {
        c.leader_of(c.server(others[0]))
            .filter(|l| *l != old && c.leader_of(c.server(others[1])) == Some(*l))
    });
    assert_eq!(
        c.leader_of(c.server(old)),
        None,
        "the stuck leader names a leader"
    );
    let r = put(&c.server(new).url, "full/a", "2").unwrap();
    assert_eq!(r.text().unwrap(), "true", "write via the new leader");
    let t = Instant::now();
    let r = client()
        .get(format!("{url}/v1/kv/full/a?raw"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500, "default read on the stuck leader");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(get_raw(&url, "full/a", "stale").as_deref(), Some("1"));

    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "the old leader to serve the new value",
        Duration::from_secs(15),
        || (get_raw(&url, "full/a", "").as_deref() == Some("2")).then_some(()),
    );
    assert_eq!(put(&url, "full/b", "3").unwrap().text().unwrap(), "true");
    c.wait_leader(Duration::from_secs(15));
}
