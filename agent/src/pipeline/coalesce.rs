//! Part of step 3: identical blocking reads that this agent forwards (a
//! client agent to a server, a follower to the leader) share one upstream
//! blocking query, as Consul's client agents merge them (issue 18).
//!
//! Identical means the same path, the same query apart from `index` and
//! `wait`, and the same ACL token (so merging never shows a caller what its
//! own token would not). A waiter joins the shared query when its `index`
//! is the shared query's or newer, or once the shared query holds an
//! answer; it takes the first answer whose index passes its own (at once
//! when the held answer is already newer), and when its own `wait` (plus
//! the server's jitter, up to wait/16) ends first it gets the held answer —
//! the current data and index — or, before any answer came, a plain read
//! of its own. Headers (`X-Consul-Index`, `KnownLeader`, `LastContact`)
//! are the server's answer's.
//!
//! Bounded: at most [`MAX_SHARED`] shared queries and [`MAX_WAITERS`]
//! waiters (beyond, a request is forwarded on its own, as before); a shared
//! query ends, and its entry goes, when its last waiter leaves (3 s later
//! when it holds an answer: watchers come back at once with its index).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::context::RequestCtx;
use super::tunnel::{send, Here, Sent, Tunnelled, TunnelledAnswer};
use crate::cluster::Upstream;
use crate::telemetry::COALESCED_WAITERS;

/// Distinct shared queries at once.
pub const MAX_SHARED: usize = 4096;
/// Waiters on shared queries at once, over all of them.
pub const MAX_WAITERS: usize = 100_000;
/// The shared query's own wait at the server (Consul's default query time).
const UPSTREAM_WAIT: &str = "5m";
/// Its RPC timeout: the wait, the server's jitter (wait/16) and slack.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// How long a shared query with an answer outlives its last waiter.
const LINGER: Duration = Duration::from_secs(3);
/// Largest error answer kept for the waiters.
const MAX_ERROR_BODY: usize = 1 << 20;
/// Paths whose reads block at the server (`?index` elsewhere is answered
/// at once, so there is nothing to share).
const BLOCKING_PREFIXES: [&str; 4] = ["/v1/kv/", "/v1/catalog/", "/v1/health/", "/v1/session/"];

/// What makes two reads identical.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    /// Path and the query without `index` and `wait`.
    uri: String,
    token: Option<Box<str>>,
}

/// One answer of the server, kept for every waiter.
#[derive(Debug)]
pub struct Answer {
    index: u64,
    /// The index went back (a snapshot restore): every waiter takes it.
    reset: bool,
    status: u16,
    /// Parsed once: every waiter's answer is a cheap clone of it.
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn from_tunnelled(a: TunnelledAnswer, index: u64, reset: bool) -> Self {
        let mut headers = HeaderMap::with_capacity(a.headers.len());
        for (k, v) in &a.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_bytes(v)) {
                headers.append(k, v);
            }
        }
        Self {
            index,
            reset,
            status: a.status,
            headers,
            body: Bytes::from(a.body),
        }
    }

    fn response(&self) -> Response {
        let mut resp = Response::new(Body::from(self.body.clone()));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        *resp.headers_mut() = self.headers.clone();
        resp
    }
}

/// What the shared query has to tell its waiters.
#[derive(Clone, Debug)]
enum Outcome {
    /// Nothing yet.
    Pending,
    /// The latest answer (the shared query goes on blocking past it).
    Answer(Arc<Answer>),
    /// An error answer, for every waiter; the shared query ended.
    Failed(Arc<Answer>),
    /// The shared query cannot go on (this server became the leader):
    /// every waiter proceeds on its own.
    Alone,
}

struct Entry {
    tx: watch::Sender<Outcome>,
    /// The index the shared query first blocked past.
    basis: u64,
}

struct Slot {
    entry: Arc<Entry>,
    waiters: usize,
    task: AbortHandle,
}

#[derive(Default)]
struct Inner {
    /// foldhash: a waiter hashes its key when it joins and when it leaves,
    /// so SipHash was a visible part of a fan-out's answer (issue 18); the
    /// map is bounded by [`MAX_SHARED`], so a crafted collision costs little.
    slots: HashMap<Arc<Key>, Slot, foldhash::fast::RandomState>,
    waiters: usize,
}

/// The shared queries of this agent.
#[derive(Default)]
pub struct Coalescer {
    inner: Mutex<Inner>,
}

impl Coalescer {
    /// Shared queries in flight, and their waiters.
    pub fn stats(&self) -> (usize, usize) {
        let g = self.lock();
        (g.slots.len(), g.waiters)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic under the lock leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End a shared query that has had no waiter for [`LINGER`].
    fn drop_idle(&self, key: &Arc<Key>, entry: &Arc<Entry>) {
        let mut g = self.lock();
        if let Some(slot) = g.slots.get(key) {
            if Arc::ptr_eq(&slot.entry, entry) && slot.waiters == 0 {
                slot.task.abort();
                g.slots.remove(key);
            }
        }
    }

    /// Drop a shared query that ended by itself, unless already replaced.
    fn forget(&self, key: &Arc<Key>, entry: &Arc<Entry>) {
        let mut g = self.lock();
        let Inner { slots, waiters } = &mut *g;
        if let Some(slot) = slots.get(key) {
            if Arc::ptr_eq(&slot.entry, entry) {
                *waiters -= slot.waiters;
                slots.remove(key);
            }
        }
    }
}

/// A blocking read that may share a query: its key, index and deadline.
pub struct Job {
    key: Arc<Key>,
    index: u64,
    deadline: tokio::time::Instant,
}

impl Job {
    /// The read without `index` and `wait`: a plain read of the same data.
    pub fn plain_uri(&self) -> &str {
        &self.key.uri
    }

    /// `None` unless this is a blocking read of a path whose reads block.
    pub fn new(ctx: &RequestCtx, path: &str) -> Option<Job> {
        if !BLOCKING_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return None;
        }
        // Another datacenter's reads merge too (`?dc=` is in the key).
        let opts = ctx.read_opts_anywhere().ok()?;
        if opts.index == 0 {
            return None;
        }
        let jitter_max = opts.wait.as_millis() as u64 / 16;
        let jitter = rand::thread_rng().gen_range(0..=jitter_max);
        let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
        Some(Job {
            key: Arc::new(Key {
                uri: without_index(path, ctx),
                token: ctx.token().map(Into::into),
            }),
            index: opts.index,
            deadline,
        })
    }
}

/// `path?query` without `index` and `wait`.
fn without_index(path: &str, ctx: &RequestCtx) -> String {
    let q = ctx.query.encoded_without(&["index", "wait"]);
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// How a waiter came out.
pub enum Waited {
    /// The answer to give.
    Answer(Response),
    /// Forward on its own: as asked, or (`nonblocking`: its wait ended
    /// before any answer came) as a plain read.
    Alone { nonblocking: bool },
}

/// What a shared query needs of the agent.
#[derive(Clone)]
pub struct Shared {
    pub here: Here,
    pub up: Upstream,
    pub coalescer: Arc<Coalescer>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Leaves its shared query when dropped; the last one out ends it, after
/// [`LINGER`] when it holds an answer.
struct Membership {
    c: Arc<Coalescer>,
    key: Arc<Key>,
    entry: Arc<Entry>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        COALESCED_WAITERS.fetch_sub(1, Ordering::Relaxed);
        let mut g = self.c.lock();
        let Inner { slots, waiters } = &mut *g;
        let Some(slot) = slots.get_mut(&self.key) else {
            return;
        };
        if !Arc::ptr_eq(&slot.entry, &self.entry) {
            return;
        }
        *waiters -= 1;
        slot.waiters -= 1;
        if slot.waiters > 0 {
            return;
        }
        // Watchers come straight back with the index they were given: kept
        // a moment, the shared query (parked past that index) serves them.
        let answered = matches!(*slot.entry.tx.borrow(), Outcome::Answer(_));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if answered => {
                let (c, key, entry) = (self.c.clone(), self.key.clone(), self.entry.clone());
                rt.spawn(async move {
                    tokio::time::sleep(LINGER).await;
                    c.drop_idle(&key, &entry);
                });
            }
            _ => {
                slot.task.abort();
                slots.remove(&self.key);
            }
        }
    }
}

/// Wait for `job`'s answer through a shared query (started from `env`,
/// the first waiter's request, when there is none yet).
pub async fn wait(s: &Shared, job: &Job, env: &Tunnelled, hop: u32) -> Waited {
    let Some((mut rx, _member)) = join(s, job, env, hop) else {
        return Waited::Alone { nonblocking: false };
    };
    loop {
        let now = rx.borrow_and_update().clone();
        match now {
            Outcome::Answer(a) if a.index > job.index || a.reset => {
                return Waited::Answer(a.response())
            }
            Outcome::Failed(a) => return Waited::Answer(a.response()),
            Outcome::Alone => return Waited::Alone { nonblocking: false },
            Outcome::Answer(_) | Outcome::Pending => {}
        }
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    return Waited::Alone { nonblocking: false };
                }
            }
            _ = tokio::time::sleep_until(job.deadline) => break,
            _ = s.shutdown.cancelled() => break,
        }
    }
    // The waiter's own wait ended: the current data, at the current index.
    let held = rx.borrow().clone();
    match held {
        Outcome::Answer(a) | Outcome::Failed(a) => Waited::Answer(a.response()),
        Outcome::Pending | Outcome::Alone => Waited::Alone { nonblocking: true },
    }
}

/// Join the shared query for `job`'s key, starting it when there is none.
/// `None`: the caps are reached, or the shared query has no answer yet and
/// blocks past an index newer than the waiter's (the server answers that
/// waiter at once).
fn join(
    s: &Shared,
    job: &Job,
    env: &Tunnelled,
    hop: u32,
) -> Option<(watch::Receiver<Outcome>, Membership)> {
    let c = &s.coalescer;
    let mut g = c.lock();
    let Inner { slots, waiters } = &mut *g;
    if *waiters >= MAX_WAITERS {
        return None;
    }
    let entry = match slots.get_mut(&job.key) {
        Some(slot) => {
            let pending = matches!(*slot.entry.tx.borrow(), Outcome::Pending);
            if pending && job.index < slot.entry.basis {
                return None;
            }
            slot.waiters += 1;
            slot.entry.clone()
        }
        None => {
            if slots.len() >= MAX_SHARED {
                return None;
            }
            let (tx, _) = watch::channel(Outcome::Pending);
            let entry = Arc::new(Entry {
                tx,
                basis: job.index,
            });
            let task = tokio::spawn(upstream(
                s.clone(),
                job.key.clone(),
                entry.clone(),
                env.headers.clone(),
                hop,
            ))
            .abort_handle();
            tracing::debug!(uri = %job.key.uri, index = job.index, "blocking query shared");
            slots.insert(
                job.key.clone(),
                Slot {
                    entry: entry.clone(),
                    waiters: 1,
                    task,
                },
            );
            entry
        }
    };
    *waiters += 1;
    COALESCED_WAITERS.fetch_add(1, Ordering::Relaxed);
    let rx = entry.tx.subscribe();
    Some((
        rx,
        Membership {
            c: c.clone(),
            key: job.key.clone(),
            entry,
        },
    ))
}

/// The shared query: block at the server past the latest index, tell the
/// waiters every answer, again, until the last waiter leaves (which aborts
/// this task) or the server fails.
async fn upstream(
    s: Shared,
    key: Arc<Key>,
    entry: Arc<Entry>,
    headers: Vec<(String, Vec<u8>)>,
    hop: u32,
) {
    let mut index = entry.basis;
    let sep = if key.uri.contains('?') { '&' } else { '?' };
    loop {
        let env = Tunnelled {
            method: "GET".into(),
            uri: format!("{}{sep}index={index}&wait={UPSTREAM_WAIT}", key.uri),
            headers: headers.clone(),
            body: Vec::new(),
        };
        let started = tokio::time::Instant::now();
        metrics::counter!("tribune.coalesce.upstream").increment(1);
        let out = match send(&s.here, &s.up, &env, false, UPSTREAM_TIMEOUT, hop).await {
            Sent::Answer(a) => match answer_index(&a) {
                Some(i) if a.status == 200 || a.status == 404 => {
                    let reset = i < index;
                    let advanced = i != index;
                    index = i.max(1);
                    // A server that answers at once without news would
                    // make this a busy loop: pace such rounds.
                    if !advanced && started.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Outcome::Answer(Arc::new(Answer::from_tunnelled(a, i, reset)))
                }
                _ => Outcome::Failed(Arc::new(Answer::from_tunnelled(a, 0, false))),
            },
            Sent::Local => Outcome::Alone,
            Sent::Failed(e) => Outcome::Failed(Arc::new(error_answer(e.into_response()).await)),
        };
        let last = !matches!(out, Outcome::Answer(_));
        entry.tx.send_replace(out);
        if last {
            tracing::debug!(uri = %key.uri, "shared blocking query ended");
            s.coalescer.forget(&key, &entry);
            return;
        }
    }
}

fn answer_index(a: &TunnelledAnswer) -> Option<u64> {
    a.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-consul-index"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

async fn error_answer(resp: Response) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    Answer {
        index: 0,
        reset: false,
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}
