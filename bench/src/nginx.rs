//! `nginx`: from a KV write to nginx serving the config rendered from it, with the
//! nginx example (`examples/nginx/run.sh`) running: tribune-template renders
//! nginx.conf from `nginx/*`, checks it with `nginx -t` and reloads nginx.
//!
//! Each change writes `nginx/worker_connections = base + i` and then asks nginx for
//! `GET /tribune/knobs` on a fresh connection (nginx closes keep-alive connections on
//! reload) every `--poll-us` until the answer shows the new value (`served`), then
//! until it has shown nothing else 10 times in a row (`served_all`: old workers keep
//! accepting for a while after a reload). With `--conf`, the
//! rendered file is watched too (inotify), which splits the time into render +
//! `nginx -t` + rename, then reload.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;

use crate::args::Args;
use crate::filewatch::FileWatch;
use crate::http::Conn;
use crate::stats::{micros, signed_us, Summary};
use crate::{progress, result};

const KEY: &str = "nginx/worker_connections";
const CHANGE_LIMIT: Duration = Duration::from_secs(10);
/// New answers in a row that count as "all of nginx serves it".
const STREAK: usize = 10;

pub struct Opts {
    addr: SocketAddr,
    nginx: SocketAddr,
    conf: Option<PathBuf>,
    changes: usize,
    base: u64,
    gap: Duration,
    poll: Duration,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let nginx: SocketAddr = args.required("nginx").context("--nginx 127.0.0.1:PORT")?;
        if !nginx.ip().is_loopback() {
            bail!("--nginx {nginx}: only loopback targets are allowed");
        }
        let conf: String = args.get("conf", String::new())?;
        let o = Self {
            addr: args.addr()?,
            nginx,
            conf: (!conf.is_empty()).then(|| PathBuf::from(conf)),
            changes: args.get("changes", 50)?,
            base: args.get("base", 1000)?,
            gap: Duration::from_millis(args.get("gap-ms", 300)?),
            poll: Duration::from_micros(args.get("poll-us", 500)?),
        };
        if o.changes == 0 {
            bail!("--changes must be at least 1");
        }
        Ok(o)
    }
}

/// What one poll of `/tribune/knobs` found.
enum Knob {
    Value(u64),
    /// Connection refused, reset, timed out, not 200, or no such line.
    Failed,
}

fn poll_once(nginx: SocketAddr) -> Knob {
    let once = || -> Result<u64> {
        let mut s = TcpStream::connect_timeout(&nginx, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_nodelay(true)?;
        s.write_all(
            format!("GET /tribune/knobs HTTP/1.1\r\nHost: {nginx}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut buf = Vec::with_capacity(1024);
        s.take(64 * 1024).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        if !text.starts_with("HTTP/1.1 200") {
            bail!("not 200");
        }
        text.lines()
            .find_map(|l| l.strip_prefix("worker_connections="))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no worker_connections line"))
    };
    match once() {
        Ok(v) => Knob::Value(v),
        Err(_) => Knob::Failed,
    }
}

struct Served {
    /// The first answer with the new value.
    first: Instant,
    /// The first answer after the last old one (then `STREAK` new in a row).
    all: Instant,
    polls: usize,
    failed: usize,
    /// Old answers after the first new one (old workers still accepting).
    old_after: usize,
}

/// Poll until nginx shows `want`, then until it has shown nothing else `STREAK`
/// times in a row (blocking; run on a blocking thread).
fn poll_until(nginx: SocketAddr, want: u64, every: Duration) -> Result<Served> {
    let deadline = Instant::now() + CHANGE_LIMIT;
    let (mut polls, mut failed, mut old_after, mut streak) = (0, 0, 0, 0);
    let (mut first, mut all) = (None, None);
    while Instant::now() < deadline {
        polls += 1;
        let knob = poll_once(nginx);
        let at = Instant::now();
        match knob {
            Knob::Value(v) if v == want => {
                first.get_or_insert(at);
                if streak == 0 {
                    all = Some(at);
                }
                streak += 1;
                if streak >= STREAK {
                    return Ok(Served {
                        first: first.unwrap_or(at),
                        all: all.unwrap_or(at),
                        polls,
                        failed,
                        old_after,
                    });
                }
            }
            Knob::Value(_) => {
                if first.is_some() {
                    old_after += 1;
                }
                streak = 0;
            }
            Knob::Failed => failed += 1,
        }
        std::thread::sleep(every);
    }
    bail!(
        "nginx did not serve worker_connections={want} steadily within {CHANGE_LIMIT:?} \
         ({polls} polls, {failed} failed, first new answer seen: {})",
        first.is_some()
    )
}

pub async fn run(o: Opts) -> Result<()> {
    let nginx = o.nginx;
    match tokio::task::spawn_blocking(move || poll_once(nginx)).await? {
        Knob::Value(v) => progress!("nginx serves worker_connections={v}"),
        Knob::Failed => bail!("GET http://{nginx}/tribune/knobs fails: is the example running?"),
    }
    let limit = CHANGE_LIMIT * (o.changes as u32 + 10);
    let mut watch = o
        .conf
        .as_deref()
        .map(|p| FileWatch::start(p, limit))
        .transpose()?;
    let mut conn = Conn::connect(o.addr).await?;
    let (mut served, mut served_sent, mut served_all, mut written, mut reload, mut rtt) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut polls, mut failed, mut old_after) = (0, 0, 0);
    let mut last: Option<Instant> = None;
    for i in 1..=o.changes {
        if let Some(t) = last {
            let due = t + o.gap;
            if due > Instant::now() {
                tokio::time::sleep(due - Instant::now()).await;
            }
        }
        let want = o.base + i as u64;
        let sent = Instant::now();
        last = Some(sent);
        conn.put(&format!("/v1/kv/{KEY}"), Bytes::from(want.to_string()))
            .await?
            .written(&format!("PUT {KEY}"))?;
        let acked = Instant::now();
        let every = o.poll;
        let s = tokio::task::spawn_blocking(move || poll_until(nginx, want, every))
            .await?
            .with_context(|| format!("change {i}"))?;
        served.push(signed_us(acked, s.first));
        served_sent.push(micros(s.first - sent));
        served_all.push(signed_us(acked, s.all));
        rtt.push(micros(acked - sent));
        polls += s.polls;
        failed += s.failed;
        old_after += s.old_after;
        if let Some(w) = watch.as_mut() {
            let line = format!("worker_connections {want};");
            let (snap, _) = w
                .wait_for(CHANGE_LIMIT, |c| c.contains(&line))
                .await
                .with_context(|| format!("change {i}: rendered nginx.conf"))?;
            written.push(signed_us(acked, snap.at));
            reload.push(signed_us(snap.at, s.first));
        }
        if i % 10 == 0 {
            progress!("{i}/{} changes", o.changes);
        }
    }
    result("nginx_changes", o.changes);
    result("nginx_gap_ms", o.gap.as_millis());
    result("nginx_poll_us", o.poll.as_micros());
    Summary::new(served).report("nginx_served", "us");
    Summary::new(served_sent).report("nginx_served_from_sent", "us");
    Summary::new(served_all).report("nginx_served_all", "us");
    Summary::new(rtt).report("nginx_put_rtt", "us");
    if watch.is_some() {
        Summary::new(written).report("nginx_written", "us");
        Summary::new(reload).report("nginx_reload", "us");
    }
    result("nginx_polls", polls);
    result("nginx_poll_failures", failed);
    result("nginx_old_after_new", old_after);
    Ok(())
}
