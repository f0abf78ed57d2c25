//! Replicated state: the tables every server holds, stamped with raft indexes,
//! and the watcher registry that wakes blocking queries.
//!
//! The state machine (`crate::raft::state_machine`) is the only writer: it
//! applies committed raft entries here. HTTP handlers only read.

pub mod catalog;
pub mod kv;
pub mod session;
pub mod watch;

use std::sync::Arc;

use openraft::{LogId, StoredMembership};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::raft::{Node, NodeId};
pub use catalog::{CatalogCommand, CatalogOutcome, Health};
pub use kv::{KvCommand, KvEntry, KvOutcome, KvTable, KvVerb, TxnOp, TxnOutcome};
pub use session::{SessionCommand, SessionOutcome, SessionTable};
pub use watch::{Changes, WatchGuard, WatchTarget, Watches};

/// A replicated write (the raft log's application data).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Kv(KvCommand),
    Catalog(CatalogCommand),
    Session(SessionCommand),
    /// Several writes committed in one raft entry (group commit), applied in order.
    Batch(Vec<Command>),
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
}

/// Everything the state machine holds; this is what a snapshot contains.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tables {
    pub kv: KvTable,
    pub catalog: catalog::Catalog,
    pub sessions: SessionTable,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
}

/// Tables behind a lock, plus the watchers to wake after each apply.
pub struct Store {
    tables: RwLock<Tables>,
    pub watches: Arc<Watches>,
}

impl Store {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tables: RwLock::new(Tables::default()),
            watches: Watches::new(),
        })
    }

    /// Read access for handlers; keep the guard short-lived.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Tables> {
        self.tables.read()
    }

    pub(crate) fn write(&self) -> parking_lot::RwLockWriteGuard<'_, Tables> {
        self.tables.write()
    }

    /// Replace everything (snapshot install) and wake every watcher.
    pub(crate) fn replace(&self, tables: Tables) {
        let (keys, named) = {
            let mut t = self.tables.write();
            let mut keys: Vec<String> = t.kv.list("").map(|(k, _)| k.clone()).collect();
            keys.extend(tables.kv.list("").map(|(k, _)| k.clone()));
            let mut named: Vec<String> = vec![
                catalog::NODES.into(),
                catalog::SERVICES.into(),
                catalog::CHECKS.into(),
                session::SESSIONS.into(),
            ];
            for c in [&t.catalog, &tables.catalog] {
                named.extend(c.service_names().map(|(n, _)| catalog::svc_target(n)));
                named.extend(c.nodes().map(|n| catalog::node_target(&n.node)));
            }
            *t = tables;
            (keys, named)
        };
        self.watches.kv_changed(keys.iter().map(String::as_str));
        // The root prefix covers keys present in neither map (pure tombstones).
        self.watches.kv_changed([""]);
        self.watches.named_changed(named.iter().map(String::as_str));
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
                Outcome::Catalog(out)
            }
            Command::Session(c) => Outcome::Session(self.sessions.apply(
                index,
                c,
                &self.catalog,
                &mut self.kv,
                changed,
            )),
            Command::Batch(cmds) => {
                Outcome::Batch(cmds.iter().map(|c| self.apply(index, c, changed)).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests;
