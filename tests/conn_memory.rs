//! The memory of HTTP connections (issue 21): a parked blocking query
//! costs a few KiB of the agent's RSS, and the small read buffer a
//! connection starts with (the patched hyper in vendor/hyper) grows for
//! whatever a request brings: large heads, large bodies, pipelined
//! requests, on one kept-alive connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tribune_tests::{bin, limit_open_files, put_kv, Agent};

/// One answer off a kept-alive connection: status, headers, body (by
/// Content-Length).
fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String, Vec<u8>) {
    let mut buf = [0u8; 16384];
    let end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut buf).expect("reading an answer");
        assert!(n > 0, "connection closed before an answer");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while pending.len() < end + 4 + len {
        let n = s.read(&mut buf).expect("reading a body");
        assert!(n > 0, "connection closed inside a body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending[end + 4..end + 4 + len].to_vec();
    pending.drain(..end + 4 + len);
    (status, head, body)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Heads and bodies far larger than the first read buffer, pipelined
/// requests in one write, and small requests after large ones: all on one
/// connection, all answered in order and in full.
#[test]
fn large_and_pipelined_requests_on_one_connection() {
    let a = Agent::dev(&[]);
    let mut s = connect(&a.addr);
    let mut pending = Vec::new();
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");

    s.write_all(get("/v1/kv/none", "").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut s, &mut pending).0, 404);

    // A 12 KiB head (hyper's first read buffer is 1 KiB here).
    let filler = format!("X-Filler: {}\r\n", "f".repeat(12 * 1024));
    s.write_all(get("/v1/kv/none", &filler).as_bytes()).unwrap();
    assert_eq!(read_answer(&mut s, &mut pending).0, 404);

    // A 300 KiB value, then read back whole on the same connection.
    let value: Vec<u8> = (0..300 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let put = format!(
        "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        value.len()
    );
    s.write_all(put.as_bytes()).unwrap();
    s.write_all(&value).unwrap();
    let (status, _, body) = read_answer(&mut s, &mut pending);
    assert_eq!((status, body.as_slice()), (200, &b"true"[..]));
    s.write_all(get("/v1/kv/big?raw", "").as_bytes()).unwrap();
    let (status, _, body) = read_answer(&mut s, &mut pending);
    assert_eq!(status, 200);
    assert!(body == value, "the value read back differs");

    // Ten small requests in one write, after the large ones.
    put_kv(&a, "small", "v");
    let burst: String = (0..10).map(|_| get("/v1/kv/small?raw", "")).collect();
    s.write_all(burst.as_bytes()).unwrap();
    for i in 0..10 {
        let (status, _, body) = read_answer(&mut s, &mut pending);
        assert_eq!((status, body.as_slice()), (200, &b"v"[..]), "answer {i}");
    }

    // A chunked body split across writes, then a large head again.
    s.write_all(
        b"PUT /v1/kv/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"6\r\n world\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut s, &mut pending).0, 200);
    s.write_all(get("/v1/kv/chunked?raw", &filler).as_bytes())
        .unwrap();
    let (status, _, body) = read_answer(&mut s, &mut pending);
    assert_eq!((status, body.as_slice()), (200, &b"hello world"[..]));
}

/// The agent's RSS (KiB) before `n` connections open, with a blocking
/// query parked on each, and once they have all closed.
struct Rss {
    before: u64,
    parked: u64,
    closed: u64,
}

/// Open `n` connections, park a blocking query on each, close them all.
fn rss_with_parked(n: usize) -> Rss {
    // The test holds n sockets, the agent n connections.
    raise_nofile(n as u64 + 1024);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nocap.json");
    std::fs::write(&f, r#"{"limits": {"http_max_conns_per_client": 0}}"#).unwrap();
    let mut cmd = Command::new(bin("tribune"));
    cmd.args(["agent", "-dev", "-http-port", "0", "-dns-port", "-1"])
        .args(["-config-file", f.to_str().unwrap()])
        .env_remove("CONSUL_HTTP_ADDR");
    let limit = n as u64 + 4096;
    limit_open_files(&mut cmd, limit);
    let a = Agent::start_cmd(cmd, None);
    for i in 0..n {
        put_kv(&a, &format!("mem/{i}"), "v");
    }
    let pid = a.child.id();
    let before = settled_rss_kib(pid);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = connect(&a.addr);
        let mut pending = Vec::new();
        let req = format!("GET /v1/kv/mem/{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let (status, head, _) = read_answer(&mut s, &mut pending);
        assert_eq!(status, 200);
        let index = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-consul-index")
                    .then(|| v.trim().to_string())
            })
            .expect("an X-Consul-Index");
        let park = format!("GET /v1/kv/mem/{i}?index={index}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(park.as_bytes()).unwrap();
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let parked = settled_rss_kib(pid);
    // None was answered: they are all still parked.
    for s in &conns {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = (&*s).read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a parked query was answered or closed: {r:?}"
        );
    }
    drop(conns);
    // The agent hands memory back within seconds of many connections
    // closing (every 5 s, once 256 have); wait up to 20 s for most of it.
    let mut closed = settled_rss_kib(pid);
    for _ in 0..20 {
        if closed.saturating_sub(before) * 2 <= parked.saturating_sub(before) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        closed = settled_rss_kib(pid);
    }
    Rss {
        before,
        parked,
        closed,
    }
}

fn raise_nofile(want: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        if rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// VmRSS once it has stopped moving (two readings 300 ms apart agree
/// within 1%).
fn settled_rss_kib(pid: u32) -> u64 {
    let read = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let mut last = read();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let now = read();
        if now.abs_diff(last) * 100 <= last {
            return now;
        }
        last = now;
    }
    last
}

/// 2,000 kept-alive connections, each with a blocking query parked, add
/// at most 8 KiB each to the agent's RSS, issue 21's target (6.8 KiB in
/// a debug build as in release; it was 16.7 with stock hyper's two 8 KiB
/// buffers per connection and two axum middlewares on every route).
/// Once they close, the agent gives most of that memory back (the
/// allocator keeps freed pages until asked: `tribune::alloc`).
#[test]
fn parked_queries_hold_little_memory() {
    let n = 2000;
    let Rss {
        before,
        parked,
        closed,
    } = rss_with_parked(n);
    let per = (parked as f64 - before as f64) / n as f64;
    eprintln!(
        "RSS per parked query: {per:.2} KiB; before {before}, parked {parked}, closed {closed} KiB"
    );
    assert!(per <= 8.0, "{per:.2} KiB of RSS per parked query");
    let kept = closed.saturating_sub(before);
    assert!(
        kept * 2 <= parked.saturating_sub(before),
        "{kept} KiB of the {} the connections took still held once they closed",
        parked.saturating_sub(before)
    );
}
