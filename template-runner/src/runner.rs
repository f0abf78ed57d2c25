//! The daemon: load resources, render, write, run commands — and then
//! re-render exactly the templates whose dependencies changed, debounced
//! per template. SIGHUP and edits in conf.d/templates reload resources;
//! SIGINT/SIGTERM stop cleanly.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::command;
use crate::dependency::Dependency;
use crate::exec::{Child, ExecSpec};
use crate::render::{DataStore, Outcome, RenderSettings, Renderer};
use crate::resource::{self, Resource, Wait};
use crate::retry::{Seen, WriteRetry};
use crate::signals::{Event, Signals};
use crate::watch::{self, Notice, Watches};
use crate::write::{self, Target, WriteError, Written};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Resource(#[from] resource::ResourceError),
    #[error("{0}")]
    Render(#[from] crate::render::RenderError),
    #[error(
        "no template resources: put *.toml files with a [template] table in {0}, or pass -template"
    )]
    Nothing(String),
    #[error("signals: {0}")]
    Signal(std::io::Error),
    #[error("giving up: {0}")]
    GaveUp(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Once,
    Watch,
    Interval(Duration),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub confdir: PathBuf,
    /// `-config-file`: when it sits in conf.d it is a resource like the
    /// others if it has a `[template]` table, and skipped silently if not.
    pub config_file: Option<PathBuf>,
    /// Re-read on reload (SIGHUP or an edit in conf.d) for `prefix`/`wait`.
    pub config_source: Option<crate::cli::ConfigSource>,
    pub prefix: String,
    pub templates: Vec<String>,
    pub mode: Mode,
    pub noop: bool,
    pub sync_only: bool,
    pub dry: bool,
    pub keep_stage: bool,
    pub wait: Option<Wait>,
    pub exec: Option<ExecSpec>,
    /// Templates from consul-template `-config` files.
    pub ct_templates: Vec<Resource>,
    /// Re-read on reload for the templates and `wait`.
    pub ct_source: Option<CtSource>,
    /// consul-template's `retry { attempts backoff max_backoff }`.
    pub retry: Option<watch::QueryRetry>,
    /// `plugin` may run programs.
    pub plugins: bool,
    pub pid_file: Option<PathBuf>,
    /// consul-template's `reload_signal` (besides SIGHUP) and `kill_signal`
    /// (besides SIGINT and SIGTERM).
    pub reload_signal: Option<Signal>,
    pub kill_signal: Option<Signal>,
}

/// consul-template `-config` paths, and the `-wait` flag that beats them.
#[derive(Clone, Debug)]
pub struct CtSource {
    pub paths: Vec<PathBuf>,
    pub flag_wait: Option<Wait>,
}

struct Tpl {
    res: Resource,
    name: String,
    deps: BTreeSet<Dependency>,
    /// (first change, last change, what changed) while a render is pending.
    dirty: Option<(Instant, Instant, BTreeSet<String>)>,
    ok: bool,
    /// Set while the destination cannot be written: when to try again.
    retry: Option<WriteRetry>,
    /// What its last render waited for (logged when it changes).
    waiting: BTreeSet<Dependency>,
}

impl Tpl {
    fn declared(&self) -> BTreeSet<Dependency> {
        self.res
            .keys
            .iter()
            .map(|k| Dependency::KvPrefix(k.clone()))
            .collect()
    }
    fn mark(&mut self, why: String) {
        let now = Instant::now();
        match &mut self.dirty {
            Some((_, last, whys)) => {
                *last = now;
                whys.insert(why);
            }
            None => self.dirty = Some((now, now, BTreeSet::from([why]))),
        }
    }
}

/// Load resources and compile their templates.
fn load(opts: &Options, renderer: &mut Renderer, old: &[Tpl]) -> Result<Vec<Tpl>, RunError> {
    let mut resources =
        resource::load_dir(&opts.confdir, &opts.prefix, opts.config_file.as_deref())?;
    resources.extend(opts.ct_templates.iter().cloned());
    for t in &opts.templates {
        resources.push(Resource::from_flag(t, &opts.prefix)?);
    }
    if resources.is_empty() {
        return Err(RunError::Nothing(
            opts.confdir.join("conf.d").display().to_string(),
        ));
    }
    // Compile into fresh names first, so a broken edit leaves the old set intact.
    let generation = rand::random::<u32>();
    let mut out = Vec::new();
    for (i, res) in resources.into_iter().enumerate() {
        let name = format!("{}#{generation}-{i}", res.src.display());
        let loaded = match &res.contents {
            Some(text) => {
                renderer.load_str(&name, &res.src.display().to_string(), text, &res.options)
            }
            None => renderer.load(&name, &res.src, &res.options),
        };
        if let Err(e) = loaded {
            for t in &out {
                let t: &Tpl = t;
                renderer.unload(&t.name);
            }
            return Err(e.into());
        }
        let prev = old.iter().find(|o| o.res == res);
        let deps = prev.map(|o| o.deps.clone()).unwrap_or_default();
        // A failing write stays one run of failures across a reload.
        let retry = prev.and_then(|o| o.retry.clone());
        let mut t = Tpl {
            res,
            name,
            deps,
            dirty: None,
            ok: false,
            retry,
            waiting: BTreeSet::new(),
        };
        t.deps.extend(t.declared());
        out.push(t);
    }
    for o in old {
        renderer.unload(&o.name);
    }
    Ok(out)
}

pub struct Runner {
    opts: Options,
    backend: Arc<Backend>,
    store: Arc<DataStore>,
    renderer: Renderer,
    tpls: Vec<Tpl>,
    /// Dependencies change only through a render or a reload: the set of
    /// watches and the index below are recomputed then, not per change.
    deps_dirty: bool,
    /// Which templates use each dependency (so a change touches only those).
    users: std::collections::HashMap<Dependency, Vec<usize>>,
}

/// One written (or unchanged) template, logged after its commands ran.
struct Rendered {
    src: String,
    dest: String,
    trigger: String,
    changed: bool,
    check: Option<String>,
    reload: Option<String>,
    took: Duration,
}

/// What one render pass did.
#[derive(Default)]
struct Pass {
    changed: usize,
    failed: usize,
}

impl Runner {
    pub fn new(opts: Options, backend: Backend) -> Result<Self, RunError> {
        let store = Arc::new(DataStore::default());
        let mut renderer = Renderer::with_settings(
            store.clone(),
            RenderSettings {
                plugins: opts.plugins,
            },
        );
        let tpls = load(&opts, &mut renderer, &[])?;
        Ok(Self {
            opts,
            backend: Arc::new(backend),
            store,
            renderer,
            tpls,
            deps_dirty: true,
            users: std::collections::HashMap::new(),
        })
    }

    fn target<'a>(&self, t: &'a Tpl) -> Target<'a> {
        Target {
            dest: &t.res.dest,
            mode: t.res.mode,
            owner: t.res.owner,
            check_cmd: if self.opts.sync_only {
                None
            } else {
                t.res.check_cmd.as_deref()
            },
            backup: t.res.backup,
            keep_stage: self.opts.keep_stage,
            command_timeout: t.res.command_timeout,
            create_dirs: t.res.create_dirs,
        }
    }

    /// Render the templates at `which`, write what changed, then run each
    /// distinct reload command once, in order. One log line per template
    /// (src, dest, trigger, changed, commands with exit codes and durations)
    /// once its commands have run.
    async fn pass(&mut self, which: &[usize]) -> Pass {
        let mut pass = Pass::default();
        let mut commands: Vec<(String, Duration)> = Vec::new();
        let mut written: Vec<Rendered> = Vec::new();
        for &i in which {
            let started = Instant::now();
            let trigger = match self.tpls[i].dirty.take() {
                Some((_, _, w)) => w.into_iter().collect::<Vec<_>>().join(","),
                None if self.tpls[i].retry.is_some() => "retry".into(),
                None => "startup".into(),
            };
            let (outcome, used) = {
                let t = &self.tpls[i];
                self.renderer.render(&t.name, &t.res.prefix, &t.res.keys)
            };
            let t = &mut self.tpls[i];
            let deps: BTreeSet<Dependency> = t.declared().into_iter().chain(used).collect();
            if deps != t.deps {
                t.deps = deps;
                self.deps_dirty = true;
            }
            let dest = t.res.dest.display().to_string();
            let src = t.res.src.display().to_string();
            let text = match outcome {
                Outcome::Missing(m) => {
                    if let Some(r) = &mut t.retry {
                        r.postpone();
                    }
                    // Data that was fetched and is still waited for (a
                    // consul-template `key` not there yet) is worth a line.
                    let waited: BTreeSet<Dependency> =
                        m.iter().filter(|d| self.store.has(d)).cloned().collect();
                    if !waited.is_empty() && waited != t.waiting {
                        let w: Vec<String> = waited.iter().map(ToString::to_string).collect();
                        tracing::info!(template = %src, dest = %dest, waiting_for = %w.join(","), "waiting for data; not rendered");
                    }
                    t.waiting = waited;
                    crate::metrics::render(&src, "waiting", None);
                    let m: Vec<String> = m.iter().map(ToString::to_string).collect();
                    tracing::debug!(template = %src, dest = %dest, waiting_for = %m.join(","), "render deferred: data not fetched yet");
                    continue;
                }
                Outcome::Failed(e) => {
                    crate::metrics::render(&src, "failed", None);
                    crate::metrics::failure(&src, "render");
                    pass.failed += 1;
                    t.ok = false;
                    t.retry = None;
                    tracing::error!(template = %src, dest = %dest, trigger = %trigger, error = %e, "render failed; destination left as it was");
                    continue;
                }
                Outcome::Rendered(text) => {
                    t.waiting.clear();
                    text
                }
            };
            let t = &self.tpls[i];
            if self.opts.dry {
                println!("> {dest}\n{text}");
                self.tpls[i].ok = true;
                continue;
            }
            if self.opts.noop {
                let old = std::fs::read_to_string(&t.res.dest).unwrap_or_default();
                if old != text {
                    let diff = similar::TextDiff::from_lines(&old, &text)
                        .unified_diff()
                        .header(&dest, &format!("{dest} (rendered)"))
                        .to_string();
                    tracing::info!(template = %src, dest = %dest, "noop: would change\n{diff}");
                } else {
                    tracing::info!(template = %src, dest = %dest, "noop: unchanged");
                }
                self.tpls[i].ok = true;
                continue;
            }
            let target = self.target(t);
            let result = write::write(&target, text.as_bytes()).await;
            let reload = t.res.reload_cmd.clone();
            let timeout = t.res.command_timeout;
            let took = started.elapsed();
            let settled = self.settle(i, result, &trigger, took);
            let outcome = match &settled {
                Some(Written::Changed { .. }) => "changed",
                Some(Written::Unchanged) => "unchanged",
                None => "failed",
            };
            crate::metrics::render(&src, outcome, Some(took));
            match settled {
                Some(w) => {
                    crate::metrics::mark_fresh(&src);
                    self.tpls[i].ok = true;
                    let mut r = Rendered {
                        src,
                        dest,
                        trigger,
                        changed: false,
                        check: None,
                        reload: None,
                        took,
                    };
                    if let Written::Changed { check } = w {
                        pass.changed += 1;
                        r.changed = true;
                        r.check = check.map(|(code, d)| {
                            crate::metrics::command("check", d);
                            format!("check:exit {code} {}ms", d.as_millis())
                        });
                        if let Some(c) = reload.filter(|_| !self.opts.sync_only) {
                            if !commands.iter().any(|(x, _)| *x == c) {
                                commands.push((c.clone(), timeout));
                            }
                            r.reload = Some(c);
                        }
                    }
                    written.push(r);
                }
                None => {
                    crate::metrics::failure(&src, "write");
                    pass.failed += 1
                }
            }
        }
        pass.failed += run_reloads(commands, written).await;
        pass
    }

    /// Log a write's outcome and keep template `i`'s retry state: a failed
    /// write is tried again with backoff, each distinct cause logged once;
    /// a recovery is logged. The write's result when it succeeded.
    fn settle(
        &mut self,
        i: usize,
        result: Result<Written, WriteError>,
        trigger: &str,
        took: Duration,
    ) -> Option<Written> {
        let once = self.opts.mode == Mode::Once;
        let t = &mut self.tpls[i];
        let (src, dest) = (t.res.src.display(), t.res.dest.display());
        let ms = took.as_millis() as u64;
        match result {
            Ok(mut w) => {
                t.ok = true;
                if let Some(r) = t.retry.take() {
                    tracing::info!(template = %src, dest = %dest, failed_attempts = r.attempts, failing_for_ms = r.since.elapsed().as_millis() as u64, "write recovered");
                    // The file was already in place: its reload is still owed.
                    if r.replaced && w == Written::Unchanged {
                        w = Written::Changed { check: None };
                    }
                }
                Some(w)
            }
            Err(e) if e.retryable() && !once => {
                t.ok = false;
                let (r, seen) = WriteRetry::record(t.retry.take(), &e);
                let retry_in_ms = r.retry_in().as_millis() as u64;
                if seen == Seen::New {
                    tracing::error!(template = %src, dest = %dest, trigger = %trigger, duration_ms = ms, error = %e, retry_in_ms, "not written; destination left as it was; will retry");
                } else {
                    tracing::debug!(template = %src, dest = %dest, trigger = %trigger, attempts = r.attempts, error = %e, retry_in_ms, "write still failing, same cause");
                }
                t.retry = Some(r);
                None
            }
            Err(e) => {
                t.ok = false;
                t.retry = None;
                tracing::error!(template = %src, dest = %dest, trigger = %trigger, duration_ms = ms, error = %e, "not written; destination left as it was");
                None
            }
        }
    }

    /// `-onetime`: fetch what the templates need, render once, exit status.
    /// Data a template waits for (consul-template's `key` on an absent key,
    /// `safeLs` on an empty prefix, a missing `file`) is waited for, as
    /// consul-template's `-once` does, and named in the log.
    pub async fn once(mut self) -> i32 {
        let all: Vec<usize> = (0..self.tpls.len()).collect();
        let mut index: HashMap<Dependency, u64> = HashMap::new();
        let mut reported: BTreeSet<(String, Dependency)> = BTreeSet::new();
        // Each round fetches what the last render found missing; templates
        // whose dependencies keep moving must not fetch forever.
        let mut fetch_rounds = 0;
        loop {
            let mut missing = BTreeSet::new();
            let mut waiting = BTreeSet::new();
            for t in &self.tpls {
                let (o, used) = self.renderer.render(&t.name, &t.res.prefix, &t.res.keys);
                if let Outcome::Missing(m) = o {
                    for d in m {
                        if self.store.has(&d) {
                            let src = t.res.src.display().to_string();
                            if reported.insert((src.clone(), d.clone())) {
                                tracing::info!(template = %src, dependency = %d, "waiting for data");
                            }
                            waiting.insert(d);
                        } else {
                            missing.insert(d);
                        }
                    }
                }
                missing.extend(used.into_iter().filter(|d| !self.store.has(d)));
                missing.extend(t.declared().into_iter().filter(|d| !self.store.has(d)));
            }
            if missing.is_empty() && waiting.is_empty() {
                break;
            }
            tracing::debug!(missing = missing.len(), waiting = waiting.len(), "fetching");
            if !missing.is_empty() {
                fetch_rounds += 1;
                if fetch_rounds > 64 {
                    tracing::error!("dependencies still changing after 64 rounds of fetching");
                    return 1;
                }
            }
            for d in missing {
                match self.fetch_with_retry(&d).await {
                    Ok((data, idx)) => {
                        index.insert(d.clone(), idx);
                        self.store.put(&d, data);
                    }
                    Err(e) => {
                        tracing::error!(dependency = %d, error = %e, "fetch failed");
                        return 1;
                    }
                }
            }
            if !waiting.is_empty() && self.wait_for_change(&waiting, &mut index).await.is_err() {
                return 1;
            }
        }
        let pass = self.pass(&all).await;
        let incomplete = self.tpls.iter().filter(|t| !t.ok).count();
        if pass.failed > 0 || incomplete > 0 {
            1
        } else {
            0
        }
    }

    /// `-once`'s first fetch of `dep`: one try, or with consul-template's
    /// `retry` block, its attempts and backoff.
    async fn fetch_with_retry(
        &self,
        dep: &Dependency,
    ) -> Result<crate::backend::Fetched, crate::backend::BackendError> {
        let Some(retry) = self.opts.retry else {
            return self.backend.fetch(dep, 0, watch::BLOCK_WAIT).await;
        };
        let mut retries = 0;
        loop {
            match self.backend.fetch(dep, 0, watch::BLOCK_WAIT).await {
                Err(e) if !retry.exhausted(retries) => {
                    let pause = retry.pause(retries);
                    tracing::warn!(dependency = %dep, error = %e, retry_in_ms = pause.as_millis() as u64, "fetch failed; retrying");
                    tokio::time::sleep(pause).await;
                    retries += 1;
                }
                r => return r,
            }
        }
    }

    /// Block until one of `deps` changes (blocking queries where the
    /// backend has them, else a re-read every second); errors are retried
    /// with backoff like a watch's, given up on only when `retry.attempts`
    /// says so.
    async fn wait_for_change(
        &self,
        deps: &BTreeSet<Dependency>,
        index: &mut HashMap<Dependency, u64>,
    ) -> Result<(), ()> {
        let retry = self.opts.retry.unwrap_or_default();
        let mut retries = 0;
        loop {
            let mut set = tokio::task::JoinSet::new();
            for d in deps {
                let (b, d, idx) = (self.backend.clone(), d.clone(), index.get(d).copied());
                let blocking = b.blocking() && d.blocking() && idx.is_some_and(|i| i > 0);
                set.spawn(async move {
                    if !blocking {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    let r = b.fetch(&d, idx.unwrap_or(0), watch::BLOCK_WAIT).await;
                    (d, r)
                });
            }
            let mut changed = false;
            while let Some(j) = set.join_next().await {
                let Ok((d, r)) = j else { continue };
                match r {
                    Ok((data, idx)) => {
                        index.insert(d.clone(), idx);
                        changed |= self.store.put(&d, data);
                        retries = 0;
                    }
                    Err(e) if retry.exhausted(retries) => {
                        tracing::error!(dependency = %d, error = %e, retries, "query retries exhausted (consul.retry.attempts)");
                        return Err(());
                    }
                    Err(e) => {
                        let pause = retry.pause(retries);
                        tracing::warn!(dependency = %d, error = %e, retry_in_ms = pause.as_millis() as u64, "fetch failed; still waiting");
                        tokio::time::sleep(pause).await;
                        retries += 1;
                    }
                }
                if changed {
                    return Ok(());
                }
            }
        }
    }

    /// The templates to render now: changed and past their debounce (all
    /// changed ones on the first pass), or due for a write retry.
    fn due(&self, first_pass: bool) -> Vec<usize> {
        let now = Instant::now();
        self.tpls
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                // A retry is not debounced: its data is not new.
                t.retry.as_ref().is_some_and(|r| r.due(now))
                    || match (&t.dirty, t.res.wait.or(self.opts.wait)) {
                        (None, _) => false,
                        (Some(_), _) if first_pass => true,
                        (Some(_), None) => true,
                        (Some((first, last, _)), Some(w)) => {
                            now >= *last + w.min || now >= *first + w.max
                        }
                    }
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// When the next template becomes due: a debounce ends or a retry.
    fn next_due(&self) -> Option<Instant> {
        let debounced = self.tpls.iter().filter_map(|t| {
            let (first, last, _) = t.dirty.as_ref()?;
            let w = t.res.wait.or(self.opts.wait)?;
            Some((*last + w.min).min(*first + w.max))
        });
        let retries = self
            .tpls
            .iter()
            .filter_map(|t| t.retry.as_ref().map(|r| r.at));
        debounced.chain(retries).min()
    }

    /// Run as a daemon (watch or interval mode) until SIGINT/SIGTERM, or
    /// until the supervised child exits. Returns the exit code.
    pub async fn run(mut self) -> Result<i32, RunError> {
        let stop = CancellationToken::new();
        let mode = match self.opts.mode {
            Mode::Interval(d) => watch::Mode::Poll(d),
            _ => watch::Mode::Block,
        };
        let (mut watches, mut changes) =
            Watches::new(self.backend.clone(), self.store.clone(), mode, stop.clone());
        if let Some(r) = self.opts.retry {
            watches.set_retry(r);
        }
        let mut signals = Signals::new(self.opts.reload_signal, self.opts.kill_signal)
            .map_err(RunError::Signal)?;
        let mut exec_retry = ExecRetry::default();
        let mut child_started = false;
        let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<()>();
        let _fs_watcher = watch_dirs(&self.opts.confdir, fs_tx);
        let mut child: Option<Child> = None;
        let mut fs_pending: Option<Instant> = None;
        for t in &mut self.tpls {
            t.mark("startup".into());
        }
        let mut first_pass = true;
        loop {
            // Render what is due.
            let due = self.due(first_pass);
            first_pass = false;
            if !due.is_empty() {
                let pass = self.pass(&due).await;
                if pass.changed > 0 && reload_child(&mut child).await {
                    // Started again below, with retries if it fails.
                    exec_retry = ExecRetry::default();
                }
            }
            if std::mem::take(&mut self.deps_dirty) {
                self.users.clear();
                for (i, t) in self.tpls.iter().enumerate() {
                    for d in &t.deps {
                        self.users.entry(d.clone()).or_default().push(i);
                    }
                }
                let needed: BTreeSet<Dependency> = self.users.keys().cloned().collect();
                watches.ensure(&needed);
            }
            // The first start waits for a full render; a restart doesn't wait
            // for an unrelated template that fails now.
            if child.is_none() && (child_started || self.tpls.iter().all(|t| t.ok)) {
                if let Some(spec) = &self.opts.exec {
                    if exec_retry.at.is_none_or(|at| Instant::now() >= at) {
                        match Child::start(spec.clone()) {
                            Ok(c) => {
                                child = Some(c);
                                child_started = true;
                                exec_retry = ExecRetry::default();
                            }
                            // A sidecar outlives a failed start: log, retry later.
                            Err(e) => {
                                let delay = exec_retry.next();
                                tracing::error!(command = %spec.command, error = %e, retry_in_ms = delay.as_millis() as u64, "child could not start; retrying");
                            }
                        }
                    }
                }
            }
            // Sleep until a change, a debounce deadline, or a signal.
            let deadline = self
                .next_due()
                .into_iter()
                .chain(fs_pending.map(|t| t + Duration::from_millis(200)))
                .chain(exec_retry.at.filter(|_| child.is_none()))
                .min();
            let sleep_until =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let child_exit = async {
                match child.as_mut() {
                    Some(c) => c.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(n) = changes.recv() => {
                    let mut notices = vec![n];
                    while let Ok(n) = changes.try_recv() {
                        notices.push(n);
                    }
                    let mut deps = Vec::new();
                    for n in notices {
                        match n {
                            Notice::Changed(d) => deps.push(d),
                            Notice::GaveUp(msg) => {
                                tracing::error!(error = %msg, "query retries exhausted (consul.retry.attempts); stopping");
                                stop.cancel();
                                if let Some(c) = child.as_mut() {
                                    c.stop().await;
                                }
                                return Err(RunError::GaveUp(msg));
                            }
                        }
                    }
                    for d in deps {
                        let why = d.to_string();
                        for &i in self.users.get(&d).into_iter().flatten() {
                            if let Some(t) = self.tpls.get_mut(i) {
                                t.mark(why.clone());
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(sleep_until.into()) => {
                    if fs_pending.is_some_and(|t| t.elapsed() >= Duration::from_millis(200)) {
                        fs_pending = None;
                        self.reload("conf.d or templates changed");
                    }
                }
                Some(()) = fs_rx.recv() => {
                    while fs_rx.try_recv().is_ok() {}
                    fs_pending = Some(Instant::now());
                }
                // Like consul-template: signals that are not ours (reload,
                // stop) go to the child.
                ev = signals.next() => match ev {
                    Event::Reload(sig) => self.reload(sig.as_str()),
                    Event::Forward(sig) => forward(&child, sig),
                    Event::Stop(_) => break,
                },
                code = child_exit => {
                    tracing::info!(code, "child exited");
                    stop.cancel();
                    return Ok(code);
                }
            }
        }
        tracing::info!("stopping");
        stop.cancel();
        let code = match child.as_mut() {
            Some(c) => c.stop().await,
            None => 0,
        };
        Ok(code)
    }

    /// Re-read resources and templates; on error keep running the old ones.
    fn reload(&mut self, why: &str) {
        let mut opts = self.opts.clone();
        if let Some(src) = &self.opts.config_source {
            match src.read() {
                Ok((prefix, wait)) => {
                    opts.prefix = prefix;
                    opts.wait = wait;
                }
                Err(e) => {
                    // A bad config changes nothing: not even the resources.
                    tracing::error!(error = %e, reason = why, "reload failed; keeping the previous configuration and resources");
                    return;
                }
            }
        }
        if let Some(src) = &self.opts.ct_source {
            match crate::ctconfig::load(&src.paths) {
                Ok(c) => {
                    for w in &c.warnings {
                        tracing::warn!("{w}");
                    }
                    opts.ct_templates = c.templates;
                    opts.wait = src.flag_wait.or(c.wait);
                }
                Err(e) => {
                    tracing::error!(error = %e, reason = why, "reload failed; keeping the previous configuration and resources");
                    return;
                }
            }
        }
        match load(&opts, &mut self.renderer, &self.tpls) {
            Ok(mut tpls) => {
                self.opts = opts;
                for t in &mut tpls {
                    t.mark(format!("reload ({why})"));
                }
                tracing::info!(resources = tpls.len(), reason = why, "resources reloaded");
                self.tpls = tpls;
                self.deps_dirty = true;
            }
            Err(e) => {
                tracing::error!(error = %e, reason = why, "reload failed; keeping the previous resources")
            }
        }
    }
}

/// After a change: the child gets its reload signal (after a random splay),
/// or is stopped to be restarted; true when it was stopped.
/// Each distinct reload command once, in order; its summary goes on the
/// line of every template that asked for it. The number that failed.
async fn run_reloads(commands: Vec<(String, Duration)>, written: Vec<Rendered>) -> usize {
    let mut failed = 0;
    let mut summaries: Vec<(String, String)> = Vec::new();
    for (c, timeout) in commands {
        let ran = command::run(&c, timeout).await;
        if let Ok(r) = &ran {
            crate::metrics::command("reload", r.duration);
        }
        let summary = match ran {
            Ok(r) if r.success() => {
                tracing::info!(command = %c, exit = 0, duration_us = r.duration.as_micros() as u64, output = ?r.output, "reload command ran");
                format!("reload:exit 0 {}ms", r.duration.as_millis())
            }
            Ok(r) => {
                failed += 1;
                tracing::error!(command = %c, status = %r.describe(), duration_us = r.duration.as_micros() as u64, output = ?r.output, "reload command failed; still running");
                format!("reload:{} {}ms", r.describe(), r.duration.as_millis())
            }
            Err(e) => {
                failed += 1;
                tracing::error!(command = %c, error = %e, "reload command could not start; still running");
                "reload:not started".to_string()
            }
        };
        summaries.push((c, summary));
    }
    for r in written {
        let reload = r
            .reload
            .and_then(|c| summaries.iter().find(|(x, _)| *x == c))
            .map(|(_, s)| s.clone());
        if reload
            .as_ref()
            .is_some_and(|s| !s.starts_with("reload:exit 0 "))
        {
            crate::metrics::failure(&r.src, "command");
        }
        let cmds: Vec<String> = r.check.into_iter().chain(reload).collect();
        let cmds = if cmds.is_empty() {
            "none".to_string()
        } else {
            cmds.join(", ")
        };
        tracing::info!(template = %r.src, dest = %r.dest, trigger = %r.trigger, changed = r.changed, commands = %cmds, duration_us = r.took.as_micros() as u64, "rendered");
    }
    failed
}

async fn reload_child(child: &mut Option<Child>) -> bool {
    let Some(c) = child else {
        return false;
    };
    // consul-template's splay: spread many sidecars' reloads.
    if !c.spec.splay.is_zero() {
        let ms = c.spec.splay.as_millis().min(u64::MAX as u128) as u64;
        let d = Duration::from_millis(rand::random::<u64>() % (ms + 1));
        tokio::time::sleep(d).await;
    }
    match c.spec.reload_signal {
        Some(sig) => {
            tracing::info!(signal = %sig, "sending reload signal to child");
            c.signal(sig);
            false
        }
        None => {
            tracing::info!("restarting child");
            c.stop().await;
            *child = None;
            true
        }
    }
}

fn forward(child: &Option<Child>, sig: Signal) {
    if let Some(c) = child {
        tracing::debug!(signal = %sig, "forwarding signal to child");
        c.signal(sig);
    }
}

/// When to try starting the child again after a failed start: 250 ms,
/// doubling, at most 30 s.
#[derive(Default)]
struct ExecRetry {
    at: Option<Instant>,
    delay: Duration,
}

impl ExecRetry {
    fn next(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
        self.at = Some(Instant::now() + self.delay);
        self.delay
    }
}

/// Watch conf.d and templates for edits (new, changed, removed files).
fn watch_dirs(
    confdir: &std::path::Path,
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .ok()?;
    for d in ["conf.d", "templates"] {
        let p = confdir.join(d);
        if p.is_dir() {
            if let Err(e) = w.watch(&p, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %p.display(), error = %e, "cannot watch for edits");
            }
        }
    }
    Some(w)
}
