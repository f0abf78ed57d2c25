//! `consul.runtime.*` gauges, sampled each second as go-metrics does:
//! tokio's live tasks stand in for goroutines, RSS for allocated bytes;
//! with them the counts of parked and coalesced blocking queries.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub async fn run(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        metrics::gauge!("runtime.num_goroutines").set(tasks as f64);
        let blocking = super::QUERIES_BLOCKING.load(Ordering::Relaxed);
        metrics::gauge!("rpc.queries_blocking").set(blocking as f64);
        let waiters = super::COALESCED_WAITERS.load(Ordering::Relaxed);
        metrics::gauge!("tribune.coalesce.waiters").set(waiters as f64);
        if let Some((vsz, rss)) = statm() {
            metrics::gauge!("runtime.alloc_bytes").set(rss as f64);
            metrics::gauge!("runtime.sys_bytes").set(vsz as f64);
        }
    }
}

/// Virtual size and resident set in bytes, from `/proc/self/statm`.
fn statm() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut it = s.split_whitespace().map(|n| n.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let vsz = it.next()??;
    let rss = it.next()??;
    Some((vsz * page, rss * page))
}
