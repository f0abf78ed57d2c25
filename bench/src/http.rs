//! One HTTP/1.1 keep-alive connection to the server, one request in flight at a time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on any non-blocking request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// `X-Consul-Index`, when present and numeric.
    pub index: Option<u64>,
    pub body: Bytes,
}

impl Reply {
    pub fn index(&self) -> Result<u64> {
        self.index
            .ok_or_else(|| anyhow!("{} response without a numeric X-Consul-Index", self.status))
    }

    /// Fail unless 200.
    pub fn ok(self, what: &str) -> Result<Self> {
        if self.status != StatusCode::OK {
            bail!(
                "{what}: HTTP {} {}",
                self.status,
                String::from_utf8_lossy(&self.body).trim()
            );
        }
        Ok(self)
    }

    /// Fail unless a KV write answered `true`.
    pub fn written(self, what: &str) -> Result<()> {
        let r = self.ok(what)?;
        if r.body.trim_ascii() != b"true" {
            bail!("{what}: answered {:?}", String::from_utf8_lossy(&r.body));
        }
        Ok(())
    }
}

/// The complete reply to a request already handed to the connection.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Result<Reply>> + Send>>;

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    driver: JoinHandle<()>,
}

/// A TCP connection to `addr` with `TCP_NODELAY`, within [`CONNECT_TIMEOUT`].
pub async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => bail!("connect to {addr}: no answer within {CONNECT_TIMEOUT:?}"),
        Ok(Err(e)) if e.raw_os_error() == Some(24) => {
            bail!("connect to {addr}: {e} (raise the limit first: ulimit -n 65536)")
        }
        Ok(r) => r.with_context(|| format!("connect to {addr}"))?,
    };
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

/// `CONSUL_HTTP_TOKEN`, sent as `X-Consul-Token` on every request (as
/// Consul's own tools read it): the acl section measures with a token.
pub fn token() -> Option<&'static hyper::header::HeaderValue> {
    static TOKEN: std::sync::OnceLock<Option<hyper::header::HeaderValue>> =
        std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .and_then(|t| hyper::header::HeaderValue::from_str(&t).ok())
        })
        .as_ref()
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = connect_tcp(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        let driver = tokio::spawn(async move {
            // Ends when the connection closes; errors surface on the request futures.
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            authority: addr.to_string(),
            driver,
        })
    }

    /// Hand a request to the connection now and return the future of its reply
    /// (headers and whole body). Not bounded in time: blocking queries use it.
    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<ReplyFuture> {
        tokio::time::timeout(IO_TIMEOUT, self.sender.ready())
            .await
            .map_err(|_| anyhow!("connection still busy after {IO_TIMEOUT:?}"))?
            .context("connection closed")?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(t) = token() {
            req = req.header("x-consul-token", t);
        }
        let req = req
            .body(Full::new(body))
            .with_context(|| format!("building request for {path}"))?;
        let response = self.sender.send_request(req);
        let path = path.to_string();
        Ok(Box::pin(async move {
            let resp = response
                .await
                .with_context(|| format!("{path}: request failed"))?;
            let status = resp.status();
            let index = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .with_context(|| format!("{path}: reading the body"))?
                .to_bytes();
            Ok(Reply {
                status,
                index,
                body,
            })
        }))
    }

    /// A request that must be answered within [`IO_TIMEOUT`].
    pub async fn request(&mut self, method: Method, path: &str, body: Bytes) -> Result<Reply> {
        let reply = self.send(method, path, body).await?;
        tokio::time::timeout(IO_TIMEOUT, reply)
            .await
            .map_err(|_| anyhow!("{path}: no answer within {IO_TIMEOUT:?}"))?
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply> {
        self.request(Method::GET, path, Bytes::new()).await
    }

    pub async fn put(&mut self, path: &str, body: Bytes) -> Result<Reply> {
        self.request(Method::PUT, path, body).await
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
