//! Issue 13, the cluster parts of the getting-started guides, run as a
//! Consul user runs them: each agent on a loopback address of its own with
//! Consul's default ports (8300/8301/8500/8600), as on separate hosts, and
//! `dig` for DNS. Addresses 127.0.0.51-127.0.0.69 belong to this file; tests
//! that share an address hold its lock.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{bin, client, spawn_logged, wait_for, wait_until, Agent};

/// One lock per address used here (tests in this binary run in parallel).
fn hold(ips: &[&str]) -> Vec<MutexGuard<'static, ()>> {
    static LOCKS: Mutex<BTreeMap<String, &'static Mutex<()>>> = Mutex::new(BTreeMap::new());
    let mut sorted: Vec<&str> = ips.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(|ip| {
            let l: &'static Mutex<()> = LOCKS
                .lock()
                .unwrap()
                .entry(ip.to_string())
                .or_insert_with(|| Box::leak(Box::new(Mutex::new(()))));
            l.lock().unwrap_or_else(|e| e.into_inner())
        })
        .collect()
}

/// `tribune agent <args> -bind ip -client ip` (the guide's line, on `ip`).
fn agent_on(ip: &str, args: &[&str], data: &Path) -> Agent {
    let mut cmd = Command::new(bin("tribune"));
    cmd.arg("agent")
        .args(args)
        .args([
            "-data-dir",
            data.to_str().unwrap(),
            "-bind",
            ip,
            "-client",
            ip,
        ])
        .env_remove("CONSUL_HTTP_ADDR");
    let (child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
    assert_eq!(addr, format!("{ip}:8500"), "default HTTP port");
    Agent {
        child,
        url: format!("http://{addr}"),
        addr,
        log,
        data_dir: Some(data.to_path_buf()),
    }
}

fn get(a: &Agent, path: &str) -> Option<Value> {
    let r = client()
        .get(format!("{}{path}", a.url))
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    r.status().is_success().then(|| r.json().ok())?
}

/// Status (1 alive, 3 left, 4 failed) of member `name` as `a` sees it.
fn member_status(a: &Agent, name: &str) -> Option<i64> {
    get(a, "/v1/agent/members")?
        .as_array()?
        .iter()
        .find(|m| m["Name"] == name)
        .and_then(|m| m["Status"].as_i64())
}

/// `dig @ip -p 8600 <args>`: (status, answer lines).
fn dig(ip: &str, args: &[&str]) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .args([&format!("@{ip}"), "-p", "8600", "+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (dnsutils) is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no answer: {text}"));
    let mut answers = Vec::new();
    let mut in_answer = false;
    for l in text.lines() {
        if l.starts_with(";; ANSWER SECTION") {
            in_answer = true;
        } else if l.is_empty() || l.starts_with(";;") {
            in_answer = false;
        } else if in_answer {
            answers.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    (status, answers)
}

fn wait_member(a: &Agent, name: &str, status: i64) {
    assert!(
        wait_until(Duration::from_secs(30), || member_status(a, name)
            == Some(status)),
        "{name} never had status {status} on {}: {:?}\n{}",
        a.addr,
        get(a, "/v1/agent/members"),
        a.log_text()
    );
}

fn register_web(a: &Agent) {
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&json!({"Name": "web", "Port": 8080}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

/// A client agent answers DNS by asking the servers: node, `consul` and
/// registered services over UDP and TCP, as the servers do.
#[test]
fn client_agent_answers_dns() {
    let _l = hold(&["127.0.0.51", "127.0.0.52"]);
    let dir = tempfile::tempdir().unwrap();
    let mut server = agent_on(
        "127.0.0.51",
        &["-server", "-bootstrap-expect", "1", "-node", "n1"],
        &dir.path().join("n1"),
    );
    server.wait_leader();
    let c = agent_on(
        "127.0.0.52",
        &["-node", "n3", "-join", "127.0.0.51"],
        &dir.path().join("n3"),
    );
    register_web(&c);
    wait_for("web in the catalog", Duration::from_secs(20), || {
        get(&server, "/v1/catalog/service/web")?
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    });
    // With its meta: the server registers a joining node from gossip first,
    // the client's own sync (node meta) lands just after, as in Consul.
    wait_for(
        "n3 and its meta in the catalog",
        Duration::from_secs(20),
        || {
            get(&server, "/v1/catalog/node/n3")?["Node"]["Meta"]
                .get("consul-network-segment")
                .map(|_| ())
        },
    );
    for proto in ["+notcp", "+tcp"] {
        let (st, ans) = dig("127.0.0.52", &[proto, "n3.node.consul"]);
        assert_eq!(st, "NOERROR", "{proto} {ans:?}\n{}", c.log_text());
        assert!(ans.iter().any(|l| l.ends_with("A 127.0.0.52")), "{ans:?}");
        let (st, ans) = dig("127.0.0.52", &[proto, "consul.service.consul"]);
        assert_eq!(st, "NOERROR", "{proto} {ans:?}");
        assert!(ans.iter().any(|l| l.ends_with("A 127.0.0.51")), "{ans:?}");
        let (st, ans) = dig("127.0.0.52", &[proto, "web.service.consul", "SRV"]);
        assert_eq!(st, "NOERROR", "{proto} {ans:?}");
        assert!(
            ans.iter()
                .any(|l| l.ends_with("SRV 1 1 8080 n3.node.dc1.consul.")),
            "{ans:?}"
        );
        // Node meta as TXT, from the server's catalog.
        let (st, ans) = dig("127.0.0.52", &[proto, "n3.node.consul", "TXT"]);
        assert_eq!(st, "NOERROR", "{proto} {ans:?}");
        assert!(
            ans.iter()
                .any(|l| l.contains("TXT \"consul-network-segment=\"")),
            "{ans:?}"
        );
        let (st, _) = dig("127.0.0.52", &[proto, "nope.service.consul"]);
        assert_eq!(st, "NXDOMAIN");
        // The same answers as the server's own.
        let (st, ans) = dig("127.0.0.51", &[proto, "n3.node.consul"]);
        assert_eq!((st.as_str(), ans.len()), ("NOERROR", 1), "{ans:?}");
    }

    // A stopped server: every lookup is answered (SERVFAIL) within the
    // lookup timeout, however many there are; none piles up.
    tribune_tests::pause(server.child.id());
    let t = Instant::now();
    let codes = flood("127.0.0.52:8600", "web.service.consul", 600);
    let took = t.elapsed();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGCONT) };
    assert_eq!(codes.len(), 600, "every query answered");
    assert!(codes.iter().all(|c| *c == 2), "all SERVFAIL: {codes:?}");
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    // The server back: answers again.
    wait_until(Duration::from_secs(20), || {
        dig("127.0.0.52", &["web.service.consul"]).0 == "NOERROR"
    });
    assert_eq!(dig("127.0.0.52", &["web.service.consul"]).0, "NOERROR");
    server.kill9();
}

/// Send `n` A queries for `name` over UDP within about 150 ms (paced, so
/// no socket buffer overflows); the response codes of those answered
/// within 8 s.
fn flood(to: &str, name: &str, n: u16) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut codes = BTreeMap::new();
    let mut buf = [0u8; 1500];
    for id in 0..n {
        q[0..2].copy_from_slice(&id.to_be_bytes());
        sock.send_to(&q, to).unwrap();
        if id % 25 == 24 {
            std::thread::sleep(Duration::from_millis(6));
            sock.set_nonblocking(true).unwrap();
            while let Ok((len, _)) = sock.recv_from(&mut buf) {
                if len >= 4 {
                    codes.insert(u16::from_be_bytes([buf[0], buf[1]]), buf[3] & 0x0f);
                }
            }
            sock.set_nonblocking(false).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while codes.len() < n as usize && Instant::now() < deadline {
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if len >= 4 {
                codes.insert(u16::from_be_bytes([buf[0], buf[1]]), buf[3] & 0x0f);
            }
        }
    }
    codes.into_values().collect()
}

/// Consul's `dns_config`: with `allow_stale = false` a server asks the
/// leader (and cannot answer without one); stale answers are served
/// without a leader; `max_stale` sends an answer that is too old to the
/// leader.
#[test]
fn server_dns_allow_stale_and_max_stale() {
    let ips = ["127.0.0.53", "127.0.0.54", "127.0.0.55"];
    let _l = hold(&ips);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dns.hcl");
    std::fs::write(&conf, "dns_config { allow_stale = false }\n").unwrap();
    let join: Vec<String> = ips.iter().map(|ip| format!("-retry-join={ip}")).collect();
    let spawn = |i: usize, conf: &Path| {
        let mut args = vec![
            "-server".to_string(),
            "-bootstrap-expect=3".into(),
            format!("-node=s{i}"),
            format!("-config-file={}", conf.display()),
        ];
        args.extend(join.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agent_on(ips[i], &args, &dir.path().join(format!("s{i}")))
    };
    let mut servers: Vec<Agent> = (0..3).map(|i| spawn(i, &conf)).collect();
    for s in &servers {
        s.wait_leader();
    }
    wait_for("3 consul instances", Duration::from_secs(30), || {
        get(&servers[0], "/v1/catalog/service/consul")?
            .as_array()
            .filter(|a| a.len() == 3)
            .map(|_| ())
    });
    // Every server answers, followers by asking the leader.
    for ip in ips {
        let (st, ans) = dig(ip, &["consul.service.consul"]);
        assert_eq!(st, "NOERROR", "{ip}: {ans:?}");
        assert_eq!(ans.len(), 3, "{ip}: {ans:?}");
    }
    let leader: String = client()
        .get(format!("{}/v1/status/leader", servers[0].url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let li = ips
        .iter()
        .position(|ip| leader.starts_with(&format!("{ip}:")))
        .expect("a leader among the servers");
    let survivor = (li + 1) % 3;
    // The survivor's own state must hold all three passing before the
    // others go: a follower may not yet have applied the last health update
    // (its answers below come from its own state).
    wait_for(
        "the survivor's state to hold 3 passing",
        Duration::from_secs(20),
        || {
            get(
                &servers[survivor],
                "/v1/health/service/consul?passing&stale",
            )?
            .as_array()
            .filter(|a| a.len() == 3)
            .map(|_| ())
        },
    );
    for (i, s) in servers.iter_mut().enumerate() {
        if i != survivor {
            s.kill9();
        }
    }
    // Without a leader, a server that may not answer stale cannot answer.
    let (st, _) = dig(ips[survivor], &["consul.service.consul"]);
    assert_eq!(st, "SERVFAIL");
    // Restarted with Consul's defaults, it answers from its own state.
    servers[survivor].kill9();
    let defaults = dir.path().join("defaults.hcl");
    std::fs::write(&defaults, "").unwrap();
    let s = spawn(survivor, &defaults);
    let (st, ans) = dig(ips[survivor], &["consul.service.consul"]);
    assert_eq!(st, "NOERROR", "{ans:?}\n{}", s.log_text());
    assert_eq!(ans.len(), 3, "{ans:?}");
    drop(s);
    // With max_stale 1s, once the leader is silent longer the answer is
    // asked of the leader again, and there is none.
    let short = dir.path().join("short.hcl");
    std::fs::write(&short, "dns_config { max_stale = \"1s\" }\n").unwrap();
    let s = spawn(survivor, &short);
    assert!(
        wait_until(Duration::from_secs(20), || {
            dig(ips[survivor], &["consul.service.consul"]).0 == "SERVFAIL"
        }),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text()
            .contains("Query results too stale, re-requesting"),
        "{}",
        s.log_text()
    );
}

/// Ctrl-C (SIGINT) and SIGTERM on a client agent: it leaves gracefully,
/// so the cluster shows it `left`, not `failed`, and it exits 0.
#[test]
fn signals_on_a_client_leave_gracefully() {
    let _l = hold(&["127.0.0.56", "127.0.0.57", "127.0.0.58"]);
    let dir = tempfile::tempdir().unwrap();
    let server = agent_on(
        "127.0.0.56",
        &["-server", "-bootstrap-expect", "1", "-node", "s56"],
        &dir.path().join("s"),
    );
    server.wait_leader();
    let mut int = agent_on(
        "127.0.0.57",
        &["-node", "c57", "-join", "127.0.0.56"],
        &dir.path().join("c57"),
    );
    let mut term = agent_on(
        "127.0.0.58",
        &["-node", "c58", "-join", "127.0.0.56"],
        &dir.path().join("c58"),
    );
    wait_member(&server, "c57", 1);
    wait_member(&server, "c58", 1);
    wait_for("c57 in the catalog", Duration::from_secs(20), || {
        get(&server, "/v1/catalog/node/c57").map(|_| ())
    });
    assert_eq!(int.signal_and_wait(libc::SIGINT), Some(0));
    assert_eq!(term.signal_and_wait(libc::SIGTERM), Some(0));
    for (a, name) in [(&int, "c57"), (&term, "c58")] {
        assert!(
            a.log_text().contains("Gracefully shutting down agent..."),
            "{}",
            a.log_text()
        );
        wait_member(&server, name, 3);
    }
    let r = client()
        .get(format!("{}/v1/catalog/node/c57", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "a left node is deregistered");
}

/// `catalog/deregister` honours `Datacenter` in the body as register
/// does: another datacenter is 500 "No path to datacenter" and nothing is
/// removed.
#[test]
fn catalog_deregister_other_datacenter() {
    let a = Agent::dev(&[]);
    let c = client();
    let r = c
        .put(format!("{}/v1/catalog/register", a.url))
        .json(&json!({"Node": "ext", "Address": "10.1.2.3"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    for body in [
        json!({"Datacenter": "dc2", "Node": "ext"}),
        json!({"datacenter": "dc2", "Node": "ext", "ServiceID": "x"}),
    ] {
        let r = c
            .put(format!("{}/v1/catalog/deregister", a.url))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.text().unwrap(), "No path to datacenter");
    }
    assert!(
        get(&a, "/v1/catalog/node/ext").is_some(),
        "still registered"
    );
    let r = c
        .put(format!("{}/v1/catalog/deregister", a.url))
        .json(&json!({"Datacenter": "dc1", "Node": "ext"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(get(&a, "/v1/catalog/node/ext").is_none());
}

/// A TTL check goes critical when its TTL runs out, not up to a tick
/// later: 100 ms after the last pass, within 10 ms (plus the 2 ms polling).
#[test]
fn ttl_expires_on_its_own_timer() {
    let a = Agent::dev(&[]);
    let c = client();
    let r = c
        .put(format!("{}/v1/agent/check/register", a.url))
        .json(&json!({"Name": "beat", "TTL": "100ms"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = || -> String {
        let v: Value = c
            .get(format!("{}/v1/agent/checks", a.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["beat"]["Status"].as_str().unwrap_or("").to_string()
    };
    let mut took = Vec::new();
    for _ in 0..7 {
        let r = c
            .put(format!("{}/v1/agent/check/pass/beat", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let t = Instant::now();
        assert_eq!(status(), "passing");
        while status() != "critical" {
            assert!(t.elapsed() < Duration::from_secs(2), "never expired");
            std::thread::sleep(Duration::from_millis(2));
        }
        took.push(t.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(took[0] >= Duration::from_millis(95), "{took:?}");
    assert!(median <= Duration::from_millis(112), "{took:?}");
    assert!(
        took[took.len() - 2] <= Duration::from_millis(130),
        "{took:?}"
    );
    println!("TTL 100ms went critical after {took:?}");
}

/// A network namespace of its own (we run as root), with loopback up and
/// interfaces holding exactly the given addresses: a host whose private
/// addresses the test decides. The interfaces are port-less bridges (this
/// kernel may lack the dummy driver): administratively up, holding their
/// address, like a NIC.
struct Netns {
    name: String,
}

fn ip_cmd(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new(tag: &str, addrs: &[(&str, &str)]) -> Netns {
        let name = format!("tribune-wc-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip_cmd(&["netns", "add", &name]);
        let ns = Netns { name };
        ip_cmd(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for (ifname, cidr) in addrs {
            ns.add(ifname, cidr);
        }
        ns
    }

    fn add(&self, ifname: &str, cidr: &str) {
        ip_cmd(&["-n", &self.name, "link", "add", ifname, "type", "bridge"]);
        ip_cmd(&["-n", &self.name, "addr", "add", cidr, "dev", ifname]);
        ip_cmd(&["-n", &self.name, "link", "set", ifname, "up"]);
    }

    /// `prog` run inside the namespace (`ip netns exec` execs it in place).
    fn cmd(&self, prog: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(prog);
        c.env_remove("CONSUL_HTTP_ADDR");
        c
    }

    /// `tribune agent <args>` inside the namespace, up to its HTTP listener.
    fn agent(&self, args: &[&str]) -> Agent {
        let mut cmd = self.cmd(&bin("tribune"));
        cmd.arg("agent").args(args);
        let (child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
        Agent {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
            data_dir: None,
        }
    }

    /// `tribune agent <args>` that must refuse to start: its stderr.
    fn refused(&self, args: &[&str]) -> String {
        let mut child = self
            .cmd(&bin("tribune"))
            .arg("agent")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent started with {args:?} instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        err
    }

    /// GET `url` from inside the namespace.
    fn get(&self, url: &str) -> Option<Value> {
        let out = self
            .cmd(Path::new("curl"))
            .args(["-sf", "--max-time", "5", url])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The gossip address `a` advertises, as its members list shows it.
    fn advertised(&self, a: &Agent, node: &str) -> String {
        let m = self
            .get(&format!("{}/v1/agent/members", a.url))
            .unwrap_or(Value::Null);
        m.as_array()
            .and_then(|l| l.iter().find(|x| x["Name"] == node))
            .and_then(|x| x["Addr"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no member {node}: {m}\n{}", a.log_text()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `-bind 0.0.0.0` on a host with one private address advertises it (the
/// catalog and the raft peers show it); with two, the agent refuses to
/// start in Consul's words, until `-advertise` or a more precise `-bind`
/// picks one.
#[test]
fn bind_any_advertises_the_private_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let ns = Netns::new("any", &[("d0", "10.251.0.1/24")]);
    let server = [
        "-server",
        "-bootstrap-expect",
        "1",
        "-data-dir",
        d,
        "-node",
        "ns1",
    ];
    let args = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = server.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut a = ns.agent(&args(&["-bind", "0.0.0.0"]));
    assert_eq!(ns.advertised(&a, "ns1"), "10.251.0.1");
    let leader = wait_for("a leader", Duration::from_secs(30), || {
        ns.get(&format!("{}/v1/status/leader", a.url))
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|l| !l.is_empty())
    });
    assert_eq!(leader, "10.251.0.1:8300");
    let node = wait_for("ns1 in the catalog", Duration::from_secs(30), || {
        ns.get(&format!("{}/v1/catalog/node/ns1", a.url))
    });
    assert_eq!(node["Node"]["Address"], "10.251.0.1");
    a.signal_and_wait(libc::SIGTERM);

    ns.add("d1", "10.252.0.1/24");
    let err = ns.refused(&args(&["-bind", "0.0.0.0"]));
    assert!(
        err.contains(
            "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'."
        ),
        "{err}"
    );
    let mut a = ns.agent(&args(&["-bind", "0.0.0.0", "-advertise", "10.252.0.1"]));
    assert_eq!(ns.advertised(&a, "ns1"), "10.252.0.1");
    a.signal_and_wait(libc::SIGTERM);
    let mut a = ns.agent(&args(&["-bind", "{{ GetInterfaceIP \"d1\" }}"]));
    assert_eq!(ns.advertised(&a, "ns1"), "10.252.0.1");
    a.signal_and_wait(libc::SIGTERM);
    let err = ns.refused(&args(&["-bind", "0.0.0.0", "-advertise", "0.0.0.0"]));
    assert!(
        err.contains("Advertise address cannot be 0.0.0.0, :: or [::]"),
        "{err}"
    );
}

/// A host whose only address is public: Consul's "No private IPv4 address
/// found".
#[test]
fn bind_any_without_a_private_address_refuses() {
    let ns = Netns::new("pub", &[("d0", "203.0.113.7/24")]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let err = ns.refused(&["-data-dir", d.to_str().unwrap(), "-bind", "0.0.0.0"]);
    assert!(err.contains("No private IPv4 address found"), "{err}");
}

/// go-sockaddr templates in `-bind`, `-client` and the config keys, in the
/// forms systemd units and container recipes use.
#[test]
fn sockaddr_templates_in_addresses() {
    let ns = Netns::new("tpl", &[("eth7", "10.253.0.1/24"), ("d1", "172.31.9.9/16")]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    // The flags, as a unit file writes them.
    let mut a = ns.agent(&[
        "-data-dir",
        d,
        "-node",
        "t1",
        "-bind",
        "{{ GetAllInterfaces | include \"name\" \"^eth\" | attr \"address\" }}",
        "-client",
        "{{ GetPrivateInterfaces | include \"network\" \"172.16.0.0/12\" | attr \"address\" }}",
    ]);
    assert_eq!(a.addr, "172.31.9.9:8500", "the client address");
    assert_eq!(ns.advertised(&a, "t1"), "10.253.0.1");
    a.signal_and_wait(libc::SIGTERM);
    // The config keys, in HCL.
    let conf = dir.path().join("net.hcl");
    std::fs::write(
        &conf,
        r#"bind_addr = "{{ GetInterfaceIP \"d1\" }}"
client_addr = "{{ GetAllInterfaces | include \"flags\" \"loopback\" | include \"type\" \"IPv4\" | attr \"address\" }}"
advertise_addr = "{{ GetPrivateInterfaces | sort \"-address\" | limit 1 | attr \"address\" }}"
"#,
    )
    .unwrap();
    let mut a = ns.agent(&[
        "-data-dir",
        d,
        "-node",
        "t1",
        "-config-file",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(a.addr, "127.0.0.1:8500");
    assert_eq!(ns.advertised(&a, "t1"), "172.31.9.9");
    a.signal_and_wait(libc::SIGTERM);
    let err = ns.refused(&["-data-dir", d, "-bind", "{{ GetPrivateIPs }}"]);
    assert!(
        err.contains("bind_addr cannot contain multiple addresses"),
        "{err}"
    );
    let err = ns.refused(&["-data-dir", d, "-bind", "{{ GetPrivateIp }}"]);
    assert!(
        err.contains("bind_addr: error parsing")
            && err.contains("function \"GetPrivateIp\" not defined"),
        "{err}"
    );
}

/// `tribune leave` on a server takes about a second (Consul's 1-2 s), from
/// a follower and from the leader alike: the server leaves the raft
/// configuration, the rest keep a quorum and a leader, and the cluster
/// shows it `left`.
#[test]
fn server_leave_is_quick() {
    let ips = ["127.0.0.61", "127.0.0.62", "127.0.0.63"];
    let _l = hold(&ips);
    let dir = tempfile::tempdir().unwrap();
    let join: Vec<String> = ips.iter().map(|ip| format!("-retry-join={ip}")).collect();
    let mut servers: Vec<Option<Agent>> = (0..3)
        .map(|i| {
            let mut args = vec![
                "-server".to_string(),
                "-bootstrap-expect=3".into(),
                format!("-node=s{i}"),
            ];
            args.extend(join.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(agent_on(ips[i], &args, &dir.path().join(format!("s{i}"))))
        })
        .collect();
    let leader_of = |servers: &[Option<Agent>]| -> usize {
        wait_for("an agreed leader", Duration::from_secs(30), || {
            let views: Vec<String> = servers
                .iter()
                .flatten()
                .map(|a| {
                    get(a, "/v1/status/leader")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            let first = views.first()?.clone();
            if first.is_empty() || views.iter().any(|v| *v != first) {
                return None;
            }
            let i = ips
                .iter()
                .position(|ip| first.starts_with(&format!("{ip}:")))?;
            let kv = client()
                .put(format!("{}/v1/kv/probe", servers[i].as_ref()?.url))
                .body("x")
                .send()
                .ok()?;
            (kv.status() == 200).then_some(i)
        })
    };
    let l = leader_of(&servers);
    // A follower first, then the leader of the two left.
    for round in 0..2 {
        let l = if round == 0 { l } else { leader_of(&servers) };
        let who = if round == 0 {
            (0..3).find(|i| *i != l && servers[*i].is_some()).unwrap()
        } else {
            l
        };
        let name = format!("s{who}");
        let t = Instant::now();
        let out = tribune_tests::run_cli(&format!("{}:8500", ips[who]), &["leave"], None);
        let took = t.elapsed();
        assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
        let mut a = servers[who].take().unwrap();
        let exited = wait_until(Duration::from_secs(5), || {
            matches!(a.child.try_wait(), Ok(Some(_)))
        });
        let total = t.elapsed();
        println!("leave of {name} (round {round}): CLI {took:?}, exited after {total:?}");
        assert!(exited, "{name} still running\n{}", a.log_text());
        assert!(
            total < Duration::from_secs(3),
            "{name} took {total:?}\n{}",
            a.log_text()
        );
        assert!(
            a.log_text()
                .contains("removed this server from the raft configuration"),
            "{}",
            a.log_text()
        );
        let rest: Vec<&Agent> = servers.iter().flatten().collect();
        wait_member(rest[0], &name, 3);
        let l2 = leader_of(&servers);
        let peers = get(servers[l2].as_ref().unwrap(), "/v1/status/peers").unwrap();
        assert_eq!(peers.as_array().map(Vec::len), Some(rest.len()), "{peers}");
    }
}
