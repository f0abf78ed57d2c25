//! The lock (`-n 1`), as Consul's `api/lock.go`: one key `<prefix>/.lock`
//! acquired with the session (`?acquire=`), flagged as a lock's.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::kv::{next_wait, LockError, Locker, LOCK_WAIT, MONITOR_WAIT};

/// Flags marking the KV entry of a lock (Consul's value).
pub(super) const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Wait after a refused acquire with no holder (lock-delay in force).
const LOCK_RETRY: Duration = Duration::from_secs(5);

pub(super) struct Lock {
    pub key: String,
}

fn conflict() -> LockError {
    LockError::Conflict("Existing key does not match lock use".into())
}

impl Lock {
    /// Acquire; `Ok(false)` on shutdown or when `try_for` ran out.
    pub async fn acquire(
        &self,
        l: &Locker,
        try_for: Option<Duration>,
        stop: &CancellationToken,
    ) -> Result<bool, LockError> {
        let key = self.key.as_str();
        let start = Instant::now();
        let mut attempts = 0;
        let mut index = 0;
        loop {
            let Some(wait) = next_wait(start, attempts, try_for) else {
                return Ok(false);
            };
            attempts += 1;
            let (pair, idx) = tokio::select! {
                r = l.retrying(|| l.get(key, index, wait, false)) => r?,
                _ = stop.cancelled() => return Ok(false),
            };
            if let Some(p) = &pair {
                if p.flags != LOCK_FLAG {
                    return Err(conflict());
                }
                match p.session.as_deref() {
                    Some(s) if s == l.session => return Ok(true),
                    Some(_) => {
                        index = idx;
                        continue;
                    }
                    None => {}
                }
            }
            let q = [("acquire", l.session.clone())];
            if l.retrying(|| l.put(key, &q, LOCK_FLAG, Vec::new())).await? {
                return Ok(true);
            }
            // Refused: someone got there first (wait on them), or the key is
            // in lock-delay (no holder: try again after a pause).
            let (pair, idx) = l.retrying(|| l.get(key, 0, wait, false)).await?;
            if pair.is_some_and(|p| p.session.is_some()) {
                index = idx;
                continue;
            }
            index = 0;
            l.info("Lock refused (lock-delay?); retrying in 5s");
            tokio::select! {
                _ = tokio::time::sleep(LOCK_RETRY) => {}
                _ = stop.cancelled() => return Ok(false),
            }
        }
    }

    /// Returns when the lock is no longer held by this session.
    pub async fn monitor(&self, l: &Locker) {
        l.monitor(|index| async move {
            let (p, i) = l.get(&self.key, index, MONITOR_WAIT, true).await?;
            Ok((p.and_then(|p| p.session).as_deref() == Some(&*l.session), i))
        })
        .await
    }

    pub async fn release(&self, l: &Locker) -> Result<(), LockError> {
        let q = [("release", l.session.clone())];
        // false = no longer ours (lost); nothing more to do.
        l.put(&self.key, &q, LOCK_FLAG, Vec::new()).await?;
        Ok(())
    }

    /// Delete the lock entry when nobody holds it any more.
    pub async fn cleanup(&self, l: &Locker) -> Result<(), LockError> {
        let (Some(pair), _) = l.get(&self.key, 0, LOCK_WAIT, false).await? else {
            return Ok(());
        };
        if pair.flags != LOCK_FLAG {
            return Err(conflict());
        }
        if pair.session.is_some() || !l.delete_cas(&self.key, pair.modify_index).await? {
            return Err(LockError::InUse);
        }
        Ok(())
    }
}
