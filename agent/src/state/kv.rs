//! The KV table: entries stamped with raft indexes, tombstones for deleted keys
//! (so a delete under a prefix advances that prefix's index), and the
//! transaction engine (all-or-nothing through an undo log).

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One stored key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub value: Bytes,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub session: Option<String>,
}

/// A write to the KV table, as replicated through raft.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KvCommand {
    /// PUT; `cas` = Some(0) means "only if absent".
    Set {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    },
    /// DELETE of one key or (recurse) of every key under a prefix.
    Delete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    /// `/v1/txn`.
    Txn(Vec<TxnOp>),
    /// PUT `?acquire=<session>`: write the value and take the lock if the key
    /// is unlocked or already held by `session`.
    Acquire {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// PUT `?release=<session>`: write the value and drop the lock if held by `session`.
    Release {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
}

/// Transaction verbs, spelled as Consul spells them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetOrEmpty,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "set" => Self::Set,
            "cas" => Self::Cas,
            "lock" => Self::Lock,
            "unlock" => Self::Unlock,
            "get" => Self::Get,
            "get-or-empty" => Self::GetOrEmpty,
            "get-tree" => Self::GetTree,
            "check-index" => Self::CheckIndex,
            "check-session" => Self::CheckSession,
            "check-not-exists" => Self::CheckNotExists,
            "delete" => Self::Delete,
            "delete-tree" => Self::DeleteTree,
            "delete-cas" => Self::DeleteCas,
            _ => return None,
        })
    }

    /// Verbs that never change state (a txn made only of these skips raft).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Self::Get
                | Self::GetOrEmpty
                | Self::GetTree
                | Self::CheckIndex
                | Self::CheckSession
                | Self::CheckNotExists
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxnOp {
    pub verb: KvVerb,
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// Result entry of one txn op (`{"KV": {...}}` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnResultEntry {
    pub key: String,
    pub entry: KvEntry,
    /// False for write verbs: Consul blanks the value in their results.
    pub with_value: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TxnOutcome {
    Committed(Vec<TxnResultEntry>),
    RolledBack(Vec<TxnError>),
}

/// The outcome of applying one [`KvCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvOutcome {
    Bool(bool),
    Txn(TxnOutcome),
    /// Refused by the state machine (e.g. an unknown session); nothing changed.
    Error(String),
}

/// The KV table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KvTable {
    entries: BTreeMap<String, KvEntry>,
    /// Deleted key -> raft index of its deletion.
    tombstones: BTreeMap<String, u64>,
    /// Highest raft index that changed this table.
    index: u64,
}

/// Undo record for transaction rollback.
struct Undo {
    key: String,
    entry: Option<KvEntry>,
    tombstone: Option<u64>,
}

fn prefix_range<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl KvTable {
    /// A table from its stored parts (snapshot load).
    pub(crate) fn from_parts(
        entries: BTreeMap<String, KvEntry>,
        tombstones: BTreeMap<String, u64>,
        index: u64,
    ) -> Self {
        Self {
            entries,
            tombstones,
            index,
        }
    }

    /// Deleted keys and the index of each deletion, in key order.
    pub(crate) fn tombstones(&self) -> impl ExactSizeIterator<Item = (&String, &u64)> {
        self.tombstones.iter()
    }

    /// Every live entry, in key order.
    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = (&String, &KvEntry)> {
        self.entries.iter()
    }

    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Highest raft index that changed the KV table (never 0 once written).
    pub fn table_index(&self) -> u64 {
        self.index
    }

    /// Blocking index of one key: its ModifyIndex, or the index of its
    /// deletion, or 1 when it never existed (never 0).
    pub fn key_index(&self, key: &str) -> u64 {
        match self.entries.get(key) {
            Some(e) => e.modify_index,
            None => self.tombstones.get(key).copied().unwrap_or(1).max(1),
        }
    }

    /// [`Self::prefix_index`] over the keys `visible` accepts only: a
    /// parked query is not woken by what its token may not read.
    pub fn prefix_index_where(&self, prefix: &str, visible: impl Fn(&str) -> bool) -> u64 {
        let live = self
            .list(prefix)
            .filter(|(k, _)| visible(k))
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        let dead = prefix_range(&self.tombstones, prefix)
            .filter(|(k, _)| visible(k))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        live.max(dead).max(1)
    }

    /// Entries under a prefix, in key order.
    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a KvEntry)> {
        prefix_range(&self.entries, prefix)
    }

    /// Blocking index of a prefix: the highest index of a live key or a
    /// deletion under it (so deletes advance it), or 1 if none.
    pub fn prefix_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.index.max(1);
        }
        let live = self
            .list(prefix)
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        let dead = prefix_range(&self.tombstones, prefix)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        live.max(dead).max(1)
    }

    /// Keys under `prefix`, collapsed at the first `separator` after it.
    pub fn keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in self.list(prefix) {
            let after = &k[prefix.len()..];
            match (separator.is_empty(), after.find(separator)) {
                (false, Some(i)) => {
                    let folder = &k[..prefix.len() + i + separator.len()];
                    if out.last().map(String::as_str) != Some(folder) {
                        out.push(folder.to_string());
                    }
                }
                _ => out.push(k.clone()),
            }
        }
        out
    }

    /// Apply a replicated command at raft `index`. Returns the outcome and
    /// pushes every changed key into `changed` (for watcher wake-ups).
    /// `live` tells whether a session exists (locks need a live session).
    pub fn apply(
        &mut self,
        index: u64,
        cmd: &KvCommand,
        live: &dyn Fn(&str) -> bool,
        changed: &mut Vec<String>,
    ) -> KvOutcome {
        match cmd {
            KvCommand::Set {
                key,
                value,
                flags,
                cas,
            } => {
                if let Some(cas) = cas {
                    if !self.cas_ok(key, *cas) {
                        return KvOutcome::Bool(false);
                    }
                }
                self.set(index, key, Bytes::copy_from_slice(value), *flags, None);
                changed.push(key.clone());
                KvOutcome::Bool(true)
            }
            KvCommand::Delete { key, recurse, cas } => {
                if *recurse {
                    self.delete_tree(index, key, changed, None);
                    return KvOutcome::Bool(true);
                }
                if let Some(cas) = cas {
                    match self.entries.get(key) {
                        None => return KvOutcome::Bool(true),
                        Some(e) if e.modify_index != *cas => return KvOutcome::Bool(false),
                        Some(_) => {}
                    }
                }
                if self.delete(index, key, None) {
                    changed.push(key.clone());
                }
                KvOutcome::Bool(true)
            }
            KvCommand::Txn(ops) => KvOutcome::Txn(self.apply_txn(index, ops, live, changed)),
            KvCommand::Acquire {
                key,
                value,
                flags,
                session,
            } => match self.lock(index, key, value, *flags, session, live, None) {
                Ok(true) => {
                    changed.push(key.clone());
                    KvOutcome::Bool(true)
                }
                Ok(false) => KvOutcome::Bool(false),
                Err(e) => KvOutcome::Error(e),
            },
            KvCommand::Release {
                key,
                value,
                flags,
                session,
            } => match self.unlock(index, key, value, *flags, session, None) {
                Ok(true) => {
                    changed.push(key.clone());
                    KvOutcome::Bool(true)
                }
                Ok(false) => KvOutcome::Bool(false),
                Err(e) => KvOutcome::Error(e),
            },
        }
    }

    /// Take the lock on `key` for `session` and write the value: a new lock
    /// raises LockIndex; the holder re-acquiring only updates the value.
    /// `Ok(false)` when another session holds it.
    #[allow(clippy::too_many_arguments)]
    fn lock(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
        live: &dyn Fn(&str) -> bool,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        if !live(session) {
            return Err(format!("invalid session {session:?}"));
        }
        let (create_index, lock_index) = match self.entries.get(key) {
            Some(e) if e.session.as_deref() == Some(session) => (e.create_index, e.lock_index),
            Some(e) if e.session.is_some() => return Ok(false),
            Some(e) => (e.create_index, e.lock_index + 1),
            None => (index, 1),
        };
        let entry = KvEntry {
            value: Bytes::copy_from_slice(value),
            flags,
            create_index,
            modify_index: index,
            lock_index,
            session: Some(session.to_string()),
        };
        self.put(index, key, entry, undo);
        Ok(true)
    }

    /// Drop `session`'s lock on `key` and write the value. `Ok(false)` when
    /// the key is missing or not held by `session`.
    fn unlock(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        let Some(e) = self.entries.get(key) else {
            return Ok(false);
        };
        if e.session.as_deref() != Some(session) {
            return Ok(false);
        }
        let entry = KvEntry {
            value: Bytes::copy_from_slice(value),
            flags,
            create_index: e.create_index,
            modify_index: index,
            lock_index: e.lock_index,
            session: None,
        };
        self.put(index, key, entry, undo);
        Ok(true)
    }

    /// Store a complete entry (locks), recording undo for txns.
    fn put(&mut self, index: u64, key: &str, entry: KvEntry, undo: Option<&mut Vec<Undo>>) {
        let prev = self.entries.insert(key.to_string(), entry);
        let tomb = self.tombstones.remove(key);
        self.index = self.index.max(index);
        if let Some(u) = undo {
            u.push(Undo {
                key: key.to_string(),
                entry: prev,
                tombstone: tomb,
            });
        }
    }

    /// Keys whose lock `session` holds. A scan: invalidations are rare and
    /// a scan cannot drift out of step with the entries the way an index could.
    pub fn held_by(&self, session: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(session))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// An invalidated session's locks: released (the value stays, ModifyIndex
    /// moves) or, with `delete`, the keys deleted. Returns the keys affected.
    pub fn drop_session_locks(
        &mut self,
        index: u64,
        session: &str,
        delete: bool,
        changed: &mut Vec<String>,
    ) -> Vec<String> {
        let keys = self.held_by(session);
        for k in &keys {
            if delete {
                self.delete(index, k, None);
            } else if let Some(e) = self.entries.get(k) {
                let e = KvEntry {
                    session: None,
                    modify_index: index,
                    ..e.clone()
                };
                self.put(index, k, e, None);
            }
            changed.push(k.clone());
        }
        keys
    }

    fn cas_ok(&self, key: &str, cas: u64) -> bool {
        match self.entries.get(key) {
            None => cas == 0,
            Some(e) => cas != 0 && e.modify_index == cas,
        }
    }

    fn set(
        &mut self,
        index: u64,
        key: &str,
        value: Bytes,
        flags: u64,
        undo: Option<&mut Vec<Undo>>,
    ) {
        let prev = self.entries.get(key).cloned();
        let tomb = self.tombstones.remove(key);
        let entry = match &prev {
            Some(p) => KvEntry {
                value,
                flags,
                create_index: p.create_index,
                modify_index: index,
                lock_index: p.lock_index,
                session: p.session.clone(),
            },
            None => KvEntry {
                value,
                flags,
                create_index: index,
                modify_index: index,
                lock_index: 0,
                session: None,
            },
        };
        self.entries.insert(key.to_string(), entry);
        self.index = self.index.max(index);
        if let Some(u) = undo {
            u.push(Undo {
                key: key.to_string(),
                entry: prev,
                tombstone: tomb,
            });
        }
    }

    fn delete(&mut self, index: u64, key: &str, undo: Option<&mut Vec<Undo>>) -> bool {
        let Some(prev) = self.entries.remove(key) else {
            return false;
        };
        let tomb = self.tombstones.insert(key.to_string(), index);
        self.index = self.index.max(index);
        if let Some(u) = undo {
            u.push(Undo {
                key: key.to_string(),
                entry: Some(prev),
                tombstone: tomb,
            });
        }
        true
    }

    fn delete_tree(
        &mut self,
        index: u64,
        prefix: &str,
        changed: &mut Vec<String>,
        mut undo: Option<&mut Vec<Undo>>,
    ) {
        let doomed: Vec<String> = self.list(prefix).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.delete(index, &k, undo.as_deref_mut());
            changed.push(k);
        }
    }

    fn apply_txn(
        &mut self,
        index: u64,
        ops: &[TxnOp],
        live: &dyn Fn(&str) -> bool,
        changed: &mut Vec<String>,
    ) -> TxnOutcome {
        let saved_index = self.index;
        let mut undo = Vec::new();
        let mut results = Vec::new();
        let mut touched = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Err(what) = self.txn_op(index, op, live, &mut undo, &mut results, &mut touched) {
                // Roll back in reverse order; nothing of this txn remains.
                for u in undo.into_iter().rev() {
                    match u.entry {
                        Some(e) => {
                            self.entries.insert(u.key.clone(), e);
                        }
                        None => {
                            self.entries.remove(&u.key);
                        }
                    }
                    match u.tombstone {
                        Some(t) => {
                            self.tombstones.insert(u.key, t);
                        }
                        None => {
                            self.tombstones.remove(&u.key);
                        }
                    }
                }
                self.index = saved_index;
                return TxnOutcome::RolledBack(vec![TxnError { op_index: i, what }]);
            }
        }
        changed.extend(touched);
        TxnOutcome::Committed(results)
    }

    /// Run read-only ops against the current state (no raft round trip).
    pub fn read_txn(&self, ops: &[TxnOp]) -> TxnOutcome {
        let mut results = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Err(what) = self.txn_read(op, &mut results) {
                return TxnOutcome::RolledBack(vec![TxnError { op_index: i, what }]);
            }
        }
        TxnOutcome::Committed(results)
    }

    fn result(&self, key: &str, with_value: bool) -> Option<TxnResultEntry> {
        self.entries.get(key).map(|e| TxnResultEntry {
            key: key.to_string(),
            entry: e.clone(),
            with_value,
        })
    }

    fn txn_read(&self, op: &TxnOp, results: &mut Vec<TxnResultEntry>) -> Result<(), String> {
        let key = &op.key;
        match op.verb {
            KvVerb::Get => {
                let r = self
                    .result(key, true)
                    .ok_or_else(|| format!("key {key:?} doesn't exist"))?;
                results.push(r);
            }
            KvVerb::GetOrEmpty => {
                let r = self.result(key, true).unwrap_or_else(|| TxnResultEntry {
                    key: key.clone(),
                    entry: KvEntry {
                        value: Bytes::new(),
                        flags: 0,
                        create_index: 0,
                        modify_index: 0,
                        lock_index: 0,
                        session: None,
                    },
                    with_value: true,
                });
                results.push(r);
            }
            KvVerb::GetTree => {
                for (k, e) in self.list(key) {
                    results.push(TxnResultEntry {
                        key: k.clone(),
                        entry: e.clone(),
                        with_value: true,
                    });
                }
            }
            KvVerb::CheckIndex => {
                let e = self
                    .entries
                    .get(key)
                    .ok_or_else(|| format!("key {key:?} doesn't exist"))?;
                if e.modify_index != op.index {
                    return Err(format!(
                        "current modify index {} != {}",
                        e.modify_index, op.index
                    ));
                }
                results.extend(self.result(key, false));
            }
            KvVerb::CheckSession => {
                let current = self
                    .entries
                    .get(key)
                    .and_then(|e| e.session.as_deref())
                    .unwrap_or("");
                if current != op.session {
                    return Err(format!(
                        "failed session check for key {key:?}, current session {current:?} != {:?}",
                        op.session
                    ));
                }
                results.extend(self.result(key, false));
            }
            KvVerb::CheckNotExists => {
                if self.entries.contains_key(key) {
                    return Err(format!("key {key:?} exists"));
                }
            }
            _ => return Err(format!("verb {:?} is not a read", op.verb)),
        }
        Ok(())
    }

    fn txn_op(
        &mut self,
        index: u64,
        op: &TxnOp,
        live: &dyn Fn(&str) -> bool,
        undo: &mut Vec<Undo>,
        results: &mut Vec<TxnResultEntry>,
        touched: &mut Vec<String>,
    ) -> Result<(), String> {
        let key = &op.key;
        match op.verb {
            KvVerb::Set => {
                self.set(
                    index,
                    key,
                    Bytes::copy_from_slice(&op.value),
                    op.flags,
                    Some(undo),
                );
                touched.push(key.clone());
                results.extend(self.result(key, false));
            }
            KvVerb::Cas => {
                if !self.cas_ok(key, op.index) {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                self.set(
                    index,
                    key,
                    Bytes::copy_from_slice(&op.value),
                    op.flags,
                    Some(undo),
                );
                touched.push(key.clone());
                results.extend(self.result(key, false));
            }
            KvVerb::Lock => {
                let locked = self.lock(
                    index,
                    key,
                    &op.value,
                    op.flags,
                    &op.session,
                    live,
                    Some(undo),
                )?;
                if !locked {
                    return Err(format!("failed to lock key {key:?}, lock is already held"));
                }
                touched.push(key.clone());
                results.extend(self.result(key, false));
            }
            KvVerb::Unlock => {
                let unlocked =
                    self.unlock(index, key, &op.value, op.flags, &op.session, Some(undo))?;
                if !unlocked {
                    return Err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ));
                }
                touched.push(key.clone());
                results.extend(self.result(key, false));
            }
            KvVerb::Delete => {
                if self.delete(index, key, Some(undo)) {
                    touched.push(key.clone());
                }
            }
            KvVerb::DeleteTree => self.delete_tree(index, key, touched, Some(undo)),
            KvVerb::DeleteCas => {
                match self.entries.get(key) {
                    Some(e) if e.modify_index == op.index => {}
                    _ => return Err(format!("failed to delete key {key:?}, index is stale")),
                }
                self.delete(index, key, Some(undo));
                touched.push(key.clone());
            }
            _ => self.txn_read(op, results)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(t: &mut KvTable, i: u64, k: &str, v: &str, cas: Option<u64>) -> KvOutcome {
        t.apply(
            i,
            &KvCommand::Set {
                key: k.into(),
                value: v.as_bytes().to_vec(),
                flags: 0,
                cas,
            },
            &no_sessions,
            &mut vec![],
        )
    }

    fn no_sessions(_: &str) -> bool {
        false
    }

    /// CAS follows Consul: 0 means create-only, N must match ModifyIndex.
    #[test]
    fn cas_rules() {
        let mut t = KvTable::default();
        assert_eq!(set(&mut t, 5, "a", "1", Some(0)), KvOutcome::Bool(true));
        assert_eq!(set(&mut t, 6, "a", "2", Some(0)), KvOutcome::Bool(false));
        assert_eq!(set(&mut t, 7, "a", "2", Some(4)), KvOutcome::Bool(false));
        assert_eq!(set(&mut t, 8, "a", "2", Some(5)), KvOutcome::Bool(true));
        let e = t.get("a").unwrap();
        assert_eq!((e.create_index, e.modify_index), (5, 8));
        assert_eq!(&e.value[..], b"2");
    }

    /// Deleting under a prefix advances the prefix index (tombstones).
    #[test]
    fn delete_advances_prefix_index() {
        let mut t = KvTable::default();
        set(&mut t, 3, "app/a", "1", None);
        set(&mut t, 4, "app/b", "1", None);
        set(&mut t, 5, "web/a", "1", None);
        assert_eq!(t.prefix_index("app/"), 4);
        let mut changed = vec![];
        t.apply(
            9,
            &KvCommand::Delete {
                key: "app/a".into(),
                recurse: false,
                cas: None,
            },
            &no_sessions,
            &mut changed,
        );
        assert_eq!(changed, vec!["app/a".to_string()]);
        assert_eq!(t.prefix_index("app/"), 9);
        assert_eq!(t.prefix_index("web/"), 5);
        assert_eq!(t.key_index("app/a"), 9);
        assert_eq!(t.key_index("never"), 1);
        assert_eq!(t.prefix_index("nothing/"), 1);
    }

    /// Keys collapse at the separator, as `?keys&separator=/` does.
    #[test]
    fn keys_with_separator() {
        let mut t = KvTable::default();
        for (i, k) in ["web/a", "web/sub/x", "web/sub/y", "web/z", "webby"]
            .iter()
            .enumerate()
        {
            set(&mut t, i as u64 + 1, k, "", None);
        }
        assert_eq!(t.keys("web/", "/"), vec!["web/a", "web/sub/", "web/z"]);
        assert_eq!(t.keys("web", "/"), vec!["web/", "webby"]);
        assert_eq!(t.keys("web/", "").len(), 4);
    }

    /// A failing op rolls back everything before it.
    #[test]
    fn txn_rolls_back() {
        let mut t = KvTable::default();
        set(&mut t, 2, "k", "old", None);
        let op = |verb, key: &str, index| TxnOp {
            verb,
            key: key.into(),
            value: b"new".to_vec(),
            flags: 0,
            index,
            session: String::new(),
        };
        let ops = vec![
            op(KvVerb::Set, "k", 0),
            op(KvVerb::Set, "fresh", 0),
            op(KvVerb::Delete, "k", 0),
            op(KvVerb::CheckIndex, "k", 99),
        ];
        let mut changed = vec![];
        let out = t.apply(10, &KvCommand::Txn(ops), &no_sessions, &mut changed);
        assert!(matches!(out, KvOutcome::Txn(TxnOutcome::RolledBack(ref e)) if e[0].op_index == 3));
        assert!(changed.is_empty());
        assert_eq!(&t.get("k").unwrap().value[..], b"old");
        assert!(t.get("fresh").is_none());
        assert_eq!(t.table_index(), 2);
        assert_eq!(t.key_index("k"), 2);
    }

    fn lock_cmd(acquire: bool, k: &str, v: &str, session: &str) -> KvCommand {
        let (key, value, session) = (k.to_string(), v.as_bytes().to_vec(), session.to_string());
        if acquire {
            KvCommand::Acquire {
                key,
                value,
                flags: 0,
                session,
            }
        } else {
            KvCommand::Release {
                key,
                value,
                flags: 0,
                session,
            }
        }
    }

    /// Consul's lock rules: a new holder raises LockIndex, the holder
    /// re-acquiring only updates the value, others are refused, release
    /// needs the holder, unknown sessions are errors.
    #[test]
    fn acquire_and_release() {
        let live = |s: &str| s == "s1" || s == "s2";
        let mut t = KvTable::default();
        let mut ch = vec![];
        let r = t.apply(3, &lock_cmd(true, "l", "a", "s1"), &live, &mut ch);
        assert_eq!(r, KvOutcome::Bool(true));
        let e = t.get("l").unwrap().clone();
        assert_eq!((e.lock_index, e.session.as_deref()), (1, Some("s1")));
        assert_eq!((e.create_index, e.modify_index), (3, 3));
        let r = t.apply(4, &lock_cmd(true, "l", "b", "s1"), &live, &mut ch);
        assert_eq!(r, KvOutcome::Bool(true));
        let e = t.get("l").unwrap().clone();
        assert_eq!(
            (e.lock_index, &e.value[..], e.modify_index),
            (1, &b"b"[..], 4)
        );
        assert_eq!(
            t.apply(5, &lock_cmd(true, "l", "c", "s2"), &live, &mut ch),
            KvOutcome::Bool(false)
        );
        assert_eq!(
            t.apply(5, &lock_cmd(false, "l", "c", "s2"), &live, &mut ch),
            KvOutcome::Bool(false)
        );
        assert!(matches!(
            t.apply(5, &lock_cmd(true, "l", "c", "nope"), &live, &mut ch),
            KvOutcome::Error(e) if e.contains("invalid session")
        ));
        assert_eq!(t.get("l").unwrap().modify_index, 4);
        assert_eq!(
            t.apply(6, &lock_cmd(false, "l", "d", "s1"), &live, &mut ch),
            KvOutcome::Bool(true)
        );
        let e = t.get("l").unwrap().clone();
        assert_eq!((e.lock_index, e.session.as_deref()), (1, None));
        assert_eq!(
            t.apply(7, &lock_cmd(true, "l", "e", "s2"), &live, &mut ch),
            KvOutcome::Bool(true)
        );
        assert_eq!(t.get("l").unwrap().lock_index, 2);
        // a plain write keeps the lock
        set(&mut t, 8, "l", "plain", None);
        assert_eq!(t.get("l").unwrap().session.as_deref(), Some("s2"));
    }

    /// Invalidation releases (value kept, index moves) or deletes the locks.
    #[test]
    fn dropping_session_locks() {
        let live = |_: &str| true;
        let mut t = KvTable::default();
        let mut ch = vec![];
        t.apply(2, &lock_cmd(true, "a", "1", "s"), &live, &mut ch);
        t.apply(3, &lock_cmd(true, "b", "2", "s"), &live, &mut ch);
        t.apply(4, &lock_cmd(true, "c", "3", "other"), &live, &mut ch);
        let mut ch = vec![];
        assert_eq!(t.drop_session_locks(9, "s", false, &mut ch), vec!["a", "b"]);
        let a = t.get("a").unwrap();
        assert_eq!(
            (a.session.as_deref(), a.modify_index, &a.value[..]),
            (None, 9, &b"1"[..])
        );
        assert_eq!(t.get("c").unwrap().session.as_deref(), Some("other"));
        t.drop_session_locks(10, "other", true, &mut ch);
        assert!(t.get("c").is_none());
        assert_eq!(t.key_index("c"), 10);
    }

    /// Txn lock/unlock follow the same rules and roll back as a whole.
    #[test]
    fn txn_lock_unlock() {
        let live = |s: &str| s == "s1";
        let mut t = KvTable::default();
        let op = |verb, key: &str, session: &str| TxnOp {
            verb,
            key: key.into(),
            value: b"v".to_vec(),
            flags: 0,
            index: 0,
            session: session.into(),
        };
        let mut ch = vec![];
        let out = t.apply(
            2,
            &KvCommand::Txn(vec![
                op(KvVerb::Lock, "a", "s1"),
                op(KvVerb::Lock, "b", "s1"),
            ]),
            &live,
            &mut ch,
        );
        assert!(matches!(out, KvOutcome::Txn(TxnOutcome::Committed(ref r)) if r.len() == 2));
        let out = t.apply(
            3,
            &KvCommand::Txn(vec![
                op(KvVerb::Unlock, "a", "s1"),
                op(KvVerb::Lock, "c", "ghost"),
            ]),
            &live,
            &mut ch,
        );
        assert!(matches!(out, KvOutcome::Txn(TxnOutcome::RolledBack(ref e)) if e[0].op_index == 1));
        assert_eq!(t.get("a").unwrap().session.as_deref(), Some("s1"));
        let out = t.apply(
            4,
            &KvCommand::Txn(vec![op(KvVerb::Unlock, "a", "s2")]),
            &live,
            &mut ch,
        );
        assert!(
            matches!(out, KvOutcome::Txn(TxnOutcome::RolledBack(ref e)) if e[0].what.contains("isn't held"))
        );
        let ok = t.read_txn(&[op(KvVerb::CheckSession, "b", "s1")]);
        assert!(matches!(ok, TxnOutcome::Committed(_)));
    }
}
