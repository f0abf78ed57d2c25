//! A follower's default (and `?consistent`) read by read index (issue 21):
//! instead of forwarding the request whole, the follower asks the leader
//! for its applied index — lease-checked for a default read, confirmed by
//! a quorum for `?consistent` — waits until its own state machine has
//! applied that far, and answers from local state with the headers the
//! leader would give (`X-Consul-KnownLeader: true`, `LastContact: 0`).
//!
//! Why this is no weaker than the leader answering: every write the leader
//! acknowledged before the question arrived was applied there first, so
//! the index it answers covers it; the leader answers only while its lease
//! holds (no other leader can have been elected and acknowledged writes
//! since), or after a quorum's heartbeat round for `?consistent`. The
//! follower answers only from exactly that index ([`still_at`]), never from
//! a later one: entries past it may be committed but not yet applied on the
//! leader, so the leader's own later reads (served from what it applied)
//! could miss what the follower had shown. A follower behind or past the
//! index (writes flowing) asks again once, then forwards the read.
//!
//! One leader round trip serves every read waiting at that moment: reads
//! queue in a `Batch` (`batch.rs`); a driver task sends one question for all that
//! queued before it was sent, and the next round takes those that came
//! during it (each read's question is asked after the read arrived). Two
//! drivers may have a round out at once, so a read that comes while one
//! is out need not wait for it to return before its own is asked.
//!
//! Blocking reads (`?index`), `?cached`, snapshots and paths outside
//! `PATHS` are forwarded as before ([`super::forward`]).

pub mod batch;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::context::{Consistency, RequestCtx};
use super::error::ApiError;
use crate::app::{AppState, Shared};
use crate::cluster::Upstream;
use crate::raft::leadership::Hold;
use batch::{Batch, Round};

/// Where the question goes on the server RPC port.
pub const PATH: &str = "/rpc/read-index";

/// Read paths answered wholly from replicated tables, so that a follower
/// caught up to the leader's index gives the leader's answer.
const PATHS: [&str; 5] = [
    "/v1/kv/",
    "/v1/catalog/",
    "/v1/health/",
    "/v1/session/",
    "/v1/coordinate/",
];

/// One question's wait on the leader; more than this and the leader is
/// taken as unreachable (a stopped process accepts connections but never
/// answers). Retried, elsewhere once a new leader is known, up to
/// Consul's rpc_hold_timeout ([`Hold`]).
const ATTEMPT: Duration = Duration::from_secs(2);
/// What the leader allows its own check (lease, else a quorum round).
pub const LEADER_CHECK: Duration = Duration::from_millis(1500);
/// How long a follower waits to apply up to the leader's index before the
/// read is forwarded instead (a follower far behind).
const CATCH_UP: Duration = Duration::from_secs(2);

/// The follower's question.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ask {
    /// `?consistent`: confirm with a quorum, not the lease.
    pub consistent: bool,
}

/// The leader's answer: its applied raft index.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub index: u64,
}

/// A default or `?consistent` read on a follower that may be answered here
/// once caught up: a GET or HEAD, not blocking, on a `PATHS` path.
pub fn eligible(method: &Method, path: &str, ctx: &RequestCtx) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && !ctx.query.has("index")
        && !ctx.query.has("stale")
        && PATHS.iter().any(|p| path.starts_with(p))
}

/// What the read does next.
pub enum Next {
    /// This server has applied exactly the leader's index: answer here
    /// with the leader's headers, and check [`still_at`] afterwards.
    Ready(u64),
    /// This server leads now: answer here, checked as any leader read.
    Local,
    /// Already past the leader's index (writes flowing): ask again.
    Past,
    /// Not at the leader's index in time: forward it to the leader.
    Forward,
    Failed(ApiError),
}

/// Wait until `s` may answer a read of consistency `c` (Default or
/// Consistent) as the leader would.
pub async fn wait(s: &Shared, up: &Upstream, c: Consistency) -> Next {
    let consistent = c == Consistency::Consistent;
    let batch = s.read_index.batch(consistent);
    let Some((rx, start)) = batch.join() else {
        return Next::Failed(ApiError::Internal("too many reads waiting".into()));
    };
    if start {
        // A task of its own: a round outlives any one read's connection.
        tokio::spawn(drive(batch.clone(), s.clone(), up.clone(), consistent));
    }
    match rx.await {
        Ok(Round::Index(i)) => caught_up(s, i).await,
        Ok(Round::Local) => Next::Local,
        Ok(Round::Failed) | Err(_) => Next::Failed(ApiError::NoLeader),
    }
}

/// Rounds until no read waits: each takes every read queued so far.
async fn drive(batch: Arc<Batch>, s: Shared, up: Upstream, consistent: bool) {
    loop {
        let Some(waiting) = batch.take() else {
            return;
        };
        let r = round(&s, &up, consistent).await;
        for w in waiting {
            let _ = w.send(r);
        }
    }
}

/// One question to the leader, retried until its [`Hold`] is over.
async fn round(s: &AppState, up: &Upstream, consistent: bool) -> Round {
    let hold = Hold::start();
    let ask = Ask { consistent };
    loop {
        if s.leadership.is_leader() {
            return Round::Local;
        }
        for target in up.targets() {
            match up
                .rpc
                .call::<_, Answer>(&target, PATH, &ask, ATTEMPT, 1)
                .await
            {
                Ok(a) => {
                    up.good(&target);
                    return Round::Index(a.index);
                }
                Err(e) => {
                    tracing::debug!(%target, error = %e, "read index: leader did not answer");
                    up.bad(&target);
                }
            }
        }
        if hold.over() {
            return Round::Failed;
        }
        hold.pause(None).await;
    }
}

/// This server's applied raft index (the tables', updated before a write
/// is acknowledged).
fn applied(s: &AppState) -> u64 {
    s.store.read().last_applied.map_or(0, |l| l.index)
}

/// The state answered is exactly the leader's at `index`, before and after
/// the handler read it (applies only move forward): not one entry more.
/// An entry past it may be committed but not yet applied on the leader,
/// whose own reads would then not see what this one answered.
pub fn still_at(s: &AppState, index: u64) -> bool {
    applied(s) == index
}

/// Until this server has applied `index` (bounded by [`CATCH_UP`]).
async fn caught_up(s: &AppState, index: u64) -> Next {
    let now = applied(s);
    if now >= index {
        return at(now, index);
    }
    let Some(raft) = s.raft.as_ref() else {
        return Next::Forward;
    };
    // Raft's metrics report an apply after the tables have it.
    match raft
        .wait(Some(CATCH_UP))
        .applied_index_at_least(Some(index), "read index")
        .await
    {
        Ok(_) => at(applied(s), index),
        Err(_) => {
            tracing::debug!(index, "read index: not caught up in time; forwarding");
            Next::Forward
        }
    }
}

fn at(applied: u64, index: u64) -> Next {
    match applied == index {
        true => Next::Ready(index),
        false => Next::Past,
    }
}

/// The leader's side of [`PATH`]: its applied index, read after its check
/// passed (the lease, else a quorum round; always a quorum round for
/// `?consistent`), so it covers every write acknowledged before the
/// question arrived. 503 when this server does not lead or cannot tell.
pub async fn answer(s: &AppState, ask: Ask) -> Result<Answer, (StatusCode, &'static str)> {
    if !s.leadership.is_leader() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "not the leader"));
    }
    let c = if ask.consistent {
        Consistency::Consistent
    } else {
        Consistency::Default
    };
    match tokio::time::timeout(LEADER_CHECK, s.gate(c)).await {
        Ok(Ok(())) => Ok(Answer { index: applied(s) }),
        _ => Err((StatusCode::SERVICE_UNAVAILABLE, "No cluster leader")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, Uri};

    fn ctx(uri: &str) -> RequestCtx {
        RequestCtx::parse(&uri.parse::<Uri>().unwrap(), &HeaderMap::new(), "dc1")
    }

    #[test]
    fn only_plain_reads_on_replicated_tables() {
        let yes = |m: Method, u: &str| eligible(&m, u.split('?').next().unwrap(), &ctx(u));
        assert!(yes(Method::GET, "/v1/kv/a"));
        assert!(yes(Method::HEAD, "/v1/kv/a?recurse"));
        assert!(yes(Method::GET, "/v1/kv/a?consistent"));
        assert!(yes(Method::GET, "/v1/health/service/web?passing"));
        assert!(yes(Method::GET, "/v1/catalog/nodes"));
        // Blocking, stale, writes, other endpoints: not by read index.
        assert!(!yes(Method::GET, "/v1/kv/a?index=7"));
        assert!(!yes(Method::GET, "/v1/kv/a?stale"));
        assert!(!yes(Method::PUT, "/v1/kv/a"));
        assert!(!yes(Method::DELETE, "/v1/kv/a"));
        assert!(!yes(Method::GET, "/v1/operator/autopilot/health"));
        assert!(!yes(Method::GET, "/v1/snapshot"));
        assert!(!yes(Method::GET, "/v1/acl/tokens"));
    }
}
