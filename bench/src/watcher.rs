//! A fan-out watcher's connection: one HTTP/1.1 keep-alive TCP stream, the
//! request written whole from bytes built once per round, the answer read
//! with `httparse` until its `Content-Length` is in. No client stack: in
//! `fanout-agents` the driver shares the two cores with the agents it
//! measures, and hyper's client (a connection task and a response channel
//! per watcher) was ~17% of the CPU while the answers went out (`perf`),
//! time the agents then did not get. A real watcher runs on its own machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Bounds on an answer: the head, and the whole of it.
const MAX_HEAD: usize = 64 << 10;
const MAX_ANSWER: usize = 16 << 20;
/// Headers parsed at most (tribune sends about ten).
const MAX_HEADERS: usize = 64;

/// An answer's status and `X-Consul-Index` (the body is read and dropped).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub index: Option<u64>,
}

pub struct Watcher {
    stream: TcpStream,
    buf: Vec<u8>,
    addr: SocketAddr,
}

impl Watcher {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        Ok(Self {
            stream: crate::http::connect_tcp(addr).await?,
            buf: Vec::with_capacity(4096),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Write `request` (a whole GET, see [`get_request`]) and read its answer.
    pub async fn ask(&mut self, request: &[u8]) -> Result<Answer> {
        self.stream
            .write_all(request)
            .await
            .with_context(|| format!("{}: writing the request", self.addr))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<Answer> {
        loop {
            if let Some((answer, len)) = parse(&self.buf)? {
                self.buf.drain(..len);
                return Ok(answer);
            }
            if self.buf.len() >= MAX_ANSWER {
                bail!("{}: answer over {MAX_ANSWER} bytes", self.addr);
            }
            self.buf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .with_context(|| format!("{}: reading the answer", self.addr))?;
            if n == 0 {
                bail!(
                    "{}: connection closed before the answer was whole",
                    self.addr
                );
            }
        }
    }
}

/// A complete answer at the start of `buf`, and its length in bytes.
fn parse(buf: &[u8]) -> Result<Option<(Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).context("malformed answer")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            bail!("answer head over {MAX_HEAD} bytes")
        }
        httparse::Status::Partial => return Ok(None),
    };
    let mut length = None;
    let mut index = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("x-consul-index") {
            index = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked answer (this watcher reads Content-Length answers only)");
        }
    }
    let length: usize = length.ok_or_else(|| anyhow!("answer without Content-Length"))?;
    let status = resp.code.unwrap_or(0);
    if buf.len() < head + length {
        return Ok(None);
    }
    Ok(Some((Answer { status, index }, head + length)))
}

/// `GET path` for `host`, with `CONSUL_HTTP_TOKEN` as `X-Consul-Token` (as
/// [`crate::http::Conn`] sends it).
pub fn get_request(host: SocketAddr, path: &str) -> Bytes {
    let token = crate::http::token()
        .and_then(|t| t.to_str().ok())
        .map(|t| format!("X-Consul-Token: {t}\r\n"))
        .unwrap_or_default();
    Bytes::from(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{token}\r\n"
    ))
}

/// Open `n` watchers on `addr`, at most `concurrency` connecting at a time.
pub async fn open(addr: SocketAddr, n: usize, concurrency: usize) -> Result<Vec<Watcher>> {
    crate::fanout::open_all(n, concurrency, move || Watcher::connect(addr)).await
}

/// What a parked watcher's task returns: the watcher, its answer and when
/// the answer was whole.
pub type Parked = (Watcher, Result<Answer>, Instant);

/// Send `path` (a blocking read) on every watcher (emptied), one task each,
/// then give them `settle` to park.
pub async fn park_all(
    watchers: &mut Vec<Watcher>,
    path: &str,
    settle: Duration,
) -> Result<JoinSet<Parked>> {
    let mut requests: Vec<(SocketAddr, Bytes)> = Vec::new();
    let mut set = JoinSet::new();
    for mut w in watchers.drain(..) {
        let req = match requests.iter().find(|(a, _)| *a == w.addr()) {
            Some((_, r)) => r.clone(),
            None => {
                let r = get_request(w.addr(), path);
                requests.push((w.addr(), r.clone()));
                r
            }
        };
        set.spawn(async move {
            let r = w.ask(&req).await;
            (w, r, Instant::now())
        });
    }
    tokio::time::sleep(settle).await;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_answers_only() {
        let a = b"HTTP/1.1 200 OK\r\nX-Consul-Index: 42\r\nContent-Length: 2\r\n\r\n[]";
        let (ans, len) = parse(a).unwrap().unwrap();
        assert_eq!((ans.status, ans.index, len), (200, Some(42), a.len()));
        assert!(parse(&a[..a.len() - 1]).unwrap().is_none());
        assert!(parse(&a[..10]).unwrap().is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse(chunked).is_err());
        let none = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n";
        assert!(parse(none).is_err());
    }

    #[test]
    fn two_answers_in_one_buffer_are_taken_one_at_a_time() {
        let one = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let mut buf = one.to_vec();
        buf.extend_from_slice(one);
        let (ans, len) = parse(&buf).unwrap().unwrap();
        assert_eq!((ans.status, ans.index, len), (404, None, one.len()));
    }
}
