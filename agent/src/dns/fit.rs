//! Fitting an answer into the size the client can take.
//!
//! Sizes are measured by encoding the response exactly as hickory will send
//! it (same question bytes, same name compression), never estimated. UDP
//! gets 512 bytes without EDNS, else the client's EDNS size capped at
//! [`MAX_UDP_PAYLOAD`]; TCP gets a DNS message's 65,535. What does not fit
//! is dropped in this order: optional additional records (node meta TXT
//! next to an A answer), then the authority section, then answers from the
//! end, each with its own additional record (an SRV target's address), and
//! only cutting answers sets TC. One answer too large on its own (a long
//! node meta TXT for a 512-byte client) is sent anyway, as Consul does, but
//! with TC so a client that can retry over TCP does.

use hickory_proto::op::{Edns, Header, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::Request;

/// Largest UDP answer whatever the client advertises: the DNS Flag Day 2020
/// size, which avoids IP fragmentation and bounds amplification (a client
/// wanting more asks over TCP).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A UDP answer without EDNS (RFC 1035).
pub const CLASSIC_UDP: u16 = 512;

/// TCP and anything else: the largest DNS message.
pub const MAX_MESSAGE: u16 = u16::MAX;

/// Consul's ceiling on `udp_answer_limit` (`maxUDPAnswerLimit`).
pub const MAX_UDP_ANSWER_LIMIT: usize = 8;

/// The records of one response, before it is cut to size.
#[derive(Default)]
pub struct Answer {
    pub code: ResponseCode,
    /// Answer records, each with the additional record that belongs to it
    /// (kept or dropped together).
    pub answers: Vec<(Record, Option<Record>)>,
    pub authority: Vec<Record>,
    /// Additional records that may be left out to make room.
    pub extra: Vec<Record>,
}

impl Answer {
    pub fn new(code: ResponseCode) -> Self {
        Self {
            code,
            ..Default::default()
        }
    }

    /// The additional section: each kept answer's own record (once per
    /// owner name), then the optional ones.
    pub fn additionals(&self) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for r in self.answers.iter().filter_map(|(_, g)| g.as_ref()) {
            if !out.iter().any(|o| o.name() == r.name()) {
                out.push(r.clone());
            }
        }
        out.extend(self.extra.iter().cloned());
        out
    }

    pub fn answer_records(&self) -> Vec<Record> {
        self.answers.iter().map(|(r, _)| r.clone()).collect()
    }
}

/// Whether `a`, with the first `n` answers, encodes within `limit` bytes
/// (hickory's encoder marks a message that ran out of room as truncated).
fn fits(
    request: &Request,
    header: Header,
    edns: Option<&Edns>,
    a: &Answer,
    n: usize,
    limit: u16,
) -> bool {
    let answers: Vec<&Record> = a.answers[..n].iter().map(|(r, _)| r).collect();
    let mut glue: Vec<&Record> = Vec::new();
    for r in a.answers[..n].iter().filter_map(|(_, g)| g.as_ref()) {
        if !glue.iter().any(|o| o.name() == r.name()) {
            glue.push(r);
        }
    }
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        builder.edns(e.clone());
    }
    let resp = builder.build(
        header,
        answers,
        std::iter::empty(),
        a.authority.iter(),
        glue.into_iter().chain(a.extra.iter()),
    );
    let mut buf = Vec::with_capacity(usize::from(limit).min(4096));
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(limit);
    matches!(resp.destructive_emit(&mut enc), Ok(info) if !info.truncated())
}

/// Cut `a` until it fits `limit`. Returns `Some(true)` when answers were
/// dropped or the one left is too large (set TC), `Some(false)` when it
/// fits as it is or after dropping optional records, `None` when not even
/// an empty answer can be encoded.
pub fn fit(
    request: &Request,
    header: Header,
    edns: Option<&Edns>,
    a: &mut Answer,
    limit: u16,
) -> Option<bool> {
    let n = a.answers.len();
    if fits(request, header, edns, a, n, limit) {
        return Some(false);
    }
    a.extra.clear();
    if fits(request, header, edns, a, n, limit) {
        return Some(false);
    }
    if n > 0 {
        a.authority.clear();
        if fits(request, header, edns, a, n, limit) {
            return Some(false);
        }
    }
    // Largest prefix of the answers that fits: fits(lo) holds or lo == 0.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(request, header, edns, a, mid, limit) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if lo == 0 && n > 0 && fits(request, header, edns, a, 1, MAX_MESSAGE) {
        lo = 1;
    } else if lo == 0 && !fits(request, header, edns, a, 0, limit) {
        return None;
    }
    a.answers.truncate(lo);
    Some(true)
}

/// The size limit for a UDP query: 512 without EDNS, else the advertised
/// size (RFC 6891: below 512 counts as 512) capped at [`MAX_UDP_PAYLOAD`].
pub fn udp_limit(edns: Option<&Edns>) -> u16 {
    match edns {
        None => CLASSIC_UDP,
        Some(e) => e.max_payload().clamp(CLASSIC_UDP, MAX_UDP_PAYLOAD),
    }
}
