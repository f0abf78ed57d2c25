//! The raft state machine: applies committed entries to [`Store`], builds and
//! installs snapshots. With a data dir the latest snapshot is kept durably in
//! `state.redb`; on start it is loaded and the log after it is replayed, which
//! is how the state survives restarts (as Consul's does: log + snapshots).
//!
//! Snapshots are [`crate::snapshot`] files (versioned sections), kept on
//! disk only: what openraft sends a follower is read back when it asks.
//! Large encodes, decodes and drops run on blocking threads, off the
//! runtime's workers.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use parking_lot::Mutex;
use redb::{Database, TableDefinition};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::disk::{next_backoff, Part, RedbFile, StorageHealth, FIRST_BACKOFF};
use super::{Entry, LogId, Node, NodeId, StorageError, StoreError, TypeConfig};
use crate::state::restore::{ChunkReader, RestoreCommand, RestoreOutcome};
use crate::state::{Changes, Command, LegacyTables, Outcome, Store, Tables};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
/// bincode of the snapshot's [`SnapshotMeta`].
const META_KEY: &str = "meta";
/// The snapshot file itself.
const DATA_KEY: &str = "data";
/// Before the sectioned format: bincode of `{meta, bincode(Tables)}`.
const LEGACY_KEY: &str = "current";

type Meta = SnapshotMeta<NodeId, Node>;
/// A snapshot's meta, and its bytes when they are kept in memory.
type Current = (Meta, Option<Arc<Vec<u8>>>);

#[derive(Deserialize)]
struct LegacySnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// Where the current snapshot lives.
struct Snapshots {
    file: Option<Arc<Mutex<RedbFile>>>,
    /// The current snapshot's meta, and its bytes when there is no file.
    current: Mutex<Option<Current>>,
    health: Arc<StorageHealth>,
}

impl Snapshots {
    /// Save a snapshot durably, retrying a failed write (a full disk) until
    /// it succeeds: openraft would stop on an error, and it must not purge
    /// the log behind a snapshot that is not on disk. Hands the bytes back
    /// (a whole state's worth: not copied when they go to disk).
    async fn save(&self, meta: Meta, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let data = Arc::new(data);
        let Some(file) = &self.file else {
            let copy = data.as_ref().clone();
            *self.current.lock() = Some((meta, Some(data)));
            return Ok(copy);
        };
        let meta_bytes = Arc::new(bincode::serialize(&meta)?);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (file, m, d) = (file.clone(), meta_bytes.clone(), data.clone());
            let res = blocking(move || {
                let mut f = file.lock();
                match f.db().and_then(|db| write_snapshot(db, &m, &d)) {
                    Ok(()) => Ok(Ok(())),
                    Err(e) => match f.fatal_message(&e) {
                        Some(msg) => Ok(Err((msg, true))),
                        None => {
                            f.reset();
                            Ok(Err((format!("writing {}: {e}", f.path().display()), false)))
                        }
                    },
                }
            })
            .await?;
            match res {
                Ok(()) => {
                    self.health.report_ok(Part::Snapshot);
                    break;
                }
                Err((msg, true)) => {
                    self.health.report_fatal(msg.clone());
                    return Err(StoreError::Task(msg));
                }
                Err((cause, false)) => self.health.report_failure(Part::Snapshot, &cause),
            }
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
        }
        *self.current.lock() = Some((meta, None));
        // The writer's clones are gone once its task returned.
        Ok(Arc::try_unwrap(data).unwrap_or_else(|d| d.as_ref().clone()))
    }

    /// The current snapshot's bytes.
    async fn data(&self) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
        let Some((meta, mem)) = self.current.lock().clone() else {
            return Ok(None);
        };
        if let Some(d) = mem {
            return Ok(Some((meta, d.as_ref().clone())));
        }
        let Some(file) = self.file.clone() else {
            return Ok(None);
        };
        let data = blocking(move || {
            let mut f = file.lock();
            let r = f.db()?.begin_read()?;
            let t = r.open_table(SNAPSHOT)?;
            let v = t.get(DATA_KEY)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await?;
        Ok(data.map(|d| (meta, d)))
    }
}

/// Run `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(format!("blocking task: {e}")))?
}

fn write_snapshot(db: &Database, meta: &[u8], data: &[u8]) -> Result<(), StoreError> {
    let w = db.begin_write()?;
    {
        let mut t = w.open_table(SNAPSHOT)?;
        t.insert(META_KEY, meta)?;
        t.insert(DATA_KEY, data)?;
        t.remove(LEGACY_KEY)?;
    }
    w.commit()?;
    Ok(())
}

/// Applies the log to the store. Cheap to clone (also the snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    /// Told the raft index of every restore installed (to snapshot and
    /// purge the log of its pieces).
    restored: Option<mpsc::UnboundedSender<u64>>,
}

impl StateMachine {
    pub fn memory(store: Arc<Store>) -> Self {
        Self {
            store,
            snapshots: Arc::new(Snapshots {
                file: None,
                current: Mutex::new(None),
                health: Arc::default(),
            }),
            restored: None,
        }
    }

    /// Send the raft index of each installed restore to `tx`.
    pub fn on_restore(mut self, tx: mpsc::UnboundedSender<u64>) -> Self {
        self.restored = Some(tx);
        self
    }

    /// Open `state.redb` in `dir`; load the latest snapshot into `store`.
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        health: Arc<StorageHealth>,
    ) -> Result<Self, StoreError> {
        let mut file = RedbFile::open(&dir.join("state.redb"))?;
        let (meta, data, legacy) = {
            let db = file.db()?;
            let w = db.begin_write()?;
            w.open_table(SNAPSHOT)?;
            w.commit()?;
            let r = db.begin_read()?;
            let t = r.open_table(SNAPSHOT)?;
            let get = |k: &str| -> Result<Option<Vec<u8>>, StoreError> {
                Ok(t.get(k)?.map(|v| v.value().to_vec()))
            };
            (get(META_KEY)?, get(DATA_KEY)?, get(LEGACY_KEY)?)
        };
        let mut current = None;
        let mut rewrite = None;
        if let (Some(m), Some(d)) = (meta, data) {
            let meta: Meta = bincode::deserialize(&m)?;
            let tables = crate::snapshot::decode(&d[..], true)?.tables;
            store.replace(tables);
            current = Some((meta, None));
        } else if let Some(v) = legacy {
            // Written by an earlier version: load it, and store it again in
            // the current format (followers are sent what is stored).
            let snap: LegacySnapshot = bincode::deserialize(&v)?;
            let legacy: LegacyTables = bincode::deserialize(&snap.data)?;
            let tables = Tables::from(legacy);
            let header = crate::snapshot::header_for(&tables, "");
            let data = crate::snapshot::encode(&tables, &header, true)?;
            rewrite = Some((bincode::serialize(&snap.meta)?, data));
            store.replace(tables);
            current = Some((snap.meta, None));
        }
        if let Some((m, d)) = rewrite {
            write_snapshot(file.db()?, &m, &d)?;
        }
        Ok(Self {
            store,
            snapshots: Arc::new(Snapshots {
                file: Some(Arc::new(Mutex::new(file))),
                current: Mutex::new(current),
                health,
            }),
            restored: None,
        })
    }

    /// Apply entries that need no awaiting, under one write lock.
    fn apply_plain(&self, entries: &[Entry], out: &mut Vec<Outcome>) {
        let mut changed = Changes::default();
        {
            let mut t = self.store.write();
            for e in entries {
                t.last_applied = Some(e.log_id);
                let r = match &e.payload {
                    EntryPayload::Blank => Outcome::None,
                    EntryPayload::Normal(cmd) => {
                        let index = e.log_id.index + t.index_offset;
                        t.apply(index, cmd, &mut changed)
                    }
                    EntryPayload::Membership(m) => {
                        t.membership = StoredMembership::new(Some(e.log_id), m.clone());
                        Outcome::None
                    }
                };
                out.push(r);
            }
        }
        // Wake watchers outside the lock so they can read right away.
        if !changed.is_empty() {
            self.store.wake(&changed);
        }
    }

    /// Apply a restore's `Install`: decode the staged file off the runtime
    /// and swap it in whole, or change nothing.
    async fn install_restore(&self, e: &Entry, id: u64, chunks: u32, size: u64) -> Outcome {
        let (staged, membership, offset) = {
            let mut t = self.store.write();
            t.last_applied = Some(e.log_id);
            let staged = match t.restore.take() {
                Some(s) if s.id == id => Ok(s),
                other => {
                    t.restore = other;
                    Err(format!("no pieces are staged for restore {id:x}"))
                }
            };
            (staged, t.membership.clone(), t.index_offset)
        };
        let decoded = match staged.and_then(|s| s.complete(chunks, size).map_err(|e| e.to_string()))
        {
            Err(msg) => Err(msg),
            Ok(pieces) => blocking(move || {
                crate::snapshot::decode(ChunkReader::new(pieces), false).map_err(StoreError::from)
            })
            .await
            .map_err(|e| e.to_string()),
        };
        let d = match decoded {
            Ok(d) => d,
            Err(msg) => {
                tracing::error!(error = %msg, "snapshot restore refused; state unchanged");
                return Outcome::Restore(RestoreOutcome::Error(msg));
            }
        };
        let raft_index = e.log_id.index;
        let mut tables = d.tables;
        tables.last_applied = Some(e.log_id);
        tables.membership = membership;
        // Writes after this one must get indexes above everything restored
        // and everything this cluster handed out before.
        tables.index_offset = offset.max(d.max_index.saturating_sub(raft_index));
        let keys = tables.kv.len() as u64;
        tracing::info!(
            keys,
            index = d.summary.header.index,
            snapshot = %d.summary.header.id,
            raft_index,
            "snapshot restored: the state was replaced"
        );
        let old = self.store.replace(tables);
        tokio::task::spawn_blocking(move || {
            drop(old);
            release_freed_memory();
        });
        if let Some(tx) = &self.restored {
            let _ = tx.send(raft_index);
        }
        Outcome::Restore(RestoreOutcome::Installed { keys })
    }
}

/// Hand memory freed by a wholesale replacement (the old tables, a whole
/// state's worth) back to the system: the allocator keeps it otherwise, and the
/// agent's RSS would stay at twice the state after a restore.
fn release_freed_memory() {
    crate::alloc::release();
}

fn sm_err(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::write_state_machine(&e.into()).into()
}

fn install_of(e: &Entry) -> Option<(u64, u32, u64)> {
    match &e.payload {
        EntryPayload::Normal(Command::Restore(RestoreCommand::Install { id, chunks, size })) => {
            Some((*id, *chunks, *size))
        }
        _ => None,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let (data, last_log_id, membership) = blocking(move || {
            let t = store.read();
            let header = crate::snapshot::header_for(&t, "");
            let data = crate::snapshot::encode(&t, &header, true)?;
            Ok((data, t.last_applied, t.membership.clone()))
        })
        .await
        .map_err(sm_err)?;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        let bytes = data.len();
        let data = self
            .snapshots
            .save(meta.clone(), data)
            .await
            .map_err(sm_err)?;
        tracing::debug!(last = ?last_log_id, bytes, "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        let t = self.store.read();
        Ok((t.last_applied, t.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut out = Vec::with_capacity(entries.len());
        let mut rest = &entries[..];
        while let Some(first) = rest.first() {
            if let Some((id, chunks, size)) = install_of(first) {
                out.push(self.install_restore(first, id, chunks, size).await);
                rest = &rest[1..];
                continue;
            }
            let n = rest
                .iter()
                .position(|e| install_of(e).is_some())
                .unwrap_or(rest.len());
            self.apply_plain(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let (data, decoded) = blocking(move || {
            let d = crate::snapshot::decode(&data[..], true);
            Ok((data, d))
        })
        .await
        .map_err(sm_err)?;
        let mut tables = decoded.map_err(sm_err)?.tables;
        tables.last_applied = meta.last_log_id;
        tables.membership = meta.last_membership.clone();
        drop(
            self.snapshots
                .save(meta.clone(), data)
                .await
                .map_err(sm_err)?,
        );
        let old = self.store.replace(tables);
        tokio::task::spawn_blocking(move || {
            drop(old);
            release_freed_memory();
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snap = self
            .snapshots
            .data()
            .await
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        Ok(snap.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
