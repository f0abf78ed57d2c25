//! The queues of reads waiting for a leader round ([`super::wait`]): one
//! for default reads, one for `?consistent`. Kept apart from the rounds
//! themselves so the agent's state can hold them without the pipeline.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Reads waiting for one round at most (an HTTP connection holds one read
/// at a time, so the connection limit keeps this far lower).
const MAX_WAITING: usize = 1 << 16;

/// What a round found out.
#[derive(Clone, Copy, Debug)]
pub(super) enum Round {
    /// The leader's applied index.
    Index(u64),
    /// This server leads now: it answers as the leader does.
    Local,
    /// No leader answered within the forwarding hold.
    Failed,
}

#[derive(Default)]
struct Queue {
    running: bool,
    waiting: Vec<oneshot::Sender<Round>>,
}

/// Reads of one kind (default or `?consistent`) sharing leader rounds.
#[derive(Default)]
pub(super) struct Batch {
    queue: Mutex<Queue>,
}

/// The two batches of an agent.
#[derive(Default)]
pub struct ReadIndex {
    default: Arc<Batch>,
    consistent: Arc<Batch>,
}

impl Batch {
    /// Queue a read: its answer, and whether the caller must start the
    /// driver (none runs). `None` when [`MAX_WAITING`] reads wait already.
    pub(super) fn join(&self) -> Option<(oneshot::Receiver<Round>, bool)> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock();
        if q.waiting.len() >= MAX_WAITING {
            return None;
        }
        q.waiting.push(tx);
        Some((rx, !std::mem::replace(&mut q.running, true)))
    }

    /// Every read queued so far, or `None` (the driver stops) when none is.
    pub(super) fn take(&self) -> Option<Vec<oneshot::Sender<Round>>> {
        let mut q = self.queue.lock();
        if q.waiting.is_empty() {
            q.running = false;
            return None;
        }
        Some(std::mem::take(&mut q.waiting))
    }
}

impl ReadIndex {
    /// The batch of `?consistent` reads, or of default ones.
    pub(super) fn batch(&self, consistent: bool) -> &Arc<Batch> {
        if consistent {
            &self.consistent
        } else {
            &self.default
        }
    }
}
