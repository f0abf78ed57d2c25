//! Replicated state: the tables every server holds, stamped with raft indexes,
//! and the watcher registry that wakes blocking queries.
//!
//! The state machine (`crate::raft::state_machine`) is the only writer: it
//! applies committed raft entries here. HTTP handlers only read.

pub mod acl;
pub mod autopilot;
pub mod catalog;
pub mod coordinate;
pub mod kv;
pub mod query;
pub mod restore;
pub mod session;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::{LogId, StoredMembership};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::raft::{Node, NodeId};
pub use catalog::{CatalogCommand, CatalogOutcome, Health};
pub use kv::{KvCommand, KvEntry, KvOutcome, KvTable, KvVerb, TxnOp, TxnOutcome};
pub use restore::{RestoreCommand, RestoreOutcome};
pub use session::{SessionCommand, SessionOutcome, SessionTable};
pub use watch::{Changes, WatchGuard, WatchTarget, Watches};

/// The watch name every ACL write wakes.
pub const ACL_WATCH: &str = "acl";

/// A replicated write (the raft log's application data).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Kv(KvCommand),
    Catalog(CatalogCommand),
    Session(SessionCommand),
    /// Several writes committed in one raft entry (group commit), applied in order.
    Batch(Vec<Command>),
    /// A snapshot restore, piece by piece (see [`restore`]).
    Restore(RestoreCommand),
    /// The autopilot configuration.
    Autopilot(autopilot::AutopilotCommand),
    /// Tokens, policies, roles.
    Acl(acl::AclCommand),
    /// Network coordinates (a batch).
    Coordinate(coordinate::CoordinateCommand),
    /// Prepared queries.
    Query(query::QueryCommand),
}

/// What applying a [`Command`] produced (the raft response).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank and membership entries.
    None,
    Kv(KvOutcome),
    Catalog(CatalogOutcome),
    Session(SessionOutcome),
    Batch(Vec<Outcome>),
    Restore(RestoreOutcome),
    /// Whether the autopilot configuration was written (`?cas`).
    Autopilot(bool),
    Acl(acl::AclOutcome),
    /// How many coordinates were written.
    Coordinate(usize),
    Query(query::QueryOutcome),
}

/// Everything the state machine holds; this is what a snapshot contains
/// (encoded by [`crate::snapshot`]).
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub kv: KvTable,
    pub catalog: catalog::Catalog,
    pub sessions: SessionTable,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
    /// Added to a raft log index to give the index writes are stamped
    /// with. 0 until a restore brings in state with higher indexes than
    /// this cluster's log: from then on every new index is above them.
    pub index_offset: u64,
    /// The pieces of a restore in progress.
    pub restore: Option<restore::Staging>,
    /// Set once written (else Consul's defaults apply).
    pub autopilot: Option<autopilot::AutopilotConfig>,
    /// Tokens, policies, roles.
    pub acl: acl::AclTable,
    /// Network coordinates.
    pub coordinates: coordinate::CoordinateTable,
    /// Prepared queries.
    pub queries: query::QueryTable,
}

/// The layout of [`Tables`] in snapshots written before the sectioned
/// format (bincode of the struct); read once, at start-up.
#[derive(Deserialize)]
pub(crate) struct LegacyTables {
    pub kv: KvTable,
    pub catalog: catalog::Catalog,
    pub sessions: SessionTable,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
}

impl From<LegacyTables> for Tables {
    fn from(l: LegacyTables) -> Self {
        Tables {
            kv: l.kv,
            catalog: l.catalog,
            sessions: l.sessions,
            last_applied: l.last_applied,
            membership: l.membership,
            index_offset: 0,
            restore: None,
            autopilot: None,
            acl: Default::default(),
            coordinates: Default::default(),
            queries: Default::default(),
        }
    }
}

impl Tables {
    /// The index every write so far is stamped at or below: the last
    /// applied raft index plus the offset.
    pub fn applied_index(&self) -> u64 {
        self.last_applied.map(|l| l.index).unwrap_or(0) + self.index_offset
    }
}

/// Tables behind a lock, plus the watchers to wake after each apply.
pub struct Store {
    tables: RwLock<Tables>,
    pub watches: Arc<Watches>,
    /// Moves on every wholesale replacement (snapshot install, restore).
    generation: AtomicU64,
}

impl Store {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tables: RwLock::new(Tables::default()),
            watches: Watches::new(),
            generation: AtomicU64::new(0),
        })
    }

    /// Changes whenever the tables were replaced wholesale: a parked query
    /// that sees it move answers (indexes may have gone backwards), and a
    /// cache keyed on indexes starts over.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Read access for handlers; keep the guard short-lived.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Tables> {
        self.tables.read()
    }

    pub(crate) fn write(&self) -> parking_lot::RwLockWriteGuard<'_, Tables> {
        self.tables.write()
    }

    /// Replace everything (snapshot install, restore) and wake every
    /// watcher. Returns the old tables, for the caller to drop where a
    /// large drop does not hold up anyone.
    pub(crate) fn replace(&self, tables: Tables) -> Tables {
        let old = std::mem::replace(&mut *self.tables.write(), tables);
        // Before the wake-up: a woken query must see the new generation.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.watches.wake_all();
        old
    }

    /// Wake the watchers of everything in `changes`.
    pub(crate) fn wake(&self, changes: &Changes) {
        if !changes.kv.is_empty() {
            self.watches
                .kv_changed(changes.kv.iter().map(String::as_str));
        }
        if !changes.named.is_empty() {
            self.watches
                .named_changed(changes.named.iter().map(String::as_str));
        }
    }
}

impl Tables {
    /// Prepared queries whose session ended go with it.
    fn drop_orphan_queries(&mut self, index: u64, changed: &mut Changes) {
        let sessions = &self.sessions;
        if self.queries.drop_orphans(index, &|id| sessions.exists(id)) {
            changed.named.push(query::QUERIES.to_string());
        }
    }

    /// Apply one command at `index`, recording what changed.
    pub fn apply(&mut self, index: u64, cmd: &Command, changed: &mut Changes) -> Outcome {
        match cmd {
            Command::Kv(c) => {
                let sessions = &self.sessions;
                Outcome::Kv(
                    self.kv
                        .apply(index, c, &|id| sessions.exists(id), &mut changed.kv),
                )
            }
            Command::Catalog(c) => {
                let out = self.catalog.apply(index, c, &mut changed.named);
                // Sessions die with their node or a linked check, in the same entry.
                let node = match c {
                    CatalogCommand::Register(r) => &r.node.node,
                    CatalogCommand::Deregister { node, .. }
                    | CatalogCommand::UpdateCheck { node, .. } => node,
                };
                self.sessions
                    .catalog_changed(index, node, &self.catalog, &mut self.kv, changed);
                self.drop_orphan_queries(index, changed);
                // A node's coordinate goes with it.
                if self.catalog.node(node).is_none() && self.coordinates.remove_node(index, node) {
                    changed.named.push(coordinate::COORDINATES.to_string());
                }
                Outcome::Catalog(out)
            }
            Command::Session(c) => {
                let out = self
                    .sessions
                    .apply(index, c, &self.catalog, &mut self.kv, changed);
                self.drop_orphan_queries(index, changed);
                Outcome::Session(out)
            }
            Command::Batch(cmds) => {
                Outcome::Batch(cmds.iter().map(|c| self.apply(index, c, changed)).collect())
            }
            Command::Restore(RestoreCommand::Chunk { id, seq, data }) => {
                Outcome::Restore(restore::Staging::stage(&mut self.restore, *id, *seq, data))
            }
            Command::Autopilot(c) => {
                Outcome::Autopilot(autopilot::apply(&mut self.autopilot, index, c))
            }
            Command::Acl(c) => {
                let out = self.acl.apply(index, c);
                // Parked queries re-check what their token may see.
                changed.named.push(ACL_WATCH.to_string());
                Outcome::Acl(out)
            }
            Command::Coordinate(c) => {
                let catalog = &self.catalog;
                let n = self
                    .coordinates
                    .apply(index, c, &|node| catalog.node(node).is_some());
                if n > 0 {
                    changed.named.push(coordinate::COORDINATES.to_string());
                }
                Outcome::Coordinate(n)
            }
            Command::Query(c) => {
                let sessions = &self.sessions;
                let out = self.queries.apply(index, c, &|id| sessions.exists(id));
                changed.named.push(query::QUERIES.to_string());
                Outcome::Query(out)
            }
            Command::Restore(RestoreCommand::Abort { id }) => {
                if self.restore.as_ref().is_some_and(|s| s.id == *id) {
                    self.restore = None;
                }
                Outcome::Restore(RestoreOutcome::Aborted)
            }
            // Decoding a whole file is the state machine's (off the lock);
            // it never reaches here but inside a batch, which is refused.
            Command::Restore(RestoreCommand::Install { .. }) => Outcome::Restore(
                RestoreOutcome::Error("a restore install must be an entry of its own".into()),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
