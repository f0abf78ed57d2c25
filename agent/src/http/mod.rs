//! The Consul-compatible HTTP API (axum).
//!
//! One route table ([`router`]), one file per API area, and the pieces every
//! read shares: consistency gating, the `X-Consul-*` headers and the generic
//! blocking-query wait ([`AppState::block`]).

pub mod agent_api;
pub mod catalog;
pub mod error;
pub mod event;
pub mod health;
pub mod host;
pub mod internal_ui;
pub mod kv;
pub mod monitor;
pub mod operator;
pub mod params;
pub mod render;
pub mod routes;
pub mod serve;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod status;
pub mod timeouts;
pub mod txn;
pub mod ui;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::raft::node::Leadership;
use crate::raft::proposer::{Proposer, WriteError};
use crate::raft::Raft;
use crate::state::{Command, Outcome, Store, Tables, WatchTarget};
pub use error::ApiError;
use params::{Consistency, ReadOpts};
pub use routes::Routes;

/// How long a read waits for a quorum to confirm the leader (Consul's rpc_hold_timeout).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(7);

/// Largest request body accepted (Consul's kv_max_value_size / txn_max_req_len).
pub const MAX_BODY: usize = 524_288;

/// Everything a handler needs.
pub struct AppState {
    pub config: Arc<AgentConfig>,
    pub store: Arc<Store>,
    /// `None` on a client agent (no raft state).
    pub raft: Option<Raft>,
    pub raft_id: crate::raft::NodeId,
    pub proposer: Proposer,
    pub leadership: Arc<Leadership>,
    /// Gossip membership (`None` when `ports.serf_lan` is -1).
    pub gossip: Option<crate::cluster::gossip::Gossip>,
    /// Where forwarded requests go (`None` without gossip on a lone server).
    pub upstream: Option<crate::cluster::Upstream>,
    pub rpc: crate::cluster::rpc::RpcClient,
    /// Cancelled when a graceful leave starts: anti-entropy stops so the
    /// node stays deregistered.
    pub leaving: CancellationToken,
    pub node_id: String,
    /// This node as registered in the catalog.
    pub node: crate::local::sync::NodeInfo,
    pub local: Arc<crate::local::LocalAgent>,
    /// This agent's user-event buffer.
    pub events: Arc<crate::events::Events>,
    /// The command-line flags, re-applied over the files on reload.
    pub flags: crate::config::Flags,
    pub shutdown: CancellationToken,
    pub started: Instant,
}

pub type Shared = Arc<AppState>;

/// The route table: every endpoint tribune serves, with its methods
/// (Consul's `http_register.go`). No state is needed to build it, so tests
/// can walk [`Routes::table`] of exactly what [`router`] serves.
pub fn routes(ui_enabled: bool) -> Routes {
    use routes::Endpoint as E;
    let kv = || {
        E::get(kv::handle)
            .on(Method::PUT, kv::handle)
            .on(Method::DELETE, kv::handle)
    };
    Routes::new()
        .route("/v1/kv", kv())
        .route("/v1/kv/", kv())
        .route("/v1/kv/{*key}", kv())
        .route("/v1/txn", E::put(txn::handle))
        .route("/v1/status/leader", E::get(status::leader))
        .route("/v1/status/peers", E::get(status::peers))
        .route("/v1/agent/self", E::get(status::agent_self))
        .route("/v1/catalog/datacenters", E::get(status::datacenters))
        .route("/v1/catalog/register", E::put(catalog::register))
        .route("/v1/catalog/deregister", E::put(catalog::deregister))
        .route("/v1/catalog/services", E::get(catalog::services))
        .route("/v1/catalog/service/{name}", E::get(catalog::service))
        .route("/v1/catalog/nodes", E::get(catalog::nodes))
        .route("/v1/catalog/node/{name}", E::get(catalog::node))
        .route("/v1/health/service/{name}", E::get(health::service))
        .route("/v1/health/checks/{name}", E::get(health::checks))
        .route("/v1/health/node/{name}", E::get(health::node))
        .route("/v1/health/state/{state}", E::get(health::state))
        .merge(agent_api::routes())
        .route(
            "/v1/operator/raft/configuration",
            E::get(operator::configuration),
        )
        .route("/v1/operator/raft/peer", E::delete(operator::remove_peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            E::post(operator::transfer_leader),
        )
        .route(
            "/v1/operator/autopilot/configuration",
            E::get(operator::autopilot_get).on(Method::PUT, operator::autopilot_put),
        )
        .route(
            "/v1/operator/autopilot/health",
            E::get(operator::autopilot_health),
        )
        .route(
            "/v1/operator/autopilot/state",
            E::get(operator::autopilot_state),
        )
        .merge(internal_ui::routes())
        .merge(ui::routes(ui_enabled))
        .merge(session::routes())
        .merge(event::routes())
        .merge(monitor::routes())
        .merge(snapshot::routes())
        .merge(host::routes())
        .merge(crate::telemetry::http::routes())
}

/// The API router: [`routes`] with forwarding to the leader (for the
/// methods a route answers; the others are refused here) and the body limit.
pub fn router(state: Shared) -> Router {
    let forward =
        axum::middleware::from_fn_with_state(state.clone(), crate::cluster::forward::middleware);
    routes(state.config.ui)
        .into_router(|mr| {
            mr.route_layer(forward.clone())
                .route_layer(axum::middleware::from_fn(crate::telemetry::http::measure))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

static X_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
static X_KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
static X_LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
static X_CONSISTENCY: HeaderName = HeaderName::from_static("x-consul-effective-consistency");

impl AppState {
    /// Make sure a read with this consistency may be answered here.
    ///
    /// Default reads are answered from local state while the leader lease
    /// holds (an atomic load); otherwise, on a leader, only after a quorum
    /// confirms it still leads, as `?consistent` reads always are.
    pub async fn gate(&self, c: Consistency) -> Result<(), ApiError> {
        match c {
            Consistency::Stale => Ok(()),
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

    /// Park until the resource's index passes `opts.index`, the wait (plus
    /// jitter up to wait/16) ends, or the agent shuts down.
    pub async fn block(
        &self,
        opts: &ReadOpts,
        target: WatchTarget,
        index_of: impl Fn(&Tables) -> u64,
    ) {
        if opts.index == 0 {
            return;
        }
        let jitter_max = opts.wait.as_millis() as u64 / 16;
        let jitter = if jitter_max > 0 {
            rand::thread_rng().gen_range(0..=jitter_max)
        } else {
            0
        };
        let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
        let guard = self.store.watches.watch(target);
        let _parked = crate::telemetry::parked();
        // A restore replaces everything (indexes may go back): answer then.
        let generation = self.store.generation();
        loop {
            let notified = guard.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if index_of(&self.store.read()) > opts.index || self.store.generation() != generation {
                return;
            }
            tokio::select! {
                _ = &mut notified => metrics::counter!("tribune.blocking.wakeups").increment(1),
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// The shape of every blocking JSON read: parse the read options, check
    /// consistency, park until the resource's index passes `?index`, then
    /// answer `build`'s body (404 when it gives none) with the index headers.
    pub async fn blocking_json<T: Serialize>(
        &self,
        raw_query: Option<&str>,
        target: WatchTarget,
        index_of: impl Fn(&Tables) -> u64,
        build: impl FnOnce(&Tables) -> Option<T>,
    ) -> Result<Response, ApiError> {
        let q = params::Query::parse(raw_query);
        let opts = ReadOpts::parse(&q, &self.config.datacenter)?;
        self.gate(opts.consistency).await?;
        self.block(&opts, target, &index_of).await;
        let (index, body) = {
            let t = self.store.read();
            (index_of(&t), build(&t))
        };
        let mut resp = match body {
            Some(b) => json(StatusCode::OK, &b, opts.pretty),
            None => StatusCode::NOT_FOUND.into_response(),
        };
        self.meta(&mut resp, index, opts.consistency);
        Ok(resp)
    }

    /// Submit a write through raft; returns the log index and the outcome.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Outcome), ApiError> {
        self.proposer.write(cmd).await.map_err(|e| match e {
            WriteError::NoLeader => ApiError::NoLeader,
            other => ApiError::Internal(other.to_string()),
        })
    }

    /// Add the read headers every Consul client expects (on 404s too).
    pub fn meta(&self, resp: &mut Response, index: u64, c: Consistency) {
        let h = resp.headers_mut();
        h.insert(X_INDEX.clone(), HeaderValue::from(index.max(1)));
        h.insert(
            X_KNOWN_LEADER.clone(),
            HeaderValue::from_static(if self.leadership.known() {
                "true"
            } else {
                "false"
            }),
        );
        h.insert(
            X_LAST_CONTACT.clone(),
            HeaderValue::from(self.leadership.last_contact_ms()),
        );
        h.insert(X_CONSISTENCY.clone(), HeaderValue::from_static(c.header()));
    }
}

/// Serialize `v` as a JSON response (`?pretty` indents).
pub fn json<T: Serialize + ?Sized>(status: StatusCode, v: &T, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    match body {
        Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => ApiError::Internal(format!("encoding response: {e}")).into_response(),
    }
}
