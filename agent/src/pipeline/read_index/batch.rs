//! The queues of reads waiting for a leader round ([`super::wait`]): one
//! for default reads, one for `?consistent`. Kept apart from the rounds
//! themselves so the agent's state can hold them without the pipeline.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Reads waiting for one round at most (an HTTP connection holds one read
/// at a time, so the connection limit keeps this far lower).
const MAX_WAITING: usize = 1 << 16;
/// Leader rounds out at once per batch. With one, a read that arrives
/// while a round is out waits for that round and then its own; with two,
/// its own starts at once (a round carries the reads queued when it left).
const MAX_ROUNDS: usize = 2;

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
    /// Drivers running (each sends one round at a time).
    running: usize,
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
    /// Queue a read: its answer, and whether the caller must start a
    /// driver (fewer than [`MAX_ROUNDS`] run). `None` when [`MAX_WAITING`] reads wait already.
    pub(super) fn join(&self) -> Option<(oneshot::Receiver<Round>, bool)> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock();
        if q.waiting.len() >= MAX_WAITING {
            return None;
        }
        q.waiting.push(tx);
        let start = q.running < MAX_ROUNDS;
        q.running += usize::from(start);
        Some((rx, start))
    }

    /// Every read queued so far, or `None` (the driver stops) when none is.
    pub(super) fn take(&self) -> Option<Vec<oneshot::Sender<Round>>> {
        let mut q = self.queue.lock();
        if q.waiting.is_empty() {
            q.running -= 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_drivers_and_each_round_takes_all_queued() {
        let b = Batch::default();
        let starts: Vec<bool> = (0..3).map(|_| b.join().unwrap().1).collect();
        assert_eq!(starts, [true, true, false]);
        // Driver 1's round carries all three; driver 2 finds none and stops.
        assert_eq!(b.take().map(|w| w.len()), Some(3));
        assert!(b.take().is_none());
        // A read arriving while driver 1's round is out starts its own.
        assert!(b.join().unwrap().1);
        assert_eq!(b.take().map(|w| w.len()), Some(1));
        // Both rounds answered, nothing queued: both stop.
        assert!(b.take().is_none());
        assert!(b.take().is_none());
        assert!(b.join().unwrap().1, "no driver runs: this read starts one");
    }
}
