//! `memory`: the server's resident memory per parked blocking query, and
//! what it keeps after those connections close.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::args::Args;
use crate::park::IdleWatchers;
use crate::procfs::settled_rss;
use crate::{kv, progress, result};

const PREFIX: &str = "bench/mem/";
/// Time given to the server after the clients close, before reading RSS.
const CLOSE_SETTLE: Duration = Duration::from_secs(10);

pub struct Opts {
    addr: SocketAddr,
    pid: u32,
    parked: usize,
    wait: String,
    concurrency: usize,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        Ok(Self {
            addr: args.addr()?,
            pid: args.required("pid")?,
            parked: args.get("parked", 10_000)?,
            wait: args.get("wait", "5m".to_string())?,
            concurrency: args.get("concurrency", 256)?,
        })
    }
}

pub async fn run(o: Opts) -> Result<()> {
    if o.parked == 0 {
        return Err(anyhow!("--parked must be at least 1"));
    }
    kv::put_keys(o.addr, PREFIX, o.parked, 32).await?;
    let before = settled_rss(o.pid).await?;
    progress!("server RSS before: {before} KiB");

    let mut idle = IdleWatchers::open(o.addr, PREFIX, o.parked, o.concurrency, &o.wait).await?;
    let opened = settled_rss(o.pid).await?;
    progress!(
        "server RSS with {} open connections: {opened} KiB",
        o.parked
    );

    idle.read().await?;
    let read = settled_rss(o.pid).await?;
    progress!("server RSS after one GET on each: {read} KiB");

    idle.park(Duration::from_secs(1)).await?;
    let parked = settled_rss(o.pid).await?;
    progress!("server RSS with {} parked queries: {parked} KiB", o.parked);
    let (answered, broken) = (idle.answered(), idle.broken());
    idle.close().await;
    // What the server keeps once every client has gone (freed heap the
    // allocator has not returned); allocators return memory after a delay.
    tokio::time::sleep(CLOSE_SETTLE).await;
    let closed = settled_rss(o.pid).await?;
    progress!("server RSS after all {} closed: {closed} KiB", o.parked);

    let n = o.parked as f64;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n;
    result("memory_parked", o.parked);
    result("memory_rss_before_kib", before);
    result("memory_rss_opened_kib", opened);
    result("memory_rss_read_kib", read);
    result("memory_rss_parked_kib", parked);
    result("memory_rss_closed_kib", closed);
    result(
        "memory_kib_per_parked",
        format!("{:.2}", per(before, parked)),
    );
    // The split: an accepted idle connection; what its first request leaves behind
    // (buffers kept for keep-alive); the parked query itself.
    result(
        "memory_kib_per_open_conn",
        format!("{:.2}", per(before, opened)),
    );
    result(
        "memory_kib_per_first_request",
        format!("{:.2}", per(opened, read)),
    );
    result(
        "memory_kib_per_parked_query",
        format!("{:.2}", per(read, parked)),
    );
    result("memory_spurious", answered + broken);
    Ok(())
}
