//! The Consul-compatible HTTP API (axum): the route table ([`routes`](mod@routes),
//! each route with its methods), one file of handlers per API area, and
//! the listener ([`serve`], [`timeouts`]). Every route passes the request
//! pipeline ([`crate::pipeline`]) before its handler.

pub mod access;
pub mod acl;
pub mod acl_common;
pub mod acl_policy;
pub mod agent_api;
pub mod catalog;
pub mod coordinate;
pub mod event;
pub mod health;
pub mod host;
pub mod internal_ui;
pub mod keyring;
pub mod kv;
pub mod monitor;
pub mod operator;
pub mod query;
pub mod records;
pub mod routes;
pub mod serve;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod status;
pub mod timeouts;
pub mod txn;
pub mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::Router;

use crate::app::Shared;
use crate::pipeline::body::MAX_BODY;
pub use routes::Routes;

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
        .merge(keyring::routes())
        .merge(internal_ui::routes())
        .merge(ui::routes(ui_enabled))
        .merge(session::routes())
        .merge(event::routes())
        .merge(monitor::routes())
        .merge(snapshot::routes())
        .merge(host::routes())
        .merge(crate::telemetry::http::routes())
        .merge(acl::routes())
        .merge(coordinate::routes())
        .merge(query::routes())
}

/// The API router: [`routes`](mod@routes), each through the request pipeline (for the
/// methods a route answers; the others are refused here), and the body limit.
pub fn router(state: Shared) -> Router {
    // One layer stack per route: a `Router::layer` would wrap every route
    // once more, one more boxed service cloned for each request. Neither a
    // route's 405 fallback nor the 404 reads a body.
    let layers = tower::ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(crate::pipeline::layer::PipelineLayer::new(state.clone()));
    routes(state.config.ui)
        .into_router(|mr| mr.route_layer(layers.clone()))
        .with_state(state)
}
