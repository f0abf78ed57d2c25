//! The raft log.
//!
//! Entries live in an in-memory map (bounded by snapshot + purge) so reads for
//! apply and replication never touch disk. With a data dir, every mutation is
//! also queued to one writer thread that owns `raft.redb`: it drains whatever
//! is queued, writes it in one redb transaction, fsyncs once, and only then
//! reports the entries flushed to openraft. Under load that is group commit:
//! one fsync acknowledges every write that arrived while the previous one ran.
//! A batch that fails (a full disk) is retried until it succeeds, so openraft
//! never sees a storage error; see [`super::disk`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::disk::{next_backoff, Part, RedbFile, StorageHealth, FIRST_BACKOFF};
use super::{Entry, LogId, StorageError, StoreError, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Upper bound of operations folded into one transaction.
const MAX_BATCH: usize = 8192;

enum Op {
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    Truncate(u64),
    Purge(u64, Vec<u8>),
    Meta(
        &'static str,
        Vec<u8>,
        Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ),
}

impl Op {
    fn durable(&self) -> bool {
        // Purge and `committed` may be lost in a crash: both are recomputed.
        matches!(self, Op::Append(..) | Op::Truncate(_)) || matches!(self, Op::Meta(_, _, Some(_)))
    }
}

#[derive(Default)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

struct Inner {
    entries: RwLock<BTreeMap<u64, Entry>>,
    meta: Mutex<Meta>,
    writer: Option<Writer>,
}

struct Writer {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closing: Arc<AtomicBool>,
}

impl Writer {
    fn send(&self, op: Op) -> Result<(), StoreError> {
        match self.tx.lock().as_ref() {
            Some(tx) => tx.send(op).map_err(|_| StoreError::WriterGone),
            None => Err(StoreError::WriterGone),
        }
    }
}

/// Raft log storage; cheap to clone (the clone is the log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn io_err(e: impl Into<StoreError>) -> StorageError {
    let e: StoreError = e.into();
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// A log that lives only in memory (`-dev`).
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: RwLock::new(BTreeMap::new()),
                meta: Mutex::new(Meta::default()),
                writer: None,
            }),
        }
    }

    /// Open (or create) `raft.redb` in `dir` and load what it holds.
    pub fn open(dir: &Path, health: Arc<StorageHealth>) -> Result<Self, StoreError> {
        let mut file = RedbFile::open(&dir.join("raft.redb"))?;
        let db = file.db()?;
        let mut meta = Meta::default();
        let mut entries = BTreeMap::new();
        {
            let w = db.begin_write()?;
            w.open_table(LOG)?;
            w.open_table(META)?;
            w.commit()?;
            let r = db.begin_read()?;
            let m = r.open_table(META)?;
            if let Some(v) = m.get("vote")? {
                meta.vote = Some(bincode::deserialize(v.value())?);
            }
            if let Some(v) = m.get("committed")? {
                meta.committed = bincode::deserialize(v.value())?;
            }
            if let Some(v) = m.get("last_purged")? {
                meta.last_purged = bincode::deserialize(v.value())?;
            }
            let log = r.open_table(LOG)?;
            for row in log.iter()? {
                let (k, v) = row?;
                let e: Entry = bincode::deserialize(v.value())?;
                entries.insert(k.value(), e);
            }
        }
        // Entries at or below the purge point may survive a crash between a
        // purge and its (lazy) commit; they are already in the snapshot.
        if let Some(p) = meta.last_purged {
            entries.retain(|k, _| *k > p.index);
        }
        let (tx, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let writer = WriterThread {
            file,
            rx,
            health,
            closing: closing.clone(),
            purge: None,
            unsynced: Unsynced::default(),
        };
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            inner: Arc::new(Inner {
                entries: RwLock::new(entries),
                meta: Mutex::new(meta),
                writer: Some(Writer {
                    tx: Mutex::new(Some(tx)),
                    thread: Mutex::new(Some(thread)),
                    closing,
                }),
            }),
        })
    }

    /// Shutdown begins: a write that is failing is no longer retried, so
    /// raft can stop instead of waiting for the disk.
    pub fn begin_close(&self) {
        if let Some(w) = &self.inner.writer {
            w.closing.store(true, Ordering::Relaxed);
        }
    }

    /// Finish queued writes and stop the writer thread.
    pub fn close(&self) {
        self.begin_close();
        if let Some(w) = &self.inner.writer {
            w.tx.lock().take();
            if let Some(t) = w.thread.lock().take() {
                let _ = t.join();
            }
        }
    }

    async fn save_meta(
        &self,
        name: &'static str,
        bytes: Vec<u8>,
        wait: bool,
    ) -> Result<(), StoreError> {
        let Some(w) = &self.inner.writer else {
            return Ok(());
        };
        if !wait {
            return w.send(Op::Meta(name, bytes, None));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        w.send(Op::Meta(name, bytes, Some(tx)))?;
        rx.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Redb)
    }
}

/// Purges are done a chunk at a time so appends never wait behind a large
/// delete (a snapshot can make thousands of entries purgeable at once).
const PURGE_CHUNK: usize = 1024;

/// A purge whose rows are not all deleted yet. The purge point itself is
/// recorded at once (rows at or below it are ignored on load, and the next
/// purge deletes any a crash left behind).
struct PendingPurge {
    upto: u64,
}

/// What a reopened file may have lost: its last non-durable commits (the
/// `committed` mark and the purge point), written again by the next batch.
#[derive(Default)]
struct Unsynced {
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    /// The file was reopened since the last successful commit.
    reopened: bool,
}

impl Unsynced {
    fn note(&mut self, batch: &[Op]) {
        for op in batch {
            match op {
                Op::Purge(upto, id) => self.purged = Some((*upto, id.clone())),
                Op::Meta("committed", bytes, _) => self.committed = Some(bytes.clone()),
                _ => {}
            }
        }
    }
}

fn write_batch(
    db: &Database,
    batch: &[Op],
    purge: &mut Option<PendingPurge>,
    unsynced: &Unsynced,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    if !batch.iter().any(Op::durable) {
        txn.set_durability(Durability::None);
    }
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        if unsynced.reopened {
            if let Some(c) = &unsynced.committed {
                meta.insert("committed", c.as_slice())?;
            }
            if let Some((upto, id)) = &unsynced.purged {
                meta.insert("last_purged", id.as_slice())?;
                if purge.as_ref().map(|p| p.upto < *upto).unwrap_or(true) {
                    *purge = Some(PendingPurge { upto: *upto });
                }
            }
        }
        for op in batch {
            match op {
                Op::Append(entries, _) => {
                    for (i, bytes) in entries {
                        log.insert(*i, bytes.as_slice())?;
                    }
                }
                Op::Truncate(since) => {
                    log.retain_in(*since.., |_, _| false)?;
                }
                Op::Purge(upto, id) => {
                    meta.insert("last_purged", id.as_slice())?;
                    if purge.as_ref().map(|p| p.upto < *upto).unwrap_or(true) {
                        *purge = Some(PendingPurge { upto: *upto });
                    }
                }
                Op::Meta(name, bytes, _) => {
                    meta.insert(*name, bytes.as_slice())?;
                }
            }
        }
        if let Some(p) = purge.as_ref() {
            let doomed: Vec<u64> = log
                .range(..=p.upto)?
                .take(PURGE_CHUNK)
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in &doomed {
                log.remove(*k)?;
            }
            if doomed.len() < PURGE_CHUNK {
                *purge = None;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The writer thread's state.
struct WriterThread {
    file: RedbFile,
    rx: mpsc::Receiver<Op>,
    health: Arc<StorageHealth>,
    /// Set on shutdown: a failing batch is given up rather than retried.
    closing: Arc<AtomicBool>,
    purge: Option<PendingPurge>,
    unsynced: Unsynced,
}

impl WriterThread {
    /// Commit `batch`, retrying until it succeeds; `Err` when it is given up
    /// (fsync failed, or shutdown while failing).
    fn commit(&mut self, batch: &[Op]) -> Result<(), String> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let t0 = std::time::Instant::now();
            let res = self
                .file
                .db()
                .and_then(|db| write_batch(db, batch, &mut self.purge, &self.unsynced));
            let e = match res {
                Ok(()) => {
                    tracing::trace!(
                        ops = batch.len(),
                        purging = self.purge.is_some(),
                        micros = t0.elapsed().as_micros() as u64,
                        "raft log batch committed"
                    );
                    self.unsynced.reopened = false;
                    self.unsynced.note(batch);
                    self.health.report_ok(Part::Log);
                    return Ok(());
                }
                Err(e) => e,
            };
            if let Some(msg) = self.file.fatal_message(&e) {
                self.health.report_fatal(msg.clone());
                return Err(msg);
            }
            let cause = format!("writing {}: {e}", self.file.path().display());
            self.health.report_failure(Part::Log, &cause);
            if self.closing.load(Ordering::Relaxed) {
                return Err(cause);
            }
            // redb refuses all I/O after an error: reopen for the retry.
            self.file.reset();
            self.unsynced.reopened = true;
            std::thread::sleep(backoff);
            backoff = next_backoff(backoff);
        }
    }

    fn run(mut self) {
        loop {
            // With a purge in progress, keep deleting chunks while idle.
            let first = if self.purge.is_some() {
                match self.rx.recv_timeout(std::time::Duration::from_millis(1)) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => break,
                }
            };
            let mut batch: Vec<Op> = first.into_iter().collect();
            while !batch.is_empty() && batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let res = self.commit(&batch);
            let gave_up = res.is_err();
            for op in batch {
                match op {
                    Op::Append(_, cb) => {
                        cb.log_io_completed(res.clone().map_err(std::io::Error::other))
                    }
                    Op::Meta(_, _, Some(tx)) => {
                        let _ = tx.send(res.clone());
                    }
                    _ => {}
                }
            }
            if gave_up {
                // Nothing more is written: fail whatever is still queued.
                self.fail_queued();
                return;
            }
        }
        // Finish an interrupted purge on shutdown.
        while self.purge.is_some() {
            let Ok(db) = self.file.db() else { break };
            if write_batch(db, &[], &mut self.purge, &self.unsynced).is_err() {
                break;
            }
        }
    }

    fn fail_queued(&self) {
        let e = || Err("raft log writer stopped after a storage error".to_string());
        while let Ok(op) = self.rx.recv() {
            match op {
                Op::Append(_, cb) => cb.log_io_completed(e().map_err(std::io::Error::other)),
                Op::Meta(_, _, Some(tx)) => {
                    let _ = tx.send(e());
                }
                _ => {}
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .inner
            .entries
            .read()
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.inner.meta.lock().last_purged;
        let last = self
            .inner
            .entries
            .read()
            .last_key_value()
            .map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = bincode::serialize(vote)
            .map_err(|e| StorageIOError::write_vote(&StoreError::from(e)))?;
        self.save_meta("vote", bytes, true)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.inner.meta.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.meta.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.inner.meta.lock().committed = committed;
        let bytes = bincode::serialize(&committed).map_err(io_err)?;
        self.save_meta("committed", bytes, false)
            .await
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.meta.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded = match &self.inner.writer {
            Some(_) => {
                let mut v = Vec::with_capacity(entries.len());
                for e in &entries {
                    v.push((e.log_id.index, bincode::serialize(e).map_err(io_err)?));
                }
                Some(v)
            }
            None => None,
        };
        {
            let mut map = self.inner.entries.write();
            for e in entries {
                map.insert(e.log_id.index, e);
            }
        }
        match (encoded, &self.inner.writer) {
            (Some(v), Some(w)) => w.send(Op::Append(v, callback)).map_err(io_err)?,
            _ => callback.log_io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner.entries.write().retain(|k, _| *k < log_id.index);
        if let Some(w) = &self.inner.writer {
            w.send(Op::Truncate(log_id.index)).map_err(io_err)?;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner.meta.lock().last_purged = Some(log_id);
        self.inner.entries.write().retain(|k, _| *k > log_id.index);
        if let Some(w) = &self.inner.writer {
            let id = bincode::serialize(&Some(log_id)).map_err(io_err)?;
            w.send(Op::Purge(log_id.index, id)).map_err(io_err)?;
        }
        Ok(())
    }
}
