//! One watch task per distinct dependency, shared by every template that
//! needs it. With the consul backend a task long-polls with blocking
//! queries (index rules: unchanged = timeout, lower = reset to 0, and after
//! a failed query the next one starts from 0, never blocking); with
//! `-interval` it polls. At least 100 ms separate two queries of one
//! dependency; errors back off exponentially with jitter (250 ms .. 1 min)
//! and never stop the watch. Data only ever changes on a successful fetch,
//! so an agent outage never blanks anything.

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Block,
    Poll(Duration),
}

pub struct Watches {
    backend: Arc<Backend>,
    store: Arc<DataStore>,
    tx: mpsc::UnboundedSender<Dependency>,
    mode: Mode,
    tasks: HashMap<Dependency, CancellationToken>,
    stop: CancellationToken,
    /// (first, longest) pause after a failed query.
    backoff: (Duration, Duration),
}

impl Watches {
    pub fn new(
        backend: Arc<Backend>,
        store: Arc<DataStore>,
        mode: Mode,
        stop: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<Dependency>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                backend,
                store,
                tx,
                mode,
                tasks: HashMap::new(),
                stop,
                backoff: (BACKOFF_MIN, BACKOFF_MAX),
            },
            rx,
        )
    }

    /// consul-template's `retry { backoff max_backoff }`.
    pub fn set_backoff(&mut self, first: Duration, max: Duration) {
        self.backoff = (first.max(Duration::from_millis(10)), max.max(first));
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
                self.backoff,
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
    tx: mpsc::UnboundedSender<Dependency>,
    mode: Mode,
    (backoff_min, backoff_max): (Duration, Duration),
    stop: CancellationToken,
) {
    let blocking = mode == Mode::Block && backend.blocking() && dep.blocking();
    let mut index = 0u64;
    let mut backoff = backoff_min;
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
                backoff = backoff_min;
                // An index that went backwards (agent restarted, snapshot
                // restored) means start over from 0.
                index = if idx < index { 0 } else { idx };
                if store.put(&dep, data) {
                    tracing::debug!(dependency = %dep, index = idx, "data changed");
                    if tx.send(dep.clone()).is_err() {
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
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 4);
                let pause = backoff + Duration::from_millis(jitter);
                tracing::warn!(dependency = %dep, error = %e, retry_in_ms = pause.as_millis() as u64, "fetch failed; keeping last data");
                if !sleep_or_stop(pause, &stop).await {
                    return;
                }
                backoff = (backoff * 2).min(backoff_max);
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
