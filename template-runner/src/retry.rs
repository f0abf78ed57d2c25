//! Retrying a failed write. A destination that was read-only, full or not
//! permitted can recover without any change of data, so the write is tried
//! again: after 1 s, doubling to at most 1 min, each delay shortened by up
//! to a fifth at random so that many templates don't retry in step. Only
//! the write itself is retried; a failing check_cmd means the content is
//! bad, and only a change of data can fix that.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::write::WriteError;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

/// A template whose last write failed.
#[derive(Clone, Debug)]
pub struct WriteRetry {
    /// When to try again.
    pub at: Instant,
    delay: Duration,
    /// The last failure's cause ([`WriteError::cause`]).
    cause: String,
    /// When the first failure of this run of failures happened.
    pub since: Instant,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The failed attempt had already put the new file in place (only the
    /// directory fsync failed), so its reload command is still owed.
    pub replaced: bool,
}

/// How a failure is to be logged.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first failure, or a different cause than the last one: log it.
    New,
    /// The same cause again: already logged.
    Again,
}

impl WriteRetry {
    /// Record a failed write after `prev` (None: the last write succeeded).
    pub fn record(prev: Option<WriteRetry>, err: &WriteError) -> (WriteRetry, Seen) {
        let now = Instant::now();
        let cause = err.cause();
        let (delay, since, attempts, replaced, seen) = match prev {
            None => (FIRST, now, 1, false, Seen::New),
            Some(p) => (
                (p.delay * 2).min(MAX),
                p.since,
                p.attempts + 1,
                p.replaced,
                if p.cause == cause {
                    Seen::Again
                } else {
                    Seen::New
                },
            ),
        };
        let r = WriteRetry {
            at: now + jittered(delay),
            delay,
            cause,
            since,
            attempts,
            replaced: replaced || err.replaced(),
        };
        (r, seen)
    }

    /// The data a render needs is not there yet: try again later, without
    /// counting an attempt.
    pub fn postpone(&mut self) {
        self.at = Instant::now() + jittered(self.delay);
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// Until the next attempt, for the log.
    pub fn retry_in(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// `d` shortened by up to a fifth at random.
fn jittered(d: Duration) -> Duration {
    let cut = rand::thread_rng().gen_range(0..=d.as_millis() as u64 / 5);
    d - Duration::from_millis(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::Op;

    fn io(op: Op, errno: i32, path: &str) -> WriteError {
        WriteError::Io {
            op,
            path: path.into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// 1 s doubling to 1 min with jitter; a cause is new only when its step
    /// or errno differs (the stage file name is random).
    #[test]
    fn backoff_and_distinct_causes() {
        let rofs = |p: &str| io(Op::CreateStage, libc::EROFS, p);
        let (mut r, seen) = WriteRetry::record(None, &rofs("/d/.a.1"));
        assert_eq!(seen, Seen::New);
        let first = r.retry_in();
        assert!(first <= FIRST && first >= FIRST * 4 / 5 - Duration::from_millis(5));
        let mut delays = vec![];
        for i in 0..10 {
            let (next, seen) = WriteRetry::record(Some(r), &rofs(&format!("/d/.a.{i}")));
            assert_eq!(seen, Seen::Again);
            delays.push(next.delay);
            r = next;
        }
        assert_eq!(delays[0], Duration::from_secs(2));
        assert_eq!(delays[4], Duration::from_secs(32));
        assert_eq!(*delays.last().unwrap(), MAX);
        assert!(r.retry_in() <= MAX);
        assert_eq!(r.attempts, 11);
        let (r, seen) = WriteRetry::record(Some(r), &io(Op::WriteStage, libc::ENOSPC, "/d/.a"));
        assert_eq!(seen, Seen::New);
        assert!(!r.replaced);
        let (r, _) = WriteRetry::record(Some(r), &io(Op::SyncDir, libc::EIO, "/d"));
        assert!(r.replaced);
    }
}
