//! Hostile input against the real agent: every method on every route,
//! the public API on the server RPC port, connection caps and timeouts,
//! a low descriptor limit (issue 12, items 1, 6 and 8).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{bin, client, limit_open_files, put_kv, wait_for, wait_until, Agent};

/// An answer read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse an HTTP/1.1 answer (`Connection: close`, so the body runs to EOF).
fn parse(buf: &[u8]) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Raw {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

/// One request, bytes as given, on a fresh connection; the whole answer.
fn raw(addr: &str, method: &str, target: &str, body: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf).unwrap_or_else(|| {
        panic!(
            "{method} {target}: no HTTP answer: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// The head of the answer to a GET of a streaming endpoint (whose body
/// never ends by itself): read until the head is in, then hang up.
fn raw_stream_head(addr: &str, target: &str) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut r = parse(&buf).expect("the head of a streamed answer");
    r.body.clear();
    r
}

/// Endpoints that stream (the live log): no length to compare.
const STREAMING: [&str; 1] = ["/v1/agent/monitor"];

fn get_json(a: &Agent, path: &str) -> Value {
    let r = client().get(format!("{}{path}", a.url)).send().unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn put_json(a: &Agent, path: &str, body: Value) -> Value {
    let r = client()
        .put(format!("{}{path}", a.url))
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "PUT {path}");
    let text = r.text().unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Everything a request could change: KV, catalog, health, sessions,
/// events, members, this agent's services and checks, and raft's last
/// index (any write at all moves it).
fn snapshot(a: &Agent) -> Value {
    let self_ = get_json(a, "/v1/agent/self");
    let members: Vec<Value> = get_json(a, "/v1/agent/members")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["Name"], m["Status"]]))
        .collect();
    json!({
        "raft": self_["Stats"]["raft"]["last_log_index"],
        "kv": get_json(a, "/v1/kv/?recurse"),
        "nodes": get_json(a, "/v1/catalog/nodes"),
        "services": get_json(a, "/v1/catalog/services"),
        "health": get_json(a, "/v1/health/state/any"),
        "sessions": get_json(a, "/v1/session/list"),
        "events": get_json(a, "/v1/event/list"),
        "members": members,
        "agent_services": get_json(a, "/v1/agent/services"),
        "agent_checks": get_json(a, "/v1/agent/checks"),
    })
}

/// A live object for each path parameter, so that a method falling
/// through to a write would visibly change something.
struct Fixture {
    node: String,
    session: String,
}

impl Fixture {
    fn fill(&self, pattern: &str) -> String {
        pattern
            .split('/')
            .map(|seg| match seg {
                "{*key}" => "hard/a".to_string(),
                "{id}" if pattern.starts_with("/v1/session/") => self.session.clone(),
                "{id}" => "web1".to_string(),
                "{*id}" => "ttl1".to_string(),
                "{name}" if pattern.starts_with("/v1/event/") => "deploy".to_string(),
                "{name}" if pattern.contains("/node/") => self.node.clone(),
                "{name}" => "web".to_string(),
                "{node}" => self.node.clone(),
                "{state}" => "any".to_string(),
                "{addr}" => "127.0.0.1:1".to_string(),
                "{kind}" => "default".to_string(),
                "{*path}" => "js/app.js".to_string(),
                s if s.starts_with('{') => {
                    panic!("route {pattern}: teach this test a value for {s}")
                }
                s => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn fixture(a: &Agent) -> Fixture {
    a.wait_serf_health();
    put_kv(a, "hard/a", "1");
    put_kv(a, "hard/b", "2");
    put_json(
        a,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web1", "Port": 80, "Check": {"TTL": "1h"}}),
    );
    put_json(
        a,
        "/v1/agent/check/register",
        json!({"Name": "ttl", "ID": "ttl1", "TTL": "1h"}),
    );
    put_json(
        a,
        "/v1/catalog/register",
        json!({"Node": "ext", "Address": "192.0.2.1", "Service": {"Service": "db", "Port": 5432}}),
    );
    let session = put_json(a, "/v1/session/create", json!({"Name": "hard"}))["ID"]
        .as_str()
        .unwrap()
        .to_string();
    put_json(a, "/v1/event/fire/deploy", json!("v1"));
    let node = get_json(a, "/v1/agent/self")["Config"]["NodeName"]
        .as_str()
        .unwrap()
        .to_string();
    Fixture { node, session }
}

/// Consul's methods per endpoint (`agent/http_register.go`), with HEAD
/// wherever GET is; the route table must say exactly this.
fn consul_methods(path: &str) -> &'static [&'static str] {
    const READ: &[&str] = &["GET", "HEAD"];
    const WRITE: &[&str] = &["PUT"];
    match path {
        "/v1/kv" | "/v1/kv/" | "/v1/kv/{*key}" => &["GET", "HEAD", "PUT", "DELETE"],
        "/v1/operator/raft/peer" => &["DELETE"],
        "/v1/operator/keyring" => &["GET", "HEAD", "POST", "PUT", "DELETE"],
        "/v1/snapshot" => &["GET", "HEAD", "PUT"],
        "/v1/operator/raft/transfer-leader" => &["POST"],
        "/v1/operator/autopilot/configuration" => &["GET", "HEAD", "PUT"],
        "/v1/agent/metrics" => READ,
        "/v1/txn"
        | "/v1/catalog/register"
        | "/v1/catalog/deregister"
        | "/v1/agent/service/register"
        | "/v1/agent/service/deregister/{id}"
        | "/v1/agent/service/maintenance/{id}"
        | "/v1/agent/check/register"
        | "/v1/agent/check/deregister/{*id}"
        | "/v1/agent/check/pass/{*id}"
        | "/v1/agent/check/warn/{*id}"
        | "/v1/agent/check/fail/{*id}"
        | "/v1/agent/check/update/{*id}"
        | "/v1/agent/maintenance"
        | "/v1/agent/reload"
        | "/v1/agent/join/{addr}"
        | "/v1/agent/leave"
        | "/v1/agent/force-leave/{node}"
        | "/v1/session/create"
        | "/v1/session/destroy/{id}"
        | "/v1/session/renew/{id}"
        | "/v1/event/fire/{name}"
        | "/v1/acl/bootstrap"
        | "/v1/acl/token"
        | "/v1/acl/token/{id}/clone"
        | "/v1/acl/policy"
        | "/v1/acl/role"
        | "/v1/agent/token/{kind}"
        | "/v1/coordinate/update" => WRITE,
        "/v1/query" => &["GET", "HEAD", "POST"],
        "/v1/query/{id}" => &["GET", "HEAD", "PUT", "DELETE"],
        "/v1/acl/token/{id}" | "/v1/acl/policy/{id}" | "/v1/acl/role/{id}" => {
            &["GET", "HEAD", "PUT", "DELETE"]
        }
        _ if path.starts_with("/v1/") || path == "/" || path.starts_with("/ui") => READ,
        other => panic!("route {other}: not a Consul endpoint this test knows"),
    }
}

const METHODS: [&str; 10] = [
    "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "BREW",
];

/// Every method on every route of the route table (walked, so a new
/// route cannot be missed): only the documented write methods may change
/// state; HEAD answers as GET without a body; OPTIONS answers 200 with
/// `Allow`; anything else 405 with `Allow`. The writes themselves are not
/// sent (that they work is every other test's business).
#[test]
fn every_route_every_method_changes_only_what_it_documents() {
    let a = Agent::dev(&[]);
    let fx = fixture(&a);
    // Anti-entropy syncs the new service and checks into the catalog.
    let mut before = snapshot(&a);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(500));
            let now = snapshot(&a);
            let settled = now == before && now["services"].get("web").is_some();
            before = now;
            settled
        }),
        "state never settled"
    );
    let table = tribune::http::routes(true).table();
    assert!(table.len() > 40, "route table has {} routes", table.len());
    let mut tried = 0;
    for spec in &table {
        let documented: Vec<&str> = spec.methods.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            documented,
            consul_methods(spec.path),
            "methods of {}",
            spec.path
        );
        let path = fx.fill(spec.path);
        let mut targets = vec![path.clone()];
        if spec.path.starts_with("/v1/kv") {
            targets.push(format!("{path}?recurse"));
        }
        let streaming = STREAMING.contains(&spec.path);
        for target in &targets {
            let get = if streaming {
                raw_stream_head(&a.addr, target)
            } else {
                raw(&a.addr, "GET", target, b"")
            };
            for method in METHODS {
                let writes = documented.contains(&method) && !matches!(method, "GET" | "HEAD");
                if writes {
                    continue;
                }
                let r = raw(&a.addr, method, target, b"x");
                tried += 1;
                let what = format!("{method} {target}");
                let allowed = documented.contains(&method);
                match method {
                    "OPTIONS" => {
                        assert_eq!(r.status, 200, "{what}");
                        assert_eq!(r.header("allow"), Some(spec.allow().as_str()), "{what}");
                    }
                    _ if !allowed => {
                        assert_eq!(
                            r.status,
                            405,
                            "{what}: {:?}",
                            String::from_utf8_lossy(&r.body)
                        );
                        assert_eq!(r.header("allow"), Some(spec.allow().as_str()), "{what}");
                    }
                    "HEAD" => {
                        assert_eq!(r.status, get.status, "{what}: status differs from GET");
                        assert!(r.body.is_empty(), "{what}: HEAD answered a body");
                        assert_eq!(
                            r.header("content-type"),
                            get.header("content-type"),
                            "{what}"
                        );
                        if streaming {
                            // A stream has no length to announce.
                            assert_eq!(r.header("content-length"), None, "{what}");
                        } else {
                            // The length GET's body has. Some answers move between
                            // two requests (an uptime gains a digit, a metric
                            // changes): such a route gets three more HEAD/GET
                            // pairs; a HEAD that never agrees is the defect.
                            let len_of = |r: &Raw| {
                                r.header("content-length")
                                    .and_then(|l| l.parse::<usize>().ok())
                            };
                            let mut agreed = len_of(&r) == Some(get.body.len());
                            for _ in 0..3 {
                                if agreed {
                                    break;
                                }
                                let head = raw(&a.addr, "HEAD", target, b"");
                                let again = raw(&a.addr, "GET", target, b"");
                                agreed = len_of(&head) == Some(again.body.len());
                            }
                            assert!(
                                agreed,
                                "{what}: content-length {:?}, GET's body {}",
                                r.header("content-length"),
                                get.body.len()
                            );
                        }
                    }
                    _ => assert_ne!(r.status, 405, "{what}"),
                }
                let after = snapshot(&a);
                assert_eq!(after, before, "{what} changed state");
            }
        }
    }
    assert!(tried > 400, "only {tried} requests tried");
    // The method rules hold with -ui off too (same paths, GET only).
    let off = tribune::http::routes(false).table();
    assert_eq!(
        off.iter().map(|s| s.path).collect::<Vec<_>>(),
        table.iter().map(|s| s.path).collect::<Vec<_>>()
    );
}

/// The exact report: `curl -I` on a key and on `?recurse` deleted them.
#[test]
fn head_on_kv_deletes_nothing() {
    let a = Agent::dev(&[]);
    put_kv(&a, "headdel/a", "1");
    put_kv(&a, "headdel/b", "1");
    let c = client();
    let r = c.head(format!("{}/v1/kv/headdel/a", a.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-consul-index"));
    let r = c
        .head(format!("{}/v1/kv/headdel/?recurse", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .head(format!("{}/v1/kv/headdel/nope", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    for k in ["a", "b"] {
        let r = c
            .get(format!("{}/v1/kv/headdel/{k}?raw", a.url))
            .send()
            .unwrap();
        assert_eq!(r.text().unwrap(), "1", "headdel/{k} was deleted by HEAD");
    }
}

/// The server RPC address from the agent's "server RPC listening on" line.
fn rpc_addr(a: &Agent) -> String {
    wait_for(
        "server RPC address in the log",
        Duration::from_secs(5),
        || {
            a.log_text()
                .lines()
                .find_map(|l| l.split("server RPC listening on ").nth(1))
                .map(|s| s.trim().to_string())
        },
    )
}

/// The server RPC port answers only the internal protocol: the public API
/// is neither served over HTTP/1.1 nor over h2c, reads or writes.
#[test]
fn rpc_port_refuses_the_public_api() {
    let a = Agent::dev(&[]);
    put_kv(&a, "canary", "alive");
    let rpc = rpc_addr(&a);
    // HTTP/1.1: not spoken at all (no answer, or not a 2xx).
    for (method, path) in [("GET", "/v1/kv/canary?raw"), ("PUT", "/v1/kv/rpc-probe")] {
        let mut s = TcpStream::connect(&rpc).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil"
        );
        let _ = s.write_all(req.as_bytes());
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            !text.starts_with("HTTP/1.1 2") && !text.contains("alive"),
            "HTTP/1.1 {method} {path} on the RPC port answered: {text:?}"
        );
    }
    // h2c (prior knowledge), as tribune's own peers speak: no API routes.
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = h2
        .get(format!("http://{rpc}/v1/kv/canary?raw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_ne!(r.text().unwrap(), "alive");
    let r = h2
        .put(format!("http://{rpc}/v1/kv/rpc-probe"))
        .body("evil")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h2
        .get(format!("http://{rpc}/v1/agent/self"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(format!("{}/v1/kv/rpc-probe", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the write through the RPC port landed");
}

/// `-client 0.0.0.0` exposes the API: the agent says so.
#[test]
fn non_loopback_client_address_warns() {
    let a = Agent::dev(&["-client", "0.0.0.0"]);
    assert!(
        wait_until(Duration::from_secs(5), || a
            .log_text()
            .contains("[SECURITY]")),
        "no warning for -client 0.0.0.0; log:\n{}",
        a.log_text()
    );
    let quiet = Agent::dev(&[]);
    assert!(!quiet.log_text().contains("[SECURITY]"));
}

fn config_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Connect from a given loopback source address.
fn connect_from(src: [u8; 4], addr: &str) -> TcpStream {
    let sock = connect_bound(src, addr.parse().unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock
}

/// `TcpStream::connect` bound to `src` first (std has no bind-then-connect).
fn connect_bound(src: [u8; 4], to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let sin = |ip: [u8; 4], port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sin(src, 0);
        assert_eq!(
            libc::bind(fd, &local as *const _ as *const libc::sockaddr, len),
            0
        );
        let SocketAddr::V4(v4) = to else {
            panic!("IPv4 only")
        };
        let remote = sin(v4.ip().octets(), v4.port());
        assert_eq!(
            libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len),
            0,
            "connect to {to}"
        );
        std::os::fd::FromRawFd::from_raw_fd(fd)
    }
}

fn request_on(s: &mut TcpStream, target: &str) -> Option<Raw> {
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// A request on a kept-alive connection; its answer's status.
fn keep_alive_get(s: &mut TcpStream, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    parse(&buf[..n]).map_or(0, |r| r.status)
}

/// Send a blocking query on `s` without reading the answer.
fn park(s: &mut TcpStream, key: &str, index: &str) {
    let req = format!("GET /v1/kv/{key}?index={index}&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
}

/// `limits.http_max_conns_per_client` (HCL): with all its connections in
/// use (parked queries), the next connection from that address gets
/// Consul's 429; other addresses are served. A connection not in use
/// (silent, or idle between requests) gives its place to a new one, so a
/// flood of half-sent requests cannot lock the address out.
#[test]
fn per_client_cap_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(
        &dir,
        "limits.hcl",
        "limits {\n  http_max_conns_per_client = 5\n}\n",
    );
    let a = Agent::dev(&["-config-file", &f]);
    put_kv(&a, "k", "v");
    let index = client()
        .get(format!("{}/v1/kv/k", a.url))
        .send()
        .unwrap()
        .headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .to_string();
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| connect_from([127, 0, 0, 1], &a.addr))
        .collect();
    for s in held.iter_mut() {
        park(s, "k", &index);
    }
    // The fifth says nothing: a newer connection takes its place.
    let mut silent = connect_from([127, 0, 0, 1], &a.addr);
    std::thread::sleep(Duration::from_millis(300));
    let mut newer = connect_from([127, 0, 0, 1], &a.addr);
    assert_eq!(keep_alive_get(&mut newer, "/v1/kv/k?raw"), 200);
    let closed = secs_until_closed(&mut silent, Duration::from_secs(5));
    assert!(closed < 4.0, "the silent connection was kept");
    park(&mut newer, "k", &index);
    held.push(newer);
    std::thread::sleep(Duration::from_millis(300));
    // All five in use: 429.
    let mut sixth = connect_from([127, 0, 0, 1], &a.addr);
    let r = request_on(&mut sixth, "/v1/kv/k?raw").expect("an answer to the 6th connection");
    assert_eq!(r.status, 429);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    );
    let mut other = connect_from([127, 0, 0, 2], &a.addr);
    let r = request_on(&mut other, "/v1/kv/k?raw").expect("an answer from 127.0.0.2");
    assert_eq!((r.status, r.body.as_slice()), (200, b"v".as_slice()));
    // A write (from the other address: this one is full) answers the
    // parked queries; idle again, one gives way.
    let mut w = connect_from([127, 0, 0, 2], &a.addr);
    w.write_all(
        b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv2",
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = w.read_to_end(&mut buf);
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    for s in held.iter_mut() {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "parked query not answered"
        );
    }
    let mut s = connect_from([127, 0, 0, 1], &a.addr);
    let r = request_on(&mut s, "/v1/kv/k?raw").expect("an answer once idle");
    assert_eq!((r.status, r.body.as_slice()), (200, b"v2".as_slice()));
}

/// The hostile script's slowloris: hundreds of half-sent requests from one
/// address (over its default cap of 200) must not stop that address's
/// next request.
#[test]
fn half_sent_flood_does_not_lock_the_address_out() {
    let a = Agent::dev(&[]);
    put_kv(&a, "k", "v");
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 1], &a.addr);
            s.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = raw(&a.addr, "GET", "/v1/kv/k?raw", b"");
    assert_eq!((r.status, r.body.as_slice()), (200, b"v".as_slice()));
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(flood);
}

/// Seconds until the server closes `s` (reads and drops what it sends).
fn secs_until_closed(s: &mut TcpStream, limit: Duration) -> f64 {
    s.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

/// The timeouts (JSON config): a half-sent head and a half-sent body are
/// cut off, an idle keep-alive connection is closed, and a parked
/// blocking query outlives the idle timeout.
#[test]
fn header_body_and_idle_timeouts_spare_parked_queries() {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(
        &dir,
        "limits.json",
        r#"{"limits": {"http_read_header_timeout": "1s", "http_read_body_timeout": "1s",
                       "http_idle_timeout": "2s"}}"#,
    );
    let a = Agent::dev(&["-config-file", &f]);
    put_kv(&a, "k", "v");
    let index = client()
        .get(format!("{}/v1/kv/k", a.url))
        .send()
        .unwrap()
        .headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .to_string();
    // A parked query, 4 s: longer than the idle timeout.
    let parked = {
        let url = format!("{}/v1/kv/k?index={index}&wait=4s", a.url);
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = client().get(url).send().unwrap();
            (r.status(), t.elapsed())
        })
    };
    let mut half = TcpStream::connect(&a.addr).unwrap();
    half.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Le")
        .unwrap();
    let head_s = secs_until_closed(&mut half, Duration::from_secs(10));
    assert!(
        (0.8..4.0).contains(&head_s),
        "half-sent head closed after {head_s} s"
    );

    let mut body = TcpStream::connect(&a.addr).unwrap();
    body.write_all(b"PUT /v1/kv/slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    let t = Instant::now();
    body.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = body.read_to_end(&mut buf);
    let r = parse(&buf).expect("an answer to the half-sent body");
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < Duration::from_secs(4));

    let mut idle = TcpStream::connect(&a.addr).unwrap();
    idle.write_all(b"GET /v1/kv/k?raw HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let idle_s = secs_until_closed(&mut idle, Duration::from_secs(10));
    assert!(
        (1.5..5.0).contains(&idle_s),
        "idle keep-alive closed after {idle_s} s"
    );

    let (status, took) = parked.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_secs(4),
        "parked query cut short after {took:?}"
    );
    assert_eq!(
        client()
            .get(format!("{}/v1/kv/slowbody", a.url))
            .send()
            .unwrap()
            .status(),
        404
    );
}

/// A bad `limits` value stops the agent with a message naming the key.
#[test]
fn bad_limits_value_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(
        &dir,
        "bad.json",
        r#"{"limits": {"http_max_conns_per_client": "lots"}}"#,
    );
    let mut child = Command::new(bin("tribune"))
        .args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", &f])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "the agent started despite the bad value");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("limits.http_max_conns_per_client"), "{text}");
}

/// An agent under a 256-descriptor limit, flooded past it by one client
/// (no per-client cap): new clients are refused at once with 503 instead
/// of timing out, a kept-alive client is still served, and the agent
/// serves everyone again once the flood ends.
#[test]
fn low_descriptor_limit_refuses_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(
        &dir,
        "nocap.json",
        r#"{"limits": {"http_max_conns_per_client": 0}}"#,
    );
    let mut cmd = Command::new(bin("tribune"));
    cmd.args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", &f])
        .env_remove("CONSUL_HTTP_ADDR");
    limit_open_files(&mut cmd, 256);
    let a = Agent::start_cmd(cmd, None);
    a.wait_leader();
    put_kv(&a, "k", "v");
    let mut keep = connect_from([127, 0, 0, 1], &a.addr);
    let probe = b"GET /v1/kv/k?raw HTTP/1.1\r\nHost: x\r\n\r\n";
    keep.write_all(probe).unwrap();
    let mut buf = [0u8; 4096];
    assert!(keep.read(&mut buf).unwrap() > 0);
    let flood: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(&a.addr).ok())
        .collect();
    assert!(
        flood.len() >= 300,
        "only {} connections opened",
        flood.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let mut other = connect_from([127, 0, 0, 2], &a.addr);
    let r = request_on(&mut other, "/v1/kv/k?raw").expect("an answer, not a hang");
    assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "refusal took {:?}",
        t.elapsed()
    );
    keep.write_all(probe).unwrap();
    let n = keep.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "kept-alive client not served"
    );
    assert!(a
        .log_text()
        .contains("connection limit: 192 (open-file limit 256)"));
    drop(flood);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let mut s = connect_from([127, 0, 0, 2], &a.addr);
            request_on(&mut s, "/v1/kv/k?raw").is_some_and(|r| r.status == 200)
        }),
        "agent does not serve again after the flood"
    );
}
