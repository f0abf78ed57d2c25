//! Step 5 of the pipeline: the blocking wait. A read with `?index=N`
//! parks until the index of what it reads passes N (only its own key,
//! prefix, service or node wakes it), its `?wait` ends (plus jitter up to
//! wait/16), or the agent stops; then the handler reads and answers.
//!
//! Identical blocking reads forwarded from a client agent (or a follower)
//! park here once ([`super::coalesce`]).
//!
//! With ACLs on, a token that sees a filtered answer is woken only when
//! that answer changes: a change it may not read moves the index but not
//! the digest of what it sees, so it keeps waiting (until its `?wait`
//! ends, when it gets the current index and the same answer). KV computes
//! a visible index instead (`http::kv`).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Serialize;

use super::context::{ReadOpts, RequestCtx};
use super::error::ApiError;
use super::render::json;
use crate::app::AppState;
use crate::state::{Tables, WatchTarget};

impl AppState {
    /// Park until the resource's index passes `opts.index`, the wait (plus
    /// jitter up to wait/16) ends, or the agent shuts down.
    ///
    /// `target` is built only when the read blocks: a plain read costs no
    /// allocation for it.
    pub async fn block(
        &self,
        opts: &ReadOpts,
        target: impl FnOnce() -> WatchTarget,
        index_of: impl Fn(&Tables) -> u64,
    ) {
        self.block_while(opts, target, index_of, |_| false).await
    }

    /// [`Self::block`], except that a passed index whose tables
    /// `unchanged` holds for (what the caller sees is the same) raises the
    /// floor and keeps waiting.
    async fn block_while(
        &self,
        opts: &ReadOpts,
        target: impl FnOnce() -> WatchTarget,
        index_of: impl Fn(&Tables) -> u64,
        unchanged: impl Fn(&Tables) -> bool,
    ) {
        crate::telemetry::query();
        if opts.index == 0 {
            return;
        }
        let jitter_max = opts.wait.as_millis() as u64 / 16;
        let jitter = if jitter_max > 0 {
            rand::thread_rng().gen_range(0..=jitter_max)
        } else {
            0
        };
        let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
        let guard = self.store.watches.watch(target());
        let _parked = crate::telemetry::parked();
        // A restore replaces everything (indexes may go back): answer then.
        let generation = self.store.generation();
        let mut floor = opts.index;
        loop {
            let notified = guard.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let t = self.store.read();
                if self.store.generation() != generation {
                    return;
                }
                let index = index_of(&t);
                if index > floor {
                    if !unchanged(&t) {
                        return;
                    }
                    floor = index;
                }
            }
            tokio::select! {
                _ = &mut notified => metrics::counter!("tribune.blocking.wakeups").increment(1),
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// The shape of every blocking JSON read: take the read options, check
    /// consistency, park until the resource's index passes `?index`, then
    /// answer `build`'s body (404 when it gives none) with the index headers.
    pub async fn blocking_json<T: Serialize>(
        &self,
        ctx: &RequestCtx,
        target: impl FnOnce() -> WatchTarget,
        index_of: impl Fn(&Tables) -> u64,
        build: impl Fn(&Tables) -> Option<T>,
    ) -> Result<Response, ApiError> {
        let opts = ctx.read_opts()?;
        self.gate(opts.consistency).await?;
        // What a filtering token sees while the index has not passed
        // `?index` is what it was answered at `?index`.
        let seen = (opts.index > 0 && ctx.authz().filters())
            .then(|| {
                let t = self.store.read();
                (index_of(&t) <= opts.index).then(|| digest(&build(&t)))
            })
            .flatten();
        match seen {
            Some(d) => {
                let same = |t: &Tables| digest(&build(t)) == d;
                self.block_while(&opts, target, &index_of, same).await
            }
            None => self.block(&opts, target, &index_of).await,
        }
        let (index, body) = {
            let t = self.store.read();
            (index_of(&t), build(&t))
        };
        let mut resp = match body {
            Some(b) => json(StatusCode::OK, &b, opts.pretty),
            None => StatusCode::NOT_FOUND.into_response(),
        };
        self.meta(&mut resp, index, opts.consistency);
        Ok(resp)
    }
}

/// A 64-bit digest of an answer's JSON: equal answers, equal digests.
fn digest<T: Serialize>(body: &Option<T>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(body).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// [`AppState::blocking_json`] for a resource made of several tables: parks
/// until any of the named `targets` changes and the combined index passes
/// `?index`.
pub async fn blocking_any<T: Serialize>(
    s: &AppState,
    ctx: &RequestCtx,
    targets: &[&str],
    index_of: impl Fn(&Tables) -> u64,
    build: impl FnOnce(&Tables) -> Option<T>,
) -> Result<Response, ApiError> {
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    crate::telemetry::query();
    if opts.index > 0 {
        block_any(s, &opts, targets, &index_of).await;
    }
    let (index, body) = {
        let t = s.store.read();
        (index_of(&t), build(&t))
    };
    let mut resp = match body {
        Some(b) => json(StatusCode::OK, &b, opts.pretty),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    s.meta(&mut resp, index, opts.consistency);
    Ok(resp)
}

/// Park as [`AppState::block`] does, woken by any of several targets.
async fn block_any(
    s: &AppState,
    opts: &ReadOpts,
    targets: &[&str],
    index_of: &impl Fn(&Tables) -> u64,
) {
    let jitter_max = opts.wait.as_millis() as u64 / 16;
    let jitter = if jitter_max > 0 {
        rand::thread_rng().gen_range(0..=jitter_max)
    } else {
        0
    };
    let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
    let guards: Vec<_> = targets
        .iter()
        .map(|t| s.store.watches.watch(WatchTarget::Named((*t).to_string())))
        .collect();
    let _parked = crate::telemetry::parked();
    let generation = s.store.generation();
    loop {
        let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = guards
            .iter()
            .map(|g| Box::pin(g.notify().notified()))
            .collect();
        // Enabled before reading the index, so a change in between still wakes us.
        for w in &mut waits {
            w.as_mut().enable();
        }
        if index_of(&s.store.read()) > opts.index || s.store.generation() != generation {
            return;
        }
        let any = std::future::poll_fn(|cx| {
            for w in &mut waits {
                if w.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        tokio::select! {
            _ = any => {}
            _ = tokio::time::sleep_until(deadline) => return,
            _ = s.shutdown.cancelled() => return,
        }
    }
}
