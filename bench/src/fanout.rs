//! `fanout`: one write under a prefix wakes every query parked on that prefix; how
//! long until the last of them has its answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::http::{Conn, Reply, IO_TIMEOUT};
use crate::stats::{signed_us, Summary};
use crate::{kv, progress, result};

const PREFIX: &str = "bench/fan/";
const KEY: &str = "bench/fan/k";

pub struct Opts {
    addr: SocketAddr,
    watchers: usize,
    rounds: usize,
    settle: Duration,
    wait: String,
    concurrency: usize,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let opts = Self {
            addr: args.addr()?,
            watchers: args.get("watchers", 1000)?,
            rounds: args.get("rounds", 20)?,
            settle: Duration::from_millis(args.get("settle-ms", 300)?),
            wait: args.get("wait", "5m".to_string())?,
            concurrency: args.get("concurrency", 256)?,
        };
        if opts.watchers == 0 || opts.rounds == 0 {
            bail!("--watchers and --rounds must be at least 1");
        }
        Ok(opts)
    }
}

pub async fn run(o: Opts) -> Result<()> {
    let mut ctl = Conn::connect(o.addr).await?;
    let mut writer = Conn::connect(o.addr).await?;
    writer
        .put(&format!("/v1/kv/{KEY}"), kv::value())
        .await?
        .written("PUT bench/fan/k")?;
    let mut watchers = open(o.addr, o.watchers, o.concurrency).await?;
    progress!(
        "{} watcher connections open; {} rounds",
        o.watchers,
        o.rounds
    );

    let (mut all, mut all_sent, mut first) = (vec![], vec![], vec![]);
    for round in 0..o.rounds {
        let r = one_round(&o, &mut ctl, &mut writer, &mut watchers)
            .await
            .with_context(|| format!("round {round}"))?;
        first.push(r.first);
        all.push(r.last);
        all_sent.push(r.last_from_sent);
    }
    let (all, all_sent, first) = (
        Summary::new(all),
        Summary::new(all_sent),
        Summary::new(first),
    );
    result("fanout_watchers", o.watchers);
    result("fanout_rounds", o.rounds);
    result("fanout_all_p50_us", all.pct(50.0));
    result("fanout_all_max_us", all.max());
    result("fanout_all_from_sent_p50_us", all_sent.pct(50.0));
    result("fanout_all_from_sent_max_us", all_sent.max());
    result("fanout_first_p50_us", first.pct(50.0));
    result("fanout_first_min_us", first.min());
    Ok(())
}

/// Open `n` connections to `addr`, at most `concurrency` at a time.
async fn open(addr: SocketAddr, n: usize, concurrency: usize) -> Result<Vec<Conn>> {
    open_all(n, concurrency, move || Conn::connect(addr)).await
}

/// `n` connections from `connect`, at most `concurrency` connecting at a time.
pub(crate) async fn open_all<T, F, Fut>(n: usize, concurrency: usize, connect: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permits = permits.clone();
        let connecting = connect();
        set.spawn(async move {
            let _permit = permits.acquire().await?;
            connecting.await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        conns.push(r.context("connect task panicked")??);
    }
    Ok(conns)
}

/// Answer times of one round, in µs.
struct Round {
    /// First watcher answered, after the PUT's acknowledgement (negative: before it).
    first: i64,
    /// Last watcher answered, after the PUT's acknowledgement.
    last: i64,
    /// Last watcher answered, after the PUT was sent.
    last_from_sent: i64,
}

/// One round: park every watcher, write, collect.
async fn one_round(
    o: &Opts,
    ctl: &mut Conn,
    writer: &mut Conn,
    watchers: &mut Vec<Conn>,
) -> Result<Round> {
    let index = ctl
        .get(&format!("/v1/kv/{PREFIX}?recurse"))
        .await?
        .ok("GET bench/fan/?recurse")?
        .index()?;
    let path = format!("/v1/kv/{PREFIX}?recurse&index={index}&wait={}", o.wait);
    let mut set = park_all(watchers, &path, o.settle).await?;
    if let Some(done) = set.try_join_next() {
        let (_, r, _) = done.context("watcher task panicked")?;
        bail!("a watcher answered before the write (index {index}): {r:?}");
    }

    let sent = Instant::now();
    writer
        .put(&format!("/v1/kv/{KEY}"), kv::value())
        .await?
        .written("PUT bench/fan/k")?;
    let acked = Instant::now();

    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    while let Some(done) = tokio::time::timeout_at(deadline, set.join_next())
        .await
        .map_err(|_| anyhow!("{} watchers not answered within {IO_TIMEOUT:?}", set.len()))?
    {
        let (conn, reply, at) = done.context("watcher task panicked")?;
        let reply = reply?.ok("woken GET bench/fan/?recurse")?;
        let new_index = reply.index()?;
        if new_index <= index {
            bail!("watcher answered with index {new_index}, not past {index}");
        }
        if at < sent {
            bail!("watcher answered before the write was sent");
        }
        first = Some(first.map_or(at, |f| f.min(at)));
        last = Some(last.map_or(at, |l| l.max(at)));
        watchers.push(conn);
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no watcher answered");
    };
    Ok(Round {
        first: signed_us(acked, first),
        last: signed_us(acked, last),
        last_from_sent: signed_us(sent, last),
    })
}

/// What a parked watcher's task returns: its connection, its answer and
/// when the answer came.
pub type Parked = (Conn, Result<Reply>, Instant);

/// Send `path` (a blocking read) on every connection of `watchers`
/// (emptied), one task per answer, then give them `settle` to park.
pub async fn park_all(
    watchers: &mut Vec<Conn>,
    path: &str,
    settle: Duration,
) -> Result<JoinSet<Parked>> {
    let mut set = JoinSet::new();
    for mut conn in watchers.drain(..) {
        let reply = conn.send(Method::GET, path, Bytes::new()).await?;
        set.spawn(async move {
            let r = reply.await;
            (conn, r, Instant::now())
        });
    }
    tokio::time::sleep(settle).await;
    Ok(set)
}
