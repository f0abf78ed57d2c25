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

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::common::HttpOpts;
use super::common::{cli_runtime, fail, on_signals};
use crate::apiclient::{key_path, ApiClient, Error as ApiClientError};
use crate::watchplan::shell_argv;
use gocompat::duration::parse_duration;
use gocompat::process::{signal_group, Signal};

/// Flags marking the KV entries of a lock and of a semaphore (Consul's values).
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
const LOCK_KEY: &str = ".lock";
/// Between SIGTERM and SIGKILL of a child whose lock was lost.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Wait after a refused acquire with no holder (lock-delay in force).
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// Blocking wait of each read while waiting for the lock.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Between monitor retries after an error.
const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);

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

#[derive(Debug, thiserror::Error)]
enum LockError {
    #[error("{0}")]
    Api(#[from] ApiClientError),
    #[error("{0}")]
    Conflict(String),
    #[error("lock is in use")]
    InUse,
    #[error("{0}")]
    Other(String),
}

/// One KV entry, as far as locks care.
#[derive(Clone, Debug, Default)]
struct Pair {
    key: String,
    flags: u64,
    session: Option<String>,
    modify_index: u64,
    value: Vec<u8>,
}

impl Pair {
    fn from_json(v: &Value) -> Pair {
        Pair {
            key: v["Key"].as_str().unwrap_or("").to_string(),
            flags: v["Flags"].as_u64().unwrap_or(0),
            session: v["Session"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            modify_index: v["ModifyIndex"].as_u64().unwrap_or(0),
            value: v["Value"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default(),
        }
    }
}

/// `path.Join(prefix, name)` for KV keys.
fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}/{name}")
    }
}

/// A semaphore's `.lock` value.
#[derive(Debug, Default)]
struct SemaphoreLock {
    limit: i64,
    holders: BTreeMap<String, bool>,
}

impl SemaphoreLock {
    fn decode(p: &Pair, limit: i64) -> Result<Self, LockError> {
        if p.value.is_empty() {
            return Ok(Self {
                limit,
                holders: BTreeMap::new(),
            });
        }
        let v: Value = serde_json::from_slice(&p.value)
            .map_err(|e| LockError::Other(format!("lock decoding failed: {e}")))?;
        let holders = v["Holders"]
            .as_object()
            .map(|h| h.keys().map(|k| (k.clone(), true)).collect())
            .unwrap_or_default();
        Ok(Self {
            limit: v["Limit"].as_i64().unwrap_or(0),
            holders,
        })
    }
    fn encode(&self) -> Vec<u8> {
        json!({"Limit": self.limit, "Holders": self.holders})
            .to_string()
            .into_bytes()
    }
    /// Holders whose contender key (and so session) is gone are dead.
    fn prune(&mut self, pairs: &[Pair]) {
        self.holders
            .retain(|h, _| pairs.iter().any(|p| p.session.as_deref() == Some(h)));
    }
}

enum Mode {
    Lock { key: String },
    Semaphore { prefix: String, limit: i64 },
}

struct Locker {
    api: ApiClient,
    mode: Mode,
    session: String,
    monitor_retry: u32,
    verbose: bool,
}

impl Locker {
    fn info(&self, msg: impl std::fmt::Display) {
        if self.verbose {
            println!("{msg}");
        }
    }

    async fn get(
        &self,
        key: &str,
        index: u64,
        wait: Duration,
        consistent: bool,
    ) -> Result<(Option<Pair>, u64), LockError> {
        let q = read_query(vec![], index, wait, consistent);
        let r = self
            .api
            .call(Method::GET, &format!("kv/{}", key_path(key)), &q, None)
            .await?;
        let pair = r
            .json()?
            .and_then(|v| v.as_array().and_then(|a| a.first()).map(Pair::from_json));
        Ok((pair, r.index))
    }

    async fn list(
        &self,
        prefix: &str,
        index: u64,
        wait: Duration,
        consistent: bool,
    ) -> Result<(Vec<Pair>, u64), LockError> {
        let q = read_query(vec![("recurse", String::new())], index, wait, consistent);
        let r = self
            .api
            .call(Method::GET, &format!("kv/{}", key_path(prefix)), &q, None)
            .await?;
        let pairs = r
            .json()?
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().map(Pair::from_json).collect())
            })
            .unwrap_or_default();
        Ok((pairs, r.index))
    }

    /// PUT with `?acquire=`, `?release=` or `?cas=`; the agent's true/false.
    async fn put(
        &self,
        key: &str,
        q: &[(&str, String)],
        flags: u64,
        body: Vec<u8>,
    ) -> Result<bool, LockError> {
        let mut q = q.to_vec();
        q.push(("flags", flags.to_string()));
        let r = self
            .api
            .call(
                Method::PUT,
                &format!("kv/{}", key_path(key)),
                &q,
                Some(body),
            )
            .await?;
        Ok(r.body.trim_ascii() == b"true")
    }

    async fn delete_cas(&self, key: &str, index: u64) -> Result<bool, LockError> {
        let q = [("cas", index.to_string())];
        let r = self
            .api
            .call(Method::DELETE, &format!("kv/{}", key_path(key)), &q, None)
            .await?;
        Ok(r.body.trim_ascii() == b"true")
    }

    /// Run `f`, retrying up to `monitor_retry` times, a second apart, while it
    /// fails with a retryable error (agent unreachable, 5xx): a waiting lock
    /// should not give up on a blip.
    async fn retrying<T, Fut>(&self, mut f: impl FnMut() -> Fut) -> Result<T, LockError>
    where
        Fut: std::future::Future<Output = Result<T, LockError>>,
    {
        let mut left = self.monitor_retry;
        loop {
            match f().await {
                Err(LockError::Api(e)) if left > 0 && e.is_retryable() => {
                    left -= 1;
                    tracing::debug!(error = %e, "retrying");
                    tokio::time::sleep(MONITOR_RETRY_TIME).await;
                }
                r => return r,
            }
        }
    }

    /// Acquire; `Ok(false)` on shutdown or when `try_for` ran out.
    async fn acquire(
        &self,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        match &self.mode {
            Mode::Lock { key } => self.acquire_lock(key, try_for, stop).await,
            Mode::Semaphore { prefix, limit } => {
                self.acquire_semaphore(prefix, *limit, try_for, stop).await
            }
        }
    }

    /// How long the next wait may be; `None` once `try_for` is spent.
    fn next_wait(start: Instant, attempts: u32, try_for: Option<Duration>) -> Option<Duration> {
        match try_for {
            None => Some(LOCK_WAIT),
            Some(limit) if attempts == 0 => Some(limit),
            Some(limit) => limit.checked_sub(start.elapsed()).filter(|d| !d.is_zero()),
        }
    }

    async fn acquire_lock(
        &self,
        key: &str,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        let start = Instant::now();
        let mut attempts = 0;
        let mut index = 0;
        loop {
            let Some(wait) = Self::next_wait(start, attempts, try_for) else {
                return Ok(false);
            };
            attempts += 1;
            let (pair, idx) = tokio::select! {
                r = self.retrying(|| self.get(key, index, wait, false)) => r?,
                _ = stop.cancelled() => return Ok(false),
            };
            if let Some(p) = &pair {
                if p.flags != LOCK_FLAG {
                    return Err(LockError::Conflict(
                        "Existing key does not match lock use".into(),
                    ));
                }
                match p.session.as_deref() {
                    Some(s) if s == self.session => return Ok(true),
                    Some(_) => {
                        index = idx;
                        continue;
                    }
                    None => {}
                }
            }
            let q = [("acquire", self.session.clone())];
            if self
                .retrying(|| self.put(key, &q, LOCK_FLAG, Vec::new()))
                .await?
            {
                return Ok(true);
            }
            // Refused: someone got there first (wait on them), or the key is
            // in lock-delay (no holder: try again after a pause).
            let (pair, idx) = self.retrying(|| self.get(key, 0, wait, false)).await?;
            if pair.is_some_and(|p| p.session.is_some()) {
                index = idx;
                continue;
            }
            index = 0;
            self.info("Lock refused (lock-delay?); retrying in 5s");
            tokio::select! {
                _ = tokio::time::sleep(LOCK_RETRY) => {}
                _ = stop.cancelled() => return Ok(false),
            }
        }
    }

    async fn acquire_semaphore(
        &self,
        prefix: &str,
        limit: i64,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        let contender = join(prefix, &self.session);
        let q = [("acquire", self.session.clone())];
        if !self
            .retrying(|| self.put(&contender, &q, SEMAPHORE_FLAG, Vec::new()))
            .await?
        {
            return Err(LockError::Other("failed to make contender entry".into()));
        }
        let start = Instant::now();
        let mut attempts = 0;
        let mut index = 0;
        let lock_key = join(prefix, LOCK_KEY);
        loop {
            let Some(wait) = Self::next_wait(start, attempts, try_for) else {
                return Ok(false);
            };
            attempts += 1;
            let (pairs, idx) = tokio::select! {
                r = self.retrying(|| self.list(prefix, index, wait, false)) => r?,
                _ = stop.cancelled() => return Ok(false),
            };
            let lock_pair = find_lock(&pairs, &lock_key);
            if lock_pair.flags != SEMAPHORE_FLAG {
                return Err(LockError::Conflict(
                    "Existing key does not match semaphore use".into(),
                ));
            }
            let mut lock = SemaphoreLock::decode(&lock_pair, limit)?;
            if lock.limit != limit {
                return Err(LockError::Conflict(format!(
                    "semaphore limit conflict (lock: {}, local: {limit})",
                    lock.limit
                )));
            }
            lock.prune(&pairs);
            // Already a holder (a CAS whose answer was lost, then retried).
            if lock.holders.contains_key(&self.session) {
                return Ok(true);
            }
            if lock.holders.len() as i64 >= limit {
                index = idx;
                continue;
            }
            lock.holders.insert(self.session.clone(), true);
            let q = [("cas", lock_pair.modify_index.to_string())];
            let value = lock.encode();
            if self
                .retrying(|| self.put(&lock_key, &q, SEMAPHORE_FLAG, value.clone()))
                .await?
            {
                return Ok(true);
            }
            // Lost a race with another contender: read again.
        }
    }

    /// Returns when the lock is no longer ours (or cannot be confirmed after
    /// `monitor_retry` consecutive errors).
    async fn monitor(&self) {
        let mut index = 0;
        loop {
            let mut retries = self.monitor_retry;
            let held = loop {
                let r = match &self.mode {
                    Mode::Lock { key } => self
                        .get(key, index, Duration::from_secs(300), true)
                        .await
                        .map(|(p, i)| {
                            (
                                p.and_then(|p| p.session).as_deref() == Some(&*self.session),
                                i,
                            )
                        }),
                    Mode::Semaphore { prefix, limit } => {
                        match self
                            .list(prefix, index, Duration::from_secs(300), true)
                            .await
                        {
                            Ok((pairs, i)) => {
                                let lock_pair = find_lock(&pairs, &join(prefix, LOCK_KEY));
                                match SemaphoreLock::decode(&lock_pair, *limit) {
                                    Ok(mut l) => {
                                        l.prune(&pairs);
                                        Ok((l.holders.contains_key(&self.session), i))
                                    }
                                    Err(_) => Ok((false, i)),
                                }
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                match r {
                    Ok(x) => break Some(x),
                    Err(LockError::Api(e)) if retries > 0 && e.is_retryable() => {
                        retries -= 1;
                        index = 0;
                        tokio::time::sleep(MONITOR_RETRY_TIME).await;
                    }
                    Err(_) => break None,
                }
            };
            match held {
                Some((true, i)) => index = i,
                _ => return,
            }
        }
    }

    async fn release(&self) -> Result<(), LockError> {
        match &self.mode {
            Mode::Lock { key } => {
                let q = [("release", self.session.clone())];
                // false = no longer ours (lost); nothing more to do.
                self.put(key, &q, LOCK_FLAG, Vec::new()).await?;
                Ok(())
            }
            Mode::Semaphore { prefix, limit } => {
                let lock_key = join(prefix, LOCK_KEY);
                loop {
                    let (pair, _) = self.get(&lock_key, 0, LOCK_WAIT, false).await?;
                    let pair = pair.unwrap_or_default();
                    let mut lock = SemaphoreLock::decode(&pair, *limit)?;
                    if lock.holders.remove(&self.session).is_none() {
                        break;
                    }
                    let q = [("cas", pair.modify_index.to_string())];
                    if self
                        .put(&lock_key, &q, SEMAPHORE_FLAG, lock.encode())
                        .await?
                    {
                        break;
                    }
                }
                let contender = join(prefix, &self.session);
                self.api
                    .call(
                        Method::DELETE,
                        &format!("kv/{}", key_path(&contender)),
                        &[],
                        None,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Delete the lock entry when nobody uses it any more.
    async fn cleanup(&self) -> Result<(), LockError> {
        match &self.mode {
            Mode::Lock { key } => {
                let (Some(pair), _) = self.get(key, 0, LOCK_WAIT, false).await? else {
                    return Ok(());
                };
                if pair.flags != LOCK_FLAG {
                    return Err(LockError::Conflict(
                        "Existing key does not match lock use".into(),
                    ));
                }
                if pair.session.is_some() || !self.delete_cas(key, pair.modify_index).await? {
                    return Err(LockError::InUse);
                }
                Ok(())
            }
            Mode::Semaphore { prefix, limit } => {
                let lock_key = join(prefix, LOCK_KEY);
                let (pairs, _) = self.list(prefix, 0, LOCK_WAIT, false).await?;
                let lock_pair = find_lock(&pairs, &lock_key);
                if lock_pair.modify_index == 0 {
                    return Ok(());
                }
                if lock_pair.flags != SEMAPHORE_FLAG {
                    return Err(LockError::Conflict(
                        "Existing key does not match semaphore use".into(),
                    ));
                }
                let mut lock = SemaphoreLock::decode(&lock_pair, *limit)?;
                lock.prune(&pairs);
                if !lock.holders.is_empty()
                    || !self.delete_cas(&lock_key, lock_pair.modify_index).await?
                {
                    return Err(LockError::InUse);
                }
                Ok(())
            }
        }
    }
}

/// The semaphore's `.lock` entry, or a fresh one (ModifyIndex 0: CAS creates it).
fn find_lock(pairs: &[Pair], lock_key: &str) -> Pair {
    pairs
        .iter()
        .find(|p| p.key == lock_key)
        .cloned()
        .unwrap_or(Pair {
            key: lock_key.to_string(),
            flags: SEMAPHORE_FLAG,
            ..Default::default()
        })
}

/// Keep the session alive (renew every TTL/2) until `stop`, then destroy it.
async fn keep_session(api: ApiClient, id: String, ttl: Duration, stop: CancellationToken) {
    let path = format!("session/renew/{id}");
    let mut wait = ttl / 2;
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        match api.call(Method::PUT, &path, &[], None).await {
            // Gone: invalidated; the lock monitor notices the lost lock.
            Ok(r) if r.status == 404 => {
                stop.cancelled().await;
                break;
            }
            Ok(_) => {
                last_ok = Instant::now();
                wait = ttl / 2;
            }
            Err(_) if last_ok.elapsed() > ttl => {
                stop.cancelled().await;
                break;
            }
            Err(_) => wait = Duration::from_secs(1),
        }
    }
    let _ = api
        .call(Method::PUT, &format!("session/destroy/{id}"), &[], None)
        .await;
}

/// SIGTERM the child's group, SIGKILL after the grace period.
async fn kill_child(child: &mut tokio::process::Child, verbose: bool) {
    let Some(pid) = child.id() else {
        return;
    };
    if verbose {
        println!("Terminating child pid {pid}");
    }
    // The child leads its own process group, so its children get it too.
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
        if verbose {
            println!("Child terminated");
        }
        return;
    }
    if verbose {
        println!(
            "Child did not exit after grace period of {KILL_GRACE:?}; killing child pid {pid}"
        );
    }
    signal_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
}

fn start_child(argv: &[String], pass_stdin: bool) -> std::io::Result<tokio::process::Child> {
    use std::process::Stdio;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    tokio::process::Command::new(prog)
        .args(args)
        .env("CONSUL_LOCK_HELD", "true")
        .stdin(if pass_stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .process_group(0)
        .spawn()
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
        Mode::Lock {
            key: join(&prefix, LOCK_KEY),
        }
    } else {
        Mode::Semaphore {
            prefix: prefix.clone(),
            limit: a.limit,
        }
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
            Mode::Lock { key } => println!("Setting up lock at path: {key}"),
            Mode::Semaphore { prefix, limit } => {
                println!("Setting up semaphore (limit {limit}) at prefix: {prefix}")
            }
        }
    }
    // Semaphore contender keys go with their session (behavior delete).
    let behavior = match p.mode {
        Mode::Lock { .. } => "release",
        Mode::Semaphore { .. } => "delete",
    };
    let body =
        json!({"Name": p.name, "TTL": p.ttl_text, "LockDelay": p.lock_delay, "Behavior": behavior});
    let created = p
        .api
        .call(
            Method::PUT,
            "session/create",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
        .and_then(|r| r.json());
    let session = match created {
        Ok(Some(v)) => match v["ID"].as_str() {
            Some(id) => id.to_string(),
            None => return fail("Lock acquisition failed: failed to create session: no ID"),
        },
        Ok(None) => return fail("Lock acquisition failed: failed to create session: not found"),
        Err(e) => {
            return fail(format!(
                "Lock acquisition failed: failed to create session: {e}"
            ))
        }
    };
    let renew_stop = CancellationToken::new();
    let renewer = tokio::spawn(keep_session(
        p.api.clone(),
        session.clone(),
        p.ttl,
        renew_stop.clone(),
    ));
    let end_session = move || async move {
        renew_stop.cancel();
        let _ = renewer.await;
    };
    let locker = Locker {
        api: p.api.clone(),
        mode: p.mode,
        session,
        monitor_retry: p.monitor_retry,
        verbose: p.verbose,
    };
    locker.info("Attempting lock acquisition");
    match locker.acquire(p.try_for, &shutdown).await {
        Ok(true) => {}
        Ok(false) => {
            end_session().await;
            return fail("Shutdown triggered or timeout during lock acquisition");
        }
        Err(e) => {
            end_session().await;
            return fail(format!("Lock acquisition failed: {e}"));
        }
    }
    let mut child_code = 0u8;
    if shutdown.is_cancelled() {
        eprintln!("Shutdown triggered during lock acquisition");
    } else {
        let lost = locker.monitor();
        tokio::pin!(lost);
        locker.info("Starting handler");
        match start_child(&p.child, p.pass_stdin) {
            Err(e) => {
                eprintln!("Error starting handler: {e}");
                child_code = 2;
            }
            Ok(mut child) => {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        locker.info("Shutdown triggered, killing child");
                        kill_child(&mut child, p.verbose).await;
                    }
                    _ = &mut lost => {
                        locker.info("Lock lost, killing child");
                        kill_child(&mut child, p.verbose).await;
                    }
                    status = child.wait() => {
                        match status {
                            Ok(s) if s.success() => {}
                            Ok(s) => {
                                eprintln!("Error running handler: {s}");
                                child_code = 2;
                            }
                            Err(e) => {
                                eprintln!("Error running handler: {e}");
                                child_code = 2;
                            }
                        }
                        locker.info("Child terminated, releasing lock");
                    }
                }
            }
        }
    }
    if let Err(e) = locker.release().await {
        end_session().await;
        return fail(format!("Lock release failed: {e}"));
    }
    end_session().await;
    match locker.cleanup().await {
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

/// Query pairs of a KV read: blocking when `index` > 0, `?consistent` when asked.
fn read_query(
    mut q: Vec<(&'static str, String)>,
    index: u64,
    wait: Duration,
    consistent: bool,
) -> Vec<(&'static str, String)> {
    if index > 0 {
        q.push(("index", index.to_string()));
        q.push(("wait", format!("{}ms", wait.as_millis())));
    }
    if consistent {
        q.push(("consistent", String::new()));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dead holders (no live contender key) are pruned; the value round-trips.
    #[test]
    fn semaphore_value() {
        let pair = Pair {
            value: br#"{"Limit":2,"Holders":{"a":true,"b":true}}"#.to_vec(),
            ..Default::default()
        };
        let mut l = SemaphoreLock::decode(&pair, 2).unwrap();
        assert_eq!(l.limit, 2);
        let alive = [Pair {
            session: Some("b".into()),
            ..Default::default()
        }];
        l.prune(&alive);
        assert_eq!(l.holders.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            String::from_utf8(l.encode()).unwrap(),
            r#"{"Holders":{"b":true},"Limit":2}"#
        );
        assert_eq!(SemaphoreLock::decode(&Pair::default(), 3).unwrap().limit, 3);
        assert_eq!(join("svc/", ".lock"), "svc/.lock");
        assert_eq!(join("", "x"), "x");
    }
}
