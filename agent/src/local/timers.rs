//! When the local agent must act on its own: a TTL running out, a deferred
//! output write (`check_update_interval`) falling due, a service critical
//! for longer than its `DeregisterCriticalServiceAfter`.
//!
//! One task sleeps until the earliest such deadline of all checks (as
//! Consul arms one timer per check, each fires on time, not on a tick) and
//! is woken early only when a deadline earlier than the one it sleeps
//! toward appears.

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The deadline the scheduler sleeps toward, kept under the local agent's
/// lock so that arming and re-computing never race.
#[derive(Default)]
pub struct Armed {
    at: Option<Instant>,
    wake: Arc<Notify>,
}

impl Armed {
    /// A deadline appeared or moved: wake the scheduler if it is earlier
    /// than the one it sleeps toward (a later one is found when it wakes).
    pub fn arm(&mut self, at: Instant) {
        if self.at.is_none_or(|cur| at < cur) {
            self.at = Some(at);
            self.wake.notify_one();
        }
    }

    /// The scheduler recomputed its next deadline.
    pub fn set(&mut self, at: Option<Instant>) {
        self.at = at;
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// Something whose deadlines can be processed: returns the next deadline
/// still in the future after acting on every past one.
pub trait Expire: Send + Sync + 'static {
    fn expire(&self, now: Instant) -> Option<Instant>;
}

/// Run until `stop`, or until the agent is dropped.
pub async fn run<T: Expire>(agent: Weak<T>, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let next = match agent.upgrade() {
            Some(a) => a.expire(Instant::now()),
            None => return,
        };
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}
