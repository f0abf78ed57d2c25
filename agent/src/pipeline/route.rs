//! Step 3 of the pipeline: where a request is answered — here, by the
//! leader (from a follower), or by a server (from a client agent) — and,
//! for a read answered here, whether this agent may answer it now
//! ([`AppState::gate`]: the leader lease, or a quorum's confirmation).
//!
//! A request whose `?dc=` names another datacenter goes to an alive server
//! of that datacenter, picked by the WAN router ([`Route::Datacenter`]);
//! from a client agent it goes to a local server first, which routes it.
//! A forwarded request is carried by [`super::forward`].

use std::time::Duration;

use axum::http::Method;

use super::context::{Consistency, RequestCtx};
use super::error::ApiError;
use crate::app::AppState;
use crate::cluster::Upstream;

/// How long a read waits for a quorum to confirm the leader (Consul's rpc_hold_timeout).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(7);

/// Whole snapshots: replicated state, forwarded streamed (see
/// [`super::forward`]).
pub const SNAPSHOT: &str = "/v1/snapshot";

/// Where a request goes.
pub enum Route {
    /// This agent answers (agent endpoints, the leader, `?stale` reads on
    /// a follower).
    Here,
    /// A follower sends it to the leader.
    Leader(Upstream),
    /// A follower answers it once caught up to the leader's index
    /// ([`super::read_index`]).
    ReadIndex(Upstream),
    /// A client agent, which holds no state, sends it to a server.
    Server(Upstream),
    /// A server sends it to a server of another datacenter (`?dc=`), which
    /// answers it through its own leader.
    Datacenter(String),
}

/// Paths another datacenter answers for `?dc=` (Consul's RPC endpoints
/// that take a datacenter, snapshots included; agent endpoints are this
/// agent's own).
fn dc_routed(path: &str) -> bool {
    replicated(path, true) || path.starts_with("/v1/event/")
}

/// Paths answered from replicated state (the rest are agent-local).
fn replicated(path: &str, client: bool) -> bool {
    const PREFIXES: [&str; 11] = [
        "/v1/acl/",
        "/v1/internal/ui/",
        "/v1/kv",
        "/v1/txn",
        "/v1/catalog/",
        "/v1/health/",
        "/v1/session/",
        "/v1/operator/",
        "/v1/coordinate/",
        "/v1/query",
        SNAPSHOT,
    ];
    if path == "/v1/catalog/datacenters" {
        return false;
    }
    PREFIXES.iter().any(|p| path.starts_with(p)) || (client && path.starts_with("/v1/status/"))
}

/// The primary datacenter, for a write of policies or roles (or the
/// bootstrap) made in another datacenter (Consul forwards them there).
/// Token writes are decided by their handlers, which need the body or the
/// token to tell a local token (kept here) from a global one
/// (`http::acl`, [`super::forward::to_datacenter`]).
fn acl_primary<'a>(
    s: &'a AppState,
    method: &Method,
    path: &str,
    ctx: &RequestCtx,
) -> Option<&'a str> {
    const WRITES: [&str; 3] = ["/v1/acl/policy", "/v1/acl/role", "/v1/acl/bootstrap"];
    let primary = s.config.primary_datacenter.as_deref()?;
    let ours = primary == s.config.datacenter;
    let acl_write = !is_read(method) && WRITES.iter().any(|w| path.starts_with(w));
    (s.config.acl.enabled && !ours && acl_write && ctx.query.get("dc").is_none()).then_some(primary)
}

/// Reads only the leader answers, `?stale` or not.
const LEADER_ONLY: [&str; 2] = [
    "/v1/operator/autopilot/health",
    "/v1/operator/autopilot/state",
];

/// Reads may be repeated on another server; every other method is a write.
pub fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD)
}

/// Where a request with this method, path and context is answered.
pub fn decide(s: &AppState, method: &Method, path: &str, ctx: &RequestCtx) -> Route {
    let client = s.raft.is_none();
    if let Some(dc) = ctx.remote_dc().filter(|_| dc_routed(path)) {
        return match (&s.upstream, client) {
            (_, false) => Route::Datacenter(dc.to_string()),
            (Some(up), true) => Route::Server(up.clone()),
            (None, true) => Route::Here,
        };
    }
    // ACL writes belong to the primary datacenter, which replicates them
    // to the others (see `crate::acl::replication`).
    if let Some(primary) = acl_primary(s, method, path, ctx) {
        return match (&s.upstream, client) {
            (_, false) => Route::Datacenter(primary.to_string()),
            (Some(up), true) => Route::Server(up.clone()),
            (None, true) => Route::Here,
        };
    }
    // Only servers know the other datacenters.
    if client && path == "/v1/catalog/datacenters" {
        if let Some(up) = &s.upstream {
            return Route::Server(up.clone());
        }
    }
    // A server's own WAN view answers, as Consul's `ListDatacenters`.
    if !replicated(path, client) || (!client && path == "/v1/coordinate/datacenters") {
        return Route::Here;
    }
    // The leader answers everything itself: decided before any other work.
    if !client && s.leadership.is_leader() {
        return Route::Here;
    }
    let Some(up) = s.upstream.as_ref() else {
        return Route::Here;
    };
    if client {
        return Route::Server(up.clone());
    }
    // Autopilot's health is the leader's view (Consul requires it there).
    let leader_only = LEADER_ONLY.contains(&path);
    if is_read(method) && !leader_only && ctx.query.has("stale") {
        return Route::Here;
    }
    if super::read_index::eligible(method, path, ctx) {
        return Route::ReadIndex(up.clone());
    }
    Route::Leader(up.clone())
}

impl AppState {
    /// Make sure a read with this consistency may be answered here.
    ///
    /// Default reads are answered from local state while the leader lease
    /// holds (an atomic load); otherwise, on a leader, only after a quorum
    /// confirms it still leads, as `?consistent` reads always are.
    pub async fn gate(&self, c: Consistency) -> Result<(), ApiError> {
        match c {
            // The leader checked, and this server applied its index.
            Consistency::Stale | Consistency::ReadIndex | Consistency::ReadIndexConsistent => {
                Ok(())
            }
            Consistency::Default if self.leadership.lease_valid() => Ok(()),
            Consistency::Default if self.leadership.is_leader() => self.confirm_leadership().await,
            Consistency::Default => Err(ApiError::NoLeader),
            // A lone voter's lease is the quorum's answer.
            Consistency::Consistent if self.leadership.sole_leader() => Ok(()),
            Consistency::Consistent => self.confirm_leadership().await,
        }
    }

    /// A heartbeat round: this node still leads, and has applied everything
    /// committed before the read arrived.
    async fn confirm_leadership(&self) -> Result<(), ApiError> {
        let Some(raft) = self.raft.as_ref() else {
            return Err(ApiError::NoLeader);
        };
        // Raft cannot answer while a write waits for the disk.
        if self.leadership.storage().failing() {
            return Err(ApiError::NoLeader);
        }
        // Boxed: openraft's future is large, and every read's future
        // (parked for minutes when blocking) would carry it.
        let check = Box::pin(raft.ensure_linearizable());
        match tokio::time::timeout(CONFIRM_TIMEOUT, check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read refused: leadership not confirmed");
                Err(ApiError::NoLeader)
            }
            Err(_) => Err(ApiError::NoLeader),
        }
    }
}
