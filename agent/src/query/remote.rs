//! A prepared query run with its failover walk: the one path both
//! `/v1/query/<id>/execute` (`http::query`) and DNS `<name>.query.consul`
//! (`dns::lookup`) take, as Consul's DNS runs the same
//! `PreparedQuery.Execute` as the HTTP API. Other datacenters are asked
//! on the server RPC ([`REMOTE_PATH`], Consul's `ExecuteRemote`).

use std::time::Duration;

use super::execute::{self, Instance, Walked};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::authz::Authz;
use crate::state::catalog::{NodeRec, ServiceRec};
use crate::state::query::QueryRec;

/// What a server of another datacenter runs for a failover: the rendered
/// query, the limit and the caller's token.
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

/// What `a` may see of an instance: its service and its node, read.
pub fn visible(a: &Authz) -> impl Fn(&NodeRec, &ServiceRec) -> bool + '_ {
    |n, sv| {
        a.can(Resource::Service, &sv.service, Need::Read)
            && a.can(Resource::Node, &n.node, Need::Read)
    }
}

/// The server side of [`REMOTE_PATH`]: the query against this
/// datacenter's catalog, filtered by the token as it resolves here.
pub async fn execute_here(s: &Shared, r: RemoteExecute) -> Result<Vec<Instance>, String> {
    let a = s
        .resolve_token(r.token.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let t = s.store.read();
    let found = execute::local(&t, &r.query, None, r.limit, &visible(&a));
    Ok(found)
}

/// Ask an alive server of `dc` (the WAN router's) to run `r`, each try
/// within `timeout`.
async fn execute_in(
    s: &Shared,
    dc: &str,
    r: &RemoteExecute,
    timeout: Duration,
) -> Result<Vec<Instance>, String> {
    let mut last = "No path to datacenter".to_string();
    for target in s.router.servers(dc).into_iter().take(REMOTE_TRIES) {
        let got: Result<Result<Vec<Instance>, String>, _> = s
            .rpc
            .call(&target.to_string(), REMOTE_PATH, r, timeout, 0)
            .await;
        match got {
            Ok(answer) => return answer,
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// `q`'s answer: `local` when it has instances, else Consul's failover
/// walk — the `NearestN` nearest other datacenters the WAN router knows
/// (nearest by WAN coordinates, then by name), then `Datacenters` in order,
/// each run there by one of its servers with `token`, each try within
/// `timeout`.
pub async fn walk(
    s: &Shared,
    q: &QueryRec,
    local: Vec<Instance>,
    limit: Option<usize>,
    token: Option<&str>,
    timeout: Duration,
) -> Walked<Instance> {
    let dc = s.config.datacenter.clone();
    let known = s.wan_coords.sorted_dcs(&s.router);
    let remote = RemoteExecute {
        query: q.clone(),
        limit,
        token: token.map(str::to_string),
    };
    let remote = &remote;
    execute::failover(q, &dc, local, &known, |other| async move {
        execute_in(s, &other, remote, timeout).await
    })
    .await
}
