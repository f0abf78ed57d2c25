//! `failover`: time from `kill -9` of a cluster's leader to the first acknowledged
//! write after it, seen by a client writing sequentially through a surviving member.
//!
//! The writer sends one write at a time (`PUT /v1/kv/<key>` for tribune, the etcd v3
//! JSON gateway's `POST /v3/kv/put` for etcd) to the first endpoint. After a warm-up
//! of acknowledged writes it sends SIGKILL to the leader's pid *between two writes*,
//! so every write after that instant was sent after the kill, and keeps writing: a
//! write that fails (connection error, non-200 answer, no answer within
//! `--timeout-ms`) drops the connection, moves on to the next endpoint (round robin,
//! like a client given every member) and is retried after `--retry-ms`. The figure is
//! the time from just before the `kill` call to the first acknowledged write.
//!
//! Each write goes to a key of its own (`<key>/<run>/<n>`, the run named by the
//! killed pid), so that afterwards every acknowledged write can be looked for: the
//! keys under the run's prefix are listed through the same endpoint (tribune: a
//! default-consistency `?keys` read, answered by the new leader; etcd: a
//! linearizable range), and an acknowledged write that is missing fails the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::args::Args;
use crate::http::Conn;
use crate::stats::{micros, Summary};
use crate::{progress, result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tribune,
    Etcd,
}

pub struct Opts {
    kind: Kind,
    endpoints: Vec<SocketAddr>,
    kill_pid: i32,
    warmup: Duration,
    timeout: Duration,
    retry: Duration,
    give_up: Duration,
    key: String,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let kind = match args.required::<String>("kind")?.as_str() {
            "tribune" => Kind::Tribune,
            "etcd" => Kind::Etcd,
            other => bail!("--kind {other:?}: tribune or etcd"),
        };
        let list: String = args.required("endpoints")?;
        let mut endpoints = Vec::new();
        for e in list.split(',').filter(|e| !e.is_empty()) {
            let a: SocketAddr = e
                .parse()
                .with_context(|| format!("--endpoints: {e:?} is not IP:PORT"))?;
            if !a.ip().is_loopback() {
                bail!("--endpoints {a}: only loopback targets are allowed");
            }
            endpoints.push(a);
        }
        if endpoints.is_empty() {
            bail!("--endpoints needs at least one IP:PORT");
        }
        let kill_pid: i32 = args.required("kill-pid")?;
        if kill_pid <= 1 {
            bail!("--kill-pid {kill_pid}: not a process to kill");
        }
        Ok(Self {
            kind,
            endpoints,
            kill_pid,
            warmup: Duration::from_millis(args.get("warmup-ms", 1000)?),
            timeout: Duration::from_millis(args.get("timeout-ms", 250)?),
            retry: Duration::from_millis(args.get("retry-ms", 10)?),
            give_up: Duration::from_secs(args.get("give-up-s", 30)?),
            key: args.get("key", "bench/failover".to_string())?,
        })
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;

/// Standard base64 with padding (the etcd gateway's `bytes` fields).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why one write was not acknowledged.
enum Failure {
    Timeout,
    Connect(String),
    Request(String),
    Status(StatusCode, String),
}

impl Failure {
    /// A short class for the counts: the message on one line, cut at 160 characters.
    fn class(&self) -> String {
        let s = match self {
            Failure::Timeout => "timeout".to_string(),
            Failure::Connect(e) => format!("connect: {e}"),
            Failure::Request(e) => format!("request: {e}"),
            Failure::Status(s, b) => format!("HTTP {}: {b}", s.as_u16()),
        };
        s.chars().filter(|c| *c != '\n').take(160).collect()
    }
}

struct Writer {
    kind: Kind,
    endpoints: Vec<SocketAddr>,
    at: usize,
    conn: Option<Conn>,
    /// The run's prefix, `<key>/<run>/`.
    prefix: String,
    n: u64,
    /// The numbers of the acknowledged writes.
    acked: Vec<u64>,
}

impl Writer {
    fn endpoint(&self) -> SocketAddr {
        self.endpoints[self.at]
    }

    /// One write to the current endpoint, bounded by `timeout` (connect included).
    async fn write(&mut self, timeout: Duration) -> std::result::Result<(), Failure> {
        self.n += 1;
        let n = self.n;
        let key = format!("{}{n:08}", self.prefix);
        let value = format!("v{n}");
        let (method, path, body) = match self.kind {
            Kind::Tribune => (Method::PUT, format!("/v1/kv/{key}"), Bytes::from(value)),
            Kind::Etcd => (
                Method::POST,
                "/v3/kv/put".to_string(),
                Bytes::from(format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    base64(key.as_bytes()),
                    base64(value.as_bytes())
                )),
            ),
        };
        let addr = self.endpoint();
        let kind = self.kind;
        let conn = &mut self.conn;
        let attempt = async move {
            if conn.is_none() {
                *conn = Some(
                    Conn::connect(addr)
                        .await
                        .map_err(|e| Failure::Connect(format!("{e:#}")))?,
                );
            }
            let c = conn.as_mut().expect("connected above");
            let reply = c
                .send(method, &path, body)
                .await
                .map_err(|e| Failure::Request(format!("{e:#}")))?
                .await
                .map_err(|e| Failure::Request(format!("{e:#}")))?;
            let text = String::from_utf8_lossy(&reply.body).trim().to_string();
            let acked = reply.status == StatusCode::OK
                && match kind {
                    Kind::Tribune => text == "true",
                    Kind::Etcd => text.contains("\"header\""),
                };
            if acked {
                Ok(())
            } else {
                Err(Failure::Status(reply.status, text))
            }
        };
        let r = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        match r {
            Ok(()) => self.acked.push(n),
            // The connection may still carry the failed request: start afresh on the
            // next endpoint.
            Err(_) => self.drop_conn(),
        }
        r
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        self.at = (self.at + 1) % self.endpoints.len();
    }

    /// The numbers of the writes under the run's prefix, read through the current
    /// endpoint (default consistency / linearizable).
    async fn written(&mut self) -> Result<std::collections::HashSet<u64>> {
        let (method, path, body) = match self.kind {
            Kind::Tribune => (
                Method::GET,
                format!("/v1/kv/{}?keys", self.prefix),
                Bytes::new(),
            ),
            Kind::Etcd => {
                // The range end of a prefix: its last byte plus one ('/' + 1).
                let end = format!("{}0", self.prefix.trim_end_matches('/'));
                (
                    Method::POST,
                    "/v3/kv/range".to_string(),
                    Bytes::from(format!(
                        r#"{{"key":"{}","range_end":"{}","keys_only":true}}"#,
                        base64(self.prefix.as_bytes()),
                        base64(end.as_bytes())
                    )),
                )
            }
        };
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(self.endpoint()).await?);
        }
        let c = self.conn.as_mut().expect("connected above");
        let reply = c.request(method, &path, body).await?;
        if reply.status != StatusCode::OK {
            bail!(
                "listing {}: HTTP {} {}",
                self.prefix,
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
        let keys: Vec<String> = match self.kind {
            Kind::Tribune => v
                .as_array()
                .ok_or_else(|| anyhow!("?keys answered {v}"))?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            Kind::Etcd => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD;
                let kvs = v.get("kvs").and_then(|k| k.as_array());
                kvs.map(|kvs| {
                    kvs.iter()
                        .filter_map(|kv| kv.get("key")?.as_str())
                        .filter_map(|k| b64.decode(k).ok())
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .collect()
                })
                .unwrap_or_default()
            }
        };
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix(&self.prefix)?.parse().ok())
            .collect())
    }

    /// Every acknowledged write is there (retried for a few seconds while the
    /// new leader settles); the number checked.
    async fn check_acked(&mut self) -> Result<usize> {
        let mut last = anyhow!("not checked");
        for _ in 0..20 {
            match tokio::time::timeout(Duration::from_secs(5), self.written()).await {
                Ok(Ok(found)) => {
                    let lost: Vec<u64> = self
                        .acked
                        .iter()
                        .copied()
                        .filter(|n| !found.contains(n))
                        .collect();
                    if !lost.is_empty() {
                        bail!(
                            "{} of {} acknowledged writes lost under {}: {lost:?}",
                            lost.len(),
                            self.acked.len(),
                            self.prefix
                        );
                    }
                    return Ok(self.acked.len());
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = anyhow!("listing {}: no answer within 5 s", self.prefix),
            }
            self.drop_conn();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last.context("checking the acknowledged writes"))
    }
}

pub async fn run(o: Opts) -> Result<()> {
    let mut w = Writer {
        kind: o.kind,
        endpoints: o.endpoints.clone(),
        at: 0,
        conn: None,
        prefix: format!("{}/{}/", o.key.trim_end_matches('/'), o.kill_pid),
        n: 0,
        acked: Vec::new(),
    };

    // Warm-up: the cluster must be healthy, every write acknowledged.
    let started = Instant::now();
    let mut rtt = Vec::new();
    while started.elapsed() < o.warmup || rtt.len() < 10 {
        let t = Instant::now();
        if let Err(f) = w.write(Duration::from_secs(5)).await {
            bail!(
                "warm-up write {} through {} failed: {}",
                rtt.len(),
                w.endpoints[(w.at + w.endpoints.len() - 1) % w.endpoints.len()],
                f.class()
            );
        }
        rtt.push(micros(t.elapsed()));
    }
    let warm_n = rtt.len();
    let warm = Summary::new(rtt);
    progress!(
        "{} warm-up writes through {}, p50 {} µs, max {} µs; killing pid {}",
        warm_n,
        w.endpoint(),
        warm.pct(50.0),
        warm.max(),
        o.kill_pid
    );

    let killed = Instant::now();
    // SAFETY: plain syscall on a pid given by the caller; no memory is shared.
    if unsafe { kill(o.kill_pid, SIGKILL) } != 0 {
        return Err(anyhow!(std::io::Error::last_os_error()))
            .with_context(|| format!("kill -9 {}", o.kill_pid));
    }

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempts = 0usize;
    let mut timeouts = 0usize;
    let (acked, via) = loop {
        if killed.elapsed() > o.give_up {
            bail!(
                "no write acknowledged within {:?} of the kill ({attempts} attempts: {failures:?})",
                o.give_up
            );
        }
        attempts += 1;
        let via = w.endpoint();
        match w.write(o.timeout).await {
            Ok(()) => break (Instant::now(), via),
            Err(f) => {
                if matches!(f, Failure::Timeout) {
                    timeouts += 1;
                }
                *failures.entry(f.class()).or_default() += 1;
                tokio::time::sleep(o.retry).await;
            }
        }
    };
    let ms = (acked - killed).as_secs_f64() * 1000.0;
    progress!(
        "first acknowledged write {ms:.1} ms after the kill, through {via}, attempt {attempts}; failures: {failures:?}"
    );
    result("failover_ms", format!("{ms:.1}"));
    result("failover_attempts", attempts);
    result("failover_timeouts", timeouts);
    result("failover_via", via);
    result("failover_warmup_writes", warm_n);
    result("failover_warmup_p50_us", warm.pct(50.0));
    let checked = w.check_acked().await?;
    progress!("all {checked} acknowledged writes are there ({} sent)", w.n);
    result("failover_acked_checked", checked);
    let summary: Vec<String> = failures.iter().map(|(k, n)| format!("{n}× {k}")).collect();
    result("failover_failures", summary.join("; "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bench/failover"), "YmVuY2gvZmFpbG92ZXI=");
    }
}
