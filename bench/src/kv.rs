//! Bulk set-up writes.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::http::Conn;
use crate::progress;

/// 64-byte values, as in the wrk scripts.
pub fn value() -> Bytes {
    Bytes::from(vec![b'v'; 64])
}

/// The `i`-th key under `prefix`.
pub fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:05}")
}

/// Write keys `prefix00000 .. prefix{n-1}` over `workers` connections.
pub async fn put_keys(addr: SocketAddr, prefix: &str, n: usize, workers: usize) -> Result<()> {
    let started = Instant::now();
    let workers = workers.clamp(1, n.max(1));
    let mut set = JoinSet::new();
    for w in 0..workers {
        let prefix = prefix.to_string();
        set.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            for i in (w..n).step_by(workers) {
                let k = key(&prefix, i);
                conn.put(&format!("/v1/kv/{k}"), value())
                    .await?
                    .written(&format!("PUT {k}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("writer task panicked")??;
    }
    progress!("wrote {n} keys under {prefix} in {:.2?}", started.elapsed());
    Ok(())
}
