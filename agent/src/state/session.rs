//! Sessions: the replicated table, its commands, and invalidation.
//!
//! A session is invalidated when it is destroyed, when the leader expires its
//! TTL, when a check it is linked to goes critical or disappears, or when its
//! node is deregistered — all decided inside the state machine, so every
//! server invalidates at the same raft index. Invalidation releases (or, with
//! behavior `delete`, deletes) the keys the session locked and starts their
//! lock-delay.
//!
//! Two pieces of soft state live beside the replicated table, on every
//! server, and are neither replicated nor snapshotted: when each session was
//! last created or renewed (the leader's TTL clock, see
//! [`crate::session_ttl`]) and the lock-delay deadlines. Both are recorded
//! with the local clock at apply time; a restart or a snapshot install only
//! makes them start later, never earlier.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, Health};
use super::kv::KvTable;
use super::watch::Changes;

/// Watch target of every session read (`/v1/session/*`).
pub const SESSIONS: &str = "tbl:sessions";
/// Consul's bounds on a session TTL.
pub const TTL_MIN: Duration = Duration::from_secs(10);
pub const TTL_MAX: Duration = Duration::from_secs(86_400);
/// A session expires after TTL × this without a renewal (Consul's grace).
pub const TTL_MULTIPLIER: u32 = 2;
/// Lock-delays longer than this are cut to it (Consul's MaxLockDelay).
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// The node check a session links to by default.
pub use super::catalog::SERF_CHECK;

/// What invalidating a session does to its locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    Release,
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRec {
    pub id: String,
    pub name: String,
    pub node: String,
    pub lock_delay: Duration,
    pub behavior: Behavior,
    /// As the client gave it (`"30s"`); empty when the session has no TTL.
    pub ttl: String,
    /// `ttl` parsed; zero = no TTL.
    pub ttl_duration: Duration,
    /// Node-level checks linked (the legacy `Checks` field is merged here).
    pub node_checks: Vec<String>,
    pub service_checks: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
    /// Raft index of the create or the last renew. A TTL expiry names the
    /// one it saw, so a renew committed first wins the race.
    pub renew_index: u64,
}

impl SessionRec {
    /// Every check the session is linked to (all are checks of its node).
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.node_checks
            .iter()
            .chain(&self.service_checks)
            .map(String::as_str)
    }
}

/// A replicated session write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SessionCommand {
    /// The ID and every field are chosen and validated by the proposer; the
    /// state machine checks what depends on state (node, checks).
    Create(Box<SessionRec>),
    Renew {
        id: String,
    },
    Destroy {
        id: String,
    },
    /// TTL expiry decided by the leader; a no-op if the session was renewed
    /// since (`renew_index` differs) or is gone.
    Expire {
        id: String,
        renew_index: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionOutcome {
    Ok,
    /// Renew: the session as it stands.
    Session(Box<SessionRec>),
    NotFound,
    /// Refused (missing node, missing or critical check); nothing changed.
    Error(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionTable {
    sessions: BTreeMap<String, SessionRec>,
    /// Highest raft index that created or removed a session.
    index: u64,
    #[serde(skip)]
    renewed: HashMap<String, Instant>,
    #[serde(skip)]
    lock_delays: HashMap<String, Instant>,
}

fn is_critical(h: Health) -> bool {
    matches!(h, Health::Critical | Health::Maintenance)
}

impl SessionTable {
    /// A table from its stored parts (snapshot load). Every session's TTL
    /// clock starts now: a loaded session is never expired early.
    pub(crate) fn from_parts(sessions: BTreeMap<String, SessionRec>, index: u64) -> Self {
        let now = Instant::now();
        let renewed = sessions.keys().map(|id| (id.clone(), now)).collect();
        Self {
            sessions,
            index,
            renewed,
            lock_delays: HashMap::new(),
        }
    }

    /// Highest raft index that created or removed a session (0 if none).
    pub(crate) fn raw_index(&self) -> u64 {
        self.index
    }

    // ---- reads ----

    pub fn get(&self, id: &str) -> Option<&SessionRec> {
        self.sessions.get(id)
    }
    pub fn exists(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }
    pub fn list(&self) -> impl Iterator<Item = &SessionRec> {
        self.sessions.values()
    }
    pub fn on_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a SessionRec> + 'a {
        self.sessions.values().filter(move |s| s.node == node)
    }
    pub fn len(&self) -> usize {
        self.sessions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
    /// Blocking index of every session read (never 0).
    pub fn table_index(&self) -> u64 {
        self.index.max(1)
    }

    /// Whether `key` is inside the lock-delay of an invalidated session.
    pub fn lock_delayed(&self, key: &str, now: Instant) -> bool {
        self.lock_delays.get(key).is_some_and(|until| *until > now)
    }

    /// TTL sessions due to expire on a leader that took office at
    /// `leader_since` (timers restart there: never expire early), and the
    /// soonest deadline among the rest.
    pub fn ttl_scan(
        &self,
        leader_since: Instant,
        now: Instant,
    ) -> (Vec<(String, u64)>, Option<Instant>) {
        let mut due = Vec::new();
        let mut soonest: Option<Instant> = None;
        for s in self.sessions.values() {
            if s.ttl_duration.is_zero() {
                continue;
            }
            let base = self
                .renewed
                .get(&s.id)
                .map_or(leader_since, |r| (*r).max(leader_since));
            let deadline = base + s.ttl_duration * TTL_MULTIPLIER;
            if deadline <= now {
                due.push((s.id.clone(), s.renew_index));
            } else {
                soonest = Some(soonest.map_or(deadline, |d| d.min(deadline)));
            }
        }
        (due, soonest)
    }

    // ---- writes ----

    pub fn apply(
        &mut self,
        index: u64,
        cmd: &SessionCommand,
        catalog: &Catalog,
        kv: &mut KvTable,
        changed: &mut Changes,
    ) -> SessionOutcome {
        match cmd {
            SessionCommand::Create(s) => self.create(index, s, catalog, changed),
            SessionCommand::Renew { id } => match self.sessions.get_mut(id) {
                None => SessionOutcome::NotFound,
                Some(s) => {
                    s.renew_index = index;
                    self.renewed.insert(id.clone(), Instant::now());
                    SessionOutcome::Session(Box::new(s.clone()))
                }
            },
            SessionCommand::Destroy { id } => {
                self.invalidate(index, id, kv, changed);
                SessionOutcome::Ok
            }
            SessionCommand::Expire { id, renew_index } => {
                if self.sessions.get(id).map(|s| s.renew_index) == Some(*renew_index) {
                    self.invalidate(index, id, kv, changed);
                }
                SessionOutcome::Ok
            }
        }
    }

    fn create(
        &mut self,
        index: u64,
        s: &SessionRec,
        catalog: &Catalog,
        changed: &mut Changes,
    ) -> SessionOutcome {
        if self.sessions.contains_key(&s.id) {
            return SessionOutcome::Error(format!("Session ID {:?} already exists", s.id));
        }
        if catalog.node(&s.node).is_none() {
            return SessionOutcome::Error("Missing node registration".into());
        }
        for c in s.check_ids() {
            match catalog.check(&s.node, c) {
                None => return SessionOutcome::Error(format!("Missing check '{c}' registration")),
                Some(rec) if is_critical(rec.status) => {
                    return SessionOutcome::Error(format!("Check '{c}' is in critical state"))
                }
                Some(_) => {}
            }
        }
        let rec = SessionRec {
            create_index: index,
            modify_index: index,
            renew_index: index,
            ..s.clone()
        };
        self.renewed.insert(rec.id.clone(), Instant::now());
        self.sessions.insert(rec.id.clone(), rec);
        self.index = self.index.max(index);
        changed.named.push(SESSIONS.into());
        SessionOutcome::Ok
    }

    /// Remove a session and release or delete its locks, starting their
    /// lock-delay. Returns whether the session existed.
    pub fn invalidate(
        &mut self,
        index: u64,
        id: &str,
        kv: &mut KvTable,
        changed: &mut Changes,
    ) -> bool {
        let Some(s) = self.sessions.remove(id) else {
            return false;
        };
        self.renewed.remove(id);
        self.index = self.index.max(index);
        changed.named.push(SESSIONS.into());
        let keys =
            kv.drop_session_locks(index, id, s.behavior == Behavior::Delete, &mut changed.kv);
        let delay = s.lock_delay.min(MAX_LOCK_DELAY);
        if !delay.is_zero() && !keys.is_empty() {
            let now = Instant::now();
            self.lock_delays.retain(|_, until| *until > now);
            for k in keys {
                self.lock_delays.insert(k, now + delay);
            }
        }
        tracing::debug!(session = %id, node = %s.node, "session invalidated");
        true
    }

    /// After a catalog write on `node`: invalidate the node's sessions whose
    /// node is gone or whose linked checks are critical or gone (node failure
    /// reaches sessions this way: `serfHealth` critical, or deregistration).
    pub fn catalog_changed(
        &mut self,
        index: u64,
        node: &str,
        catalog: &Catalog,
        kv: &mut KvTable,
        changed: &mut Changes,
    ) {
        if self.sessions.is_empty() {
            return;
        }
        let node_gone = catalog.node(node).is_none();
        let doomed: Vec<String> = self
            .on_node(node)
            .filter(|s| {
                node_gone
                    || s.check_ids().any(|c| match catalog.check(node, c) {
                        None => true,
                        Some(rec) => is_critical(rec.status),
                    })
            })
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            self.invalidate(index, &id, kv, changed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{CatalogCommand, CheckRec, NodeRec, RegisterReq};
    use crate::state::kv::{KvCommand, KvOutcome};

    fn check(id: &str, status: Health) -> CheckRec {
        CheckRec {
            node: "n1".into(),
            check_id: id.into(),
            name: id.into(),
            status,
            ..Default::default()
        }
    }

    fn catalog_with(checks: Vec<CheckRec>) -> Catalog {
        let mut c = Catalog::default();
        c.apply(
            1,
            &CatalogCommand::Register(Box::new(RegisterReq {
                node: NodeRec {
                    node: "n1".into(),
                    ..Default::default()
                },
                skip_node_update: false,
                service: None,
                checks,
            })),
            &mut vec![],
        );
        c
    }

    fn session(id: &str, checks: &[&str], behavior: Behavior, delay: u64) -> SessionRec {
        SessionRec {
            id: id.into(),
            name: String::new(),
            node: "n1".into(),
            lock_delay: Duration::from_secs(delay),
            behavior,
            ttl: String::new(),
            ttl_duration: Duration::ZERO,
            node_checks: checks.iter().map(|c| c.to_string()).collect(),
            service_checks: vec![],
            create_index: 0,
            modify_index: 0,
            renew_index: 0,
        }
    }

    fn acquire(kv: &mut KvTable, t: &SessionTable, i: u64, key: &str, s: &str) -> KvOutcome {
        kv.apply(
            i,
            &KvCommand::Acquire {
                key: key.into(),
                value: b"v".to_vec(),
                flags: 0,
                session: s.into(),
            },
            &|id| t.exists(id),
            &mut vec![],
        )
    }

    /// Creation needs the node and linked checks registered and not critical.
    #[test]
    fn create_validates_against_catalog() {
        let cat = catalog_with(vec![
            check(SERF_CHECK, Health::Passing),
            check("bad", Health::Critical),
        ]);
        let mut t = SessionTable::default();
        let mut kv = KvTable::default();
        let mut ch = Changes::default();
        let mut create = |t: &mut SessionTable, s: SessionRec| {
            t.apply(
                5,
                &SessionCommand::Create(Box::new(s)),
                &cat,
                &mut kv,
                &mut ch,
            )
        };
        let out = create(&mut t, session("a", &["bad"], Behavior::Release, 0));
        assert_eq!(
            out,
            SessionOutcome::Error("Check 'bad' is in critical state".into())
        );
        let out = create(&mut t, session("a", &["nope"], Behavior::Release, 0));
        assert_eq!(
            out,
            SessionOutcome::Error("Missing check 'nope' registration".into())
        );
        let mut other = session("a", &[], Behavior::Release, 0);
        other.node = "n2".into();
        assert_eq!(
            create(&mut t, other),
            SessionOutcome::Error("Missing node registration".into())
        );
        assert!(t.is_empty());
        assert_eq!(t.table_index(), 1);
        let out = create(&mut t, session("a", &[SERF_CHECK], Behavior::Release, 0));
        assert_eq!(out, SessionOutcome::Ok);
        assert_eq!(t.get("a").unwrap().create_index, 5);
        assert_eq!(t.table_index(), 5);
    }

    /// A linked check going critical invalidates the session and releases
    /// its locks with lock-delay; behavior delete deletes them.
    #[test]
    fn critical_check_invalidates() {
        let mut cat = catalog_with(vec![
            check(SERF_CHECK, Health::Passing),
            check("web", Health::Passing),
        ]);
        let mut t = SessionTable::default();
        let mut kv = KvTable::default();
        let mut ch = Changes::default();
        for s in [
            session("rel", &["web"], Behavior::Release, 10),
            session("del", &["web"], Behavior::Delete, 0),
            session("other", &[SERF_CHECK], Behavior::Release, 0),
        ] {
            t.apply(
                2,
                &SessionCommand::Create(Box::new(s)),
                &cat,
                &mut kv,
                &mut ch,
            );
        }
        assert_eq!(
            acquire(&mut kv, &t, 3, "k/rel", "rel"),
            KvOutcome::Bool(true)
        );
        assert_eq!(
            acquire(&mut kv, &t, 3, "k/del", "del"),
            KvOutcome::Bool(true)
        );
        cat.apply(
            4,
            &CatalogCommand::UpdateCheck {
                node: "n1".into(),
                check_id: "web".into(),
                status: Health::Critical,
                output: String::new(),
            },
            &mut vec![],
        );
        let mut ch = Changes::default();
        t.catalog_changed(4, "n1", &cat, &mut kv, &mut ch);
        assert!(!t.exists("rel") && !t.exists("del") && t.exists("other"));
        assert!(ch.kv.contains(&"k/rel".to_string()));
        let e = kv.get("k/rel").unwrap();
        assert_eq!((e.session.as_deref(), e.modify_index), (None, 4));
        assert!(kv.get("k/del").is_none());
        let now = Instant::now();
        assert!(t.lock_delayed("k/rel", now));
        assert!(!t.lock_delayed("k/del", now));
        assert!(!t.lock_delayed("k/rel", now + Duration::from_secs(11)));
        // deregistering the node takes the rest
        cat.apply(
            5,
            &CatalogCommand::Deregister {
                node: "n1".into(),
                service_id: None,
                check_id: None,
            },
            &mut vec![],
        );
        t.catalog_changed(5, "n1", &cat, &mut kv, &mut ch);
        assert!(t.is_empty());
        assert_eq!(t.table_index(), 5);
    }

    /// Expiry is a no-op once the session was renewed after the leader looked.
    #[test]
    fn expire_loses_to_renew() {
        let cat = catalog_with(vec![check(SERF_CHECK, Health::Passing)]);
        let mut t = SessionTable::default();
        let mut kv = KvTable::default();
        let mut ch = Changes::default();
        let mut s = session("a", &[], Behavior::Release, 0);
        s.ttl = "10s".into();
        s.ttl_duration = Duration::from_secs(10);
        t.apply(
            2,
            &SessionCommand::Create(Box::new(s)),
            &cat,
            &mut kv,
            &mut ch,
        );
        let since = Instant::now();
        let (due, soonest) = t.ttl_scan(since, since);
        assert!(due.is_empty());
        assert!(soonest.unwrap() >= since + Duration::from_secs(20));
        let (due, _) = t.ttl_scan(since, since + Duration::from_secs(21));
        assert_eq!(due, vec![("a".to_string(), 2)]);
        let out = t.apply(
            3,
            &SessionCommand::Renew { id: "a".into() },
            &cat,
            &mut kv,
            &mut ch,
        );
        assert!(matches!(out, SessionOutcome::Session(ref s) if s.renew_index == 3));
        let expire = SessionCommand::Expire {
            id: "a".into(),
            renew_index: 2,
        };
        t.apply(4, &expire, &cat, &mut kv, &mut ch);
        assert!(t.exists("a"));
        let expire = SessionCommand::Expire {
            id: "a".into(),
            renew_index: 3,
        };
        t.apply(5, &expire, &cat, &mut kv, &mut ch);
        assert!(!t.exists("a"));
        let out = t.apply(
            6,
            &SessionCommand::Renew { id: "a".into() },
            &cat,
            &mut kv,
            &mut ch,
        );
        assert_eq!(out, SessionOutcome::NotFound);
    }
}
