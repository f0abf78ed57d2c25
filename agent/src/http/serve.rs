//! The accept loops of the HTTP API and the server RPC port: connection
//! caps, the process's descriptor budget, and running out of descriptors.
//!
//! The HTTP API is HTTP/1.1 served by hyper (Consul's API speaks HTTP/2 only
//! over TLS), with tribune's timeouts ([`super::timeouts`]) and the
//! connection tasks tracked so shutdown waits for in-flight requests. hyper
//! polls a connection whose query is parked, so a client that hangs up frees
//! its query at once.
//!
//! Every accepted connection is admitted by a [`Gate`]: at most
//! `limits.http_max_conns_per_client` from one IP address (the next is
//! answered 429, as Consul does, unless one of that client's connections
//! is not in use: that one is closed and the new one takes its place) and,
//! over all listeners, at most the
//! [`Budget`] the open-file limit allows (the next is answered 503), so a
//! flood from one client can neither starve others nor exhaust descriptors.
//! Should descriptors run out anyway (EMFILE), one kept in reserve is freed
//! to accept and close the waiting connection, so clients are refused at
//! once instead of hanging, and the loop backs off instead of spinning.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::timeouts::{ConnState, Counted, TimedBody, Timeouts, Watched};

/// Consul's answer to a client over its connection cap (go-connlimit's).
const TOO_MANY_CONNS: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";
const BUSY: &str = "The agent has too many open connections, please retry later\n";
/// Refusals answered at once; beyond that a refused connection is just closed.
const REFUSALS: usize = 64;
/// A refused client gets this long to read its answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(250);
/// Descriptors kept for everything but connections (raft, checks, peers...).
const RESERVE_MIN: usize = 32;
const RESERVE_MAX: usize = 1024;
/// At most one warning per this, per listener and kind.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How many connections the process may hold, over all listeners.
pub struct Budget {
    max: usize,
    open: AtomicUsize,
    /// The most open since the last look ([`give_back_memory`]).
    peak: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// From the soft open-file limit: all of it but a reserve (a quarter,
    /// between 32 and 1024 descriptors). Returns the budget and the limit.
    pub fn from_rlimit() -> (Arc<Self>, u64) {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
        let limit = if ok { rl.rlim_cur } else { 1024 };
        let limit_us = usize::try_from(limit).unwrap_or(usize::MAX);
        let reserve = (limit_us / 4).clamp(RESERVE_MIN, RESERVE_MAX);
        (Self::new(limit_us.saturating_sub(reserve)), limit)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn take(&self) -> bool {
        match self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            }) {
            Ok(n) => {
                self.peak.fetch_max(n + 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often [`give_back_memory`] looks, and how many connections must
/// have closed since for it to act.
const TRIM_EVERY: Duration = Duration::from_secs(5);
const TRIM_AFTER_CLOSED: usize = 256;

/// Return the heap of closed connections to the OS. The allocator keeps
/// freed memory resident (10,000 closed connections left their ~130 MB
/// behind with glibc's; see BENCHMARKS.md) until told ([`crate::alloc`]).
/// Runs after many connections closed.
pub async fn give_back_memory(budget: Arc<Budget>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let open = budget.open.load(Ordering::Acquire);
        let peak = budget.peak.swap(open, Ordering::Relaxed);
        if peak.saturating_sub(open) >= TRIM_AFTER_CLOSED {
            // Walks every arena under its lock: off the async workers.
            let _ = tokio::task::spawn_blocking(crate::alloc::release).await;
        }
    }
}

/// How a listener refuses a connection it cannot take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refuse {
    /// Answer 429/503 as an HTTP/1.1 server (the API).
    Http,
    /// Just close it (server RPC, whose peers retry).
    Close,
}

/// Admission for one listener: the per-client cap and the shared budget.
pub struct Gate {
    what: &'static str,
    /// The config key naming the cap, for the log.
    cap_key: &'static str,
    per_client: u32,
    budget: Arc<Budget>,
    refuse: Refuse,
    clients: Mutex<HashMap<IpAddr, Client>>,
    refusals: Arc<Semaphore>,
    warned: Mutex<[Option<Instant>; 3]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    PerClient,
    Budget,
}

impl Gate {
    pub fn new(
        what: &'static str,
        cap_key: &'static str,
        per_client: u32,
        budget: Arc<Budget>,
        refuse: Refuse,
    ) -> Arc<Self> {
        Arc::new(Self {
            what,
            cap_key,
            per_client,
            budget,
            refuse,
            clients: Mutex::new(HashMap::new()),
            refusals: Arc::new(Semaphore::new(REFUSALS)),
            warned: Mutex::new([None; 3]),
        })
    }

    /// Admit a connection from `ip`. A client at its cap (HTTP) gets the
    /// place of its oldest connection not in use (silent, half-sent, or idle
    /// between requests), which is closed: only when all its connections are
    /// busy is it refused (a flood of half-sent requests, or connections a
    /// client closed but the server has not yet seen go, must not lock the
    /// client, or anyone sharing its address, out).
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let mut clients = self.clients.lock();
        let c = clients.entry(ip).or_default();
        if !self.budget.take() {
            if c.open == 0 {
                clients.remove(&ip);
            }
            return Err(Refusal::Budget);
        }
        if self.per_client > 0 && c.open - c.evicting >= self.per_client {
            let victim = match self.refuse {
                Refuse::Http => c.oldest_not_in_use(),
                Refuse::Close => None,
            };
            let Some(victim) = victim else {
                self.budget.give();
                return Err(Refusal::PerClient);
            };
            victim.evict();
            c.evicting += 1;
        }
        c.open += 1;
        let state = ConnState::new();
        if self.refuse == Refuse::Http && self.per_client > 0 {
            c.conns.push_back(state.clone());
        }
        Ok(Admitted {
            gate: self.clone(),
            ip,
            state,
        })
    }

    fn release(&self, ip: IpAddr, state: &Arc<ConnState>) {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get_mut(&ip) {
            c.open -= 1;
            if state.was_evicted() {
                c.evicting -= 1;
            } else if let Some(i) = c.conns.iter().position(|s| Arc::ptr_eq(s, state)) {
                c.conns.remove(i);
            }
            if c.open == 0 {
                clients.remove(&ip);
            }
        }
        self.budget.give();
    }

    /// True at most once per [`WARN_EVERY`] for `slot`.
    fn should_warn(&self, slot: usize) -> bool {
        let mut w = self.warned.lock();
        let now = Instant::now();
        match w[slot] {
            Some(t) if now.duration_since(t) < WARN_EVERY => false,
            _ => {
                w[slot] = Some(now);
                true
            }
        }
    }

    /// Refuse `stream` without holding the accept loop.
    fn refuse(&self, stream: TcpStream, peer: SocketAddr, why: Refusal) {
        let slot = match why {
            Refusal::PerClient => 0,
            Refusal::Budget => 1,
        };
        if self.should_warn(slot) {
            match why {
                Refusal::PerClient => tracing::warn!(
                    client = %peer.ip(),
                    "{}: client reached limits.{} ({}): refusing its new connections",
                    self.what,
                    self.cap_key,
                    self.per_client
                ),
                Refusal::Budget => tracing::warn!(
                    "{}: {} connections open, the most the open-file limit allows: refusing new ones",
                    self.what,
                    self.budget.max
                ),
            }
        }
        if self.refuse == Refuse::Close {
            return;
        }
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return; // many refusals at once: closing is answer enough
        };
        let (status, body) = match why {
            Refusal::PerClient => ("429 Too Many Requests", TOO_MANY_CONNS),
            Refusal::Budget => ("503 Service Unavailable", BUSY),
        };
        tokio::spawn(async move {
            let _permit = permit;
            answer_and_close(stream, status, body).await;
        });
    }
}

/// Write a complete answer, then read (and drop) what the client sent, so
/// closing does not reset the connection before it reads the answer.
async fn answer_and_close(mut stream: TcpStream, status: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(msg.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < (64 << 10) {
            match stream.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One client address's connections.
#[derive(Default)]
struct Client {
    open: u32,
    /// Connections told to close for a newer one, not yet gone.
    evicting: u32,
    /// The open connections not told to close, oldest first (HTTP only).
    conns: VecDeque<Arc<ConnState>>,
}

impl Client {
    fn oldest_not_in_use(&mut self) -> Option<Arc<ConnState>> {
        let i = self.conns.iter().position(|s| s.not_in_use())?;
        self.conns.remove(i)
    }
}

/// A connection counted by its gate until dropped, with the state its
/// timeouts and the gate share.
pub struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
    state: Arc<ConnState>,
}

impl Admitted {
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(self.ip, &self.state);
    }
}

/// The API service of one connection: requests are counted in progress
/// for the connection's timeouts, and bodies get their deadline.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    state: Arc<ConnState>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = <TowerToHyperService<Router> as hyper::service::Service<
        Request<TimedBody<Incoming>>,
    >>::Response;
    type Error = std::convert::Infallible;
    type Future = Counted<TowerToHyperServiceFuture<Router, Request<TimedBody<Incoming>>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = self.state.begin();
        let req = req.map(|b| TimedBody::new(b, self.body_timeout));
        Counted::new(self.inner.call(req), guard)
    }
}

/// Serve the API `app` on `listener` until `stop`; then stop accepting, let
/// in-flight requests finish, and return once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    gate: Arc<Gate>,
    t: Timeouts,
    stop: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    accept_loop(listener, &stop, gate, |stream, peer, admitted| {
        let (builder, app, stop) = (builder.clone(), app.clone(), stop.clone());
        // Everything is built inside the task's future, so it is held once.
        serve_conn(stream, peer, admitted, builder, app, stop, t)
    })
    .await;
}

/// [`serve`] over TLS (the HTTPS API): each connection finishes its
/// handshake within `handshake` under the configuration current at its
/// accept (a reload changes it for new connections only).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    gate: Arc<Gate>,
    t: Timeouts,
    handshake: Duration,
    tls: Arc<crate::tls::Reloadable>,
    stop: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    accept_loop(listener, &stop, gate, |stream, peer, admitted| {
        let (builder, app, stop) = (builder.clone(), app.clone(), stop.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        async move {
            let tls_stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "http: TLS handshake error");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "http: TLS handshake timed out");
                    return;
                }
            };
            serve_conn(tls_stream, peer, admitted, builder, app, stop, t).await
        }
    })
    .await;
}

/// One API connection (plain or TLS) until it ends, is evicted, or `stop`.
async fn serve_conn<S>(
    stream: S,
    peer: SocketAddr,
    admitted: Admitted,
    builder: http1::Builder,
    app: Router,
    stop: CancellationToken,
    t: Timeouts,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = admitted.state().clone();
    let io = TokioIo::new(Watched::new(stream, state.clone(), t));
    let svc = Tracked {
        inner: TowerToHyperService::new(app),
        state,
        body_timeout: t.body,
    };
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        // Its client opened a newer one at its cap.
        _ = admitted.state().evicted() => Ok(()),
    };
    if let Err(e) = r {
        tracing::trace!(%peer, error = %e, "http connection ended");
    }
}

/// Too many open descriptors, for the process or the system.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A descriptor held in reserve, freed to refuse a connection when none is left.
fn spare_descriptor() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Accept connections until `stop`, each admitted by `gate` and served by
/// `serve_conn` on its own task (which holds the [`Admitted`] until it
/// ends); then wait until every one has ended.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: &CancellationToken,
    gate: Arc<Gate>,
    mut serve_conn: F,
) where
    F: FnMut(TcpStream, SocketAddr, Admitted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conns = TaskTracker::new();
    let mut spare = spare_descriptor();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if out_of_descriptors(&e) => {
                    if gate.should_warn(2) {
                        tracing::warn!(
                            error = %e,
                            "{}: out of file descriptors: refusing new connections until some close \
                             (raise the open-file limit, ulimit -n)",
                            gate.what
                        );
                    }
                    match spare.take() {
                        // Free the reserve, take the waiting connection and
                        // close it: its client learns at once.
                        Some(f) => {
                            drop(f);
                            if let Ok(Ok((s, _))) =
                                tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
                            {
                                drop(s);
                            }
                            spare = spare_descriptor();
                        }
                        None => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            spare = spare_descriptor();
                        }
                    }
                    continue;
                }
                Err(e) => {
                    // ECONNABORTED and the like: that connection only. Still
                    // pause a moment, so an unexpected lasting error cannot spin.
                    tracing::debug!(error = %e, "{} accept", gate.what);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                gate.refuse(stream, peer, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_conn(stream, peer, admitted));
    }
    conns.close();
    conns.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-client cap counts per address; the budget counts over all.
    #[test]
    fn admission() {
        let budget = Budget::new(3);
        let g = Gate::new("t", "cap", 2, budget.clone(), Refuse::Close);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = g.admit(a).unwrap();
        let _a2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refusal::PerClient));
        let _b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some(Refusal::Budget));
        drop(a1);
        assert!(g.admit(a).is_ok());
        assert_eq!(budget.open.load(Ordering::Relaxed), 2);
        let unlimited = Gate::new("t", "cap", 0, Budget::new(100), Refuse::Close);
        let all: Vec<_> = (0..50).map(|_| unlimited.admit(a).unwrap()).collect();
        drop(all);
        assert!(unlimited.clients.lock().is_empty());
    }

    /// HTTP: at its cap a client's new connection takes the place of its
    /// oldest one not in use; with all busy, 429.
    #[test]
    fn eviction_of_connections_not_in_use() {
        let g = Gate::new("t", "cap", 2, Budget::new(100), Refuse::Http);
        let a: IpAddr = [127, 0, 0, 1].into();
        let c1 = g.admit(a).unwrap();
        let c2 = g.admit(a).unwrap();
        let _busy2 = c2.state().begin();
        let c3 = g.admit(a).unwrap();
        assert!(c1.state().was_evicted(), "the idle one goes");
        assert!(!c2.state().was_evicted());
        let busy3 = c3.state().begin();
        // Both remaining are busy: refused, even before c1 has gone.
        assert_eq!(g.admit(a).err(), Some(Refusal::PerClient));
        drop(c1);
        assert_eq!(g.admit(a).err(), Some(Refusal::PerClient));
        // c3 done with its request: it is the one to go.
        drop(busy3);
        let _c4 = g.admit(a).unwrap();
        assert!(c3.state().was_evicted());
        drop(c3);
        assert_eq!(g.clients.lock()[&a].open, 2);
        assert_eq!(g.clients.lock()[&a].evicting, 0);
    }
}
