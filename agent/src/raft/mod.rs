//! Consensus: every write goes through openraft, even on a single server.
//!
//! - [`disk`]: the raft files and what a failing disk means (retry, or exit).
//! - [`log_store`]: the raft log — in memory for `-dev`, in the write-ahead
//!   log under the data dir for servers, with group commit (many entries,
//!   one fsync).
//! - [`wal`]: that write-ahead log: checksummed records in segment files.
//! - [`state_machine`]: applies committed entries to [`crate::state::Store`];
//!   its latest snapshot is kept under the data dir (`state.redb`).
//! - [`network`]: raft RPC between servers.
//! - [`proposer`]: group commit — concurrent writes share one raft entry.
//! - [`node`]: building and starting a raft node.
//! - [`leadership`]: who leads, readable without raft, and the leader
//!   lease that default reads rely on.
//! - [`transitions`]: follower / candidate / leader changes, logged as
//!   Consul logs them.
//!
//! `suite_tests` (tests only) runs openraft's storage suite on the log
//! store and state machine, in memory and on disk.

pub mod disk;
pub mod leadership;
pub mod log_store;
pub mod network;
pub mod node;
pub mod proposer;
pub mod state_machine;
pub mod transitions;
pub mod wal;

#[cfg(test)]
mod suite_tests;

use std::io::Cursor;

use crate::state::{Command, Outcome};

pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Raft type configuration of tribune.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Node,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Storage-level failures (redb, encoding), converted to openraft's error at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redb: {0}")]
    Redb(String),
    #[error("encoding: {0}")]
    Codec(#[from] bincode::Error),
    #[error("{0}")]
    Wal(#[from] wal::WalError),
    #[error("log writer stopped")]
    WriterGone,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("{0}")]
    Task(String),
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.to_string()) }
        }
    )*};
}
redb_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
