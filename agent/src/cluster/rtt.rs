//! Round trips of the gossip probes, for network coordinates.
//!
//! foca does not report them, so the gossip task reads the header of every
//! packet it sends and opens and tells this: a direct `Ping` to a member
//! starts a timer, that member's `Ack` with the same probe number stops it (as
//! serf takes its RTTs from memberlist's probes). Indirect probes are not
//! timed: their round trip is not the member's. At most one probe per
//! member is in flight, and stale ones are dropped, so state is bounded by
//! the membership.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A probe unanswered for this long is forgotten (foca gave up long before).
const STALE: Duration = Duration::from_secs(5);

/// Most probes in flight at once (one per member; a bound regardless).
const MAX_PENDING: usize = 8192;

/// One measured round trip: the member's node name and the time.
pub type Sample = (String, Duration);

#[derive(Default)]
pub struct RttProbe {
    pending: HashMap<String, (u8, Instant)>,
    sink: Option<mpsc::Sender<Sample>>,
}

impl RttProbe {
    /// Where samples go (the coordinate loop); without one nothing is timed.
    pub fn set_sink(&mut self, tx: mpsc::Sender<Sample>) {
        self.sink = Some(tx);
    }

    /// Whether anyone wants samples (else the headers need no decoding).
    pub fn wanted(&self) -> bool {
        self.sink.is_some()
    }

    /// This agent is sending probe `n` to member `to`.
    pub fn ping(&mut self, to: &str, n: u8) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.retain(|_, (_, at)| at.elapsed() < STALE);
        }
        if self.pending.len() < MAX_PENDING || self.pending.contains_key(to) {
            self.pending.insert(to.to_string(), (n, Instant::now()));
        }
    }

    /// Member `from` acknowledged probe `n`.
    pub fn ack(&mut self, from: &str, n: u8) {
        let Some(sink) = &self.sink else { return };
        let Some((want, at)) = self.pending.get(from).copied() else {
            return;
        };
        if want != n {
            return;
        }
        self.pending.remove(from);
        let rtt = at.elapsed();
        if rtt < STALE {
            // A full queue drops the sample: coordinates tolerate gaps.
            let _ = sink.try_send((from.to_string(), rtt));
        }
    }

    /// Drop probes nobody will answer.
    pub fn reap(&mut self) {
        self.pending.retain(|_, (_, at)| at.elapsed() < STALE);
    }
}
