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
}

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
        }
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
                let Some(n) = t.catalog.node(&node) else {
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
                let mut instances: Vec<_> = t
                    .catalog
                    .instances(&service)
                    .into_iter()
                    .filter(|(_, s)| {
                        tag.as_ref()
                            .map(|tg| s.tags.iter().any(|x| x.eq_ignore_ascii_case(tg)))
                            .unwrap_or(true)
                    })
                    .filter_map(|(n, s)| {
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
                        ok.then_some((n, s, worst))
                    })
                    .collect();
                if instances.is_empty() {
                    return Answer::empty(ResponseCode::NXDomain);
                }
                instances.shuffle(&mut rand::thread_rng());
                let mut a = Answer::empty(ResponseCode::NoError);
                a.soa = false;
                for (n, s, worst) in instances {
                    let addr = if s.address.is_empty() {
                        &n.address
                    } else {
                        &s.address
                    };
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    match qtype {
                        RecordType::SRV => {
                            // A service address of its own gets an `.addr.` target.
                            let host = if s.address.is_empty() || s.address == n.address {
                                format!("{}.node.{}", n.node, self.datacenter)
                            } else {
                                format!("{}.addr.{}", addr_label(ip), self.datacenter)
                            };
                            let target = Name::from_str(&host)
                                .ok()
                                .and_then(|x| x.append_domain(&self.domain).ok());
                            let Some(target) = target else { continue };
                            let weight = if worst == Health::Warning {
                                s.weights.warning
                            } else {
                                s.weights.passing
                            };
                            a.answers.push(Record::from_rdata(
                                qname.clone(),
                                ttl,
                                RData::SRV(SRV::new(
                                    1,
                                    weight.clamp(0, u16::MAX as i32) as u16,
                                    s.port,
                                    target.clone(),
                                )),
                            ));
                            let qt = if ip.is_ipv4() {
                                RecordType::A
                            } else {
                                RecordType::AAAA
                            };
                            a.additionals.extend(ip_record(&target, ttl, ip, qt));
                        }
                        _ => a.answers.extend(ip_record(qname, ttl, ip, qtype)),
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
        let builder = MessageResponseBuilder::from_message_request(request);
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

fn encoded_len(query: &Query, answers: &[Record], soa: &[Record], additionals: &[Record]) -> usize {
    let mut m = Message::new();
    m.add_query(query.clone());
    m.add_answers(answers.iter().cloned());
    m.add_name_servers(soa.iter().cloned());
    m.add_additionals(additionals.iter().cloned());
    // EDNS OPT record of the response, if any, is at most 11 bytes more.
    m.to_vec().map(|v| v.len() + 11).unwrap_or(usize::MAX)
}

/// Trim a UDP answer to `limit` bytes (additionals first, then answers);
/// returns true when answers were dropped (the TC bit must be set).
fn fit_udp(query: &Query, a: &mut Answer, soa: &[Record], limit: usize) -> bool {
    if encoded_len(query, &a.answers, soa, &a.additionals) <= limit {
        return false;
    }
    // Keep the additionals that belong to the answers that still fit.
    a.additionals.clear();
    if encoded_len(query, &a.answers, soa, &[]) <= limit {
        return false;
    }
    // Largest prefix of answers that fits, by binary search.
    let (mut lo, mut hi) = (0usize, a.answers.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if encoded_len(query, &a.answers[..mid], soa, &[]) <= limit {
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
