//! What the lock and the semaphore share, as Consul's `api` package has it
//! beside `lock.go` and `semaphore.go`: the KV entries they read and write
//! (with the agent's blocking queries), retries on a blip, and the errors.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::Value;

use crate::apiclient::{key_path, ApiClient, Error as ApiClientError};

/// Between monitor retries after an error.
pub(super) const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);
/// Blocking wait of each read while waiting for the lock.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(15);
/// Blocking wait of each read while the lock is held.
pub(super) const MONITOR_WAIT: Duration = Duration::from_secs(300);
/// The key of a lock, and of a semaphore's holder list, under the prefix.
pub(super) const LOCK_KEY: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub(super) enum LockError {
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
pub(super) struct Pair {
    pub key: String,
    pub flags: u64,
    pub session: Option<String>,
    pub modify_index: u64,
    pub value: Vec<u8>,
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
pub(super) fn join(prefix: &str, name: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}/{name}")
    }
}

/// A session's view of the KV store: the client, the session holding
/// (or contending for) the lock, and how patient to be.
pub(super) struct Locker {
    pub api: ApiClient,
    pub session: String,
    pub monitor_retry: u32,
    pub verbose: bool,
}

impl Locker {
    pub fn info(&self, msg: impl std::fmt::Display) {
        if self.verbose {
            println!("{msg}");
        }
    }

    pub async fn get(
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

    pub async fn list(
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
    pub async fn put(
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

    pub async fn delete_cas(&self, key: &str, index: u64) -> Result<bool, LockError> {
        let q = [("cas", index.to_string())];
        let r = self
            .api
            .call(Method::DELETE, &format!("kv/{}", key_path(key)), &q, None)
            .await?;
        Ok(r.body.trim_ascii() == b"true")
    }

    pub async fn delete(&self, key: &str) -> Result<(), LockError> {
        self.api
            .call(Method::DELETE, &format!("kv/{}", key_path(key)), &[], None)
            .await?;
        Ok(())
    }

    /// Run `f`, retrying up to `monitor_retry` times, a second apart, while it
    /// fails with a retryable error (agent unreachable, 5xx): a waiting lock
    /// should not give up on a blip.
    pub async fn retrying<T, Fut>(&self, mut f: impl FnMut() -> Fut) -> Result<T, LockError>
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

    /// Returns when `held(index)` says the lock is no longer ours, or it
    /// cannot say so after `monitor_retry` consecutive retryable errors
    /// (each retry starts over from index 0).
    pub async fn monitor<Fut>(&self, mut held: impl FnMut(u64) -> Fut)
    where
        Fut: std::future::Future<Output = Result<(bool, u64), LockError>>,
    {
        let mut index = 0;
        loop {
            let mut retries = self.monitor_retry;
            let r = loop {
                match held(index).await {
                    Ok(x) => break Some(x),
                    Err(LockError::Api(e)) if retries > 0 && e.is_retryable() => {
                        retries -= 1;
                        index = 0;
                        tokio::time::sleep(MONITOR_RETRY_TIME).await;
                    }
                    Err(_) => break None,
                }
            };
            match r {
                Some((true, i)) => index = i,
                _ => return,
            }
        }
    }
}

/// How long the next wait for the lock may be; `None` once `try_for` is
/// spent.
pub(super) fn next_wait(
    start: Instant,
    attempts: u32,
    try_for: Option<Duration>,
) -> Option<Duration> {
    match try_for {
        None => Some(LOCK_WAIT),
        Some(limit) if attempts == 0 => Some(limit),
        Some(limit) => limit.checked_sub(start.elapsed()).filter(|d| !d.is_zero()),
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

    #[test]
    fn keys_join_as_go_path_join() {
        assert_eq!(join("svc/", ".lock"), "svc/.lock");
        assert_eq!(join("", "x"), "x");
    }
}
