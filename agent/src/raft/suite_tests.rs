//! openraft's own storage test suite (`openraft::testing::Suite`) run on
//! the log store and state machine, both kinds: in memory (`-dev`) and on
//! disk under a data dir (servers: write-ahead log + redb snapshots). It checks what openraft relies on —
//! vote, log reads, purge and truncation, membership, last-applied,
//! snapshots — beyond what tribune's own tests exercise.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::disk::StorageHealth;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{StorageError, StoreError, TypeConfig};
use crate::state::Store;

struct Memory;

impl StoreBuilder<TypeConfig, LogStore, StateMachine> for Memory {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        Ok(((), LogStore::memory(), StateMachine::memory(Store::new())))
    }
}

/// Each build gets a fresh data dir, removed with the guard.
struct OnDisk;

fn open_err(e: StoreError) -> StorageError {
    openraft::StorageIOError::read(&e).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OnDisk {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| open_err(e.into()))?;
        let health = Arc::new(StorageHealth::default());
        let log = LogStore::open(dir.path(), health.clone()).map_err(open_err)?;
        let sm = StateMachine::open(dir.path(), Store::new(), health).map_err(open_err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_on_the_memory_store() {
    Suite::test_all(Memory).expect("openraft storage suite (memory)");
}

#[test]
fn openraft_suite_on_the_disk_store() {
    Suite::test_all(OnDisk).expect("openraft storage suite (disk)");
}
