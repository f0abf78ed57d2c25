//! The raft log.
//!
//! Entries live in an in-memory map (bounded by snapshot + purge) so reads for
//! apply and replication never touch disk. With a data dir, every mutation is
//! also queued to one writer thread that owns the write-ahead log
//! ([`super::wal`], in `raft-wal/`): it drains whatever is queued, appends it
//! in one write, fsyncs once, and only then reports the entries flushed to
//! openraft. Under load that is group commit: one fsync acknowledges every
//! write that arrived while the previous one ran. A batch that fails (a full
//! disk) is retried until it succeeds, so openraft never sees a storage
//! error; see [`super::disk`]. A log kept by earlier versions in `raft.redb`
//! is moved into the write-ahead log once, on start.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableTable, TableDefinition};

use super::disk::{next_backoff, Part, StorageHealth, FIRST_BACKOFF};
use super::wal::{Record, Wal};
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

    /// Open (or create) the log in `dir` and load what it holds.
    pub fn open(dir: &Path, health: Arc<StorageHealth>) -> Result<Self, StoreError> {
        let wal_dir = dir.join("raft-wal");
        migrate_redb(dir, &wal_dir)?;
        let (wal, replayed) = Wal::open(&wal_dir)?;
        let mut meta = Meta::default();
        if let Some(v) = replayed.meta.get("vote") {
            meta.vote = Some(bincode::deserialize(v)?);
        }
        if let Some(v) = replayed.meta.get("committed") {
            meta.committed = bincode::deserialize(v)?;
        }
        if let Some((_, id)) = &replayed.purged {
            meta.last_purged = bincode::deserialize(id)?;
        }
        let mut entries = BTreeMap::new();
        for (k, v) in &replayed.entries {
            let e: Entry = bincode::deserialize(v)?;
            entries.insert(*k, e);
        }
        drop(replayed);
        let (tx, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let writer = WriterThread {
            wal,
            rx,
            health,
            closing: closing.clone(),
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

/// The records of `batch`, in order.
fn records(batch: &[Op]) -> Vec<Record<'_>> {
    let mut out = Vec::with_capacity(batch.len());
    for op in batch {
        match op {
            Op::Append(entries, _) => {
                out.extend(entries.iter().map(|(index, entry)| Record::Append {
                    index: *index,
                    entry,
                }))
            }
            Op::Truncate(since) => out.push(Record::Truncate { since: *since }),
            Op::Purge(upto, id) => out.push(Record::Purge { upto: *upto, id }),
            Op::Meta(name, value, _) => out.push(Record::Meta { name, value }),
        }
    }
    out
}

/// The writer thread's state.
struct WriterThread {
    wal: Wal,
    rx: mpsc::Receiver<Op>,
    health: Arc<StorageHealth>,
    /// Set on shutdown: a failing batch is given up rather than retried.
    closing: Arc<AtomicBool>,
}

impl WriterThread {
    /// Write `batch`, retrying until it succeeds; `Err` when it is given up
    /// (fsync failed, or shutdown while failing).
    fn commit(&mut self, batch: &[Op]) -> Result<(), String> {
        let durable = batch.iter().any(Op::durable);
        let records = records(batch);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let t0 = std::time::Instant::now();
            let e = match self.wal.write(&records, durable) {
                Ok(()) => {
                    tracing::trace!(
                        ops = batch.len(),
                        durable,
                        micros = t0.elapsed().as_micros() as u64,
                        "raft log batch written"
                    );
                    self.health.report_ok(Part::Log);
                    return Ok(());
                }
                Err(e) => e,
            };
            if self.wal.sync_failed() {
                let msg = format!(
                    "{e}; not retried (the kernel may have dropped the unwritten pages); exiting so \
                     that the agent restarts from what is durable"
                );
                self.health.report_fatal(msg.clone());
                return Err(msg);
            }
            let cause = format!("writing the raft log: {e}");
            self.health.report_failure(Part::Log, &cause);
            if self.closing.load(Ordering::Relaxed) {
                return Err(cause);
            }
            std::thread::sleep(backoff);
            backoff = next_backoff(backoff);
        }
    }

    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
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

/// Move a log kept by earlier versions in `dir/raft.redb` into the
/// write-ahead log at `wal_dir`: written whole to a temporary directory,
/// fsynced, renamed into place, and only then is the old file removed, so a
/// crash at any point leaves one complete copy.
fn migrate_redb(dir: &Path, wal_dir: &Path) -> Result<(), StoreError> {
    let legacy = dir.join("raft.redb");
    if !legacy.exists() {
        return Ok(());
    }
    if !wal_dir.exists() {
        let tmp = dir.join("raft-wal.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        let (entries, meta) = read_redb(&legacy)?;
        let (mut wal, _) = Wal::open(&tmp)?;
        let mut records: Vec<Record<'_>> = meta
            .iter()
            .filter(|(name, _)| name.as_str() != "last_purged")
            .map(|(name, value)| Record::Meta { name, value })
            .collect();
        let purged: Option<LogId> = match meta.get("last_purged") {
            Some(id) => bincode::deserialize(id)?,
            None => None,
        };
        if let (Some(p), Some(id)) = (purged, meta.get("last_purged")) {
            records.push(Record::Purge { upto: p.index, id });
        }
        let purged_upto = purged.map(|p| p.index);
        records.extend(
            entries
                .iter()
                .filter(|(i, _)| purged_upto.is_none_or(|p| **i > p))
                .map(|(index, entry)| Record::Append {
                    index: *index,
                    entry,
                }),
        );
        wal.write(&records, true)?;
        drop(wal);
        std::fs::rename(&tmp, wal_dir)?;
        File::open(dir)?.sync_all()?;
        tracing::info!(
            entries = entries.len(),
            "raft log: moved raft.redb into the write-ahead log (raft-wal)"
        );
    }
    std::fs::remove_file(&legacy)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The raw entries and meta values of a `raft.redb` log.
type RedbLog = (BTreeMap<u64, Vec<u8>>, BTreeMap<String, Vec<u8>>);

fn read_redb(path: &Path) -> Result<RedbLog, StoreError> {
    let db = Database::open(path)?;
    let r = db.begin_read()?;
    let mut entries = BTreeMap::new();
    let mut meta = BTreeMap::new();
    match r.open_table(META) {
        Ok(m) => {
            for row in m.iter()? {
                let (k, v) = row?;
                meta.insert(k.value().to_string(), v.value().to_vec());
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match r.open_table(LOG) {
        Ok(log) => {
            for row in log.iter()? {
                let (k, v) = row?;
                entries.insert(k.value(), v.value().to_vec());
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok((entries, meta))
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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// A data dir of an earlier version: its `raft.redb` log is moved into
    /// the write-ahead log whole (vote, purge point, the entries after it),
    /// and the old file goes.
    #[tokio::test]
    async fn a_redb_log_of_an_earlier_version_is_moved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("raft.redb")).unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut log = w.open_table(LOG).unwrap();
                for i in 1..=5 {
                    let bytes = bincode::serialize(&entry(i)).unwrap();
                    log.insert(i, bytes.as_slice()).unwrap();
                }
                let mut meta = w.open_table(META).unwrap();
                let vote = bincode::serialize(&Vote::new(2, 1)).unwrap();
                meta.insert("vote", vote.as_slice()).unwrap();
                let purged = bincode::serialize(&Some(entry(2).log_id)).unwrap();
                meta.insert("last_purged", purged.as_slice()).unwrap();
            }
            w.commit().unwrap();
        }
        let health = Arc::new(StorageHealth::default());
        let mut log = LogStore::open(dir.path(), health.clone()).unwrap();
        assert!(!dir.path().join("raft.redb").exists());
        assert!(dir.path().join("raft-wal").is_dir());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(2).log_id));
        assert_eq!(state.last_log_id, Some(entry(5).log_id));
        let got: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        log.close();
        // Opened again: the same, from the write-ahead log alone.
        let mut log = LogStore::open(dir.path(), health).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        assert_eq!(log.try_get_log_entries(0..).await.unwrap().len(), 3);
        log.close();
    }
}
