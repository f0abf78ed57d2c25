//! The semaphore (`-n N`), as Consul's `api/semaphore.go`: one contender
//! key `<prefix>/<session>` per process, and `<prefix>/.lock` holding
//! `{"Limit":N,"Holders":{...}}`, updated by CAS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::kv::{join, next_wait, LockError, Locker, Pair, LOCK_KEY, LOCK_WAIT, MONITOR_WAIT};

/// Flags marking the KV entries of a semaphore (Consul's value).
pub(super) const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;

pub(super) struct Semaphore {
    pub prefix: String,
    pub limit: i64,
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

fn conflict() -> LockError {
    LockError::Conflict("Existing key does not match semaphore use".into())
}

impl Semaphore {
    fn lock_key(&self) -> String {
        join(&self.prefix, LOCK_KEY)
    }

    /// Acquire a slot; `Ok(false)` on shutdown or when `try_for` ran out.
    pub async fn acquire(
        &self,
        l: &Locker,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        let (prefix, limit) = (self.prefix.as_str(), self.limit);
        let contender = join(prefix, &l.session);
        let q = [("acquire", l.session.clone())];
        if !l
            .retrying(|| l.put(&contender, &q, SEMAPHORE_FLAG, Vec::new()))
            .await?
        {
            return Err(LockError::Other("failed to make contender entry".into()));
        }
        let start = Instant::now();
        let mut attempts = 0;
        let mut index = 0;
        let lock_key = self.lock_key();
        loop {
            let Some(wait) = next_wait(start, attempts, try_for) else {
                return Ok(false);
            };
            attempts += 1;
            let (pairs, idx) = tokio::select! {
                r = l.retrying(|| l.list(prefix, index, wait, false)) => r?,
                _ = stop.cancelled() => return Ok(false),
            };
            let lock_pair = find_lock(&pairs, &lock_key);
            if lock_pair.flags != SEMAPHORE_FLAG {
                return Err(conflict());
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
            if lock.holders.contains_key(&l.session) {
                return Ok(true);
            }
            if lock.holders.len() as i64 >= limit {
                index = idx;
                continue;
            }
            lock.holders.insert(l.session.clone(), true);
            let q = [("cas", lock_pair.modify_index.to_string())];
            let value = lock.encode();
            if l.retrying(|| l.put(&lock_key, &q, SEMAPHORE_FLAG, value.clone()))
                .await?
            {
                return Ok(true);
            }
            // Lost a race with another contender: read again.
        }
    }

    /// Returns when this session is no longer among the live holders.
    pub async fn monitor(&self, l: &Locker) {
        let lock_key = self.lock_key();
        let lock_key = lock_key.as_str();
        l.monitor(|index| async move {
            let (pairs, i) = l.list(&self.prefix, index, MONITOR_WAIT, true).await?;
            let lock_pair = find_lock(&pairs, lock_key);
            Ok(match SemaphoreLock::decode(&lock_pair, self.limit) {
                Ok(mut s) => {
                    s.prune(&pairs);
                    (s.holders.contains_key(&l.session), i)
                }
                Err(_) => (false, i),
            })
        })
        .await
    }

    /// Leave the holders (by CAS), then drop the contender key.
    pub async fn release(&self, l: &Locker) -> Result<(), LockError> {
        let lock_key = self.lock_key();
        loop {
            let (pair, _) = l.get(&lock_key, 0, LOCK_WAIT, false).await?;
            let pair = pair.unwrap_or_default();
            let mut lock = SemaphoreLock::decode(&pair, self.limit)?;
            if lock.holders.remove(&l.session).is_none() {
                break;
            }
            let q = [("cas", pair.modify_index.to_string())];
            if l.put(&lock_key, &q, SEMAPHORE_FLAG, lock.encode()).await? {
                break;
            }
        }
        l.delete(&join(&self.prefix, &l.session)).await
    }

    /// Delete the `.lock` entry when no live holder is left.
    pub async fn cleanup(&self, l: &Locker) -> Result<(), LockError> {
        let lock_key = self.lock_key();
        let (pairs, _) = l.list(&self.prefix, 0, LOCK_WAIT, false).await?;
        let lock_pair = find_lock(&pairs, &lock_key);
        if lock_pair.modify_index == 0 {
            return Ok(());
        }
        if lock_pair.flags != SEMAPHORE_FLAG {
            return Err(conflict());
        }
        let mut lock = SemaphoreLock::decode(&lock_pair, self.limit)?;
        lock.prune(&pairs);
        if !lock.holders.is_empty() || !l.delete_cas(&lock_key, lock_pair.modify_index).await? {
            return Err(LockError::InUse);
        }
        Ok(())
    }
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
    }
}
