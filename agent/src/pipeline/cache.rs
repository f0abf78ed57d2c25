//! The agent cache (`?cached`, issue 18), as Consul's `agent/cache`: a
//! read with `?cached` on `catalog/services`, `catalog/service/<n>`,
//! `health/service/<n>`, `catalog/datacenters` or a prepared query's
//! execute is answered from an entry of this agent, fetched on the first
//! request (`X-Cache: MISS`) and kept fresh by a background blocking query
//! (not the two without an index to block on); later requests are hits
//! (`X-Cache: HIT`, `Age`: seconds since the servers last gave or confirmed
//! the answer).
//!
//! `Cache-Control` is honoured: `max-age=N` (older entries are fetched
//! again; `max-age=0` always), `must-revalidate` (as `max-age=0`), and
//! `stale-if-error=N` (when that fetch fails, an entry at most N seconds
//! old answers instead of the error). Entries unused for 72 h (Consul's
//! TTL) go, and the cache holds at most `cache.max_bytes` of answers,
//! evicting the least recently used. The key has the token in it, as the
//! coalescing key has. A `?cached` blocking read (`?index`) is not served
//! here: it is forwarded, and merged with identical ones ([`super::coalesce`]).
//!
//! Fetches go through the agent's own API router, the `?cached` parameter
//! removed, so they take the whole pipeline (forwarding, merging).
//!
//! DNS on a client agent with `dns_config.use_cache` reads its service
//! lookups through here too ([`AgentCache::read_own`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::task::AbortHandle;
use tower::ServiceExt;

use super::context::RequestCtx;

/// Entries unused this long go (Consul's cache entry TTL).
pub const TTL: Duration = Duration::from_secs(72 * 3600);
/// Default of `cache.max_bytes`.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;
/// Largest answer cached (bigger ones are answered, not kept).
const MAX_ANSWER: usize = 16 << 20;
/// The background query's wait at the server.
const REFRESH_WAIT: &str = "5m";

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The reads `?cached` serves from the cache.
pub fn cacheable(method: &Method, path: &str, ctx: &RequestCtx) -> bool {
    let name_after = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && !n.contains('/'))
    };
    method == Method::GET
        && ctx.cached()
        && !ctx.query.has("index")
        && (path == "/v1/catalog/services"
            || path == "/v1/catalog/datacenters"
            || name_after("/v1/catalog/service/")
            || name_after("/v1/health/service/")
            || is_query_execute(path))
}

/// `/v1/query/<id or name>/execute`: Consul caches it without a background
/// refresh (its cache type does not block), so an entry stays as fetched
/// until `max-age` asks again.
fn is_query_execute(path: &str) -> bool {
    path.strip_prefix("/v1/query/")
        .and_then(|rest| rest.strip_suffix("/execute"))
        .is_some_and(|q| !q.is_empty() && !q.contains('/'))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    /// Path and query without `cached`, `index` and `wait`.
    uri: String,
    token: Option<Box<str>>,
}

/// A cached answer.
#[derive(Debug)]
struct Value {
    /// `None`: an answer without an index (`catalog/datacenters`) or one
    /// Consul does not refresh (a prepared query's execute), kept
    /// as fetched, not refreshed in the background.
    index: Option<u64>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Value {
    fn size(&self, key: &Key) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        self.body.len() + h + key.uri.len() + 64
    }

    fn respond(&self, hit: bool, age: Duration) -> Response {
        let mut resp = Response::new(Body::from(self.body.clone()));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        let h = resp.headers_mut();
        h.insert(
            X_CACHE.clone(),
            HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
        );
        h.insert(header::AGE, HeaderValue::from(age.as_secs()));
        resp
    }
}

struct Entry {
    value: Arc<Value>,
    /// When the servers last gave or confirmed it.
    fetched: Instant,
    used: Instant,
    /// Recency for LRU eviction.
    tick: u64,
    size: usize,
    refresh: Option<AbortHandle>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<Key>, Entry>,
    bytes: usize,
    tick: u64,
}

/// The agent's cache.
pub struct AgentCache {
    router: OnceLock<Router>,
    max_bytes: AtomicUsize,
    inner: Mutex<Inner>,
}

impl Default for AgentCache {
    fn default() -> Self {
        Self {
            router: OnceLock::new(),
            max_bytes: AtomicUsize::new(DEFAULT_MAX_BYTES),
            inner: Mutex::default(),
        }
    }
}

/// `Cache-Control` directives of a request.
#[derive(Debug, Default, PartialEq)]
struct CacheControl {
    max_age: Option<Duration>,
    must_revalidate: bool,
    stale_if_error: Option<Duration>,
}

impl CacheControl {
    fn parse(h: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for v in h.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else { continue };
            for d in v.split(',').map(str::trim) {
                let (name, arg) = d.split_once('=').unwrap_or((d, ""));
                let secs = arg.trim().parse::<u64>().ok().map(Duration::from_secs);
                match name.trim().to_ascii_lowercase().as_str() {
                    "max-age" => cc.max_age = secs,
                    "must-revalidate" => cc.must_revalidate = true,
                    "stale-if-error" => cc.stale_if_error = secs,
                    _ => {}
                }
            }
        }
        cc
    }

    /// An entry this old must be fetched again.
    fn stale(&self, age: Duration) -> bool {
        self.must_revalidate || self.max_age.is_some_and(|m| m.is_zero() || age > m)
    }
}

impl AgentCache {
    /// The router fetches go through (set once the agent has built it).
    pub fn set_router(&self, r: Router) {
        let _ = self.router.set(r);
    }

    pub fn set_max_bytes(&self, n: usize) {
        self.max_bytes.store(n, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, marked used.
    fn lookup(&self, key: &Key) -> Option<(Arc<Value>, Instant)> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let e = g.entries.get_mut(key)?;
        e.used = Instant::now();
        e.tick = tick;
        Some((e.value.clone(), e.fetched))
    }

    /// Keep `value` for `key`; `true` when the entry is new (its refresh is
    /// to be started).
    fn store(&self, key: &Arc<Key>, value: Arc<Value>) -> bool {
        let size = value.size(key);
        let max = self.max_bytes.load(Ordering::Relaxed);
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let now = Instant::now();
        let Inner { entries, bytes, .. } = &mut *g;
        let new = match entries.get_mut(key) {
            Some(e) => {
                *bytes = *bytes + size - e.size;
                e.value = value;
                e.fetched = now;
                e.size = size;
                false
            }
            None => {
                entries.insert(
                    key.clone(),
                    Entry {
                        value,
                        fetched: now,
                        used: now,
                        tick,
                        size,
                        refresh: None,
                    },
                );
                *bytes += size;
                true
            }
        };
        // LRU eviction down to the cap (the entry just stored stays).
        while g.bytes > max && g.entries.len() > 1 {
            let Some(victim) = g
                .entries
                .iter()
                .filter(|(k, _)| *k != key)
                .min_by_key(|(_, e)| e.tick)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = g.entries.remove(&victim) {
                g.bytes -= e.size;
                if let Some(t) = e.refresh {
                    t.abort();
                }
                tracing::debug!(uri = %victim.uri, "agent cache: entry evicted (cache.max_bytes)");
            }
        }
        new && g.entries.contains_key(key)
    }

    fn set_refresh(&self, key: &Key, task: AbortHandle) {
        match self.lock().entries.get_mut(key) {
            Some(e) => e.refresh = Some(task),
            None => task.abort(),
        }
    }

    /// The entry's index, unless it is gone or unused past the TTL (then
    /// removed).
    fn refresh_index(&self, key: &Key) -> Option<u64> {
        let mut g = self.lock();
        let e = g.entries.get(key)?;
        if e.used.elapsed() <= TTL {
            return e.value.index;
        }
        if let Some(e) = g.entries.remove(key) {
            g.bytes -= e.size;
        }
        tracing::debug!(uri = %key.uri, "agent cache: entry expired (unused 72h)");
        None
    }

    /// Entries and their bytes.
    pub fn stats(&self) -> (usize, usize) {
        let g = self.lock();
        (g.entries.len(), g.bytes)
    }
}

/// `path?query` without `cached`, `index`, `wait`.
fn key_uri(path: &str, ctx: &RequestCtx) -> String {
    let q = ctx.query.encoded_without(&["cached", "index", "wait"]);
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

impl AgentCache {
    /// A `?cached` read of `uri` by the agent itself, through its own API
    /// (token: the agent's default), as DNS with `dns_config.use_cache`
    /// asks: the body of a 200, else the status. `max_age` is sent as
    /// `Cache-Control: max-age`.
    pub async fn read_own(
        &self,
        uri: &str,
        max_age: Option<Duration>,
    ) -> Result<Bytes, StatusCode> {
        let router = self
            .router
            .get()
            .cloned()
            .ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
        let sep = if uri.contains('?') { '&' } else { '?' };
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = format!("{uri}{sep}cached")
            .parse()
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        if let Some(m) = max_age.filter(|m| !m.is_zero()) {
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", m.as_secs().max(1))) {
                req.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
        let resp = match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if resp.status() != StatusCode::OK {
            return Err(resp.status());
        }
        axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Answer a `?cached` read (see [`cacheable`]).
pub async fn serve(cache: Arc<AgentCache>, ctx: RequestCtx, req: Request) -> Response {
    let Some(router) = cache.router.get().cloned() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let cc = CacheControl::parse(req.headers());
    let key = Arc::new(Key {
        uri: key_uri(req.uri().path(), &ctx),
        token: ctx.token().map(Into::into),
    });
    let held = cache.lookup(&key);
    if let Some((v, fetched)) = &held {
        let age = fetched.elapsed();
        if !cc.stale(age) {
            return v.respond(true, age);
        }
    }
    match fetch(&router, &key, None).await {
        Ok(mut v) => {
            if is_query_execute(req.uri().path()) {
                v.index = None;
            }
            let v = Arc::new(v);
            if cache.store(&key, v.clone()) && v.index.is_some() {
                let task = tokio::spawn(refresh(cache.clone(), router, key.clone()));
                cache.set_refresh(&key, task.abort_handle());
            }
            v.respond(false, Duration::ZERO)
        }
        Err(resp) => match held {
            Some((v, fetched)) if cc.stale_if_error.is_some_and(|s| fetched.elapsed() <= s) => {
                v.respond(true, fetched.elapsed())
            }
            _ => resp,
        },
    }
}

/// Ask the agent's router for `key` (blocking past `index` when given).
async fn fetch(router: &Router, key: &Key, index: Option<u64>) -> Result<Value, Response> {
    let uri = match index {
        None => key.uri.clone(),
        Some(i) => {
            let sep = if key.uri.contains('?') { '&' } else { '?' };
            format!("{}{sep}index={i}&wait={REFRESH_WAIT}", key.uri)
        }
    };
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = uri
        .parse()
        .map_err(|_| StatusCode::BAD_REQUEST.into_response())?;
    if let Some(t) = key.token.as_deref() {
        if let Ok(v) = HeaderValue::from_str(t) {
            req.headers_mut().insert("x-consul-token", v);
        }
    }
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let index = resp
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_ANSWER).await else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    let ok = parts.status == StatusCode::OK || parts.status == StatusCode::NOT_FOUND;
    if !ok {
        return Err(Response::from_parts(parts, Body::from(body)));
    }
    Ok(Value {
        index,
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The background query keeping `key`'s entry fresh, until it expires or
/// is evicted (which aborts this task). Failures back off up to 30 s.
async fn refresh(cache: Arc<AgentCache>, router: Router, key: Arc<Key>) {
    let mut backoff = Duration::from_secs(1);
    while let Some(index) = cache.refresh_index(&key) {
        match fetch(&router, &key, Some(index)).await {
            Ok(v) => {
                backoff = Duration::from_secs(1);
                if cache.lookup_fresh(&key, v).is_none() {
                    return;
                }
            }
            Err(resp) => {
                tracing::debug!(uri = %key.uri, status = %resp.status(), "agent cache: refresh failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

impl AgentCache {
    /// Replace the value of an existing entry (not a new one: a refresh of
    /// an evicted entry does not bring it back).
    fn lookup_fresh(&self, key: &Arc<Key>, v: Value) -> Option<()> {
        let size = v.size(key);
        let mut g = self.lock();
        let Inner { entries, bytes, .. } = &mut *g;
        let e = entries.get_mut(key)?;
        *bytes = *bytes + size - e.size;
        e.value = Arc::new(v);
        e.fetched = Instant::now();
        e.size = size;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, stale-if-error=60"),
        );
        let cc = CacheControl::parse(&h);
        assert_eq!(cc.max_age, Some(Duration::ZERO));
        assert_eq!(cc.stale_if_error, Some(Duration::from_secs(60)));
        assert!(cc.stale(Duration::ZERO));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10"),
        );
        let cc = CacheControl::parse(&h);
        assert!(!cc.stale(Duration::from_secs(5)) && cc.stale(Duration::from_secs(11)));
        let cc = CacheControl::parse(&HeaderMap::new());
        assert!(!cc.stale(Duration::from_secs(3600)));
    }

    fn value(n: usize) -> Arc<Value> {
        Arc::new(Value {
            index: Some(1),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; n]),
        })
    }

    fn key(uri: &str) -> Arc<Key> {
        Arc::new(Key {
            uri: uri.into(),
            token: None,
        })
    }

    #[test]
    fn byte_cap_evicts_least_recently_used() {
        let c = AgentCache::default();
        c.set_max_bytes(2500);
        let (a, b, d) = (key("/a"), key("/b"), key("/d"));
        assert!(c.store(&a, value(1000)));
        assert!(c.store(&b, value(1000)));
        // `a` used last: `b` is the one to go.
        assert!(c.lookup(&a).is_some());
        assert!(c.store(&d, value(1000)));
        assert!(c.lookup(&b).is_none());
        assert!(c.lookup(&a).is_some() && c.lookup(&d).is_some());
        let (n, bytes) = c.stats();
        assert_eq!(n, 2);
        assert!(bytes <= 2500, "{bytes}");
        // Same key with another token: another entry.
        let t = Arc::new(Key {
            uri: "/a".into(),
            token: Some("t".into()),
        });
        assert!(c.lookup(&t).is_none());
    }
}
