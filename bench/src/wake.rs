//! `wake`: latency from a write to the wake-up of the one query parked on that key,
//! while many other queries stay parked on other keys.
//!
//! `--watch-addr A --dc D`: the watcher parks on agent A with `?dc=D` while
//! the writes go to `--addr` (a server of D): the wake-up across datacenters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hyper::Method;

use crate::args::Args;
use crate::http::{Conn, IO_TIMEOUT};
use crate::park::IdleWatchers;
use crate::stats::{micros, signed_us, Summary};
use crate::{kv, progress, result};

const HOT: &str = "bench/hot";
const IDLE_PREFIX: &str = "bench/idle/";

pub struct Opts {
    addr: SocketAddr,
    /// Where the watcher (and the index read) asks; `addr` by default.
    watch_addr: SocketAddr,
    /// `?dc=` on the watcher's reads.
    dc: Option<String>,
    parked: usize,
    samples: usize,
    settle: Duration,
    wait: String,
    concurrency: usize,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let addr = args.addr()?;
        let watch: String = args.get("watch-addr", addr.to_string())?;
        let dc: String = args.get("dc", String::new())?;
        let opts = Self {
            addr,
            watch_addr: watch
                .parse()
                .map_err(|e| anyhow!("--watch-addr {watch}: {e}"))?,
            dc: Some(dc).filter(|d| !d.is_empty()),
            parked: args.get("parked", 10_000)?,
            samples: args.get("samples", 200)?,
            settle: Duration::from_millis(args.get("settle-ms", 20)?),
            wait: args.get("wait", "5m".to_string())?,
            concurrency: args.get("concurrency", 256)?,
        };
        if opts.samples == 0 {
            bail!("--samples must be at least 1");
        }
        Ok(opts)
    }
}

pub async fn run(o: Opts) -> Result<()> {
    kv::put_keys(o.addr, IDLE_PREFIX, o.parked, 32).await?;
    let mut idle = IdleWatchers::open(o.addr, IDLE_PREFIX, o.parked, o.concurrency, &o.wait)
        .await
        .context("opening idle watchers")?;
    idle.park(Duration::from_secs(1)).await?;
    progress!(
        "{} idle queries parked; sampling {} wakes",
        o.parked,
        o.samples
    );

    let mut ctl = Conn::connect(o.watch_addr).await?;
    let mut writer = Conn::connect(o.addr).await?;
    let mut watcher = Conn::connect(o.watch_addr).await?;
    writer
        .put(&format!("/v1/kv/{HOT}"), kv::value())
        .await?
        .written("PUT bench/hot")?;

    let mut from_ack = Vec::with_capacity(o.samples);
    let mut from_sent = Vec::with_capacity(o.samples);
    let mut put_rtt = Vec::with_capacity(o.samples);
    let mut watcher_first = 0usize;
    for n in 0..o.samples {
        let s = sample(&o, &mut ctl, &mut writer, &mut watcher)
            .await
            .with_context(|| format!("sample {n}"))?;
        if s.from_ack < 0 {
            watcher_first += 1;
        }
        from_ack.push(s.from_ack);
        from_sent.push(s.from_sent);
        put_rtt.push(s.put_rtt);
    }

    // Let any stray wake-up caused by the last write arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spurious = idle.answered();
    let broken = idle.broken();
    idle.close().await;

    result("wake_parked", o.parked);
    result("wake_samples", o.samples);
    Summary::new(from_ack).report("wake", "us");
    Summary::new(from_sent).report("wake_from_sent", "us");
    Summary::new(put_rtt).report("wake_put_rtt", "us");
    result("wake_watcher_before_ack", watcher_first);
    result("wake_spurious", spurious);
    result("wake_idle_errors", broken);
    if spurious + broken > 0 {
        bail!("{spurious} idle queries answered and {broken} failed during the run (want 0)");
    }
    Ok(())
}

struct Sample {
    /// Watcher's answer received minus PUT's answer received (µs, signed).
    from_ack: i64,
    /// Watcher's answer received minus PUT sent (µs).
    from_sent: i64,
    /// PUT round trip (µs).
    put_rtt: i64,
}

async fn sample(o: &Opts, ctl: &mut Conn, writer: &mut Conn, watcher: &mut Conn) -> Result<Sample> {
    let dc =
        o.dc.as_deref()
            .map(|d| format!("&dc={d}"))
            .unwrap_or_default();
    let index = ctl
        .get(&format!("/v1/kv/{HOT}{}", dc.replacen('&', "?", 1)))
        .await?
        .ok("GET bench/hot")?
        .index()?;
    let parked = watcher
        .send(
            Method::GET,
            &format!("/v1/kv/{HOT}?index={index}&wait={}{dc}", o.wait),
            Bytes::new(),
        )
        .await?;
    let woken = async {
        let r = parked.await;
        (r, Instant::now())
    };
    tokio::pin!(woken);
    tokio::select! {
        _ = tokio::time::sleep(o.settle) => {}
        (r, _) = &mut woken => bail!("watcher answered before any write (index {index}): {r:?}"),
    }

    let sent = Instant::now();
    let put = async {
        let r = writer.put(&format!("/v1/kv/{HOT}"), kv::value()).await;
        (r, Instant::now())
    };
    let ((put, acked), (wake, woke)) =
        tokio::time::timeout(IO_TIMEOUT, async { tokio::join!(put, woken) })
            .await
            .map_err(|_| anyhow!("watcher not woken within {IO_TIMEOUT:?} of the PUT"))?;
    put?.written("PUT bench/hot")?;
    let wake = wake?.ok("woken GET bench/hot")?;
    let new_index = wake.index()?;
    if new_index <= index {
        bail!("watcher answered with index {new_index}, not past {index}");
    }
    Ok(Sample {
        from_ack: signed_us(acked, woke),
        from_sent: micros(woke - sent),
        put_rtt: micros(acked - sent),
    })
}
