//! The DNS interface (hickory-server), UDP and TCP, domain `consul.`:
//!
//! - `<node>.node[.<dc>].consul` — A/AAAA of the node, TXT from node meta;
//! - `[<tag>.]<service>.service[.<dc>].consul` — A/AAAA and SRV of instances
//!   without a critical check (node or service), shuffled;
//! - RFC 2782 `_<service>._<tag|tcp>[.service][.<dc>].consul`;
//! - NXDOMAIN with the SOA for unknown names; other domains go to the
//!   configured recursors, if any.
//!
//! A server answers straight from its local state store: no raft round
//! trip (unless `dns_config.allow_stale` is off, or its last contact with
//! the leader is older than `max_stale`: then the leader answers). A client
//! agent asks a server (module `lookup`).
//! Every answer is cut to the client's size (module `fit`): UDP within 512
//! bytes or the EDNS size (at most 1232), `dns_config.udp_answer_limit`
//! answers for 512-byte clients, TCP within 64 KiB.

mod fit;
pub mod lookup;
mod names;
mod records;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use crate::acl::{Need, Resource};
use crate::pipeline::authz::Authz;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::DnsConfig;
use crate::local::defs::META_MAX_PAIRS;
use crate::raft::leadership::Leadership;
use crate::state::catalog::Meta;
use crate::state::{Health, Store};
use fit::Answer;
use lookup::{Found, Instance, LookupError, Remote};
pub use names::{addr_label, parse, parse_dc, Lookup};
use records::{ip_record, meta_record};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("binding DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the data for answers comes from.
pub enum Mode {
    /// A server: its own store; the leader (through `Remote`, absent on a
    /// lone server without gossip) when a stale answer will not do.
    Server {
        leadership: Arc<Leadership>,
        remote: Option<Remote>,
        /// Runs a prepared query here, failover included.
        queries: QueryExec,
    },
    /// A client agent: the servers.
    Client(Remote),
}

/// Resolves what DNS may show: the agent's `default` token (or the
/// anonymous one), asked once per query so a revocation holds at once.
pub type AclCheck = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Authz> + Send>> + Send + Sync,
>;

/// A server's prepared-query execution for DNS: the query (ID or name)
/// and the token to run it with ([`lookup::query`]).
pub type QueryExec = Arc<
    dyn Fn(
            String,
            Option<String>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Option<lookup::QueryFound>, LookupError>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// The token prepared queries run with from DNS: the agent's default
/// token as it is now (`None`: none, or ACLs off).
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Answers queries for the consul domain.
pub struct ConsulDns {
    /// With ACLs on: what the default token may see.
    acl: Option<AclCheck>,
    /// With ACLs on: the default token, sent with prepared queries.
    token: Option<TokenSource>,
    store: Arc<Store>,
    datacenter: String,
    config: DnsConfig,
    domain: Name,
    services: ServiceCache,
    mode: Mode,
    /// A server's way to other datacenters (`web.service.dc2.consul`).
    wan: Option<(
        crate::cluster::router::Router,
        crate::rpc::client::RpcClient,
    )>,
}

/// One healthy instance, ready to answer with.
struct Item {
    /// The SRV target; `None` when the node name is no valid DNS name
    /// (such an instance still answers A queries).
    target: Option<Name>,
    ip: IpAddr,
    port: u16,
    weight: u16,
    /// The node's meta, sent as TXT beside an SRV target's address.
    meta: Arc<Vec<(String, String)>>,
}

/// Healthy instances of `(service, tag)` as of the service's catalog index
/// (which moves on any change to the service, its checks or its nodes).
struct Cached {
    index: u64,
    /// [`Store::generation`]: a restore can bring back an index with
    /// other contents.
    generation: u64,
    items: Arc<Vec<Item>>,
}

type ServiceCache =
    parking_lot::RwLock<std::collections::HashMap<(String, Option<String>), Cached>>;

/// Answers at most this many records over TCP, before measuring (Consul's
/// `trimTCPResponse`: more never fit in 64 KiB).
const TCP_MAX_ANSWERS: usize = 4096;
const TCP_MAX_SRV_ANSWERS: usize = 1024;

/// The smallest answer record (an A record whose owner is a 2-byte
/// pointer): no more answers than `limit / MIN_RECORD` can fit.
const MIN_RECORD: usize = 16;

/// A TTL from the config, in DNS's 32 bits.
fn ttl_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl ConsulDns {
    pub fn new(store: Arc<Store>, datacenter: String, config: DnsConfig, mode: Mode) -> Self {
        let domain =
            Name::from_str(&format!("{}.", config.domain)).unwrap_or_else(|_| Name::root());
        Self {
            acl: None,
            token: None,
            store,
            datacenter,
            config,
            domain,
            services: ServiceCache::default(),
            mode,
            wan: None,
        }
    }

    /// On a server: lookups naming another datacenter are asked of its
    /// servers, found through the WAN `router`.
    pub fn with_wan(
        mut self,
        router: crate::cluster::router::Router,
        rpc: crate::rpc::client::RpcClient,
    ) -> Self {
        self.wan = Some((router, rpc));
        self
    }

    /// What datacenter `dc` holds for `l`: asked of its servers (from a
    /// server), or of this agent's servers, which route it (from a client).
    /// No known path there: `None` (NXDOMAIN, as Consul answers).
    async fn other_dc(&self, dc: &str, l: Lookup) -> Result<Option<Found>, LookupError> {
        let token = self.query_token(&l);
        let r = match (&self.mode, &self.wan) {
            (Mode::Client(remote), _) => remote.lookup_dc(dc, l, token).await,
            (Mode::Server { .. }, Some((router, rpc))) => {
                let req = lookup::Request {
                    lookup: l,
                    allow_stale: self.config.allow_stale,
                    token,
                };
                let ask = lookup::ask_dc(router, rpc, dc, &req, 0);
                match tokio::time::timeout(lookup::LOOKUP_TIMEOUT, ask).await {
                    Ok(r) => r.map(|r| r.found),
                    Err(_) => Err(LookupError::Timeout(lookup::LOOKUP_TIMEOUT)),
                }
            }
            (Mode::Server { .. }, None) => Err(LookupError::NoPath),
        };
        match r {
            Ok(f) => Ok(Some(f)),
            Err(LookupError::NoPath) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Filter answers by what `check` allows (a service or node the token
    /// may not read is NXDOMAIN).
    pub fn with_acl(mut self, check: AclCheck) -> Self {
        self.acl = Some(check);
        self
    }

    /// Prepared queries run with `token()`, the default token as it is at
    /// each lookup.
    pub fn with_token(mut self, token: TokenSource) -> Self {
        self.token = Some(token);
        self
    }

    /// The token a lookup carries: a prepared query's only.
    fn query_token(&self, l: &Lookup) -> Option<String> {
        match (l, &self.token) {
            (Lookup::Query(_), Some(t)) => t(),
            _ => None,
        }
    }

    /// The lookup names something the token may not read.
    async fn hidden(&self, l: &Lookup) -> bool {
        let Some(check) = &self.acl else {
            return false;
        };
        let authz = check().await;
        match l {
            Lookup::Node(n) => !authz.can(Resource::Node, n, Need::Read),
            Lookup::Service { service, .. } => !authz.can(Resource::Service, service, Need::Read),
            Lookup::Addr(_) => false,
            // A query runs with the token: what it answers is filtered by it.
            Lookup::Query(_) => false,
        }
    }

    /// Whether this lookup must ask elsewhere, and whether a stale answer
    /// will do there. A server answers itself when stale reads are allowed
    /// and its leader contact is recent enough, or when it leads.
    fn remote(&self) -> Option<(&Remote, bool)> {
        match &self.mode {
            Mode::Client(r) => Some((r, true)),
            Mode::Server {
                leadership, remote, ..
            } => {
                let local = if self.config.allow_stale {
                    let contact = leadership.last_contact_ms();
                    let fresh = leadership.is_leader()
                        || Duration::from_millis(contact) <= self.config.max_stale;
                    if !fresh && remote.is_some() {
                        tracing::warn!(
                            last_contact_ms = contact,
                            "Query results too stale, re-requesting"
                        );
                    }
                    fresh
                } else {
                    // As a default-consistency read: the leader, under its lease.
                    leadership.lease_valid()
                };
                match (local, remote) {
                    (true, _) | (false, None) => None,
                    (false, Some(r)) => Some((r, false)),
                }
            }
        }
    }

    /// Healthy instances of a service (optionally with a tag), from the
    /// cache while the service's index has not moved.
    fn service_items(&self, service: &str, tag: Option<String>, index: u64) -> Arc<Vec<Item>> {
        let key = (service.to_string(), tag);
        let generation = self.store.generation();
        if let Some(c) = self.services.read().get(&key) {
            if c.index == index && c.generation == generation {
                return c.items.clone();
            }
        }
        let items = Arc::new(self.build_items(service, key.1.as_deref()));
        let mut cache = self.services.write();
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(
            key,
            Cached {
                index,
                generation,
                items: items.clone(),
            },
        );
        items
    }

    fn build_items(&self, service: &str, tag: Option<&str>) -> Vec<Item> {
        self.items_from(
            &lookup::instances(&self.store.read(), service, tag),
            &self.datacenter,
        )
    }

    /// Answerable instances: warning ones only without `only_passing`, and
    /// only with an address DNS can give.
    /// Target names are of datacenter `dc` (`<node>.node.<dc>.<domain>`).
    fn items_from(&self, instances: &[Instance], dc: &str) -> Vec<Item> {
        let mut out = Vec::new();
        for i in instances {
            let ok = match i.health {
                Health::Passing => true,
                Health::Warning => !self.config.only_passing,
                _ => false,
            };
            let addr = if i.address.is_empty() {
                &i.node_address
            } else {
                &i.address
            };
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            if !ok {
                continue;
            }
            // A service address of its own gets an `.addr.` target.
            let host = if i.address.is_empty() || i.address == i.node_address {
                format!("{}.node.{dc}", i.node)
            } else {
                format!("{}.addr.{dc}", addr_label(ip))
            };
            let target = Name::from_str(&host)
                .ok()
                .and_then(|x| x.append_domain(&self.domain).ok());
            let weight = if i.health == Health::Warning {
                i.weight_warning
            } else {
                i.weight_passing
            };
            out.push(Item {
                target,
                ip,
                port: i.port,
                weight: weight.clamp(0, u16::MAX as i32) as u16,
                meta: Arc::new(i.node_meta.clone()),
            });
        }
        out
    }

    fn soa(&self) -> Record {
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let mname = Name::from_str("ns")
            .ok()
            .and_then(|n| n.append_domain(&self.domain).ok());
        let rname = Name::from_str("hostmaster")
            .ok()
            .and_then(|n| n.append_domain(&self.domain).ok());
        Record::from_rdata(
            self.domain.clone(),
            0,
            RData::SOA(SOA::new(
                mname.unwrap_or_else(Name::root),
                rname.unwrap_or_else(Name::root),
                serial,
                3600,
                600,
                86400,
                0,
            )),
        )
    }

    /// Resolve one question about the consul domain, with at most
    /// `max_answers` answer records.
    async fn answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        max_answers: usize,
    ) -> Result<Answer, LookupError> {
        let _t = crate::telemetry::timer("dns.domain_query");
        let parsed = parse_dc(
            &qname.to_ascii().to_ascii_lowercase(),
            &self.config.domain,
            &self.datacenter,
        );
        let (lookup, dc) = match parsed {
            Some((l, dc)) => (Some(l), dc),
            None => (None, None),
        };
        let mut a = match lookup {
            None => Answer::new(ResponseCode::NXDomain),
            Some(Lookup::Addr(ip)) => {
                let mut a = Answer::new(ResponseCode::NoError);
                a.answers
                    .extend(ip_record(qname, 0, ip, qtype).map(|r| (r, None)));
                a
            }
            Some(l) if self.hidden(&l).await => Answer::new(ResponseCode::NXDomain),
            Some(l) if dc.is_some() => {
                let dc = dc.unwrap_or_default();
                match self.other_dc(&dc, l.clone()).await? {
                    Some(found) => self.found_answer(qname, qtype, l, found, max_answers, &dc),
                    None => Answer::new(ResponseCode::NXDomain),
                }
            }
            Some(l) => match self.remote() {
                None => self.local_answer(qname, qtype, l, max_answers).await?,
                Some((remote, stale)) => {
                    let token = self.query_token(&l);
                    let found = remote.lookup(l.clone(), stale, token).await?;
                    let dc = self.datacenter.clone();
                    self.found_answer(qname, qtype, l, found, max_answers, &dc)
                }
            },
        };
        if a.answers.is_empty() {
            a.authority.push(self.soa());
        }
        Ok(a)
    }

    /// An answer from this server's store (cached for services); a
    /// prepared query runs here, failing over to other datacenters.
    async fn local_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        l: Lookup,
        max: usize,
    ) -> Result<Answer, LookupError> {
        Ok(match l {
            Lookup::Node(node) => {
                let t = self.store.read();
                let n = t.catalog.node_folded(&node);
                self.node_answer(qname, qtype, n.map(|n| (n.address.as_str(), &n.meta)), max)
            }
            Lookup::Service { service, tag } => {
                let index = self.store.read().catalog.service_index(&service);
                let items = self.service_items(&service, tag, index);
                let ttl = ttl_secs(self.config.service_ttl(&service));
                self.service_answer(qname, qtype, ttl, &items, max)
            }
            Lookup::Addr(_) => Answer::new(ResponseCode::NoError),
            Lookup::Query(name) => {
                let Mode::Server { queries, .. } = &self.mode else {
                    return Err(LookupError::NoServers);
                };
                let token = self.token.as_ref().and_then(|t| t());
                let found = Found::Query(queries(name.clone(), token).await?);
                let dc = self.datacenter.clone();
                self.found_answer(qname, qtype, Lookup::Query(name), found, max, &dc)
            }
        })
    }

    /// An answer from what a server sent.
    fn found_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        l: Lookup,
        found: Found,
        max: usize,
        dc: &str,
    ) -> Answer {
        match (l, found) {
            (Lookup::Node(_), Found::Node(n)) => self.node_answer(
                qname,
                qtype,
                n.as_ref().map(|n| (n.address.as_str(), &n.meta)),
                max,
            ),
            (Lookup::Service { service, .. }, Found::Service(list)) => {
                let items = self.items_from(&list, dc);
                let ttl = ttl_secs(self.config.service_ttl(&service));
                self.service_answer(qname, qtype, ttl, &items, max)
            }
            (Lookup::Query(_), Found::Query(None)) => Answer::new(ResponseCode::NXDomain),
            (Lookup::Query(_), Found::Query(Some(q))) => {
                // Named in the datacenter that answered (a failover's).
                let items = self.items_from(&q.instances, &q.datacenter);
                // The query's DNS.TTL, else the service's TTL.
                let ttl = ttl_secs(q.ttl.unwrap_or_else(|| self.config.service_ttl(&q.service)));
                self.service_answer(qname, qtype, ttl, &items, max)
            }
            _ => Answer::new(ResponseCode::ServFail),
        }
    }

    /// `<node>.node.consul`: its address, and its meta as TXT (the answer
    /// for TXT and ANY, additional records otherwise), as Consul does for
    /// A, AAAA, ANY and TXT; other types get an empty answer.
    fn node_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        node: Option<(&str, &Meta)>,
        max: usize,
    ) -> Answer {
        let Some((address, meta)) = node else {
            return Answer::new(ResponseCode::NXDomain);
        };
        let mut a = Answer::new(ResponseCode::NoError);
        if !matches!(
            qtype,
            RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
        ) {
            return a;
        }
        let ttl = ttl_secs(self.config.node_ttl);
        if qtype != RecordType::TXT {
            if let Ok(ip) = address.parse::<IpAddr>() {
                a.answers
                    .extend(ip_record(qname, ttl, ip, qtype).map(|r| (r, None)));
            }
        }
        let txt = meta.iter().map(|(k, v)| meta_record(qname, ttl, k, v));
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            let room = max.saturating_sub(a.answers.len());
            a.answers.extend(txt.take(room).map(|r| (r, None)));
        } else {
            a.extra.extend(txt.take(META_MAX_PAIRS));
        }
        a
    }

    /// A service's healthy instances, shuffled: SRV records with the
    /// target's address as additional record, or A/AAAA records (at most
    /// `a_record_limit` when set).
    fn service_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        ttl: u32,
        items: &[Item],
        max: usize,
    ) -> Answer {
        if items.is_empty() {
            return Answer::new(ResponseCode::NXDomain);
        }
        let mut order: Vec<&Item> = items.iter().collect();
        order.shuffle(&mut rand::thread_rng());
        let mut a = Answer::new(ResponseCode::NoError);
        if qtype == RecordType::SRV {
            // Each target's node meta as TXT in the additional section, once
            // per target, as Consul sends it (enable_additional_node_meta_txt).
            let mut with_txt: HashSet<&Name> = HashSet::new();
            for it in order {
                let Some(target) = &it.target else { continue };
                if a.answers.len() >= max {
                    break;
                }
                if !it.meta.is_empty() && with_txt.insert(target) {
                    a.extra
                        .extend(it.meta.iter().map(|(k, v)| meta_record(target, ttl, k, v)));
                }
                let srv = SRV::new(1, it.weight, it.port, target.clone());
                let qt = if it.ip.is_ipv4() {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                a.answers.push((
                    Record::from_rdata(qname.clone(), ttl, RData::SRV(srv)),
                    ip_record(target, ttl, it.ip, qt),
                ));
            }
            return a;
        }
        let limit = match self.config.a_record_limit {
            0 => max,
            n => n.min(max),
        };
        for it in order {
            if a.answers.len() >= limit {
                break;
            }
            a.answers
                .extend(ip_record(qname, ttl, it.ip, qtype).map(|r| (r, None)));
        }
        a
    }

    async fn recurse(&self, query: &Query) -> Option<Message> {
        for r in &self.config.recursors {
            let mut m = Message::new();
            m.set_id(rand::random());
            m.set_message_type(MessageType::Query);
            m.set_op_code(OpCode::Query);
            m.set_recursion_desired(true);
            m.add_query(query.clone());
            let Ok(bytes) = m.to_vec() else { continue };
            let bind: SocketAddr = if r.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .ok()?;
            let Ok(sock) = UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(&bytes, r).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
            {
                if let Ok(resp) = Message::from_vec(&buf[..n]) {
                    if resp.id() == m.id() {
                        return Some(resp);
                    }
                }
            }
        }
        None
    }

    /// Answer a name outside our domain: from the recursors, else REFUSED.
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        query: &Query,
        handle: R,
        mut header: Header,
        edns: Option<Edns>,
    ) -> ResponseInfo {
        header.set_recursion_available(!self.config.recursors.is_empty());
        let forwarded = if self.config.recursors.is_empty() {
            None
        } else {
            self.recurse(query).await
        };
        let Some(m) = forwarded else {
            let code = if self.config.recursors.is_empty() {
                ResponseCode::Refused
            } else {
                ResponseCode::ServFail
            };
            return send_error(request, handle, edns, code).await;
        };
        let a = Answer {
            code: m.response_code(),
            answers: m.answers().iter().map(|r| (r.clone(), None)).collect(),
            authority: m.name_servers().to_vec(),
            extra: m.additionals().to_vec(),
        };
        self.respond(request, handle, header, edns, a, false).await
    }

    /// Cut `a` to the client's size and send it. `limited`: answers were
    /// dropped for `udp_answer_limit` (TC only with `enable_truncate`).
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut handle: R,
        mut header: Header,
        edns: Option<Edns>,
        mut a: Answer,
        limited: bool,
    ) -> ResponseInfo {
        header.set_response_code(a.code);
        let limit = if request.protocol() == Protocol::Udp {
            fit::udp_limit(request.edns())
        } else {
            fit::MAX_MESSAGE
        };
        let total = a.answers.len();
        let Some(cut) = fit::fit(request, header, edns.as_ref(), &mut a, limit) else {
            tracing::debug!("DNS answer cannot be encoded; answering SERVFAIL");
            return send_error(request, handle, edns, ResponseCode::ServFail).await;
        };
        if cut {
            tracing::debug!(
                records = %format!("{}/{total}", a.answers.len()),
                limit,
                "DNS response too large, truncated"
            );
        }
        header.set_truncated(cut || (limited && self.config.enable_truncate));
        let answers = a.answer_records();
        let additionals = a.additionals();
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = edns {
            builder.edns(e);
        }
        let resp = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            a.authority.iter(),
            additionals.iter(),
        );
        handle.send_response(resp).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "sending DNS response failed");
            header.into()
        })
    }
}

/// An error answer (no records), with our OPT record for an EDNS query.
async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    edns: Option<Edns>,
    code: ResponseCode,
) -> ResponseInfo {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        builder.edns(e);
    }
    let resp = builder.error_msg(request.header(), code);
    let header = *resp.header();
    handle
        .send_response(resp)
        .await
        .unwrap_or_else(|_| header.into())
}

#[async_trait::async_trait]
impl RequestHandler for ConsulDns {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        // RFC 6891: an EDNS query gets an OPT record back, with the size we
        // will keep UDP answers within.
        let edns = request.edns().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(fit::udp_limit(Some(req)));
            e.set_version(0);
            e
        });
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => return send_error(request, handle, edns, ResponseCode::FormErr).await,
        };
        if request.op_code() != OpCode::Query || request.message_type() != MessageType::Query {
            return send_error(request, handle, edns, ResponseCode::NotImp).await;
        }
        let mut header = Header::response_from_request(request.header());
        let query = info.query.original().clone();
        if !self.domain.zone_of(query.name()) {
            return self.forward(request, &query, handle, header, edns).await;
        }
        let udp = info.protocol == Protocol::Udp;
        let qtype = query.query_type();
        let max_answers = match (udp, qtype) {
            (true, _) => usize::from(fit::udp_limit(request.edns())) / MIN_RECORD,
            (false, RecordType::SRV) => TCP_MAX_SRV_ANSWERS,
            (false, _) => TCP_MAX_ANSWERS,
        };
        let mut a = match self.answer(query.name(), qtype, max_answers).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(name = %query.name(), error = %e, "DNS lookup failed; answering SERVFAIL");
                return send_error(request, handle, edns, ResponseCode::ServFail).await;
            }
        };
        // Consul's udp_answer_limit: a client that takes 512 bytes gets a
        // few answers (a random few: they are shuffled).
        // Consul applies it whenever the size is 512 bytes, EDNS or not.
        let cap = self.config.udp_answer_limit.min(fit::MAX_UDP_ANSWER_LIMIT);
        let classic = fit::udp_limit(request.edns()) == fit::CLASSIC_UDP;
        let limited = udp && classic && a.answers.len() > cap;
        if limited {
            a.answers.truncate(cap);
        }
        header.set_authoritative(true);
        self.respond(request, handle, header, edns, a, limited)
            .await
    }
}

/// Serve DNS on UDP and TCP at `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    handler: ConsulDns,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DnsError> {
    let (udp, tcp, bound) = bind_pair(addr).await?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    let task = tokio::spawn(async move {
        stop.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS shutdown");
        }
    });
    Ok((bound, task))
}

/// UDP and TCP on one port. Asked for port 0, UDP picks one and TCP follows;
/// when that TCP port happens to be taken, pick again (a few times).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind { addr, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(last.expect("at least one attempt"))
}
