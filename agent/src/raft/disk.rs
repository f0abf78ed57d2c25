//! The raft files on disk and what their failures mean.
//!
//! openraft 0.9 stops its core for good on any storage error (`quit
//! RaftCore::main on error`), so tribune never hands it one. A failed write
//! is retried by the store itself, with backoff, after closing and reopening
//! the redb file (redb refuses all I/O after one error). Meanwhile
//! [`StorageHealth`] says why: writes fail with that cause, the node stops
//! naming itself leader, and the error clears once a retry succeeds (a full
//! disk that gets space again). Retrying is safe because nothing the failed
//! transaction wrote was acknowledged, and the retry writes it all again.
//!
//! A failed fsync is different: Linux may drop the unwritten pages and
//! report the next fsync clean, so a retry could acknowledge data that never
//! reached the disk. That is fatal: the agent exits non-zero naming the
//! cause (as etcd does), and a supervisor restarts it from what is durable.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redb::backends::FileBackend;
use redb::{Builder, Database, StorageBackend};
use tokio::sync::watch;

use super::StoreError;

/// Which file failed: the log (`raft.redb`) or the snapshot (`state.redb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Log = 1,
    Snapshot = 2,
}

/// First retry after this, doubling up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Space that returns is noticed within this long.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A storage error that lasts is logged again this often.
const REMIND: Duration = Duration::from_secs(30);

/// Whether raft storage currently works, readable by everyone without I/O.
pub struct StorageHealth {
    /// Bit set of failing [`Part`]s.
    failing: AtomicU8,
    /// The cause of the current failure, `None` while healthy.
    error: watch::Sender<Option<String>>,
    /// Set when the agent must exit (see the module docs).
    fatal: watch::Sender<Option<String>>,
    episode: Mutex<Option<Episode>>,
}

struct Episode {
    since: Instant,
    reminded: Instant,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            failing: AtomicU8::new(0),
            error: watch::channel(None).0,
            fatal: watch::channel(None).0,
            episode: Mutex::new(None),
        }
    }
}

impl StorageHealth {
    /// A write to raft storage is failing right now.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed) != 0
    }

    /// The cause of the current failure.
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }

    /// Resolves with the cause once storage fails (at once if it does now).
    pub async fn failed(&self) -> String {
        let mut rx = self.error.subscribe();
        let r = rx
            .wait_for(Option::is_some)
            .await
            .map(|e| e.clone().unwrap_or_default());
        match r {
            Ok(e) => e,
            // The sender lives as long as `self`.
            Err(_) => std::future::pending().await,
        }
    }

    /// Resolves once storage works again (at once if it does now).
    pub async fn recovered(&self) {
        let mut rx = self.error.subscribe();
        if rx.wait_for(Option::is_none).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves with the message once the agent must exit.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        let r = rx
            .wait_for(Option::is_some)
            .await
            .map(|e| e.clone().unwrap_or_default());
        match r {
            Ok(e) => e,
            Err(_) => std::future::pending().await,
        }
    }

    /// Why the agent must exit, if it must.
    pub fn fatal_message(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// A write to `part` failed with `cause`; it will be retried.
    pub fn report_failure(&self, part: Part, cause: &str) {
        let was = self.failing.fetch_or(part as u8, Ordering::Relaxed);
        let now = Instant::now();
        let mut ep = self.episode.lock();
        match ep.as_mut() {
            None => {
                tracing::error!(
                    error = %cause,
                    "raft storage write failed; writes are refused until it succeeds again (retrying)"
                );
                *ep = Some(Episode {
                    since: now,
                    reminded: now,
                });
            }
            Some(e) if now.duration_since(e.reminded) >= REMIND => {
                tracing::error!(
                    error = %cause,
                    failing_for_s = now.duration_since(e.since).as_secs(),
                    "raft storage still failing"
                );
                e.reminded = now;
            }
            Some(_) => tracing::debug!(error = %cause, "raft storage retry failed"),
        }
        drop(ep);
        if (was & part as u8) == 0 || self.error.borrow().is_none() {
            self.error.send_replace(Some(cause.to_string()));
        }
    }

    /// A write to `part` succeeded.
    pub fn report_ok(&self, part: Part) {
        if self.failing.load(Ordering::Relaxed) & part as u8 == 0 {
            return;
        }
        let left = self.failing.fetch_and(!(part as u8), Ordering::Relaxed) & !(part as u8);
        if left != 0 {
            return;
        }
        self.error.send_replace(None);
        if let Some(e) = self.episode.lock().take() {
            tracing::info!(
                after_ms = e.since.elapsed().as_millis() as u64,
                "raft storage writes succeed again; accepting writes"
            );
        }
    }

    /// Storage can no longer be trusted: the agent exits with `msg`.
    pub fn report_fatal(&self, msg: String) {
        tracing::error!("{msg}");
        self.fatal.send_replace(Some(msg.clone()));
        self.failing.fetch_or(Part::Log as u8, Ordering::Relaxed);
        self.error.send_replace(Some(msg));
    }
}

/// redb's file backend, noting whether an fsync ever failed.
#[derive(Debug)]
struct SyncWatched {
    file: FileBackend,
    sync_failed: Arc<AtomicBool>,
}

impl StorageBackend for SyncWatched {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        self.file.read(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        let r = self.file.sync_data(eventual);
        if r.is_err() {
            self.sync_failed.store(true, Ordering::Relaxed);
        }
        r
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write(offset, data)
    }
}

/// One redb file that is reopened after an I/O error.
pub struct RedbFile {
    path: PathBuf,
    db: Option<Database>,
    sync_failed: Arc<AtomicBool>,
}

impl RedbFile {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut f = Self {
            path: path.to_path_buf(),
            db: None,
            sync_failed: Arc::new(AtomicBool::new(false)),
        };
        f.db()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopening it after [`Self::reset`].
    pub fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            let backend = SyncWatched {
                file: FileBackend::new(file)?,
                sync_failed: self.sync_failed.clone(),
            };
            self.db = Some(Builder::new().create_with_backend(backend)?);
        }
        Ok(self.db.as_ref().expect("opened above"))
    }

    /// Close after an error: redb refuses every operation after one.
    pub fn reset(&mut self) {
        self.db = None;
    }

    /// An fsync of this file failed (see the module docs).
    pub fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::Relaxed)
    }

    /// After `err`: the message that makes the agent exit, if retrying is unsafe.
    pub fn fatal_message(&self, err: &StoreError) -> Option<String> {
        self.sync_failed().then(|| {
            format!(
                "fsync of {} failed ({err}): written data may not be on disk, so it is not \
                 retried; exiting so that the agent restarts from what is durable",
                self.path.display()
            )
        })
    }
}

/// The next backoff after `d`.
pub fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(MAX_BACKOFF)
}
