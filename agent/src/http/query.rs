//! `/v1/query/*`: prepared queries (Consul's `prepared_query_endpoint.go`).
//! Definitions are raft writes (`state::query`); execution reads the
//! catalog here and walks `Failover` through [`crate::query::execute::failover`].
//!
//! ACLs as Consul's: `query:write` on a query's name to create, change or
//! delete it (`query:read` to list or read it; a query without a name:
//! management tokens only); its Token shows as `<hidden>` without write;
//! execution filters instances by the caller's `service`/`node` read.
//! A query's own stored Token is not used for execution (tribune keeps it,
//! Consul executes with it).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::records as render;
use super::routes::{Endpoint as E, Routes};
use crate::acl::{Global, Need, Resource};
use crate::app::Shared;
use crate::local::defs::normalize;
use crate::pipeline::authz::Authz;
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::query::execute::{self, Instance};
use crate::query::{self as pq, template};
use crate::state::query::{QueryCommand, QueryOutcome, QueryRec, QUERIES};
use crate::state::{Command, Outcome, WatchTarget};

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/query", E::get(list).on(Method::POST, create))
        .route(
            "/v1/query/{id}",
            E::get(get_one)
                .on(Method::PUT, update)
                .on(Method::DELETE, delete),
        )
        .route("/v1/query/{id}/execute", E::get(execute))
        .route("/v1/query/{id}/explain", E::get(explain))
}

const NOT_FOUND: &str = "Query not found";

fn may(a: &Authz, name: &str, need: Need) -> bool {
    match name.is_empty() {
        true => a.is_management(),
        false => a.can(Resource::Query, name, need),
    }
}

fn require(a: &Authz, name: &str, need: Need) -> Result<(), ApiError> {
    if name.is_empty() {
        return a.require_global(Global::Acl, Need::Write);
    }
    a.require(Resource::Query, name, need)
}

/// A query's JSON for this caller (Token hidden without write).
fn shown(a: &Authz, q: &QueryRec) -> Value {
    let token = match q.token.is_empty() || may(a, &q.name, Need::Write) {
        true => q.token.as_str(),
        false => "<hidden>",
    };
    pq::to_json(q, token)
}

async fn write(s: &Shared, cmd: QueryCommand) -> Result<(), ApiError> {
    match s.write(Command::Query(cmd)).await? {
        (_, Outcome::Query(QueryOutcome::Done)) => Ok(()),
        (_, Outcome::Query(QueryOutcome::Error(e))) if e.starts_with(NOT_FOUND) => {
            Err(ApiError::NotFound(NOT_FOUND.into()))
        }
        (_, Outcome::Query(QueryOutcome::Error(e))) => Err(ApiError::bad(e)),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

fn parse_body(
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
    id: &str,
) -> Result<QueryRec, ApiError> {
    let v = normalize(&json_body(body, headers)?);
    pq::parse(&v, id).map_err(|e| ApiError::bad(e.0))
}

/// `POST /v1/query`: `{"ID": ...}`.
pub async fn create(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let q = parse_body(body, &headers, &uuid::Uuid::new_v4().to_string())?;
    require(ctx.authz(), &q.name, Need::Write)?;
    let id = q.id.clone();
    write(&s, QueryCommand::Set(Box::new(q))).await?;
    tracing::debug!(query = %id, "prepared query created");
    Ok(json(
        StatusCode::OK,
        &json!({"ID": id}),
        ctx.query.has("pretty"),
    ))
}

/// `PUT /v1/query/<id>`: replace a query's definition.
pub async fn update(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let q = parse_body(body, &headers, &id)?;
    let old = s.store.read().queries.get(&id).map(|o| o.name.clone());
    let Some(old) = old else {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    };
    require(ctx.authz(), &old, Need::Write)?;
    require(ctx.authz(), &q.name, Need::Write)?;
    write(&s, QueryCommand::Set(Box::new(q))).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v1/query/<id>`.
pub async fn delete(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let old = s.store.read().queries.get(&id).map(|o| o.name.clone());
    let Some(old) = old else {
        return Err(ApiError::NotFound(NOT_FOUND.into()));
    };
    require(ctx.authz(), &old, Need::Write)?;
    write(&s, QueryCommand::Delete { id }).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/query`: the queries the token may read (blocking).
pub async fn list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let a = ctx.authz();
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(QUERIES.into()),
        |t| t.queries.index(),
        |t| {
            let list: Vec<Value> = t
                .queries
                .list()
                .filter(|q| may(a, &q.name, Need::Read))
                .map(|q| shown(a, q))
                .collect();
            Some(list)
        },
    )
    .await
}

/// `GET /v1/query/<id>`: `[query]` (blocking).
pub async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let name = s.store.read().queries.get(&id).map(|q| q.name.clone());
    match name {
        None => return Err(ApiError::NotFound(NOT_FOUND.into())),
        Some(n) => require(ctx.authz(), &n, Need::Read)?,
    }
    let a = ctx.authz();
    s.blocking_json(
        &ctx,
        || WatchTarget::Named(QUERIES.into()),
        |t| t.queries.index(),
        |t| t.queries.get(&id).map(|q| vec![shown(a, q)]),
    )
    .await
}

/// The query `id_or_name` resolves to, rendered for that name when it is a
/// template.
pub fn resolve(t: &crate::state::Tables, id_or_name: &str) -> Result<QueryRec, ApiError> {
    let q = t
        .queries
        .resolve(id_or_name)
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))?;
    if !q.is_template() {
        return Ok(q.clone());
    }
    template::compile(q)
        .and_then(|c| c.render(q, id_or_name))
        .map_err(|e| ApiError::Internal(e.0))
}

/// `GET /v1/query/<id or name>/explain`: `{"Query": the rendered query}`.
pub async fn explain(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let (q, index) = {
        let t = s.store.read();
        (resolve(&t, &id)?, t.queries.index())
    };
    require(ctx.authz(), &q.name, Need::Read)?;
    let mut resp = json(
        StatusCode::OK,
        &json!({"Query": shown(ctx.authz(), &q)}),
        opts.pretty,
    );
    s.meta(&mut resp, index, opts.consistency);
    Ok(resp)
}

fn instance_json((n, sv, checks): &Instance) -> Value {
    json!({
        "Node": render::node(n),
        "Service": render::service(sv),
        "Checks": checks.iter().map(render::check).collect::<Vec<_>>(),
    })
}

/// `GET /v1/query/<id or name>/execute[?near=][&limit=]`.
pub async fn execute(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let limit = ctx
        .query
        .u64("limit", "Bad limit")?
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let a = ctx.authz();
    let (q, local, index) = {
        let t = s.store.read();
        let q = resolve(&t, &id)?;
        // `?near` wins over the query's own Near, as Consul.
        let mut near = crate::coordinate::near::origin(&ctx.query, &headers, &s.node.node);
        if near.is_none() && !q.service.near.is_empty() {
            let own =
                crate::pipeline::context::Query::parse(Some(&format!("near={}", q.service.near)));
            near = crate::coordinate::near::origin(&own, &headers, &s.node.node);
        }
        let visible = |n: &crate::state::catalog::NodeRec,
                       sv: &crate::state::catalog::ServiceRec| {
            a.can(Resource::Service, &sv.service, Need::Read)
                && a.can(Resource::Node, &n.node, Need::Read)
        };
        let local = execute::local(&t, &q, near.as_deref(), limit, &visible);
        let index = t.catalog.service_index(&q.service.service);
        (q, local, index)
    };
    let result = answer(&s, &q, local, limit, ctx.token()).await;
    let mut resp = json(StatusCode::OK, &result, opts.pretty);
    s.meta(&mut resp, index, opts.consistency);
    Ok(resp)
}

/// What a server of another datacenter runs for a failover (Consul's
/// `ExecuteRemote`): the rendered query, the limit and the caller's token.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RemoteExecute {
    pub query: QueryRec,
    pub limit: Option<usize>,
    pub token: Option<String>,
}

/// The server RPC a failover asks another datacenter's server on.
pub const REMOTE_PATH: &str = "/rpc/query/execute";

/// At most this many servers of a datacenter are tried per failover.
const REMOTE_TRIES: usize = 3;
const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The server side of [`REMOTE_PATH`]: the query against this
/// datacenter's catalog, filtered by the token as it resolves here.
pub async fn execute_here(s: &Shared, r: RemoteExecute) -> Result<Vec<Instance>, String> {
    let a = s
        .resolve_token(r.token.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let t = s.store.read();
    let visible = |n: &crate::state::catalog::NodeRec, sv: &crate::state::catalog::ServiceRec| {
        a.can(Resource::Service, &sv.service, Need::Read)
            && a.can(Resource::Node, &n.node, Need::Read)
    };
    Ok(execute::local(&t, &r.query, None, r.limit, &visible))
}

/// Ask an alive server of `dc` (the WAN router's) to run `r`.
async fn execute_in(s: &Shared, dc: &str, r: &RemoteExecute) -> Result<Vec<Instance>, String> {
    let mut last = "No path to datacenter".to_string();
    for target in s.router.servers(dc).into_iter().take(REMOTE_TRIES) {
        let got: Result<Result<Vec<Instance>, String>, _> = s
            .rpc
            .call(&target.to_string(), REMOTE_PATH, r, REMOTE_TIMEOUT, 0)
            .await;
        match got {
            Ok(answer) => return answer,
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Consul's `PreparedQueryExecuteResponse` for `q`, failing over when the
/// local answer is empty: to the `NearestN` nearest other datacenters the
/// WAN router knows (by WAN coordinates, then name), then to
/// `Datacenters` in order, each run there by one of its servers.
pub async fn answer(
    s: &Shared,
    q: &QueryRec,
    local: Vec<Instance>,
    limit: Option<usize>,
    token: Option<&str>,
) -> Value {
    let dc = s.config.datacenter.clone();
    let known = s.wan_coords.sorted_dcs(&s.router);
    let remote = RemoteExecute {
        query: q.clone(),
        limit,
        token: token.map(str::to_string),
    };
    let remote = &remote;
    let walked = execute::failover(q, &dc, local, &known, |other| async move {
        execute_in(s, &other, remote).await
    })
    .await;
    json!({
        "Service": q.service.service,
        "Nodes": walked.nodes.iter().map(instance_json).collect::<Vec<_>>(),
        "DNS": {"TTL": q.dns_ttl},
        "Datacenter": walked.datacenter,
        "Failovers": walked.failovers,
    })
}
