//! Per-connection timeouts of the HTTP API, kept in the connection's IO.
//!
//! hyper's own header timer also closes idle keep-alive connections (it runs
//! from the end of the previous response), so tribune keeps its own clock:
//! the IO ([`Watched`]) and the service share a [`ConnState`] saying whether
//! a request is in progress. With none, the connection either waits for a
//! request's head (it must arrive within the header timeout of its first
//! byte, or of the accept) or sits idle (closed after the idle timeout).
//! A request in progress (a parked blocking query for ten minutes, say) has
//! no read deadline; its body has its own ([`TimedBody`]). A response write
//! that makes no progress for the write timeout closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::limits::Limits;

/// The HTTP timeouts of [`Limits`].
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub write: Duration,
    pub idle: Duration,
}

impl From<&Limits> for Timeouts {
    fn from(l: &Limits) -> Self {
        Self {
            header: l.http_read_header_timeout,
            body: l.http_read_body_timeout,
            write: l.http_write_timeout,
            idle: l.http_idle_timeout,
        }
    }
}

/// No time recorded (`head_start`).
const NONE: u64 = u64::MAX;

/// What the IO and the service know about one connection. Times are
/// milliseconds since the accept.
pub struct ConnState {
    origin: Instant,
    in_flight: AtomicU32,
    /// When the head being read began (the accept, for the first).
    head_start: AtomicU64,
    /// When the last request ended.
    idle_since: AtomicU64,
    /// The connection's task, parked with no read deadline while a request
    /// is in progress: woken when it ends, to arm the idle deadline (hyper
    /// does not always read again by itself).
    waker: Mutex<Option<Waker>>,
    /// Closed by its gate to make room for a newer connection of its client.
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            head_start: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            waker: Mutex::new(None),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        })
    }

    /// No request in progress (silent, half-sent, or idle between requests).
    pub fn not_in_use(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Tell the connection to close (its task waits in [`Self::evicted`]).
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    pub fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Completes once [`Self::evict`] was called.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    /// A request's head is complete and goes to the service; the guard ends it.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_start.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Bytes arrived: with no request in progress they start a head.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_start.load(Ordering::Relaxed) == NONE
        {
            self.head_start.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// When reading must have produced a head (or the idle connection is
    /// closed); `None` while a request is in progress.
    fn read_deadline(&self, t: &Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        match self.head_start.load(Ordering::Relaxed) {
            NONE => Some(self.at(self.idle_since.load(Ordering::Relaxed)) + t.idle),
            start => Some(self.at(start) + t.header),
        }
    }
}

/// A request in progress; dropped when its response is ready (or the
/// request is abandoned).
pub struct InFlight(Arc<ConnState>);

pin_project_lite::pin_project! {
    /// A service's future that keeps its request counted as in progress.
    /// (A struct, not an async block: a parked query lives in it for
    /// minutes, and an async block would hold the inner future twice.)
    pub struct Counted<F> {
        #[pin]
        fut: F,
        guard: InFlight,
    }
}

impl<F> Counted<F> {
    pub fn new(fut: F, guard: InFlight) -> Self {
        Self { fut, guard }
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since.store(s.now_ms(), Ordering::Relaxed);
        if s.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            if let Some(w) = s.waker.lock().take() {
                w.wake();
            }
        }
    }
}

/// A connection's IO with the read and write deadlines applied: a missed
/// deadline is an IO error, which ends the connection.
pub struct Watched<T> {
    io: T,
    state: Arc<ConnState>,
    t: Timeouts,
    /// One timer for both directions, set to the earlier deadline.
    timer: Pin<Box<Sleep>>,
    write_blocked: Option<Instant>,
}

impl<T> Watched<T> {
    pub fn new(io: T, state: Arc<ConnState>, t: Timeouts) -> Self {
        let first = state.origin + t.header;
        Self {
            io,
            state,
            t,
            timer: Box::pin(tokio::time::sleep_until(first)),
            write_blocked: None,
        }
    }

    /// Called when an IO call is pending: an error once a deadline has
    /// passed, else the timer is armed for the earlier one.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let read = self.state.read_deadline(&self.t);
            let write = self.write_blocked.map(|since| since + self.t.write);
            let now = Instant::now();
            if read.is_some_and(|d| now >= d) {
                let what = if self.state.head_start.load(Ordering::Relaxed) == NONE {
                    "idle timeout"
                } else {
                    "request head not received in time"
                };
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            if write.is_some_and(|d| now >= d) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response write made no progress in time",
                ));
            }
            if read.is_none() {
                let mut w = self.state.waker.lock();
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
            }
            let Some(next) = [read, write].into_iter().flatten().min() else {
                return Poll::Pending;
            };
            if self.timer.deadline() != next {
                self.timer.as_mut().reset(next);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn write_pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        self.write_blocked.get_or_insert_with(Instant::now);
        self.check(cx).map(Err)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.state.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.write_blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.write_pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.write_blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.write_pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.write_pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.write_pending(cx),
        }
    }
}

/// An IO whose first `need` bytes must arrive by a deadline (the server RPC
/// port: an HTTP/2 preface and first frame within `rpc_handshake_timeout`);
/// after that it is the plain IO.
pub struct Handshake<T> {
    io: T,
    need: usize,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> Handshake<T> {
    pub fn new(io: T, need: usize, within: Duration) -> Self {
        Self {
            io,
            need,
            timer: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Handshake<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.timer.is_none() {
            return r;
        }
        if let Poll::Ready(Ok(())) = r {
            this.need = this.need.saturating_sub(buf.filled().len() - before);
            if this.need == 0 {
                this.timer = None;
            }
            return r;
        }
        let expired = r.is_pending()
            && this
                .timer
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake not completed in time",
            )));
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Handshake<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that must arrive by a deadline (from the end of its head).
pub struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    /// Made only when the body is actually waited for.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, within: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + within,
            timer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimeout;

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn t() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(120),
        }
    }

    /// A connection that never sends its head is cut at the header timeout.
    #[tokio::test(start_paused = true)]
    async fn head_timeout_from_accept() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = Watched::new(a, ConnState::new(), t());
        let t0 = Instant::now();
        let e = w.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
    }

    /// Idle after a request: the idle timeout applies, not the header one;
    /// a request in progress has no read deadline at all.
    #[tokio::test(start_paused = true)]
    async fn idle_and_in_flight() {
        let (a, mut b) = tokio::io::duplex(64);
        let state = ConnState::new();
        let mut w = Watched::new(a, state.clone(), t());
        b.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(w.read(&mut buf).await.unwrap(), 3);
        let guard = state.begin();
        // in flight for an hour: the read just waits
        let r = tokio::time::timeout(Duration::from_secs(3600), w.read(&mut buf)).await;
        assert!(r.is_err(), "read ended while a request was in flight");
        drop(guard);
        let t0 = Instant::now();
        let e = w.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t0.elapsed(), Duration::from_secs(120));
    }

    /// The handshake deadline holds until enough bytes came, then never.
    #[tokio::test(start_paused = true)]
    async fn handshake() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut h = Handshake::new(a, 4, Duration::from_secs(5));
        b.write_all(b"PR").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(h.read(&mut buf).await.unwrap(), 2);
        let e = h.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let (a, mut b) = tokio::io::duplex(64);
        let mut h = Handshake::new(a, 4, Duration::from_secs(5));
        b.write_all(b"PRI *").await.unwrap();
        assert_eq!(h.read(&mut buf).await.unwrap(), 5);
        let r = tokio::time::timeout(Duration::from_secs(60), h.read(&mut buf)).await;
        assert!(r.is_err(), "no deadline after the handshake");
    }

    /// A peer that stops reading stalls the write, which then fails.
    #[tokio::test(start_paused = true)]
    async fn stalled_write() {
        let (a, _b) = tokio::io::duplex(16);
        let state = ConnState::new();
        let _busy = state.begin();
        let mut w = Watched::new(a, state, t());
        let t0 = Instant::now();
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
    }
}
