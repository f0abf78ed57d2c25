//! `tribune lock [-n N] [-name] [-timeout] [-shell] [-child-exit-code]
//! [-monitor-retry] [-pass-stdin] [-verbose] prefix child...`
//!
//! Consul's lock command, with the same KV layout so tribune and Consul
//! clients interoperate: with `-n 1` a lock at `<prefix>/.lock`; with `-n N`
//! a semaphore — one contender key `<prefix>/<session>` per process plus
//! `<prefix>/.lock` holding `{"Limit":N,"Holders":{...}}`, updated by CAS.
//! The child runs with `CONSUL_LOCK_HELD=true` while the lock is held; when
//! the lock is lost (session invalidated, lock released by someone else) the
//! child's process group gets SIGTERM, then SIGKILL after 5 seconds.
//!
//! Layout, as Consul's `api` package: `mutex` the lock (`lock.go`),
//! `semaphore` the semaphore (`semaphore.go`), `kv` the KV entries and
//! retries they share, `session` the session and its renewal, `child`
//! the child's supervision; this file the command.

mod child;
mod kv;
mod mutex;
mod semaphore;
mod session;

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use tokio_util::sync::CancellationToken;

use super::common::HttpOpts;
use super::common::{cli_runtime, fail, on_signals};
use crate::apiclient::ApiClient;
use crate::watchplan::shell_argv;
use gocompat::duration::parse_duration;
use kv::{join, LockError, Locker, LOCK_KEY};
use mutex::Lock;
use semaphore::Semaphore;
use session::{Renewal, SessionSpec};

#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Number of concurrent holders; above 1 a semaphore is used.
    #[arg(long = "n", default_value_t = 1, allow_negative_numbers = true)]
    limit: i64,
    /// Session name (default: derived from the command and prefix).
    #[arg(long)]
    name: Option<String>,
    /// Give up acquiring after this long (e.g. 30s); 0 waits forever.
    #[arg(long)]
    timeout: Option<String>,
    #[arg(long = "try", hide = true)]
    try_timeout: Option<String>,
    /// Run the child through the shell (default true; -shell=false runs it directly).
    #[arg(long)]
    shell: bool,
    #[arg(long = "no-shell", hide = true)]
    no_shell: bool,
    /// Exit 2 when the child fails (default: exit 0).
    #[arg(long = "child-exit-code")]
    child_exit_code: bool,
    /// Errors tolerated while watching the lock before it counts as lost.
    #[arg(
        long = "monitor-retry",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    monitor_retry: i64,
    /// Give the child this process's stdin.
    #[arg(long = "pass-stdin")]
    pass_stdin: bool,
    /// Say what happens.
    #[arg(long)]
    verbose: bool,
    /// TTL of the lock session (tribune extension; Consul's lock uses 15s).
    #[arg(long = "session-ttl", default_value = "15s")]
    session_ttl: String,
    /// Lock-delay of the lock session (tribune extension; default 15s as Consul).
    #[arg(long = "lock-delay", default_value = "15s")]
    lock_delay: String,
    /// Key prefix, then the child command.
    args: Vec<String>,
}

enum Mode {
    Lock(Lock),
    Semaphore(Semaphore),
}

impl Mode {
    async fn acquire(
        &self,
        l: &Locker,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        match self {
            Mode::Lock(m) => m.acquire(l, try_for, stop).await,
            Mode::Semaphore(s) => s.acquire(l, try_for, stop).await,
        }
    }

    async fn monitor(&self, l: &Locker) {
        match self {
            Mode::Lock(m) => m.monitor(l).await,
            Mode::Semaphore(s) => s.monitor(l).await,
        }
    }

    async fn release(&self, l: &Locker) -> Result<(), LockError> {
        match self {
            Mode::Lock(m) => m.release(l).await,
            Mode::Semaphore(s) => s.release(l).await,
        }
    }

    async fn cleanup(&self, l: &Locker) -> Result<(), LockError> {
        match self {
            Mode::Lock(m) => m.cleanup(l).await,
            Mode::Semaphore(s) => s.cleanup(l).await,
        }
    }
}

struct Plan {
    api: ApiClient,
    mode: Mode,
    name: String,
    child: Vec<String>,
    try_for: Option<Duration>,
    ttl: Duration,
    ttl_text: String,
    lock_delay: String,
    pass_stdin: bool,
    child_exit_code: bool,
    monitor_retry: u32,
    verbose: bool,
}

pub fn run(a: LockArgs) -> ExitCode {
    if a.limit <= 0 {
        return fail("Lock holder limit must be positive");
    }
    if a.args.len() < 2 {
        return fail("Key prefix and child command must be specified");
    }
    let prefix = a.args[0].trim_start_matches('/').to_string();
    let timeout = match a.timeout.as_deref().or(a.try_timeout.as_deref()) {
        None => None,
        Some(t) => match parse_duration(t) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => return fail("Timeout must be positive"),
        },
    };
    if a.monitor_retry < 0 {
        return fail("Number for 'monitor-retry' must be >= 0");
    }
    let ttl = match parse_duration(&a.session_ttl) {
        Some(d) if d >= Duration::from_secs(10) => d,
        _ => return fail("-session-ttl must be a duration of at least 10s"),
    };
    if parse_duration(&a.lock_delay).is_none() {
        return fail("-lock-delay must be a duration like 15s");
    }
    let child_args = a.args[1..].to_vec();
    let name = a
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("Consul lock for '{}' at '{prefix}'", child_args.join(" ")));
    let shell = a.shell || !a.no_shell;
    let child = if shell {
        shell_argv(&child_args.join(" "))
    } else {
        child_args
    };
    let mode = if a.limit == 1 {
        Mode::Lock(Lock {
            key: join(&prefix, LOCK_KEY),
        })
    } else {
        Mode::Semaphore(Semaphore {
            prefix: prefix.clone(),
            limit: a.limit,
        })
    };
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let plan = Plan {
        api: ApiClient::new(a.http.async_config()),
        mode,
        name,
        child,
        try_for: timeout,
        ttl,
        ttl_text: a.session_ttl.clone(),
        lock_delay: a.lock_delay.clone(),
        pass_stdin: a.pass_stdin,
        child_exit_code: a.child_exit_code,
        monitor_retry: u32::try_from(a.monitor_retry).unwrap_or(u32::MAX),
        verbose: a.verbose,
    };
    rt.block_on(run_plan(plan))
}

async fn run_plan(p: Plan) -> ExitCode {
    let shutdown = on_signals();
    if let Err(e) = p.api.call(Method::GET, "agent/self", &[], None).await {
        return fail(format!("Error querying Consul agent: {e}"));
    }
    if p.verbose {
        match &p.mode {
            Mode::Lock(m) => println!("Setting up lock at path: {}", m.key),
            Mode::Semaphore(s) => println!(
                "Setting up semaphore (limit {}) at prefix: {}",
                s.limit, s.prefix
            ),
        }
    }
    let spec = SessionSpec {
        name: &p.name,
        ttl: &p.ttl_text,
        lock_delay: &p.lock_delay,
        behavior: match p.mode {
            Mode::Lock(_) => "release",
            Mode::Semaphore(_) => "delete",
        },
    };
    let session = match session::create(&p.api, &spec).await {
        Ok(id) => id,
        Err(e) => {
            return fail(format!(
                "Lock acquisition failed: failed to create session: {e}"
            ))
        }
    };
    let renewal = Renewal::start(p.api.clone(), session.clone(), p.ttl);
    let locker = Locker {
        api: p.api.clone(),
        session,
        monitor_retry: p.monitor_retry,
        verbose: p.verbose,
    };
    locker.info("Attempting lock acquisition");
    match p.mode.acquire(&locker, p.try_for, &shutdown).await {
        Ok(true) => {}
        Ok(false) => {
            renewal.end().await;
            return fail("Shutdown triggered or timeout during lock acquisition");
        }
        Err(e) => {
            renewal.end().await;
            return fail(format!("Lock acquisition failed: {e}"));
        }
    }
    let child_code = if shutdown.is_cancelled() {
        eprintln!("Shutdown triggered during lock acquisition");
        0
    } else {
        hold(&p, &locker, &shutdown).await
    };
    if let Err(e) = p.mode.release(&locker).await {
        renewal.end().await;
        return fail(format!("Lock release failed: {e}"));
    }
    renewal.end().await;
    match p.mode.cleanup(&locker).await {
        Ok(()) => locker.info("Cleanup succeeded"),
        Err(LockError::InUse) => locker.info("Cleanup aborted, lock in use"),
        Err(e) => return fail(format!("Lock cleanup failed: {e}")),
    }
    if p.child_exit_code {
        ExitCode::from(child_code)
    } else {
        ExitCode::SUCCESS
    }
}

/// With the lock held: run the child until it exits, the lock is lost or
/// we are told to stop; the exit code `-child-exit-code` reports.
async fn hold(p: &Plan, locker: &Locker, shutdown: &CancellationToken) -> u8 {
    let lost = p.mode.monitor(locker);
    tokio::pin!(lost);
    locker.info("Starting handler");
    let mut child = match child::start(&p.child, p.pass_stdin) {
        Err(e) => {
            eprintln!("Error starting handler: {e}");
            return 2;
        }
        Ok(c) => c,
    };
    tokio::select! {
        _ = shutdown.cancelled() => {
            locker.info("Shutdown triggered, killing child");
            child::kill(&mut child, p.verbose).await;
            0
        }
        _ = &mut lost => {
            locker.info("Lock lost, killing child");
            child::kill(&mut child, p.verbose).await;
            0
        }
        status = child.wait() => {
            let code = match status {
                Ok(s) if s.success() => 0,
                Ok(s) => {
                    eprintln!("Error running handler: {s}");
                    2
                }
                Err(e) => {
                    eprintln!("Error running handler: {e}");
                    2
                }
            };
            locker.info("Child terminated, releasing lock");
            code
        }
    }
}
