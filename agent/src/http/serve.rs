//! The HTTP API's accept loop: HTTP/1.1 connections served by hyper with
//! settings chosen for many long-parked blocking queries.
//!
//! Compared with `axum::serve`: HTTP/1.1 only (Consul's API speaks HTTP/2
//! only over TLS), so no protocol sniffing per connection, and the
//! connection tasks are tracked so shutdown waits for in-flight requests.
//! No header-read timer: hyper's would also close idle keep-alive
//! connections after 30 s, which Consul does not do. hyper still polls a
//! connection whose query is parked, so a client that hangs up frees its
//! query at once.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serve `app` on `listener` until `stop`; then stop accepting, let
/// in-flight requests finish, and return once every connection is closed.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    accept_loop(listener, &stop, "http", |stream, peer| {
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stop = stop.clone();
        async move {
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::trace!(%peer, error = %e, "http connection ended");
            }
        }
    })
    .await;
}

/// Accept connections until `stop`, each served by `serve_conn` on its own
/// task; then wait until every one of those tasks has ended.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: &CancellationToken,
    what: &'static str,
    mut serve_conn: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "{what} accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_conn(stream, peer));
    }
    conns.close();
    conns.wait().await;
}
