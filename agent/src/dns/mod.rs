//! The DNS interface (hickory-server), UDP and TCP, domain `consul.`:
//!
//! - `<node>.node[.<dc>].consul` — A/AAAA of the node, TXT from node meta;
//! - `[<tag>.]<service>.service[.<dc>].consul` — A/AAAA and SRV of instances
//!   without a critical check (node or service), shuffled;
//! - RFC 2782 `_<service>._<tag|tcp>[.service][.<dc>].consul`;
//! - NXDOMAIN with the SOA for unknown names; other domains go to the
//!   configured recursors, if any.
//!
//! Answers come straight from the local state store: no raft round trip.

mod names;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::DnsConfig;
use crate::state::{Health, Store};
pub use names::{addr_label, parse, Lookup};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("binding DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Answers queries for the consul domain from the store.
pub struct ConsulDns {
    store: Arc<Store>,
    datacenter: String,
    config: DnsConfig,
    domain: Name,
    services: ServiceCache,
}

/// One healthy instance, ready to answer with.
struct Item {
    target: Name,
    ip: IpAddr,
    port: u16,
    weight: u16,
}

/// Healthy instances of `(service, tag)` as of the service's catalog index
/// (which moves on any change to the service, its checks or its nodes).
struct Cached {
    index: u64,
    items: Arc<Vec<Item>>,
}

type ServiceCache =
    parking_lot::RwLock<std::collections::HashMap<(String, Option<String>), Cached>>;

struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    /// SOA in the authority section (NXDOMAIN and empty answers).
    soa: bool,
}

impl Answer {
    fn empty(code: ResponseCode) -> Self {
        Self {
            code,
            answers: vec![],
            additionals: vec![],
            soa: true,
        }
    }
}

fn ip_record(name: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

impl ConsulDns {
    pub fn new(store: Arc<Store>, datacenter: String, config: DnsConfig) -> Self {
        let domain =
            Name::from_str(&format!("{}.", config.domain)).unwrap_or_else(|_| Name::root());
        Self {
            store,
            datacenter,
            config,
            domain,
            services: ServiceCache::default(),
        }
    }

    /// Healthy instances of a service (optionally with a tag), from the
    /// cache while the service's index has not moved.
    fn service_items(&self, service: &str, tag: Option<String>, index: u64) -> Arc<Vec<Item>> {
        let key = (service.to_string(), tag);
        if let Some(c) = self.services.read().get(&key) {
            if c.index == index {
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
                items: items.clone(),
            },
        );
        items
    }

    fn build_items(&self, service: &str, tag: Option<&str>) -> Vec<Item> {
        let t = self.store.read();
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
            let ok = match worst {
                Health::Passing => true,
                Health::Warning => !self.config.only_passing,
                _ => false,
            };
            let addr = if s.address.is_empty() {
                &n.address
            } else {
                &s.address
            };
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            if !ok {
                continue;
            }
            // A service address of its own gets an `.addr.` target.
            let host = if s.address.is_empty() || s.address == n.address {
                format!("{}.node.{}", n.node, self.datacenter)
            } else {
                format!("{}.addr.{}", addr_label(ip), self.datacenter)
            };
            let Some(target) = Name::from_str(&host)
                .ok()
                .and_then(|x| x.append_domain(&self.domain).ok())
            else {
                continue;
            };
            let weight = if worst == Health::Warning {
                s.weights.warning
            } else {
                s.weights.passing
            };
            out.push(Item {
                target,
                ip,
                port: s.port,
                weight: weight.clamp(0, u16::MAX as i32) as u16,
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

    /// Resolve one question about the consul domain.
    fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let lookup = match parse(
            &qname.to_ascii().to_ascii_lowercase(),
            &self.config.domain,
            &self.datacenter,
        ) {
            Some(l) => l,
            None => return Answer::empty(ResponseCode::NXDomain),
        };
        let t = self.store.read();
        match lookup {
            Lookup::Addr(ip) => {
                let mut a = Answer::empty(ResponseCode::NoError);
                a.answers.extend(ip_record(qname, 0, ip, qtype));
                a.soa = a.answers.is_empty();
                a
            }
            Lookup::Node(node) => {
                let Some(n) = t.catalog.node_folded(&node) else {
                    return Answer::empty(ResponseCode::NXDomain);
                };
                let ttl = self.config.node_ttl.as_secs() as u32;
                let mut a = Answer::empty(ResponseCode::NoError);
                a.soa = false;
                if let Ok(ip) = n.address.parse::<IpAddr>() {
                    a.answers.extend(ip_record(qname, ttl, ip, qtype));
                }
                let txt: Vec<Record> = n
                    .meta
                    .iter()
                    .map(|(k, v)| {
                        Record::from_rdata(
                            qname.clone(),
                            ttl,
                            RData::TXT(TXT::new(vec![format!("{k}={v}")])),
                        )
                    })
                    .collect();
                match qtype {
                    RecordType::TXT | RecordType::ANY => a.answers.extend(txt),
                    _ => a.additionals.extend(txt),
                }
                a.soa = a.answers.is_empty();
                a
            }
            Lookup::Service { service, tag } => {
                let ttl = self.config.service_ttl(&service).as_secs() as u32;
                let index = t.catalog.service_index(&service);
                drop(t);
                let items = self.service_items(&service, tag, index);
                if items.is_empty() {
                    return Answer::empty(ResponseCode::NXDomain);
                }
                let mut order: Vec<&Item> = items.iter().collect();
                order.shuffle(&mut rand::thread_rng());
                let mut a = Answer::empty(ResponseCode::NoError);
                a.soa = false;
                for it in order {
                    match qtype {
                        RecordType::SRV => {
                            a.answers.push(Record::from_rdata(
                                qname.clone(),
                                ttl,
                                RData::SRV(SRV::new(1, it.weight, it.port, it.target.clone())),
                            ));
                            let qt = if it.ip.is_ipv4() {
                                RecordType::A
                            } else {
                                RecordType::AAAA
                            };
                            a.additionals.extend(ip_record(&it.target, ttl, it.ip, qt));
                        }
                        _ => a.answers.extend(ip_record(qname, ttl, it.ip, qtype)),
                    }
                }
                a.soa = a.answers.is_empty();
                a
            }
        }
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
}

#[async_trait::async_trait]
impl RequestHandler for ConsulDns {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        // RFC 6891: an EDNS query gets an OPT record back, with our limit.
        if let Some(req) = request.edns() {
            let mut edns = hickory_proto::op::Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns.set_version(0);
            builder.edns(edns);
        }
        let mut header = Header::response_from_request(request.header());
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => {
                let resp = builder.error_msg(request.header(), ResponseCode::FormErr);
                return handle
                    .send_response(resp)
                    .await
                    .unwrap_or_else(|_| header.into());
            }
        };
        if request.op_code() != OpCode::Query || request.message_type() != MessageType::Query {
            let resp = builder.error_msg(request.header(), ResponseCode::NotImp);
            return handle
                .send_response(resp)
                .await
                .unwrap_or_else(|_| header.into());
        }
        let qname: Name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        if !self.domain.zone_of(&qname) {
            header.set_recursion_available(!self.config.recursors.is_empty());
            let forwarded = if self.config.recursors.is_empty() {
                None
            } else {
                self.recurse(info.query.original()).await
            };
            return match forwarded {
                Some(m) => {
                    header.set_response_code(m.response_code());
                    let resp =
                        builder.build(header, m.answers(), m.name_servers(), &[], m.additionals());
                    handle
                        .send_response(resp)
                        .await
                        .unwrap_or_else(|_| header.into())
                }
                None => {
                    let code = if self.config.recursors.is_empty() {
                        ResponseCode::Refused
                    } else {
                        ResponseCode::ServFail
                    };
                    let resp = builder.error_msg(request.header(), code);
                    handle
                        .send_response(resp)
                        .await
                        .unwrap_or_else(|_| header.into())
                }
            };
        }
        let mut a = self.answer(&qname, qtype);
        header.set_authoritative(true);
        header.set_response_code(a.code);
        let soa = if a.soa { vec![self.soa()] } else { vec![] };
        if info.protocol == hickory_proto::xfer::Protocol::Udp {
            let limit = request
                .edns()
                .map(|e| e.max_payload().max(512))
                .unwrap_or(512) as usize;
            if fit_udp(info.query.original(), &mut a, &soa, limit) {
                header.set_truncated(true);
            }
        }
        let resp = builder.build(
            header,
            a.answers.iter(),
            &[],
            soa.iter(),
            a.additionals.iter(),
        );
        handle.send_response(resp).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "sending DNS response failed");
            header.into()
        })
    }
}

fn rdata_len(r: &Record) -> usize {
    match r.data() {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + srv.target().len(),
        RData::TXT(t) => t.iter().map(|x| x.len() + 1).sum(),
        RData::SOA(soa) => soa.mname().len() + soa.rname().len() + 20,
        _ => 512,
    }
}

/// An upper bound of the response's wire size, without encoding it. Answer
/// records are all owned by the query name, which the question already
/// holds (so 2-byte pointers); other owners count at full length, and so do
/// names inside records.
fn wire_bound(query: &Query, answers: &[Record], soa: &[Record], additionals: &[Record]) -> usize {
    // header + question + EDNS OPT record (11 bytes) when present
    let mut total = 12 + query.name().len() + 4 + 11;
    for r in answers {
        let owner = if r.name() == query.name() {
            2
        } else {
            r.name().len()
        };
        total += owner + 10 + rdata_len(r);
    }
    for r in soa.iter().chain(additionals) {
        total += r.name().len() + 10 + rdata_len(r);
    }
    total
}

/// Trim a UDP answer to `limit` bytes (additionals first, then answers);
/// returns true when answers were dropped (the TC bit must be set).
fn fit_udp(query: &Query, a: &mut Answer, soa: &[Record], limit: usize) -> bool {
    if wire_bound(query, &a.answers, soa, &a.additionals) <= limit {
        return false;
    }
    a.additionals.clear();
    if wire_bound(query, &a.answers, soa, &[]) <= limit {
        return false;
    }
    // Largest prefix of answers that fits, by binary search.
    let (mut lo, mut hi) = (0usize, a.answers.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if wire_bound(query, &a.answers[..mid], soa, &[]) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    a.answers.truncate(lo);
    true
}

/// Serve DNS on UDP and TCP at `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    handler: ConsulDns,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DnsError> {
    let udp = UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::Bind { addr, source })?;
    let bound = udp
        .local_addr()
        .map_err(|source| DnsError::Bind { addr, source })?;
    // TCP on the same port UDP got (which matters when asked for port 0).
    let tcp = TcpListener::bind(bound)
        .await
        .map_err(|source| DnsError::Bind {
            addr: bound,
            source,
        })?;
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
