//! The raft state machine: applies committed entries to [`Store`], builds and
//! installs snapshots. With a data dir the latest snapshot is kept durably in
//! `state.redb`; on start it is loaded and the log after it is replayed, which
//! is how the state survives restarts (as Consul's does: log + snapshots).

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use parking_lot::Mutex;
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use super::disk::{next_backoff, Part, RedbFile, StorageHealth, FIRST_BACKOFF};
use super::{Entry, LogId, Node, NodeId, StorageError, StoreError, TypeConfig};
use crate::state::{Changes, Outcome, Store, Tables};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// Where the current snapshot lives.
struct Snapshots {
    file: Option<Mutex<RedbFile>>,
    current: Mutex<Option<StoredSnapshot>>,
    health: Arc<StorageHealth>,
}

impl Snapshots {
    /// Save `snap` durably, retrying a failed write (a full disk) until it
    /// succeeds: openraft would stop on an error, and it must not purge the
    /// log behind a snapshot that is not on disk.
    async fn save(&self, snap: StoredSnapshot) -> Result<(), StoreError> {
        if let Some(file) = &self.file {
            let bytes = bincode::serialize(&snap)?;
            let mut backoff = FIRST_BACKOFF;
            loop {
                let res = {
                    let mut f = file.lock();
                    let r = f.db().and_then(|db| write_snapshot(db, &bytes));
                    match r {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            if let Some(msg) = f.fatal_message(&e) {
                                self.health.report_fatal(msg);
                                return Err(e);
                            }
                            f.reset();
                            Err(format!("writing {}: {e}", f.path().display()))
                        }
                    }
                };
                match res {
                    Ok(()) => {
                        self.health.report_ok(Part::Snapshot);
                        break;
                    }
                    Err(cause) => self.health.report_failure(Part::Snapshot, &cause),
                }
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
        *self.current.lock() = Some(snap);
        Ok(())
    }
}

fn write_snapshot(db: &Database, bytes: &[u8]) -> Result<(), StoreError> {
    let w = db.begin_write()?;
    w.open_table(SNAPSHOT)?.insert("current", bytes)?;
    w.commit()?;
    Ok(())
}

/// Applies the log to the store. Cheap to clone (also the snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
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
        }
    }

    /// Open `state.redb` in `dir`; load the latest snapshot into `store`.
    pub fn open(
        dir: &Path,
        store: Arc<Store>,
        health: Arc<StorageHealth>,
    ) -> Result<Self, StoreError> {
        let mut file = RedbFile::open(&dir.join("state.redb"))?;
        let db = file.db()?;
        let mut current = None;
        {
            let w = db.begin_write()?;
            w.open_table(SNAPSHOT)?;
            w.commit()?;
            let r = db.begin_read()?;
            if let Some(v) = r.open_table(SNAPSHOT)?.get("current")? {
                let snap: StoredSnapshot = bincode::deserialize(v.value())?;
                let tables: Tables = bincode::deserialize(&snap.data)?;
                store.replace(tables);
                current = Some(snap);
            }
        }
        Ok(Self {
            store,
            snapshots: Arc::new(Snapshots {
                file: Some(Mutex::new(file)),
                current: Mutex::new(current),
                health,
            }),
        })
    }
}

fn sm_err(e: impl Into<StoreError>) -> StorageError {
    StorageIOError::write_state_machine(&e.into()).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, membership) = {
            let t = self.store.read();
            let data = bincode::serialize(&*t).map_err(sm_err)?;
            (data, t.last_applied, t.membership.clone())
        };
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.snapshots.save(snap).await.map_err(sm_err)?;
        tracing::debug!(last = ?last_log_id, bytes = data.len(), "snapshot built");
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
        let mut out = Vec::new();
        let mut changed = Changes::default();
        {
            let mut t = self.store.write();
            for e in entries {
                t.last_applied = Some(e.log_id);
                let r = match &e.payload {
                    EntryPayload::Blank => Outcome::None,
                    EntryPayload::Normal(cmd) => t.apply(e.log_id.index, cmd, &mut changed),
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
        let mut tables: Tables = bincode::deserialize(&data).map_err(sm_err)?;
        tables.last_applied = meta.last_log_id;
        tables.membership = meta.last_membership.clone();
        self.snapshots
            .save(StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await
            .map_err(sm_err)?;
        self.store.replace(tables);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.snapshots.current.lock().clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
