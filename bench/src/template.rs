//! `template-latency` and `template-cpu`: tribune-template in watch mode against the
//! agent, driven by KV writes. Both spawn the runner themselves (in a fresh work
//! directory they lay out: `confdir/conf.d/*.toml`, `confdir/templates/*.tmpl`,
//! `out/*.conf`, `runner.log`) and stop it at the end.
//!
//! Writes are paced (`--gap-ms`, default 150): the runner, like consul-template, lets
//! at least 100 ms pass between two blocking queries of one dependency, so a write
//! sooner than that after the previous one would wait for the next query.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::args::Args;
use crate::filewatch::{FifoLines, FileWatch};
use crate::http::Conn;
use crate::procfs::{rss_kib, Cpu};
use crate::stats::{micros, signed_us, Summary};
use crate::{progress, result};

/// How long one change may take to show.
const CHANGE_LIMIT: Duration = Duration::from_secs(10);
/// How long the runner may take to render everything at start.
const START_LIMIT: Duration = Duration::from_secs(120);

struct Common {
    addr: SocketAddr,
    runner: PathBuf,
    dir: PathBuf,
    changes: usize,
    gap: Duration,
}

impl Common {
    fn from_args(args: &mut Args) -> Result<Self> {
        let c = Self {
            addr: args.addr()?,
            runner: args.required("runner")?,
            dir: args.required("dir")?,
            changes: args.get("changes", 200)?,
            gap: Duration::from_millis(args.get("gap-ms", 150)?),
        };
        if c.changes == 0 {
            bail!("--changes must be at least 1");
        }
        if !c.dir.is_absolute() {
            bail!("--dir must be an absolute path (it goes into the resources)");
        }
        let s = c.dir.to_string_lossy();
        if s.contains(|ch: char| ch == '\'' || ch == '"' || ch.is_whitespace()) {
            bail!("--dir {s:?}: no quotes or blanks, please (it goes into shell commands)");
        }
        Ok(c)
    }

    /// Lay out `dir` (which must not exist, or be empty).
    fn layout(&self) -> Result<()> {
        if self.dir.exists()
            && std::fs::read_dir(&self.dir)
                .with_context(|| format!("reading {}", self.dir.display()))?
                .next()
                .is_some()
        {
            bail!("--dir {} is not empty", self.dir.display());
        }
        for d in ["confdir/conf.d", "confdir/templates", "out"] {
            std::fs::create_dir_all(self.dir.join(d))
                .with_context(|| format!("creating {}", self.dir.join(d).display()))?;
        }
        Ok(())
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.join("out").join(name)
    }

    /// One confd resource `name` with template text `tmpl`.
    fn resource(&self, name: &str, tmpl: &str, keys: &str, reload: Option<&str>) -> Result<()> {
        let toml = format!(
            "[template]\nsrc = \"{name}.tmpl\"\ndest = \"{}\"\nkeys = [\"{keys}\"]\n{}",
            self.out(&format!("{name}.conf")).display(),
            reload
                .map(|r| format!("reload_cmd = '{r}'\n"))
                .unwrap_or_default()
        );
        let c = self.dir.join("confdir/conf.d").join(format!("{name}.toml"));
        std::fs::write(&c, toml).with_context(|| format!("writing {}", c.display()))?;
        let t = self
            .dir
            .join("confdir/templates")
            .join(format!("{name}.tmpl"));
        std::fs::write(&t, tmpl).with_context(|| format!("writing {}", t.display()))
    }

    /// Sleep until `gap` after `last`.
    async fn pace(&self, last: Option<Instant>) {
        if let Some(t) = last {
            let due = t + self.gap;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
    }
}

/// The runner process; killed when dropped.
struct Runner {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Runner {
    /// Start it; its command line is reported as `RESULT {tag}_runner_cmd`.
    fn spawn(c: &Common, tag: &str) -> Result<Self> {
        let confdir = c.dir.join("confdir");
        let log = c.dir.join("runner.log");
        let args = [
            "-confdir".to_string(),
            confdir.display().to_string(),
            "-node".to_string(),
            c.addr.to_string(),
            "-log-level".to_string(),
            "warn".to_string(),
        ];
        result(
            &format!("{tag}_runner_cmd"),
            format!("{} {}", c.runner.display(), args.join(" ")),
        );
        let logf =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&c.runner)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", c.runner.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("runner exited at once"))?;
        Ok(Self { child, pid, log })
    }

    /// Fail (with the end of its log) if the runner has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "tribune-template exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
        Ok(())
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Lines of its log (warnings and errors: it runs with -log-level warn).
    fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

async fn put(conn: &mut Conn, key: &str, value: String) -> Result<()> {
    conn.put(&format!("/v1/kv/{key}"), Bytes::from(value))
        .await?
        .written(&format!("PUT {key}"))
}

// ------------------------------------------------------------------ latency

pub struct LatencyOpts {
    c: Common,
}

impl LatencyOpts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        Ok(Self {
            c: Common::from_args(args)?,
        })
    }
}

const LAT_KEY: &str = "bench/key";

/// One template `v={{getv "/bench/key"}}`; its reload command reads the file it
/// was started for with the shell's own `read` and writes that line to a FIFO the
/// bench reads: no process besides `sh` itself, so the line arrives a fork+exec
/// of `sh` after the runner started the command, and it is timestamped on the
/// bench's monotonic clock like the PUT (no wall-clock comparison, no mtime
/// granularity).
pub async fn latency(o: LatencyOpts) -> Result<()> {
    let c = &o.c;
    c.layout()?;
    let dest = c.out("bench.conf");
    let fifo_path = c.dir.join("reload.fifo");
    let reload_cmd = format!(
        "read -r v < {}; echo \"$v\" > {}",
        dest.display(),
        fifo_path.display()
    );
    c.resource(
        "bench",
        "v={{getv \"/bench/key\"}}\n",
        "/bench",
        Some(&reload_cmd),
    )?;
    result("template_reload_cmd", &reload_cmd);

    let limit = CHANGE_LIMIT * (c.changes as u32 + 10) + START_LIMIT;
    let mut fifo = FifoLines::create(&fifo_path, limit)?;
    let mut watch = FileWatch::start(&dest, limit)?;
    let mut conn = Conn::connect(c.addr).await?;
    put(&mut conn, LAT_KEY, "0".into()).await?;

    let mut runner = Runner::spawn(c, "template")?;
    let started = Instant::now();
    watch
        .wait_for(START_LIMIT, |s| s.trim() == "v=0")
        .await
        .context("first render")?;
    progress!("first render after {:.1?}", started.elapsed());
    // The first write runs the reload command too; let it finish.
    let _ = fifo.next(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fifo.drain();
    runner.alive()?;

    let n = c.changes;
    let (mut written, mut written_sent, mut reload, mut reload_sent, mut reload_after, mut rtt) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut stale_versions = 0;
    let mut stale_reloads = 0;
    let mut last = None;
    for i in 1..=n {
        c.pace(last).await;
        let want = format!("v={i}");
        let sent = Instant::now();
        last = Some(sent);
        put(&mut conn, LAT_KEY, i.to_string()).await?;
        let acked = Instant::now();
        let (snap, skipped) = match watch.wait_for(CHANGE_LIMIT, |s| s.trim() == want).await {
            Ok(x) => x,
            Err(e) => {
                runner.alive()?;
                return Err(e.context(format!("change {i}")));
            }
        };
        stale_versions += skipped;
        // Reload lines name the version the command read; older ones are stale.
        let reloaded = loop {
            let (at, line) = fifo
                .next(CHANGE_LIMIT)
                .await
                .with_context(|| format!("reload for change {i}"))?;
            if line == want {
                break at;
            }
            stale_reloads += 1;
            if stale_reloads > n {
                bail!("reload lines do not match the changes (last {line:?}, want {want:?})");
            }
        };
        written.push(signed_us(acked, snap.at));
        written_sent.push(micros(snap.at - sent));
        reload.push(signed_us(acked, reloaded));
        reload_sent.push(micros(reloaded - sent));
        reload_after.push(signed_us(snap.at, reloaded));
        rtt.push(micros(acked - sent));
        if i % 50 == 0 {
            progress!("{i}/{n} changes");
        }
    }
    runner.alive()?;
    let log_lines = runner.log_lines();
    runner.stop().await;
    let calib = sh_overhead(&reload_cmd, &mut fifo, 50).await?;

    result("template_changes", n);
    result("template_gap_ms", c.gap.as_millis());
    Summary::new(written).report("template_written", "us");
    Summary::new(written_sent).report("template_written_from_sent", "us");
    Summary::new(reload).report("template_reload", "us");
    Summary::new(reload_sent).report("template_reload_from_sent", "us");
    Summary::new(reload_after).report("template_reload_after_write", "us");
    Summary::new(rtt).report("template_put_rtt", "us");
    // What the reload command's own start-up adds (sh fork+exec to its `echo`),
    // measured the way the runner starts it, with the runner stopped.
    Summary::new(calib).report("template_sh_to_fifo", "us");
    result("template_stale_versions", stale_versions);
    result("template_stale_reloads", stale_reloads);
    result("template_runner_log_lines", log_lines);
    Ok(())
}

/// Time from spawning `sh -c cmd` (as the runner does: own process group, output
/// piped) to its line on the FIFO, `n` times.
async fn sh_overhead(cmd: &str, fifo: &mut FifoLines, n: usize) -> Result<Vec<i64>> {
    fifo.drain();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("spawning sh")?;
        let (at, _) = fifo.next(CHANGE_LIMIT).await?;
        out.push(micros(at - t));
        tokio::time::timeout(CHANGE_LIMIT, child.wait())
            .await
            .map_err(|_| anyhow!("sh -c {cmd:?} did not exit"))??;
    }
    Ok(out)
}

// ------------------------------------------------------------------ cpu

pub struct CpuOpts {
    c: Common,
    templates: usize,
    agent_pid: Option<u32>,
    idle: Duration,
    /// `--form go|handlebars`: every template is the nginx upstream one, in
    /// this engine's syntax, over `service "web"` (`NGINX_INSTANCES`
    /// instances) and its own key; else the one-line `v=` template.
    form: Option<Form>,
}

/// The engine syntax of the nginx template.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Go,
    Handlebars,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Go => "go",
            Form::Handlebars => "handlebars",
        }
    }

    /// The same nginx file in either syntax: one line from the template's
    /// key, an upstream from the healthy `web` instances. Both render the
    /// same bytes.
    pub fn template(self, key: &str) -> String {
        let server =
            "}\n\nserver {\n  listen 80;\n  location / {\n    proxy_pass http://backend;\n  }\n}\n";
        match self {
            Form::Go => format!(
                "worker_connections {{{{ getv \"/{key}\" }}}};\nupstream backend {{\n{{{{- range service \"web\" }}}}\n  server {{{{ .Address }}}}:{{{{ .Port }}}};\n{{{{- end }}}}\n{server}"
            ),
            Form::Handlebars => format!(
                "worker_connections {{{{getv \"/{key}\"}}}};\nupstream backend {{\n{{{{#each (service \"web\")}}}}\n  server {{{{Address}}}}:{{{{Port}}}};\n{{{{/each}}}}\n{server}"
            ),
        }
    }
}

/// Instances of `web` registered for the nginx template.
const NGINX_INSTANCES: usize = 10;

impl CpuOpts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let c = Common::from_args(args)?;
        let templates = args.get("templates", 1000)?;
        let agent_pid = match args.get("agent-pid", 0u32)? {
            0 => None,
            p => Some(p),
        };
        let idle = Duration::from_millis(args.get("idle-ms", 2000)?);
        let form = match args.get("form", String::new())?.as_str() {
            "" => None,
            "go" => Some(Form::Go),
            "handlebars" | "hbs" => Some(Form::Handlebars),
            other => bail!("--form {other:?}: go or handlebars"),
        };
        if templates == 0 {
            bail!("--templates must be at least 1");
        }
        Ok(Self {
            c,
            templates,
            agent_pid,
            idle,
            form,
        })
    }
}

/// Register the `web` instances (no checks: passing) and wait for the
/// catalog to list them all.
async fn register_web(addr: SocketAddr) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    for j in 1..=NGINX_INSTANCES {
        let body = format!(
            r#"{{"Name":"web","ID":"web{j}","Address":"10.0.0.{j}","Port":{}}}"#,
            8000 + j
        );
        conn.put("/v1/agent/service/register", Bytes::from(body))
            .await?
            .ok("register web")?;
    }
    let t = Instant::now();
    loop {
        let r = conn.get("/v1/health/service/web").await?.ok("health web")?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("health web")?;
        if v.as_array().map_or(0, |a| a.len()) == NGINX_INSTANCES {
            return Ok(());
        }
        if t.elapsed() > START_LIMIT {
            bail!("web instances not in the catalog after {START_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The line of the file that shows change `i`.
fn first_line_is(s: &str, want: &str) -> bool {
    s.lines().next().map(str::trim) == Some(want)
}

fn cpu_key(i: usize) -> String {
    format!("bench/t{i}/k")
}

/// The work dir of a `template-cpu` run: its resources, the `web`
/// instances for the nginx form, and every key written (32 connections).
async fn lay_out_cpu(o: &CpuOpts) -> Result<()> {
    let c = &o.c;
    let n = o.templates;
    c.layout()?;
    if o.form.is_some() {
        register_web(c.addr).await?;
    }
    for i in 0..n {
        let text = match o.form {
            None => format!("v={{{{getv \"/{}\"}}}}\n", cpu_key(i)),
            Some(f) => f.template(&cpu_key(i)),
        };
        c.resource(&format!("t{i}"), &text, &format!("/bench/t{i}"), None)?;
    }
    // Every key exists before the runner starts (32 connections).
    let started = Instant::now();
    let mut set = JoinSet::new();
    for w in 0..32.min(n) {
        let addr = c.addr;
        set.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            for i in (w..n).step_by(32) {
                put(&mut conn, &cpu_key(i), "0".into()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("writer task panicked")??;
    }
    progress!("{n} keys written in {:.1?}", started.elapsed());
    Ok(())
}

/// Wait until the runner has rendered `n` files into `out_dir`.
async fn all_rendered(
    runner: &mut Runner,
    out_dir: &Path,
    n: usize,
    started: Instant,
) -> Result<()> {
    loop {
        runner.alive()?;
        let done = std::fs::read_dir(out_dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".conf"))
            .count();
        if done >= n {
            return Ok(());
        }
        if started.elapsed() > START_LIMIT {
            bail!("only {done}/{n} files rendered after {START_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `templates` resources, resource `t<i>` watching `/bench/t<i>` and rendering
/// `v={{getv "/bench/t<i>/k"}}`; writes go to `bench/t0/k` only, so exactly one
/// template depends on each change. Reports the runner's CPU time per change.
pub async fn cpu(o: CpuOpts) -> Result<()> {
    let c = &o.c;
    let n = o.templates;
    let tag = match o.form {
        None => format!("template_cpu_{n}"),
        Some(f) => format!("template_nginx_{}_{n}", f.name()),
    };
    lay_out_cpu(&o).await?;
    // What the file's first line holds after change `i`.
    let shows = |i: usize| match o.form {
        None => format!("v={i}"),
        Some(_) => format!("worker_connections {i};"),
    };

    let dest0 = c.out("t0.conf");
    let limit = CHANGE_LIMIT * (c.changes as u32 + 10) + START_LIMIT;
    let mut watch = FileWatch::start(&dest0, limit)?;
    let mut runner = Runner::spawn(c, &tag)?;
    let started = Instant::now();
    all_rendered(&mut runner, &c.dir.join("out"), n, started).await?;
    let startup = started.elapsed();
    let startup_cpu = Cpu::read(runner.pid)?;
    progress!("{n} files rendered after {startup:.2?}");
    let want0 = shows(0);
    let (snap, _) = watch
        .wait_for(CHANGE_LIMIT, |s| first_line_is(s, &want0))
        .await?;
    if o.form.is_some() {
        let servers = snap.contents.matches("  server 10.0.0.").count();
        if servers != NGINX_INSTANCES {
            bail!(
                "t0.conf has {servers} upstream servers, not {NGINX_INSTANCES}:\n{}",
                snap.contents
            );
        }
        result(&format!("{tag}_bytes"), snap.contents.len());
    }

    // Settle, then the idle rate (parked blocking queries only).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let i0 = Cpu::read(runner.pid)?;
    let ai0 = o.agent_pid.map(Cpu::read).transpose()?;
    let it = Instant::now();
    tokio::time::sleep(o.idle).await;
    let (_, idle_us) = Cpu::read(runner.pid)?.since(&i0);
    let idle_s = it.elapsed().as_secs_f64();
    let idle_per_s = idle_us as f64 / idle_s;
    let agent_idle_per_s = match (ai0, o.agent_pid) {
        (Some(a), Some(pid)) => Cpu::read(pid)?.since(&a).1 as f64 / idle_s,
        _ => 0.0,
    };

    let mut conn = Conn::connect(c.addr).await?;
    let r0 = Cpu::read(runner.pid)?;
    let a0 = o.agent_pid.map(Cpu::read).transpose()?;
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(c.changes);
    let mut last = None;
    for i in 1..=c.changes {
        c.pace(last).await;
        let want = shows(i);
        let sent = Instant::now();
        last = Some(sent);
        put(&mut conn, &cpu_key(0), i.to_string()).await?;
        let acked = Instant::now();
        let (snap, _) = match watch
            .wait_for(CHANGE_LIMIT, |s| first_line_is(s, &want))
            .await
        {
            Ok(x) => x,
            Err(e) => {
                runner.alive()?;
                return Err(e.context(format!("change {i}")));
            }
        };
        lat.push(signed_us(acked, snap.at));
    }
    let r1 = Cpu::read(runner.pid)?;
    let a1 = o.agent_pid.map(Cpu::read).transpose()?;
    let window = t0.elapsed();
    runner.alive()?;
    let rss = rss_kib(runner.pid)?;
    let uptime = started.elapsed();
    let log_lines = runner.log_lines();
    runner.stop().await;

    let k = c.changes as f64;
    let (ticks_us, ns_us) = r1.since(&r0);
    let net = (ns_us as f64 - idle_per_s * window.as_secs_f64()).max(0.0);
    result(&format!("{tag}_templates"), n);
    result(&format!("{tag}_changes"), c.changes);
    result(&format!("{tag}_startup_ms"), startup.as_millis());
    result(&format!("{tag}_startup_cpu_ms"), startup_cpu.ns / 1_000_000);
    result(
        &format!("{tag}_window_s"),
        format!("{:.1}", window.as_secs_f64()),
    );
    result(
        &format!("{tag}_runner_uptime_s"),
        format!("{:.1}", uptime.as_secs_f64()),
    );
    // /proc/PID/stat utime+stime (10 ms ticks) and the process CPU clock (ns).
    result(
        &format!("{tag}_stat_us_per_change"),
        format!("{:.0}", ticks_us as f64 / k),
    );
    result(&format!("{tag}_stat_ticks"), r1.ticks - r0.ticks);
    result(
        &format!("{tag}_us_per_change"),
        format!("{:.1}", ns_us as f64 / k),
    );
    result(&format!("{tag}_idle_us_per_s"), format!("{idle_per_s:.1}"));
    result(
        &format!("{tag}_net_us_per_change"),
        format!("{:.1}", net / k),
    );
    if let (Some(a0), Some(a1)) = (a0, a1) {
        let (_, a_us) = a1.since(&a0);
        let a_net = (a_us as f64 - agent_idle_per_s * window.as_secs_f64()).max(0.0);
        result(
            &format!("{tag}_agent_us_per_change"),
            format!("{:.1}", a_us as f64 / k),
        );
        result(
            &format!("{tag}_agent_idle_us_per_s"),
            format!("{agent_idle_per_s:.1}"),
        );
        result(
            &format!("{tag}_agent_net_us_per_change"),
            format!("{:.1}", a_net / k),
        );
    }
    result(&format!("{tag}_rss_kib"), rss);
    Summary::new(lat).report(&format!("{tag}_written"), "us");
    result(&format!("{tag}_runner_log_lines"), log_lines);
    Ok(())
}
