//! Watchers of the live log (`GET /v1/agent/monitor`): each has its own
//! level and a bounded queue of lines ([`QUEUE`], Consul's buffer size).
//! Publishing never waits: a watcher whose queue is full (a slow reader)
//! loses the line, counted and reported when it detaches, so no reader can
//! hold up the agent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::Level;

use super::level::{admits, rank};

/// Lines queued per watcher (Consul's monitor buffer).
pub const QUEUE: usize = 512;
/// Lines sent to the client in one write at most.
const BATCH: usize = 64;

struct Watcher {
    id: u64,
    level: Level,
    json: bool,
    tx: mpsc::Sender<Bytes>,
    dropped: Arc<AtomicU64>,
}

/// Everyone reading the log live.
pub struct Monitors {
    /// The agent's own level (stderr and `-log-file`), as a rank: the
    /// floor of [`Monitors::widest`]; `tribune reload` may change it.
    base: Arc<AtomicUsize>,
    widest: Arc<AtomicUsize>,
    watchers: Mutex<Vec<Watcher>>,
    next_id: AtomicU64,
}

impl Monitors {
    pub(super) fn new(base: Arc<AtomicUsize>, widest: Arc<AtomicUsize>) -> Arc<Self> {
        Arc::new(Self {
            base,
            widest,
            watchers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Some watcher reads events of `level` from `target`.
    pub(super) fn wants(&self, target: &str, level: Level) -> bool {
        self.watchers
            .lock()
            .iter()
            .any(|w| admits(w.level, target, level))
    }

    /// Queue a line to every watcher that reads it; never blocks.
    pub(super) fn publish(
        &self,
        target: &str,
        level: Level,
        floor: Level,
        text: &str,
        json: impl FnOnce() -> String,
    ) {
        let watchers = self.watchers.lock();
        if watchers.is_empty() {
            return;
        }
        let text_bytes = Bytes::copy_from_slice(text.as_bytes());
        let mut json = Some(json);
        let mut json_bytes: Option<Bytes> = None;
        let reads = |w: &&Watcher| w.level >= floor && admits(w.level, target, level);
        for w in watchers.iter().filter(reads) {
            let line = if w.json {
                json_bytes
                    .get_or_insert_with(|| {
                        Bytes::from(json.take().map(|f| f()).unwrap_or_default())
                    })
                    .clone()
            } else {
                text_bytes.clone()
            };
            if w.tx.try_send(line).is_err() {
                w.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Widest level read by stderr or any watcher; re-evaluate `tracing`'s
    /// per-call-site cache when it changes. Never called with the lock held.
    pub(super) fn refresh(&self) {
        let widest = self
            .watchers
            .lock()
            .iter()
            .map(|w| rank(w.level))
            .fold(self.base.load(Ordering::Relaxed), usize::max);
        if self.widest.swap(widest, Ordering::Relaxed) != widest {
            tracing::callsite::rebuild_interest_cache();
        }
    }

    /// Start reading the log at `level` (JSON lines with `json`).
    pub fn attach(self: &Arc<Self>, level: Level, json: bool) -> (mpsc::Receiver<Bytes>, Guard) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.watchers.lock().push(Watcher {
            id,
            level,
            json,
            tx,
            dropped: dropped.clone(),
        });
        self.refresh();
        let guard = Guard {
            monitors: self.clone(),
            id,
            dropped,
        };
        (rx, guard)
    }

    /// Watchers attached now.
    pub fn count(&self) -> usize {
        self.watchers.lock().len()
    }
}

/// Detaches its watcher when dropped (the client went away).
pub struct Guard {
    monitors: Arc<Monitors>,
    id: u64,
    dropped: Arc<AtomicU64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.monitors.watchers.lock().retain(|w| w.id != self.id);
        self.monitors.refresh();
        let n = self.dropped.load(Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(dropped_count = n, "Dropped logs during monitor request");
        }
    }
}

/// The streamed response body: queued lines until the client hangs up or
/// the agent shuts down.
pub struct MonitorBody {
    rx: mpsc::Receiver<Bytes>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    _guard: Guard,
}

impl MonitorBody {
    pub fn new(
        rx: mpsc::Receiver<Bytes>,
        guard: Guard,
        stop: WaitForCancellationFutureOwned,
    ) -> Self {
        Self {
            rx,
            stop: Box::pin(stop),
            _guard: guard,
        }
    }
}

impl hyper::body::Body for MonitorBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(first)) => {
                // Whatever else is queued goes in the same write.
                let mut buf = first.to_vec();
                for _ in 1..BATCH {
                    match self.rx.try_recv() {
                        Ok(more) => buf.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
