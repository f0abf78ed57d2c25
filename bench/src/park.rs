//! Many idle blocking queries, one per connection, on keys nobody writes.
//!
//! Set-up happens in three steps so `memory` can measure each: [`IdleWatchers::open`]
//! opens the connections; [`IdleWatchers::read`] reads each key once on its own
//! connection (learning its index); [`IdleWatchers::park`] then sends
//! `?index=<that>&wait=...` on every connection.
//! From then on any answer is a spurious wake-up, counted in [`IdleWatchers::answered`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use hyper::Method;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::Conn;
use crate::{kv, progress};

/// How long opening or parking all of them may take.
const SETUP_LIMIT: Duration = Duration::from_secs(180);

/// Where the watchers are; each step is released for all of them at once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Step {
    Opened,
    Read,
    Parked,
}

enum Event {
    Reached(Step),
    Failed(anyhow::Error),
}

pub struct IdleWatchers {
    n: usize,
    set: JoinSet<()>,
    events: mpsc::UnboundedReceiver<Event>,
    gate: watch::Sender<Step>,
    /// The last step every watcher has reached.
    reached: Step,
    answered: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
}

impl IdleWatchers {
    /// Open `n` connections, one per key `prefix<i>` (which must exist), at most
    /// `concurrency` connecting at any moment.
    pub async fn open(
        addr: SocketAddr,
        prefix: &str,
        n: usize,
        concurrency: usize,
        wait: &str,
    ) -> Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let (gate, gate_rx) = watch::channel(Step::Opened);
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let answered = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for i in 0..n {
            let task = Task {
                addr,
                key: kv::key(prefix, i),
                wait: wait.to_string(),
                events: tx.clone(),
                answered: answered.clone(),
                broken: broken.clone(),
            };
            set.spawn(task.run(permits.clone(), gate_rx.clone()));
        }
        let mut me = Self {
            n,
            set,
            events,
            gate,
            reached: Step::Opened,
            answered,
            broken,
        };
        me.await_all(Step::Opened).await?;
        Ok(me)
    }

    /// Read every key once (a plain GET), on its own connection.
    pub async fn read(&mut self) -> Result<()> {
        self.advance(Step::Read).await
    }

    /// Send the blocking query on every connection; returns once all are sent and
    /// `settle` has passed (time for the server to register them).
    pub async fn park(&mut self, settle: Duration) -> Result<()> {
        self.advance(Step::Read).await?;
        self.advance(Step::Parked).await?;
        tokio::time::sleep(settle).await;
        Ok(())
    }

    /// Parked queries that were answered (spurious wake-ups).
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Parked queries whose connection failed.
    pub fn broken(&self) -> usize {
        self.broken.load(Ordering::SeqCst)
    }

    /// Drop every connection.
    pub async fn close(mut self) {
        self.set.shutdown().await;
    }

    /// Release `step` and wait until every watcher has reached it.
    async fn advance(&mut self, step: Step) -> Result<()> {
        if self.reached >= step {
            return Ok(());
        }
        self.gate.send_replace(step);
        self.await_all(step).await?;
        self.reached = step;
        Ok(())
    }

    async fn await_all(&mut self, step: Step) -> Result<()> {
        let deadline = Instant::now() + SETUP_LIMIT;
        let started = Instant::now();
        let mut done = 0;
        while done < self.n {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("{step:?}: only {done}/{} after {SETUP_LIMIT:?}", self.n))?
                .ok_or_else(|| anyhow!("{step:?}: watcher tasks ended early"))?;
            match event {
                Event::Reached(s) if s == step => {
                    done += 1;
                    if done % 2000 == 0 || done == self.n {
                        progress!("{step:?}: {done}/{} idle watchers", self.n);
                    }
                }
                Event::Reached(s) => {
                    bail!("idle watcher reported {s:?} while waiting for {step:?}")
                }
                Event::Failed(e) => return Err(e.context(format!("idle watcher, {step:?} step"))),
            }
        }
        progress!("{step:?}: all {} in {:.2?}", self.n, started.elapsed());
        Ok(())
    }
}

struct Task {
    addr: SocketAddr,
    key: String,
    wait: String,
    events: mpsc::UnboundedSender<Event>,
    answered: Arc<AtomicUsize>,
    broken: Arc<AtomicUsize>,
}

impl Task {
    async fn run(self, permits: Arc<Semaphore>, gate: watch::Receiver<Step>) {
        if let Err(e) = self.steps(permits, gate).await {
            let _ = self.events.send(Event::Failed(e));
        }
    }

    async fn steps(&self, permits: Arc<Semaphore>, mut gate: watch::Receiver<Step>) -> Result<()> {
        let mut conn = {
            let _permit = permits.acquire().await?;
            Conn::connect(self.addr).await?
        };
        let _ = self.events.send(Event::Reached(Step::Opened));

        gate.wait_for(|s| *s >= Step::Read).await?;
        let index = conn
            .get(&format!("/v1/kv/{}", self.key))
            .await?
            .ok(&format!("GET {}", self.key))?
            .index()?;
        let _ = self.events.send(Event::Reached(Step::Read));

        gate.wait_for(|s| *s >= Step::Parked).await?;
        let path = format!("/v1/kv/{}?index={index}&wait={}", self.key, self.wait);
        let reply = conn.send(Method::GET, &path, Bytes::new()).await?;
        let _ = self.events.send(Event::Reached(Step::Parked));
        // Bounded by the query's own `wait` on the server, and by `close` (abort).
        match reply.await {
            Ok(_) => self.answered.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.broken.fetch_add(1, Ordering::SeqCst),
        };
        Ok(())
    }
}
