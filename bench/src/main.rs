//! `tribune-bench`: load generators for the blocking-query, service-discovery and
//! template figures of BENCHMARKS.md.
//!
//! Throughput (PUT/GET) is measured with `wrk` by `bench/run.sh`; this binary measures
//! what `wrk` cannot: how fast parked blocking queries are woken, how many can be
//! parked at once, and what each one costs the server. Every request goes over plain
//! HTTP/1.1 keep-alive connections (hyper's low-level client, `TCP_NODELAY`), one
//! request in flight per connection, to a loopback address only.
//!
//! # Subcommands
//!
//! * `wake --addr 127.0.0.1:PORT [--parked 10000] [--samples 200]` —
//!   writes `bench/idle/<i>` for `i < parked`, then parks one blocking query on each
//!   (its own connection: read the key to learn its index, then
//!   `GET /v1/kv/bench/idle/<i>?index=<that>&wait=5m`). Then, `samples` times: read the
//!   index of `bench/hot`, park one blocking query on it, `PUT bench/hot`, and time the
//!   watcher's answer from the PUT's acknowledgement (response received; negative
//!   when the watcher answered first) and from the moment the PUT was sent. Reports
//!   p50/p90/p99 in microseconds and the number of idle queries that returned during
//!   the run (`wake_spurious`, must be 0: nothing ever writes the idle keys).
//! * `fanout --addr ... [--watchers 1000] [--rounds 20]` — parks `watchers` blocking
//!   queries on the prefix `bench/fan/` (`?recurse&index=N&wait=5m`), writes one key
//!   under it and times the moment the *last* watcher has its answer, from the PUT's
//!   acknowledgement and from the moment it was sent. Reports p50 and max over the
//!   rounds (microseconds).
//! * `fanout-agents --addr SERVER --server-pid PID --agents A,B,...` (issue 18) —
//!   `watchers` blocking queries per agent on `health/service/web?passing`; one
//!   instance's check flips through the server's catalog each round; the last
//!   watcher's answer after the flip's acknowledgement (p50 / max), the server's CPU
//!   per flip, and the reads it served per round (`consul.rpc.query`). Its watchers
//!   are plain TCP streams read with `httparse` (`watcher`), not hyper's client: the
//!   driver shares the cores with the agents it measures.
//! * `memory --addr ... --pid PID [--parked 10000]` — writes `bench/mem/<i>`, then reads
//!   the server's `VmRSS` (`/proc/PID/status`, once it stops moving) four times:
//!   before; with `parked` connections open but idle; after one plain GET on each;
//!   with one blocking query parked on each (distinct keys); and once all are
//!   closed again. Reports KiB per parked
//!   query, and that figure split into the accepted connection, what its first
//!   request leaves behind, and the parked query itself. Run it on a fresh server:
//!   heap freed by earlier load is reused and hides the cost.
//!
//! * `catalog --addr ... --pid PID [--services 10000] [--instances 10] [--nodes 1000]
//!   [--concurrency 64] [--readers 64] [--read-s 10]` — registers `services x
//!   instances` service instances, one `PUT /v1/catalog/register` each over
//!   `concurrency` connections (instance `j` of `svc-<k>` is `svc-<k>-<j>`, on one of
//!   `nodes` nodes), reports the time, rate and latency, the agent's `VmRSS` once the
//!   catalog is in, then `readers` connections do `GET /v1/health/service/svc-<k>` for
//!   random `k` for `read-s` seconds: req/s and latency percentiles.
//! * `template-latency --addr ... --runner PATH --dir DIR [--changes 200] [--gap-ms 150]`
//!   — starts tribune-template in watch mode on one template `v={{getv "/bench/key"}}`
//!   (work files under `DIR`, which must be new or empty), writes `bench/key = i`
//!   `changes` times and times, from the PUT's acknowledgement, the destination file
//!   holding `v=i` (inotify) and the reload command starting (it writes to a FIFO).
//! * `template-cpu --addr ... --runner PATH --dir DIR [--templates 1000] [--changes 200]
//!   [--agent-pid PID]` — the runner with `templates` resources, each on its own key
//!   `bench/t<i>/k`; changes `bench/t0/k` only and reports the runner's CPU time per
//!   change (`/proc/PID/stat` ticks and its CPU clock in ns, minus its idle rate).
//!   With `--form go|handlebars` every template is the same nginx file (a key's
//!   line and an upstream over `service "web"`, 10 instances the bench registers)
//!   in that engine's syntax.
//! * `template-render [--iterations 20000] [--rounds 5]` — that nginx template
//!   rendered in-process by both engines over the same data: ns and CPU ns per
//!   render (best round), and the Go ÷ Handlebars ratio.
//! * `nginx --addr ... --nginx 127.0.0.1:PORT [--conf WORKDIR/nginx.conf] [--changes 50]
//!   [--gap-ms 300] [--poll-us 500]` — with `examples/nginx/run.sh` running: writes
//!   `nginx/worker_connections = 1000 + i` and polls `GET /tribune/knobs` on fresh
//!   connections until nginx serves the new value; with `--conf`, also when the
//!   rendered file changed.
//!
//! * `failover --kind tribune|etcd --endpoints IP:PORT[,IP:PORT...] --kill-pid PID
//!   [--warmup-ms 1000] [--timeout-ms 250] [--retry-ms 10] [--give-up-s 30]` — sequential
//!   acknowledged writes through the first endpoint (tribune `PUT /v1/kv/<key>`, etcd
//!   `POST /v3/kv/put`); after the warm-up, `kill -9` of PID (the leader) between two
//!   writes, then the time to the first acknowledged write. A failed or timed-out
//!   write moves to the next endpoint. See `failover.rs`.
//!
//! * `load --kind tribune|etcd --addr ... [--keys 1000000] [--prefixes 1000]
//!   [--value-bytes 100] [--concurrency 64]` — writes `keys` KV keys
//!   (`large/p<NNNN>/k<NNNN>`, `keys / prefixes` under each prefix) over
//!   `concurrency` connections, one write per request; time and rate.
//!
//! Common options: `--wait 5m` (the blocking queries' `wait`), `--settle-ms` (pause
//! between parking and writing), `--limit-s` (hard bound on the whole subcommand).
//! The process needs one file descriptor per parked query: raise `ulimit -n` first.
//!
//! Output: progress on stderr; results on stdout as `RESULT key=value` lines, which
//! `bench/run.sh` collects into its table.

mod agents;
mod args;
mod catalog;
mod failover;
mod fanout;
mod filewatch;
mod http;
mod kv;
mod load;
mod memory;
mod nginx;
mod park;
mod procfs;
mod render;
mod stats;
mod template;
mod wake;
mod watcher;

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::args::Args;

const USAGE: &str = "usage: tribune-bench <command> --addr 127.0.0.1:PORT [options]
  wake   [--parked 10000] [--samples 200] [--settle-ms 20]
  fanout [--watchers 1000] [--rounds 20] [--settle-ms 300]
  fanout-agents --server-pid PID --agents IP:PORT[,...] [--watchers 1000]
                [--rounds 20] [--settle-ms 1000] [--name agents]
  memory --pid PID [--parked 10000]
    (and [--wait 5m] [--concurrency 256])
  catalog --pid PID [--services 10000] [--instances 10] [--nodes 1000]
          [--concurrency 64] [--readers 64] [--read-s 10]
  template-latency --runner PATH --dir DIR [--changes 200] [--gap-ms 150]
  template-cpu --runner PATH --dir DIR [--templates 1000] [--changes 200]
               [--gap-ms 150] [--agent-pid PID] [--idle-ms 2000] [--form go|handlebars]
  template-render [--iterations 20000] [--rounds 5]
  nginx --nginx 127.0.0.1:PORT [--conf PATH] [--changes 50] [--base 1000]
        [--gap-ms 300] [--poll-us 500]
  failover --kind tribune|etcd --endpoints IP:PORT[,...] --kill-pid PID
           [--warmup-ms 1000] [--timeout-ms 250] [--retry-ms 10] [--give-up-s 30]
           (no --addr)
  load --kind tribune|etcd [--keys 1000000] [--prefixes 1000] [--value-bytes 100]
       [--concurrency 64] [--prefix large/]
  common: [--limit-s 240]";

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        bail!("{USAGE}");
    };
    if cmd == "-h" || cmd == "--help" || cmd == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let mut args = Args::parse(argv)?;
    let limit = Duration::from_secs(args.get("limit-s", 240u64)?);
    let cmd = match cmd.as_str() {
        "wake" => Cmd::Wake(wake::Opts::from_args(&mut args)?),
        "fanout" => Cmd::Fanout(fanout::Opts::from_args(&mut args)?),
        "fanout-agents" => Cmd::FanoutAgents(agents::Opts::from_args(&mut args)?),
        "memory" => Cmd::Memory(memory::Opts::from_args(&mut args)?),
        "catalog" => Cmd::Catalog(catalog::Opts::from_args(&mut args)?),
        "template-latency" => Cmd::TemplateLatency(template::LatencyOpts::from_args(&mut args)?),
        "template-cpu" => Cmd::TemplateCpu(template::CpuOpts::from_args(&mut args)?),
        "template-render" => Cmd::TemplateRender(render::Opts::from_args(&mut args)?),
        "nginx" => Cmd::Nginx(nginx::Opts::from_args(&mut args)?),
        "failover" => Cmd::Failover(failover::Opts::from_args(&mut args)?),
        "load" => Cmd::Load(load::Opts::from_args(&mut args)?),
        other => bail!("unknown subcommand {other:?}\n{USAGE}"),
    };
    args.finish()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let run = async {
            match cmd {
                Cmd::Wake(o) => wake::run(o).await,
                Cmd::Fanout(o) => fanout::run(o).await,
                Cmd::FanoutAgents(o) => agents::run(o).await,
                Cmd::Memory(o) => memory::run(o).await,
                Cmd::Catalog(o) => catalog::run(o).await,
                Cmd::TemplateLatency(o) => template::latency(o).await,
                Cmd::TemplateCpu(o) => template::cpu(o).await,
                Cmd::TemplateRender(o) => render::run(o).await,
                Cmd::Nginx(o) => nginx::run(o).await,
                Cmd::Failover(o) => failover::run(o).await,
                Cmd::Load(o) => load::run(o).await,
            }
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| anyhow!("did not finish within --limit-s {}", limit.as_secs()))?
    })
}

enum Cmd {
    Wake(wake::Opts),
    Fanout(fanout::Opts),
    FanoutAgents(agents::Opts),
    Memory(memory::Opts),
    Catalog(catalog::Opts),
    TemplateLatency(template::LatencyOpts),
    TemplateCpu(template::CpuOpts),
    TemplateRender(render::Opts),
    Nginx(nginx::Opts),
    Failover(failover::Opts),
    Load(load::Opts),
}

/// Print one machine-readable result line.
pub fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key}={value}");
}

/// Progress for humans, on stderr.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[tribune-bench] {}", format_args!($($arg)*)) };
}
