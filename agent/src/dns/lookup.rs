//! What a DNS answer is made of, and where it comes from.
//!
//! A server answers from its own state store. A client agent holds no
//! state: it asks a server over the RPC port (`/rpc/dns`), as Consul's DNS
//! asks `Catalog.NodeServices` / `Health.ServiceNodes` by RPC, and builds
//! the answer from the reply with its own `dns_config`. With
//! `dns_config.allow_stale` (Consul's default) any server answers from its
//! store; a reply whose server last heard from the leader longer than
//! `max_stale` ago is asked again of the leader. Without `allow_stale` the
//! leader answers (a follower forwards).
//!
//! A prepared query (`<q>.query.consul`) runs on a server as the HTTP
//! execute does, failover walk included ([`query`]), with the asking
//! agent's default token; its records name the datacenter that answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::Lookup;
use crate::app::Shared;
use crate::cluster::router::Router;
use crate::cluster::Upstream;
use crate::local::defs::META_MAX_PAIRS;
use crate::pipeline::authz::Authz;
use crate::query::remote;
use crate::rpc::client::RpcClient;
use crate::state::catalog::{NodeRec, ServiceRec};
use crate::state::{Health, Tables};

/// Lookups a client agent has in flight to the servers at most; more are
/// refused with SERVFAIL at once rather than queued behind a slow server.
pub const MAX_IN_FLIGHT: usize = 256;
/// One lookup, retries on other servers included, gives up after this.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// A forwarded lookup goes this many hops at most (servers disagreeing on
/// the leader must not bounce it forever).
const MAX_HOPS: u32 = 3;

#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum LookupError {
    #[error("No known Consul servers")]
    NoServers,
    #[error("too many DNS lookups waiting for the servers ({MAX_IN_FLIGHT})")]
    Busy,
    #[error("no answer from the servers within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Rpc(String),
    #[error("No cluster leader")]
    NoLeader,
    #[error("lookup forwarded too many times (servers disagree on the leader)")]
    Hops,
    /// The datacenter the name names has no alive server known here.
    #[error("No path to datacenter")]
    NoPath,
}

/// A node as DNS needs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeData {
    pub address: String,
    pub meta: BTreeMap<String, String>,
}

/// One instance of a service that is not critical, as DNS needs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub node: String,
    pub node_address: String,
    /// The service's own address ("" when it has none).
    pub address: String,
    pub port: u16,
    pub weight_passing: i32,
    pub weight_warning: i32,
    /// The worst status of its node's and its own checks: passing or warning.
    pub health: Health,
    /// Its node's meta (at most Consul's 64 pairs), sent as TXT beside an
    /// SRV target.
    pub node_meta: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Found {
    Node(Option<NodeData>),
    Service(Vec<Instance>),
    /// A prepared query's answer (`None`: no such query).
    Query(Option<QueryFound>),
    /// A lookup that needs no data (`.addr.`), never sent.
    Nothing,
}

/// A prepared query's answer, after its failover walk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryFound {
    /// The service it asks for (whose `service_ttl` applies without a TTL).
    pub service: String,
    pub instances: Vec<Instance>,
    /// Its `DNS.TTL`.
    pub ttl: Option<Duration>,
    /// Where the instances are (the failover's datacenter): SRV targets
    /// are named in it.
    pub datacenter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub lookup: Lookup,
    pub allow_stale: bool,
    /// For a prepared query: the token it executes with, the asking
    /// agent's default token (Consul's DNS token); `None`: the answering
    /// server's default.
    pub token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub found: Found,
    /// How long ago the answering server last heard from the leader.
    pub last_contact_ms: u64,
}

/// The node `name` (matched ignoring case).
pub fn node(t: &Tables, name: &str) -> Option<NodeData> {
    t.catalog.node_folded(name).map(|n| NodeData {
        address: n.address.clone(),
        meta: n.meta.clone(),
    })
}

/// Instances of `service` (with `tag`, ignoring case) that are not
/// critical.
pub fn instances(t: &Tables, service: &str, tag: Option<&str>) -> Vec<Instance> {
    let mut out = Vec::new();
    for (n, s) in t.catalog.instances(service) {
        if let Some(tg) = tag {
            if !s.tags.iter().any(|x| x.eq_ignore_ascii_case(tg)) {
                continue;
            }
        }
        let worst = t
            .catalog
            .instance_checks(&n.node, &s.id)
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Health::Passing);
        if !matches!(worst, Health::Passing | Health::Warning) {
            continue;
        }
        out.push(instance(n, s, worst));
    }
    out
}

fn instance(n: &NodeRec, s: &ServiceRec, worst: Health) -> Instance {
    Instance {
        node: n.node.clone(),
        node_address: n.address.clone(),
        address: s.address.clone(),
        port: s.port,
        weight_passing: s.weights.passing,
        weight_warning: s.weights.warning,
        health: worst,
        node_meta: n
            .meta
            .iter()
            .take(META_MAX_PAIRS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Look `lookup` up in the tables (a prepared query: [`find_here`]).
pub fn find(t: &Tables, lookup: &Lookup) -> Found {
    match lookup {
        Lookup::Node(n) => Found::Node(node(t, n)),
        Lookup::Service { service, tag } => Found::Service(instances(t, service, tag.as_deref())),
        Lookup::Addr(_) | Lookup::Query(_) => Found::Nothing,
    }
}

/// On a server: answer `req` here, a prepared query with its failover.
pub async fn find_here(s: &Shared, req: &Request) -> Result<Found, LookupError> {
    match &req.lookup {
        Lookup::Query(name) => query(s, name, req.token.as_deref()).await.map(Found::Query),
        l => Ok(find(&s.store.read(), l)),
    }
}

/// A server's prepared-query walk for DNS gives up after this, so that the
/// asking agent (waiting [`LOOKUP_TIMEOUT`]) still hears why.
pub const QUERY_WALK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Execute the prepared query `name` (ID or name) as
/// `/v1/query/<name>/execute` does — the same failover walk — with
/// `token`'s view (a token that does not resolve sees nothing), within
/// [`QUERY_WALK_TIMEOUT`].
pub async fn query(
    s: &Shared,
    name: &str,
    token: Option<&str>,
) -> Result<Option<QueryFound>, LookupError> {
    let authz = s.resolve_token(token).await.unwrap_or_else(|_| deny_all());
    let (q, local) = {
        let t = s.store.read();
        let Some(Ok(q)) = crate::query::find(&t, name) else {
            return Ok(None);
        };
        let local = crate::query::execute::local(&t, &q, None, None, &remote::visible(&authz));
        (q, local)
    };
    let walk = remote::walk(s, &q, local, None, token, QUERY_WALK_TIMEOUT);
    let walked = tokio::time::timeout(QUERY_WALK_TIMEOUT, walk)
        .await
        .map_err(|_| LookupError::Timeout(QUERY_WALK_TIMEOUT))?;
    let instances = walked
        .nodes
        .iter()
        .map(|(n, s, checks)| {
            let worst = checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(Health::Passing);
            instance(n, s, worst)
        })
        .collect();
    Ok(Some(QueryFound {
        service: q.service.service.clone(),
        instances,
        ttl: gocompat::duration::parse_duration(&q.dns_ttl),
        datacenter: walked.datacenter,
    }))
}

/// What a token that does not resolve may see: nothing.
pub fn deny_all() -> Authz {
    Authz::Acl(Arc::new(crate::acl::Authorizer::from_policies(
        [],
        crate::acl::DefaultPolicy::Deny,
    )))
}

/// Ask the upstream servers (any alive one from a client, the leader from
/// a server), the next one when one cannot be reached.
pub async fn ask(up: &Upstream, req: &Request, hops: u32) -> Result<Reply, LookupError> {
    if hops >= MAX_HOPS {
        return Err(LookupError::Hops);
    }
    let mut last = LookupError::NoServers;
    for target in up.targets() {
        let r: Result<Result<Reply, LookupError>, _> = up
            .rpc
            .call(&target, "/rpc/dns", req, LOOKUP_TIMEOUT, hops)
            .await;
        match r {
            Ok(answer) => {
                up.good(&target);
                return answer;
            }
            Err(e) => {
                tracing::debug!(%target, error = %e, "DNS lookup: server unreachable");
                up.bad(&target);
                last = LookupError::Rpc(e.to_string());
            }
        }
    }
    Err(last)
}

/// Where lookups of other datacenters go on the server RPC port: a
/// [`DcRequest`], answered by a server (which asks that datacenter).
pub const DC_PATH: &str = "/rpc/dns-dc";

/// A lookup in another datacenter (`web.service.dc2.consul`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DcRequest {
    pub dc: String,
    pub req: Request,
}

/// At most this many servers of another datacenter are tried per lookup.
const MAX_DC_TRIES: usize = 3;

/// From a server: ask a server of `dc` (the WAN router's), the next when
/// one cannot be reached; none alive there: [`LookupError::NoPath`].
pub async fn ask_dc(
    router: &Router,
    rpc: &RpcClient,
    dc: &str,
    req: &Request,
    hops: u32,
) -> Result<Reply, LookupError> {
    if hops >= MAX_HOPS {
        return Err(LookupError::Hops);
    }
    let mut last = LookupError::NoPath;
    for target in router.servers(dc).into_iter().take(MAX_DC_TRIES) {
        let target = target.to_string();
        let r: Result<Result<Reply, LookupError>, _> = rpc
            .call(&target, "/rpc/dns", req, LOOKUP_TIMEOUT, hops + 1)
            .await;
        match r {
            Ok(answer) => return answer,
            Err(e) => {
                tracing::debug!(%target, datacenter = dc, error = %e, "DNS lookup: server unreachable");
                last = LookupError::Rpc(e.to_string());
            }
        }
    }
    Err(last)
}

/// DNS lookups of an agent that asks the servers: bounded in number and
/// in time.
pub struct Remote {
    up: Upstream,
    permits: Arc<Semaphore>,
    allow_stale: bool,
    max_stale: Duration,
    cached: Option<CachedServices>,
}

/// Service lookups answered from the agent cache (`dns_config.use_cache`):
/// `(service, tag)` to the body of `/v1/health/service/<service>?cached`.
pub type CachedServices = Arc<
    dyn Fn(
            String,
            Option<String>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<bytes::Bytes, LookupError>> + Send>,
        > + Send
        + Sync,
>;

/// Instances that are not critical, from a `/v1/health/service` answer
/// (the agent cache's form of what `/rpc/dns` answers).
pub fn instances_from_health(body: &[u8]) -> Result<Vec<Instance>, LookupError> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| LookupError::Rpc(format!("agent cache answer: {e}")))?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for e in entries {
        let worst = e["Checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Status"].as_str().and_then(Health::parse))
            .max()
            .unwrap_or(Health::Passing);
        if !matches!(worst, Health::Passing | Health::Warning) {
            continue;
        }
        let (n, s) = (&e["Node"], &e["Service"]);
        let weight = |k: &str, d: i64| s["Weights"][k].as_i64().unwrap_or(d) as i32;
        out.push(Instance {
            node: text(&n["Node"]),
            node_address: text(&n["Address"]),
            address: text(&s["Address"]),
            port: s["Port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            weight_passing: weight("Passing", 1),
            weight_warning: weight("Warning", 1),
            health: worst,
            node_meta: n["Meta"]
                .as_object()
                .into_iter()
                .flatten()
                .take(META_MAX_PAIRS)
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
        });
    }
    Ok(out)
}

impl Remote {
    pub fn new(up: Upstream, allow_stale: bool, max_stale: Duration) -> Self {
        Self {
            up,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            allow_stale,
            max_stale,
            cached: None,
        }
    }

    /// Answer service lookups from the agent cache.
    pub fn with_cache(mut self, cached: CachedServices) -> Self {
        self.cached = Some(cached);
        self
    }

    /// Look `lookup` up on the servers. `allow_stale` as configured, but a
    /// reply staler than `max_stale` is asked again of the leader.
    /// `token`: a prepared query's (see [`Request::token`]).
    pub async fn lookup(
        &self,
        lookup: Lookup,
        allow_stale: bool,
        token: Option<String>,
    ) -> Result<Found, LookupError> {
        let _permit = self.permits.try_acquire().map_err(|_| LookupError::Busy)?;
        if let (Some(cached), Lookup::Service { service, tag }) = (&self.cached, &lookup) {
            let body = tokio::time::timeout(LOOKUP_TIMEOUT, cached(service.clone(), tag.clone()))
                .await
                .map_err(|_| LookupError::Timeout(LOOKUP_TIMEOUT))??;
            return instances_from_health(&body).map(Found::Service);
        }
        let run = async {
            let mut req = Request {
                lookup,
                allow_stale: allow_stale && self.allow_stale,
                token,
            };
            let mut reply = ask(&self.up, &req, 0).await?;
            if req.allow_stale && Duration::from_millis(reply.last_contact_ms) > self.max_stale {
                tracing::warn!(
                    last_contact_ms = reply.last_contact_ms,
                    "Query results too stale, re-requesting"
                );
                req.allow_stale = false;
                reply = ask(&self.up, &req, 0).await?;
            }
            Ok(reply.found)
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, run)
            .await
            .map_err(|_| LookupError::Timeout(LOOKUP_TIMEOUT))?
    }

    /// Look `lookup` up in datacenter `dc`: the local servers route it.
    pub async fn lookup_dc(
        &self,
        dc: &str,
        lookup: Lookup,
        token: Option<String>,
    ) -> Result<Found, LookupError> {
        let _permit = self.permits.try_acquire().map_err(|_| LookupError::Busy)?;
        let req = DcRequest {
            dc: dc.to_string(),
            req: Request {
                lookup,
                allow_stale: self.allow_stale,
                token,
            },
        };
        let run = async {
            let mut last = LookupError::NoServers;
            for target in self.up.targets() {
                let r: Result<Result<Reply, LookupError>, _> = self
                    .up
                    .rpc
                    .call(&target, DC_PATH, &req, LOOKUP_TIMEOUT, 0)
                    .await;
                match r {
                    Ok(answer) => return answer.map(|r| r.found),
                    Err(e) => {
                        self.up.bad(&target);
                        last = LookupError::Rpc(e.to_string());
                    }
                }
            }
            Err(last)
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, run)
            .await
            .map_err(|_| LookupError::Timeout(LOOKUP_TIMEOUT))?
    }
}
