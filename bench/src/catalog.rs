//! `catalog`: a large catalog registered one instance per request, the agent's
//! memory holding it, and `GET /v1/health/service/<name>` under concurrent readers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::http::Conn;
use crate::procfs::{settled_rss, Cpu};
use crate::stats::{micros, Summary};
use crate::{progress, result};

pub struct Opts {
    addr: SocketAddr,
    pid: u32,
    services: usize,
    instances: usize,
    nodes: usize,
    concurrency: usize,
    readers: usize,
    read_for: Duration,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let o = Self {
            addr: args.addr()?,
            pid: args.required("pid")?,
            services: args.get("services", 10_000)?,
            instances: args.get("instances", 10)?,
            nodes: args.get("nodes", 1_000)?,
            concurrency: args.get("concurrency", 64)?,
            readers: args.get("readers", 64)?,
            read_for: Duration::from_secs(args.get("read-s", 10)?),
        };
        if o.services == 0 || o.instances == 0 || o.nodes == 0 {
            bail!("--services, --instances and --nodes must be at least 1");
        }
        if o.instances > o.nodes {
            bail!(
                "--instances {} > --nodes {}: two instances of a service would share a node",
                o.instances,
                o.nodes
            );
        }
        Ok(o)
    }
}

/// Instance `j` of service `k`: on node `(k * instances + j) % nodes`, so the
/// instances of one service are on distinct nodes and every node holds about
/// `services * instances / nodes` of them.
fn registration(o: &Opts, k: usize, j: usize) -> Bytes {
    let n = (k * o.instances + j) % o.nodes;
    Bytes::from(format!(
        r#"{{"Node":"node-{n}","Address":"10.{}.{}.{}","Service":{{"Service":"svc-{k}","ID":"svc-{k}-{j}","Port":{}}}}}"#,
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255,
        20_000 + j
    ))
}

pub async fn run(o: Opts) -> Result<()> {
    let o = Arc::new(o);
    let total = o.services * o.instances;
    let rss_before = settled_rss(o.pid).await?;
    progress!(
        "agent RSS before: {rss_before} KiB; registering {total} instances over {} connections",
        o.concurrency
    );

    let (reg_lat, reg_time, reg_cpu_us) = register(&o, total).await?;

    let rss_after = settled_rss(o.pid).await?;
    progress!("agent RSS with the catalog: {rss_after} KiB");

    // ---- spot checks
    let mut conn = Conn::connect(o.addr).await?;
    let listed = conn
        .get("/v1/catalog/services")
        .await?
        .ok("GET /v1/catalog/services")?;
    let listed: serde_json::Value =
        serde_json::from_slice(&listed.body).context("catalog/services JSON")?;
    let listed = listed.as_object().map(|m| m.len()).unwrap_or(0);
    for k in [0, o.services / 2, o.services - 1] {
        let n = health_entries(&mut conn, k).await?;
        if n != o.instances {
            bail!(
                "GET /v1/health/service/svc-{k}: {n} entries, want {}",
                o.instances
            );
        }
    }

    let (read_lat, wrong, read_time) = read(&o).await?;
    let reads = read_lat.len();
    let rss_read = settled_rss(o.pid).await?;

    result("catalog_services", o.services);
    result("catalog_instances", total);
    result("catalog_nodes", o.nodes);
    result("catalog_concurrency", o.concurrency);
    result(
        "catalog_register_s",
        format!("{:.2}", reg_time.as_secs_f64()),
    );
    result(
        "catalog_register_rps",
        format!("{:.0}", total as f64 / reg_time.as_secs_f64()),
    );
    Summary::new(reg_lat).report("catalog_register", "us");
    result(
        "catalog_register_cpu_us_per",
        format!("{:.1}", reg_cpu_us as f64 / total as f64),
    );
    result("catalog_rss_before_kib", rss_before);
    result("catalog_rss_kib", rss_after);
    result(
        "catalog_rss_mb",
        format!("{:.1}", rss_after as f64 / 1024.0),
    );
    result(
        "catalog_bytes_per_instance",
        format!(
            "{:.0}",
            (rss_after as f64 - rss_before as f64) * 1024.0 / total as f64
        ),
    );
    result("catalog_services_listed", listed);
    result("catalog_readers", o.readers);
    result("catalog_reads", reads);
    result(
        "catalog_read_rps",
        format!("{:.0}", reads as f64 / read_time.as_secs_f64()),
    );
    Summary::new(read_lat).report("catalog_read", "us");
    result("catalog_read_wrong", wrong);
    result("catalog_rss_after_reads_kib", rss_read);
    if wrong > 0 {
        bail!(
            "{wrong} sampled health answers did not list {} instances",
            o.instances
        );
    }
    if listed < o.services {
        return Err(anyhow!(
            "/v1/catalog/services lists {listed} services, want at least {}",
            o.services
        ));
    }
    Ok(())
}

/// Register every instance over `o.concurrency` connections: the
/// latencies, the time taken and the agent's CPU time.
async fn register(o: &Arc<Opts>, total: usize) -> Result<(Vec<i64>, Duration, u64)> {
    let cpu0 = Cpu::read(o.pid)?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..o.concurrency.clamp(1, total) {
        let (o, next) = (o.clone(), next.clone());
        set.spawn(async move {
            let mut conn = Conn::connect(o.addr).await?;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (k, j) = (i / o.instances, i % o.instances);
                let t = Instant::now();
                conn.put("/v1/catalog/register", registration(&o, k, j))
                    .await?
                    .written(&format!("register svc-{k}-{j}"))?;
                lat.push(micros(t.elapsed()));
                if (i + 1) % (total / 10).max(1) == 0 {
                    progress!("registered {}/{total} in {:.1?}", i + 1, started.elapsed());
                }
            }
            anyhow::Ok(lat)
        });
    }
    let mut reg_lat = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        reg_lat.extend(r.context("register task panicked")??);
    }
    let reg_time = started.elapsed();
    let cpu1 = Cpu::read(o.pid)?;
    let (_, reg_cpu_us) = cpu1.since(&cpu0);
    progress!("registered {total} instances in {reg_time:.2?}");
    Ok((reg_lat, reg_time, reg_cpu_us))
}

/// `o.readers` readers of random services for `o.read_for`: the
/// latencies, the sampled answers that were wrong, the time taken.
async fn read(o: &Arc<Opts>) -> Result<(Vec<i64>, usize, Duration)> {
    progress!("{} readers for {:?}", o.readers, o.read_for);
    let deadline = Instant::now() + o.read_for;
    let read_started = Instant::now();
    let mut set = JoinSet::new();
    for r in 0..o.readers.max(1) {
        let o = o.clone();
        set.spawn(async move {
            let mut conn = Conn::connect(o.addr).await?;
            let mut rng = XorShift::new(r as u64 + 1);
            let mut lat = Vec::new();
            let mut wrong = 0usize;
            while Instant::now() < deadline {
                let k = (rng.next() % o.services as u64) as usize;
                let t = Instant::now();
                let reply = conn.get(&format!("/v1/health/service/svc-{k}")).await?;
                lat.push(micros(t.elapsed()));
                let reply = reply.ok(&format!("GET /v1/health/service/svc-{k}"))?;
                // Parse one answer in 64 (the client shares the cores with the agent).
                if lat.len() % 64 == 1 {
                    let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
                    if v.as_array().map(|a| a.len()) != Some(o.instances) {
                        wrong += 1;
                    }
                }
            }
            anyhow::Ok((lat, wrong))
        });
    }
    let mut read_lat = Vec::new();
    let mut wrong = 0;
    while let Some(r) = set.join_next().await {
        let (l, w) = r.context("reader task panicked")??;
        read_lat.extend(l);
        wrong += w;
    }
    let read_time = read_started.elapsed();
    Ok((read_lat, wrong, read_time))
}

async fn health_entries(conn: &mut Conn, k: usize) -> Result<usize> {
    let path = format!("/v1/health/service/svc-{k}");
    let r = conn.get(&path).await?.ok(&path)?;
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).with_context(|| format!("{path}: JSON"))?;
    v.as_array()
        .map(|a| a.len())
        .ok_or_else(|| anyhow!("{path}: not an array"))
}

/// xorshift64*: enough to spread reads, no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
