//! One watch task per distinct dependency, shared by every template that
//! needs it. With the consul backend a task long-polls with blocking
//! queries (index rules: unchanged = timeout, lower = reset to 0, and after
//! a failed query the next one starts from 0, never blocking); with
//! `-interval` it polls. At least 100 ms separate two queries of one
//! dependency; errors back off exponentially with jitter (250 ms .. 1 min)
//! and never stop the watch, unless consul-template's `retry { attempts }`
//! bounds them: then the watch gives up and the runner stops with an
//! error, as consul-template does. Data only ever changes on a successful
//! fetch, so an agent outage never blanks anything.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::dependency::Dependency;
use crate::render::DataStore;

/// Blocking query wait (consul-template's default).
pub const BLOCK_WAIT: Duration = Duration::from_secs(60);
const MIN_GAP: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Re-read period of non-blocking backends (file) in watch mode.
const REREAD: Duration = Duration::from_secs(1);

/// How failed queries are retried (consul-template's `consul { retry {
/// attempts backoff max_backoff } }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryRetry {
    /// First pause; it doubles per failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries after a failure before giving up; `None` never gives up.
    pub attempts: Option<u32>,
}

impl Default for QueryRetry {
    fn default() -> Self {
        QueryRetry {
            backoff: BACKOFF_MIN,
            max_backoff: BACKOFF_MAX,
            attempts: None,
        }
    }
}

impl QueryRetry {
    /// Whether to stop after `retries` retries have failed.
    pub fn exhausted(&self, retries: u32) -> bool {
        self.attempts.is_some_and(|a| retries >= a)
    }

    /// The pause before retry number `retries` (0-based), without jitter.
    pub fn pause(&self, retries: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << retries.min(20))
            .min(self.max_backoff)
    }
}

/// What a watch tells the runner.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// New data for this dependency.
    Changed(Dependency),
    /// `retry.attempts` ran out: the message says for what and why.
    GaveUp(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Block,
    Poll(Duration),
}

pub struct Watches {
    backend: Arc<Backend>,
    store: Arc<DataStore>,
    tx: mpsc::UnboundedSender<Notice>,
    mode: Mode,
    tasks: HashMap<Dependency, CancellationToken>,
    stop: CancellationToken,
    retry: QueryRetry,
}

impl Watches {
    pub fn new(
        backend: Arc<Backend>,
        store: Arc<DataStore>,
        mode: Mode,
        stop: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<Notice>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                backend,
                store,
                tx,
                mode,
                tasks: HashMap::new(),
                stop,
                retry: QueryRetry::default(),
            },
            rx,
        )
    }

    /// consul-template's `retry { attempts backoff max_backoff }`.
    pub fn set_retry(&mut self, r: QueryRetry) {
        let backoff = r.backoff.max(Duration::from_millis(10));
        self.retry = QueryRetry {
            backoff,
            max_backoff: r.max_backoff.max(backoff),
            attempts: r.attempts,
        };
    }

    /// Watch exactly `needed`: start new watches, stop unneeded ones.
    pub fn ensure(&mut self, needed: &BTreeSet<Dependency>) {
        self.tasks.retain(|dep, token| {
            let keep = needed.contains(dep);
            if !keep {
                tracing::debug!(dependency = %dep, "watch stopped");
                token.cancel();
                self.store.forget(dep);
            }
            keep
        });
        for dep in needed {
            if self.tasks.contains_key(dep) {
                continue;
            }
            tracing::debug!(dependency = %dep, "watch started");
            let token = self.stop.child_token();
            tokio::spawn(watch_one(
                dep.clone(),
                self.backend.clone(),
                self.store.clone(),
                self.tx.clone(),
                self.mode,
                self.retry,
                token.clone(),
            ));
            self.tasks.insert(dep.clone(), token);
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

async fn watch_one(
    dep: Dependency,
    backend: Arc<Backend>,
    store: Arc<DataStore>,
    tx: mpsc::UnboundedSender<Notice>,
    mode: Mode,
    retry: QueryRetry,
    stop: CancellationToken,
) {
    let blocking = mode == Mode::Block && backend.blocking() && dep.blocking();
    let mut index = 0u64;
    let mut retries = 0u32;
    let mut last: Option<Instant> = None;
    loop {
        if let Some(t) = last {
            let gap = t.elapsed();
            if gap < MIN_GAP && !sleep_or_stop(MIN_GAP - gap, &stop).await {
                return;
            }
        }
        last = Some(Instant::now());
        let q = if blocking { index } else { 0 };
        let res = tokio::select! {
            r = backend.fetch(&dep, q, BLOCK_WAIT) => r,
            _ = stop.cancelled() => return,
        };
        match res {
            Ok((data, idx)) => {
                retries = 0;
                // An index that went backwards (agent restarted, snapshot
                // restored) means start over from 0.
                index = if idx < index { 0 } else { idx };
                if store.put(&dep, data) {
                    tracing::debug!(dependency = %dep, index = idx, "data changed");
                    if tx.send(Notice::Changed(dep.clone())).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // The agent may come back restarted, its index lower than
                // ours: a blocking query at our old index would then wait
                // the full BLOCK_WAIT before the lower index shows. So the
                // first query after an error never blocks; its answer sets
                // the index again.
                index = 0;
                if retry.exhausted(retries) {
                    let msg = format!("{dep}: {e} (gave up after {retries} retries)");
                    let _ = tx.send(Notice::GaveUp(msg));
                    return;
                }
                let backoff = retry.pause(retries);
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 4);
                let pause = backoff + Duration::from_millis(jitter);
                tracing::warn!(dependency = %dep, error = %e, retry_in_ms = pause.as_millis() as u64, "fetch failed; keeping last data");
                if !sleep_or_stop(pause, &stop).await {
                    return;
                }
                retries += 1;
                continue;
            }
        }
        let pause = match mode {
            Mode::Poll(iv) => Some(iv),
            Mode::Block if !blocking => Some(REREAD),
            Mode::Block => None,
        };
        if let Some(p) = pause {
            if !sleep_or_stop(p, &stop).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// consul-template's schedule: backoff doubling up to max_backoff,
    /// `attempts` retries, 0 attempts (None here) never giving up.
    #[test]
    fn query_retry_schedule() {
        let r = QueryRetry {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            attempts: Some(3),
        };
        let pauses: Vec<u128> = (0..4).map(|i| r.pause(i).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 350, 350]);
        assert!(!r.exhausted(2) && r.exhausted(3));
        assert!(!QueryRetry::default().exhausted(u32::MAX));
        assert_eq!(QueryRetry::default().pause(40), BACKOFF_MAX);
    }
}
