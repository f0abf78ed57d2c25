//! Step 1 of the pipeline: the request's common parameters, parsed once
//! into a [`RequestCtx`] that every later step and the handler read.
//!
//! Consul's conventions: boolean flags are presence-only, durations are Go
//! durations, `dc` is ours or is routed elsewhere, the token comes from
//! `?token=`, `X-Consul-Token` or `Authorization: Bearer`, in that order.
//! Errors in the common parameters are kept, not raised here: each handler
//! asks for what it uses ([`RequestCtx::read_opts`], [`RequestCtx::check_dc`])
//! at the point Consul checks it, so an answer's error is the same as it
//! would be without the pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, Uri};

use super::error::ApiError;
use crate::app::Shared;
use crate::rpc::client::HOPS;
use gocompat::duration::parse_duration;

/// Default and maximum blocking wait (Consul's default_query_time / max_query_time).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Decoded query parameters, in order.
///
/// Kept as one string of the decoded text and the pairs' bounds in it: a
/// parked blocking query holds its parameters for its whole wait, and two
/// allocations cost less than two per pair.
#[derive(Debug, Default, Clone)]
pub struct Query {
    text: Box<str>,
    /// Per pair: where its key ends and its value starts, where the value
    /// ends (the key starts where the previous value ended).
    bounds: Box<[(u32, u32)]>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let Some(q) = raw else {
            return Self::default();
        };
        let mut text = String::new();
        let mut bounds = Vec::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            text.push_str(&k);
            let key_end = text.len();
            text.push_str(&v);
            // A query is bounded by the URI's size, far below 4 GiB.
            bounds.push((key_end as u32, text.len() as u32));
        }
        Self {
            text: text.into_boxed_str(),
            bounds: bounds.into_boxed_slice(),
        }
    }

    /// The pairs, in order.
    fn pairs(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + '_ {
        (0..self.bounds.len()).map(|i| {
            let start = i.checked_sub(1).map_or(0, |p| self.bounds[p].1 as usize);
            let (key_end, end) = (self.bounds[i].0 as usize, self.bounds[i].1 as usize);
            (&self.text[start..key_end], &self.text[key_end..end])
        })
    }

    /// Present at all (`?recurse`, `?recurse=`, `?recurse=1` ...).
    pub fn has(&self, name: &str) -> bool {
        self.pairs().any(|(k, _)| k == name)
    }

    /// Last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs().rev().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The query re-encoded (Consul echoes it in conflicting-flags errors).
    pub fn encoded(&self) -> String {
        self.encoded_without(&[])
    }

    /// [`Self::encoded`] without the parameters named in `skip`.
    pub fn encoded_without(&self, skip: &[&str]) -> String {
        let mut pairs: Vec<(&str, &str)> =
            self.pairs().filter(|(k, _)| !skip.contains(k)).collect();
        pairs.sort();
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// 400 unless at most one of `flags` is present.
    pub fn conflicting(&self, flags: &[&str]) -> Result<(), ApiError> {
        if flags.iter().filter(|f| self.has(f)).count() > 1 {
            return Err(ApiError::bad(format!(
                "Conflicting flags: {}",
                self.encoded()
            )));
        }
        Ok(())
    }

    /// A u64 parameter, 400 with `msg` when malformed.
    pub fn u64(&self, name: &str, msg: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad(msg)),
        }
    }
}

/// How a read may be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
    /// A default read a follower answers after a read-index round
    /// ([`super::read_index`]): the leader's lease-checked index is applied
    /// here.
    ReadIndex,
    /// `?consistent`, likewise, with the leader's index confirmed by a quorum.
    ReadIndexConsistent,
}

impl Consistency {
    pub fn header(self) -> &'static str {
        match self {
            Self::Default | Self::ReadIndex => "leader",
            Self::Stale => "stale",
            Self::Consistent | Self::ReadIndexConsistent => "consistent",
        }
    }
}

/// Options every read endpoint takes.
#[derive(Clone, Debug)]
pub struct ReadOpts {
    pub index: u64,
    pub wait: Duration,
    pub consistency: Consistency,
    pub pretty: bool,
}

impl ReadOpts {
    pub fn parse(q: &Query, datacenter: &str) -> Result<Self, ApiError> {
        check_dc(q, datacenter)?;
        Self::parse_options(q).map_err(ApiError::bad)
    }

    /// The options without the `dc` check; the error is Consul's message.
    fn parse_options(q: &Query) -> Result<Self, &'static str> {
        let consistency = match (q.has("stale"), q.has("consistent")) {
            (true, true) => {
                return Err("Cannot specify ?stale with ?consistent, conflicting semantics.")
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            _ => Consistency::Default,
        };
        let index = match q.get("index") {
            None => 0,
            Some(v) => v.parse().map_err(|_| "Invalid index")?,
        };
        let wait = match q.get("wait") {
            None | Some("") => DEFAULT_WAIT,
            Some(w) => parse_duration(w).ok_or("Invalid wait time")?,
        };
        Ok(Self {
            index,
            wait: wait.min(MAX_WAIT),
            consistency,
            pretty: q.has("pretty"),
        })
    }
}

/// `?dc=` other than ours: no path from here (routed requests never get
/// this far; see [`super::route`]).
pub fn check_dc(q: &Query, datacenter: &str) -> Result<(), ApiError> {
    match q.get("dc") {
        Some(dc) if !dc.is_empty() && dc != datacenter => Err(ApiError::NoPathToDatacenter),
        _ => Ok(()),
    }
}

/// What the pipeline knows of a request before its handler runs.
///
/// Kept small: a parked blocking query holds its context for minutes.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// Every query parameter, for the handler's own ones.
    pub query: Query,
    /// `?dc=` names another datacenter: [`super::route`] sends such
    /// requests there; a handler reached anyway refuses it
    /// ([`Self::check_dc`]).
    foreign_dc: bool,
    /// The read options, or Consul's message for the first bad one.
    read: Result<ReadOpts, &'static str>,
    /// The ACL token the request carries (`None`: the agent's default).
    token: Option<Arc<str>>,
    /// How many times the request has been forwarded to get here.
    pub hops: u32,
    /// What the token may do (set by [`super::auth`] where the request is
    /// answered).
    authz: super::authz::Authz,
}

impl RequestCtx {
    pub fn parse(uri: &Uri, headers: &HeaderMap, datacenter: &str) -> Self {
        let query = Query::parse(uri.query());
        let foreign_dc = check_dc(&query, datacenter).is_err();
        let read = ReadOpts::parse_options(&query);
        let token = token_of(&query, headers);
        Self {
            foreign_dc,
            read,
            token,
            hops: hops(headers),
            query,
            authz: super::authz::Authz::AllowAll,
        }
    }

    /// What the request's token may do.
    pub fn authz(&self) -> &super::authz::Authz {
        &self.authz
    }

    pub fn set_authz(&mut self, a: super::authz::Authz) {
        self.authz = a;
    }

    /// The other datacenter `?dc=` names, if it names one.
    pub fn remote_dc(&self) -> Option<&str> {
        self.query.get("dc").filter(|_| self.foreign_dc)
    }

    /// 500 `No path to datacenter` for another datacenter's `?dc=`.
    pub fn check_dc(&self) -> Result<(), ApiError> {
        match self.foreign_dc {
            true => Err(ApiError::NoPathToDatacenter),
            false => Ok(()),
        }
    }

    /// The read options, checked as [`ReadOpts::parse`] checks them.
    pub fn read_opts(&self) -> Result<ReadOpts, ApiError> {
        self.check_dc()?;
        self.read.clone().map_err(ApiError::bad)
    }

    /// A read-index round covered this read ([`super::read_index`]): it is
    /// answered here as the leader would answer it.
    pub fn set_read_index(&mut self) {
        if let Ok(o) = &mut self.read {
            o.consistency = match o.consistency {
                Consistency::Consistent => Consistency::ReadIndexConsistent,
                _ => Consistency::ReadIndex,
            };
        }
    }

    /// The read options whatever datacenter `?dc=` names (for a request
    /// carried elsewhere, where they are checked again).
    pub fn read_opts_anywhere(&self) -> Result<ReadOpts, ApiError> {
        self.read.clone().map_err(ApiError::bad)
    }

    /// The request's token, if it carries one (the pipeline's auth step
    /// resolves it where the request is answered).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// [`Self::token`], shared: the acting secret of the handler's writes
    /// is the same allocation.
    pub fn token_shared(&self) -> Option<Arc<str>> {
        self.token.clone()
    }

    /// `?cached`: the agent cache may answer ([`super::cache`]).
    pub fn cached(&self) -> bool {
        self.query.has("cached")
    }

    /// `?filter=`: Consul's bexpr filter, not evaluated yet.
    pub fn filter(&self) -> Option<&str> {
        self.query.get("filter")
    }
}

/// The token, in Consul's order: `?token=`, `X-Consul-Token`,
/// `Authorization: Bearer`.
fn token_of(q: &Query, headers: &HeaderMap) -> Option<Arc<str>> {
    if let Some(t) = q.get("token").filter(|t| !t.is_empty()) {
        return Some(t.into());
    }
    if let Some(t) = headers
        .get(&X_CONSUL_TOKEN)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.into());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Into::into)
}

// Named once: a lookup by a `&str` parses the name on every request.
static X_CONSUL_TOKEN: HeaderName = HeaderName::from_static("x-consul-token");
static X_TRIBUNE_HOPS: HeaderName = HeaderName::from_static(HOPS);

/// How many times a request has been forwarded (its `x-tribune-hops`).
pub fn hops(h: &HeaderMap) -> u32 {
    h.get(&X_TRIBUNE_HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Handlers take the context the entry step parsed ([`super::entry`]);
/// one called without it (a router without the pipeline) parses its own.
impl FromRequestParts<Shared> for RequestCtx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Infallible> {
        Ok(match parts.extensions.remove::<RequestCtx>() {
            Some(ctx) => ctx,
            None => {
                let mut ctx = RequestCtx::parse(&parts.uri, &parts.headers, &s.config.datacenter);
                // Without the pipeline nothing resolved the token: with
                // ACLs on, such a request may do nothing (fail closed).
                if s.config.acl.enabled {
                    ctx.authz = super::authz::Authz::Acl(std::sync::Arc::new(
                        crate::acl::Authorizer::from_policies([], crate::acl::DefaultPolicy::Deny),
                    ));
                }
                ctx
            }
        })
    }
}

/// The context of an RPC arriving on the server port (a forwarded write,
/// a DNS lookup): how far it has travelled. Its token will travel here too;
/// the RPC handlers pass it to [`super::auth::authenticate_rpc`].
#[derive(Debug, Clone, Copy)]
pub struct RpcCtx {
    pub hops: u32,
}

impl<S: Sync> FromRequestParts<S> for RpcCtx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(RpcCtx {
            hops: hops(&parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("55000ms"), Some(Duration::from_secs(55)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "abc", "-1s", "5x", "s", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_pairs_keep_order_repeats_and_decoding() {
        let q = Query::parse(Some("tag=a&tag=b%20c&&x=&=v&tag=d&%C3%A9=%2F"));
        assert_eq!(q.all("tag").collect::<Vec<_>>(), ["a", "b c", "d"]);
        assert_eq!(q.get("tag"), Some("d"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get(""), Some("v"));
        assert_eq!(q.get("é"), Some("/"));
        assert_eq!(q.get("y"), None);
        assert_eq!(
            q.encoded_without(&["tag"]),
            "=v&x=&%C3%A9=%2F",
            "sorted, re-encoded"
        );
        assert!(!Query::parse(None).has(""));
        assert!(!Query::parse(Some("")).has(""));
    }

    #[test]
    fn presence_flags_and_conflicts() {
        let q = Query::parse(Some("recurse&keys=True&stale=&x=1"));
        assert!(q.has("recurse") && q.has("keys") && q.has("stale"));
        assert!(!q.has("raw"));
        assert!(q.conflicting(&["recurse", "cas"]).is_ok());
        let q = Query::parse(Some("recurse&cas=3"));
        assert!(q.conflicting(&["recurse", "cas"]).is_err());
        let q = Query::parse(Some("stale&consistent"));
        assert!(ReadOpts::parse(&q, "dc1").is_err());
        let q = Query::parse(Some("wait=20m&index=5"));
        let o = ReadOpts::parse(&q, "dc1").unwrap();
        assert_eq!((o.index, o.wait), (5, MAX_WAIT));
        assert!(ReadOpts::parse(&Query::parse(Some("index=-1")), "dc1").is_err());
        assert!(matches!(
            ReadOpts::parse(&Query::parse(Some("dc=dc2")), "dc1"),
            Err(ApiError::NoPathToDatacenter)
        ));
    }
}
