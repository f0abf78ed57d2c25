//! Connections for forwarded writes.
//!
//! A write forwarded over a connection that the network then drops waits in
//! the kernel's send queue; when the network heals TCP delivers it, and the
//! leader applies a write its sender gave up on long before (and reported
//! as failed to its client). So forwarded writes travel on connections of
//! their own, with `SO_LINGER` 0, and a write that times out or is
//! abandoned tears its connection down: the kernel then discards whatever
//! it had not delivered, instead of delivering it late. Reads keep the
//! pooled client: repeating or dropping one is harmless.
//!
//! Dropping hyper's HTTP/2 handles is not enough: hyper runs the connection
//! in a task of its own that, once its handles are gone, shuts down
//! gracefully, flushing what is queued, which is exactly the late delivery.
//! So the socket is wrapped in `KillableIo`, whose kill fails every
//! further read and write: the connection task ends at once and drops the
//! socket, and the zero linger turns that close into a reset.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::wire::{RpcError, HOPS, TOKEN};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Conn {
    id: u64,
    send: SendRequest<Full<Bytes>>,
    task: AbortHandle,
    kill: Arc<Kill>,
}

/// The switch of a [`KillableIo`].
#[derive(Default)]
struct Kill {
    killed: AtomicBool,
    /// The task polling the socket, woken by a kill so that it notices.
    waker: Mutex<Option<Waker>>,
}

impl Kill {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }

    /// Err once killed; else remembers who to wake.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        *self.waker.lock() = Some(cx.waker().clone());
        if self.killed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "write abandoned",
            ));
        }
        Ok(())
    }
}

/// A socket whose every read and write fails once it is killed.
struct KillableIo {
    inner: TcpStream,
    kill: Arc<Kill>,
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check(cx)?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One write connection per peer, replaced after any write is abandoned.
#[derive(Clone)]
pub struct WritePool {
    conns: Arc<Mutex<HashMap<String, Arc<Conn>>>>,
    next_id: Arc<AtomicU64>,
    /// Server RPC over TLS.
    tls: Option<tokio_rustls::TlsConnector>,
}

/// Tears the connection down unless disarmed: a write dropped half-way
/// (its caller gone, or timed out) must not be delivered later.
struct Abandon<'a> {
    pool: &'a WritePool,
    addr: &'a str,
    conn: &'a Conn,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(peer = %self.addr, "write abandoned: its connection is closed");
            self.pool.discard(self.addr, self.conn.id);
            self.conn.kill.kill();
            self.conn.task.abort();
        }
    }
}

impl WritePool {
    pub fn new(tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>) -> Self {
        Self {
            conns: Default::default(),
            next_id: Default::default(),
            tls: tls.map(tokio_rustls::TlsConnector::from),
        }
    }

    /// POST `body` to `path` on `addr` on the authority of `token`; the
    /// status and body of the answer.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        hops: u32,
        token: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), RpcError> {
        let conn = self.conn(addr).await?;
        let mut send = conn.send.clone();
        if send.ready().await.is_err() {
            // The connection was already gone: nothing was sent.
            self.discard(addr, conn.id);
            return Err(RpcError::Connect(addr.into(), "connection closed".into()));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut req = Request::post(format!("{scheme}://{addr}{path}")).header(HOPS, hops);
        if let Some(t) = token {
            req = req.header(TOKEN, t);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RpcError::Codec(addr.into(), e.to_string()))?;
        let mut guard = Abandon {
            pool: self,
            addr,
            conn: &conn,
            armed: true,
        };
        let exchange = async {
            let resp = match send.try_send_request(req).await {
                Ok(r) => r,
                Err(mut e) => {
                    let unsent = e.take_message().is_some();
                    let why = crate::goerr::chain_text(e.error());
                    return Err(if unsent {
                        RpcError::Connect(addr.into(), why)
                    } else {
                        RpcError::Transport(addr.into(), why)
                    });
                }
            };
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| RpcError::Transport(addr.into(), crate::goerr::chain_text(&e)))?
                .to_bytes();
            Ok((status, bytes))
        };
        let r = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Transport(
                addr.into(),
                format!("no answer within {timeout:?}; the connection is closed so the write cannot arrive later"),
            )),
        };
        guard.armed = r.is_err();
        r
    }

    /// The HTTP/2 handshake on `io`, and its connection task.
    async fn h2<IO>(
        &self,
        io: IO,
        addr: &str,
        id: u64,
    ) -> Result<(SendRequest<Full<Bytes>>, tokio::task::AbortHandle), hyper::Error>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await?;
        let pool = self.clone();
        let key = addr.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %key, error = %e, "write connection ended");
            }
            pool.discard(&key, id);
        })
        .abort_handle();
        Ok((send, task))
    }

    fn discard(&self, addr: &str, id: u64) {
        let mut conns = self.conns.lock();
        if conns.get(addr).is_some_and(|c| c.id == id) {
            conns.remove(addr);
        }
    }

    async fn conn(&self, addr: &str) -> Result<Arc<Conn>, RpcError> {
        if let Some(c) = self.conns.lock().get(addr) {
            return Ok(c.clone());
        }
        let connect_err = |e: String| RpcError::Connect(addr.into(), e);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("dial tcp {addr}: i/o timeout")))?
            .map_err(|e| connect_err(format!("dial tcp {addr}: connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        // Closing discards undelivered data (RST) instead of sending it on.
        // (A zero linger never blocks the closing thread.)
        let zero = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &zero)
            .map_err(|e| connect_err(format!("setting SO_LINGER: {e}")))?;
        let kill = Arc::new(Kill::default());
        let io = KillableIo {
            inner: stream,
            kill: kill.clone(),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (send, task) = match &self.tls {
            None => self.h2(io, addr, id).await,
            Some(tls) => {
                // The verifier checks the configured server name, not this.
                let name = rustls_pki_types::ServerName::try_from(
                    addr.rsplit_once(':')
                        .map_or(addr, |(h, _)| h)
                        .trim_matches(['[', ']']),
                )
                .map_err(|e| connect_err(e.to_string()))?
                .to_owned();
                let io = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, io))
                    .await
                    .map_err(|_| connect_err("TLS handshake: i/o timeout".into()))?
                    .map_err(|e| connect_err(format!("TLS handshake: {e}")))?;
                self.h2(io, addr, id).await
            }
        }
        .map_err(|e| connect_err(crate::goerr::chain_text(&e)))?;
        let conn = Arc::new(Conn {
            id,
            send,
            task,
            kill,
        });
        self.conns.lock().insert(addr.to_string(), conn.clone());
        Ok(conn)
    }
}
