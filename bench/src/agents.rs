//! `fanout-agents` (issue 18): watchers of `health/service/web?passing` parked on
//! several agents (client agents, or the server itself); one instance's check
//! flips between passing and critical through the server's catalog; how long until
//! every watcher has its answer, the server's CPU per flip, and how many reads the
//! server served per flip (`consul.rpc.query`, from its Prometheus text).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;

use crate::args::Args;
use crate::http::{Conn, IO_TIMEOUT};
use crate::procfs::cpu_ns;
use crate::stats::{signed_us, Summary};
use crate::watcher::{open, park_all, Watcher};
use crate::{progress, result};

pub struct Opts {
    /// The server: writes, the index, its metrics.
    addr: SocketAddr,
    server_pid: u32,
    /// Where the watchers park (each gets `watchers`).
    agents: Vec<SocketAddr>,
    watchers: usize,
    rounds: usize,
    settle: Duration,
    concurrency: usize,
    /// Prefix of the RESULT names (`agents` or `direct`).
    name: String,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let agents: String = args.required("agents")?;
        let agents = agents
            .split(',')
            .map(|a| a.parse().with_context(|| format!("--agents: {a:?}")))
            .collect::<Result<Vec<SocketAddr>>>()?;
        let opts = Self {
            addr: args.addr()?,
            server_pid: args.required("server-pid")?,
            agents,
            watchers: args.get("watchers", 1000)?,
            rounds: args.get("rounds", 20)?,
            settle: Duration::from_millis(args.get("settle-ms", 1000)?),
            concurrency: args.get("concurrency", 256)?,
            name: args.get("name", "agents".to_string())?,
        };
        if opts.watchers == 0 || opts.rounds < 2 || opts.agents.is_empty() {
            bail!("--watchers and --agents must not be empty, --rounds at least 2");
        }
        Ok(opts)
    }
}

fn register(passing: bool) -> Bytes {
    let status = if passing { "passing" } else { "critical" };
    Bytes::from(format!(
        r#"{{"Node": "bench-web-1", "Address": "127.0.0.1",
            "Service": {{"ID": "web1", "Service": "web", "Port": 80}},
            "Check": {{"CheckID": "web1-check", "Name": "web1", "ServiceID": "web1", "Status": "{status}"}}}}"#
    ))
}

/// `consul.rpc.query` of the server, from its Prometheus text (0 before the first
/// read; an error when the text has no tribune series at all).
async fn rpc_queries(ctl: &mut Conn) -> Result<f64> {
    let r = ctl
        .get("/v1/agent/metrics?format=prometheus")
        .await?
        .ok("GET /v1/agent/metrics?format=prometheus")?;
    let text = String::from_utf8_lossy(&r.body);
    if !text.contains("consul_rpc_queries_blocking") {
        bail!("no consul_rpc_queries_blocking in the server's Prometheus text (prometheus_retention_time set?)");
    }
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l
                .strip_prefix("consul_rpc_query_total")
                .or_else(|| l.strip_prefix("consul_rpc_query"))?;
            rest.starts_with([' ', '{'])
                .then(|| rest.rsplit(' ').next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0.0))
}

pub async fn run(o: Opts) -> Result<()> {
    let mut ctl = Conn::connect(o.addr).await?;
    let mut writer = Conn::connect(o.addr).await?;
    // Two instances: web0 always passing, web1 flipped.
    let web0 = Bytes::from_static(
        br#"{"Node": "bench-web-0", "Address": "127.0.0.1", "Service": {"ID": "web0", "Service": "web", "Port": 80}}"#,
    );
    writer
        .put("/v1/catalog/register", web0)
        .await?
        .ok("register web0")?;
    writer
        .put("/v1/catalog/register", register(true))
        .await?
        .ok("register web1")?;
    let mut watchers = Vec::new();
    for a in &o.agents {
        watchers.extend(open(*a, o.watchers, o.concurrency).await?);
    }
    progress!(
        "{} watcher connections open on {} agents; {} rounds",
        watchers.len(),
        o.agents.len(),
        o.rounds
    );
    let (mut all, mut cpu, mut served) = (vec![], vec![], vec![]);
    // Reads served from one round's start to the next: the watchers' (or the
    // agents' shared) queries parked for one flip, and the driver's own GET.
    let mut q = rpc_queries(&mut ctl).await?;
    for round in 0..o.rounds {
        let r = one_round(&o, round, &mut ctl, &mut writer, &mut watchers)
            .await
            .with_context(|| format!("round {round}"))?;
        all.push(r.last);
        cpu.push(r.cpu_us);
        let now = rpc_queries(&mut ctl).await?;
        // The first round includes the watchers' first parking.
        if round > 0 {
            served.push((now - q) as i64);
        }
        q = now;
    }
    let n = &o.name;
    let all = Summary::new(all);
    let cpu = Summary::new(cpu);
    let served = Summary::new(served);
    result(&format!("{n}_watchers"), watchers.len());
    result(&format!("{n}_rounds"), o.rounds);
    result(&format!("{n}_all_p50_us"), all.pct(50.0));
    result(&format!("{n}_all_max_us"), all.max());
    result(&format!("{n}_server_cpu_p50_us"), cpu.pct(50.0));
    result(&format!("{n}_server_cpu_max_us"), cpu.max());
    result(&format!("{n}_served_p50"), served.pct(50.0));
    result(&format!("{n}_served_max"), served.max());
    Ok(())
}

struct Round {
    /// Last watcher answered, µs after the flip's acknowledgement.
    last: i64,
    /// Server CPU from just before the flip until the last answer, µs.
    cpu_us: i64,
}

async fn one_round(
    o: &Opts,
    round: usize,
    ctl: &mut Conn,
    writer: &mut Conn,
    watchers: &mut Vec<Watcher>,
) -> Result<Round> {
    let index = ctl
        .get("/v1/health/service/web?passing")
        .await?
        .ok("GET health/service/web")?
        .index()?;
    let path = format!("/v1/health/service/web?passing&index={index}&wait=5m");
    let mut set = park_all(watchers, &path, o.settle).await?;
    if let Some(done) = set.try_join_next() {
        let (_, r, _) = done.context("watcher task panicked")?;
        bail!("a watcher answered before the flip (index {index}): {r:?}");
    }
    let cpu0 = cpu_ns(o.server_pid)?;
    // Odd rounds: critical (web1 leaves the passing answer); even: passing again.
    writer
        .put("/v1/catalog/register", register(round % 2 == 1))
        .await?
        .ok("flip web1's check")?;
    let acked = Instant::now();
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let mut last = None::<Instant>;
    while let Some(done) = tokio::time::timeout_at(deadline, set.join_next())
        .await
        .map_err(|_| anyhow!("{} watchers not answered within {IO_TIMEOUT:?}", set.len()))?
    {
        let (conn, reply, at) = done.context("watcher task panicked")?;
        let reply = reply?;
        if reply.status != 200 {
            bail!("woken GET health/service/web: HTTP {}", reply.status);
        }
        let new_index = reply
            .index
            .ok_or_else(|| anyhow!("woken GET health/service/web: no X-Consul-Index"))?;
        if new_index <= index {
            bail!("watcher answered with index {new_index}, not past {index}");
        }
        last = Some(last.map_or(at, |l: Instant| l.max(at)));
        watchers.push(conn);
    }
    let cpu1 = cpu_ns(o.server_pid)?;
    let last = last.ok_or_else(|| anyhow!("no watcher answered"))?;
    Ok(Round {
        last: signed_us(acked, last),
        cpu_us: ((cpu1 - cpu0) / 1000) as i64,
    })
}
