//! User events: `PUT /v1/event/fire`, `GET /v1/event/list`, `tribune event`
//! and watches of type `event`.
//!
//! Events are not replicated through raft: Consul spreads them by gossip and
//! each agent keeps the last [`BUFFER`] that pass its own filters (node name,
//! service name/ID and tag regexps). Two entry points connect this module to
//! the cluster:
//! - [`Events::deliver`]: an event arriving from anywhere (gossip, or this
//!   agent's own fire) — deduplicated by ID, filtered, buffered, watchers woken.
//! - [`Broadcast`], set with [`Events::set_broadcast`]: where
//!   [`Events::fire`] sends a new event besides delivering it here. Unset
//!   (a lone agent) events stay local.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::local::LocalAgent;

/// Events kept per agent (Consul's buffer size).
pub const BUFFER: usize = 256;
/// Largest event: name + payload + filters, in bytes (Consul's default
/// `user_event_size_limit`; events travel in single gossip packets).
pub const SIZE_LIMIT: usize = 512;
/// Newest protocol version understood.
pub const VERSION: u32 = 1;
/// Event IDs remembered for deduplication (gossip delivers repeatedly).
const SEEN: usize = 4 * BUFFER;
/// The user event that carries a remote exec job ([`crate::remote_exec`]).
pub const REMOTE_EXEC_EVENT: &str = "_rexec";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u32,
    /// Lamport time: orders events across agents.
    pub ltime: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("User event missing name")]
    MissingName,
    #[error("Cannot provide tag filter without service filter")]
    TagWithoutService,
    #[error("Invalid {what} filter: {err}")]
    BadFilter { what: &'static str, err: String },
    #[error(
        "User event exceeds the size limit: {0} bytes (name, payload and filters) > {SIZE_LIMIT}"
    )]
    TooLarge(usize),
    #[error("broadcasting the event: {0}")]
    Broadcast(String),
}

/// Sends a fired event to the other agents (gossip). Called once per
/// [`Events::fire`], after the event was delivered locally.
pub trait Broadcast: Send + Sync {
    fn broadcast(&self, event: &UserEvent) -> Result<(), EventError>;
}

/// Receives the `_rexec` events that pass this agent's filters (they are
/// jobs for `tribune exec`, never buffered).
pub type RemoteExecHook = Arc<dyn Fn(UserEvent) + Send + Sync>;

#[derive(Default)]
struct Inner {
    buf: VecDeque<UserEvent>,
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
    /// Next Lamport time to hand out.
    clock: u64,
}

/// This agent's event buffer.
pub struct Events {
    node: String,
    local: Arc<LocalAgent>,
    inner: Mutex<Inner>,
    notify: Notify,
    broadcast: RwLock<Option<Arc<dyn Broadcast>>>,
    /// Unset: remote execution is disabled here.
    remote_exec: RwLock<Option<RemoteExecHook>>,
}

fn compile(what: &'static str, re: &str) -> Result<Option<Regex>, EventError> {
    if re.is_empty() {
        return Ok(None);
    }
    Regex::new(re).map(Some).map_err(|e| EventError::BadFilter {
        what,
        err: e.to_string(),
    })
}

/// Consul's blocking index for events: the last event's UUID folded to 64
/// bits (high half XOR low half). Never 0.
pub fn event_index(id: &str) -> u64 {
    let folded = match uuid::Uuid::parse_str(id) {
        Ok(u) => {
            let b = u.as_bytes();
            let hi = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
            let lo = u64::from_be_bytes(b[8..].try_into().unwrap_or([0; 8]));
            hi ^ lo
        }
        // Not a UUID (a foreign sender): any stable value will do (FNV-1a).
        Err(_) => id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }),
    };
    folded.max(1)
}

/// The index of a list answer: its last event's, or 1 when empty.
pub fn list_index(events: &[UserEvent]) -> u64 {
    events.last().map_or(1, |e| event_index(&e.id))
}

impl Events {
    pub fn new(node: String, local: Arc<LocalAgent>) -> Arc<Self> {
        Arc::new(Self {
            node,
            local,
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            broadcast: RwLock::new(None),
            remote_exec: RwLock::new(None),
        })
    }

    /// Route fired events to the rest of the cluster as well.
    pub fn set_broadcast(&self, b: Arc<dyn Broadcast>) {
        *self.broadcast.write() = Some(b);
    }

    /// Run `tribune exec` jobs through `hook` (remote execution enabled).
    pub fn set_remote_exec(&self, hook: RemoteExecHook) {
        *self.remote_exec.write() = Some(hook);
    }

    /// Validate and fire a new event: deliver it here, then broadcast it.
    pub fn fire(
        &self,
        name: &str,
        payload: Vec<u8>,
        node_filter: &str,
        service_filter: &str,
        tag_filter: &str,
    ) -> Result<UserEvent, EventError> {
        if name.is_empty() {
            return Err(EventError::MissingName);
        }
        if !tag_filter.is_empty() && service_filter.is_empty() {
            return Err(EventError::TagWithoutService);
        }
        compile("node", node_filter)?;
        compile("service", service_filter)?;
        compile("tag", tag_filter)?;
        let size = name.len()
            + payload.len()
            + node_filter.len()
            + service_filter.len()
            + tag_filter.len();
        if size > SIZE_LIMIT {
            return Err(EventError::TooLarge(size));
        }
        let ev = {
            let mut inner = self.inner.lock();
            let ltime = inner.clock;
            inner.clock += 1;
            UserEvent {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.to_string(),
                payload,
                node_filter: node_filter.to_string(),
                service_filter: service_filter.to_string(),
                tag_filter: tag_filter.to_string(),
                version: VERSION,
                ltime,
            }
        };
        self.deliver(ev.clone());
        let hook = self.broadcast.read().clone();
        if let Some(b) = hook {
            b.broadcast(&ev)?;
        }
        Ok(ev)
    }

    /// An event arriving from anywhere. Returns whether it was buffered
    /// (false: seen before, unknown version, or filtered out here).
    pub fn deliver(&self, ev: UserEvent) -> bool {
        {
            let mut inner = self.inner.lock();
            inner.clock = inner.clock.max(ev.ltime.saturating_add(1));
            if !inner.seen_set.insert(ev.id.clone()) {
                return false;
            }
            inner.seen.push_back(ev.id.clone());
            if inner.seen.len() > SEEN {
                if let Some(old) = inner.seen.pop_front() {
                    inner.seen_set.remove(&old);
                }
            }
        }
        if !self.accepts(&ev) {
            tracing::debug!(event = %ev.name, id = %ev.id, "event filtered out on this agent");
            return false;
        }
        if ev.name == REMOTE_EXEC_EVENT {
            // A job, not an event to keep (Consul's ingestUserEvent).
            let hook = self.remote_exec.read().clone();
            match hook {
                Some(h) => h(ev),
                None => tracing::info!(
                    event_name = %ev.name,
                    event_id = %ev.id,
                    "ignoring remote exec event, disabled."
                ),
            }
            return false;
        }
        tracing::debug!(event_name = %ev.name, event_id = %ev.id, "new event");
        {
            let mut inner = self.inner.lock();
            inner.buf.push_back(ev);
            if inner.buf.len() > BUFFER {
                inner.buf.pop_front();
            }
        }
        self.notify.notify_waiters();
        true
    }

    /// Whether this agent matches the event's filters (as Consul's
    /// shouldProcessUserEvent: unanchored regexps; a service matches by name
    /// or ID, and with a tag filter only if one of its tags matches too).
    fn accepts(&self, ev: &UserEvent) -> bool {
        if ev.version > VERSION {
            tracing::warn!(
                version = ev.version,
                "event of a newer protocol version ignored"
            );
            return false;
        }
        // Filters were validated by the sender; a bad one from elsewhere rejects.
        let (Ok(node), Ok(svc), Ok(tag)) = (
            compile("node", &ev.node_filter),
            compile("service", &ev.service_filter),
            compile("tag", &ev.tag_filter),
        ) else {
            return false;
        };
        if let Some(re) = node {
            if !re.is_match(&self.node) {
                return false;
            }
        }
        if let Some(re) = svc {
            let found = self.local.services().iter().any(|s| {
                (re.is_match(&s.name) || re.is_match(&s.id))
                    && tag
                        .as_ref()
                        .is_none_or(|t| s.tags.iter().any(|x| t.is_match(x)))
            });
            if !found {
                return false;
            }
        }
        true
    }

    /// Buffered events, oldest first, optionally only those named `name`.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.inner
            .lock()
            .buf
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }

    /// Wakes blocking list queries on every buffered event. Create the
    /// future and `enable()` it before reading, so no event slips between.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{ServiceDef, Source};
    use tokio_util::sync::CancellationToken;

    fn agent_with_web() -> Arc<LocalAgent> {
        let local = LocalAgent::new(false, std::time::Duration::ZERO, CancellationToken::new());
        let def = crate::local::defs::parse_service(
            &serde_json::json!({"Name": "web", "ID": "web-1", "Tags": ["blue", "v2"]}),
            false,
        )
        .unwrap();
        let def: ServiceDef = def;
        local.add_service(def, Source::Http, false);
        local
    }

    /// Consul's index is the UUID's halves XORed.
    #[test]
    fn index_from_uuid() {
        assert_eq!(event_index("00000000-0000-0001-0000-000000000003"), 1 ^ 3);
        assert_eq!(event_index("00000000-0000-0000-0000-000000000000"), 1);
        assert!(event_index("not-a-uuid") > 0);
        assert_eq!(list_index(&[]), 1);
    }

    /// Node, service and tag filters apply on the receiving agent.
    #[tokio::test]
    async fn filters_on_receipt() {
        let ev = Events::new("node-a".into(), agent_with_web());
        let fire = |n: &str, s: &str, t: &str| ev.fire("deploy", b"x".to_vec(), n, s, t).unwrap();
        fire("", "", "");
        fire("^node-", "", "");
        fire("other", "", "");
        fire("", "^web$", "");
        fire("", "web-1", "blue");
        fire("", "web", "green");
        fire("", "db", "");
        let got: Vec<(String, String, String)> = ev
            .list(None)
            .into_iter()
            .map(|e| (e.node_filter, e.service_filter, e.tag_filter))
            .collect();
        let want = [
            ("", "", ""),
            ("^node-", "", ""),
            ("", "^web$", ""),
            ("", "web-1", "blue"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str()), w);
        }
        // LTimes grow; redelivery is ignored
        let all = ev.list(None);
        assert!(all.windows(2).all(|w| w[0].ltime < w[1].ltime));
        assert!(!ev.deliver(all[0].clone()));
        assert_eq!(ev.list(Some("deploy")).len(), 4);
        assert!(ev.list(Some("other")).is_empty());
    }

    /// Bad input is refused before anything is buffered.
    #[tokio::test]
    async fn fire_validates() {
        let ev = Events::new("n".into(), agent_with_web());
        assert!(matches!(
            ev.fire("", vec![], "", "", ""),
            Err(EventError::MissingName)
        ));
        assert!(matches!(
            ev.fire("x", vec![], "", "", "t"),
            Err(EventError::TagWithoutService)
        ));
        assert!(matches!(
            ev.fire("x", vec![], "(", "", ""),
            Err(EventError::BadFilter { what: "node", .. })
        ));
        assert!(matches!(
            ev.fire("x", vec![0; SIZE_LIMIT], "", "", ""),
            Err(EventError::TooLarge(_))
        ));
        assert!(ev.list(None).is_empty());
    }

    /// The buffer keeps the newest 256; a broadcast hook sees every fire.
    #[tokio::test]
    async fn ring_and_hook() {
        struct Count(Mutex<usize>);
        impl Broadcast for Count {
            fn broadcast(&self, _: &UserEvent) -> Result<(), EventError> {
                *self.0.lock() += 1;
                Ok(())
            }
        }
        let ev = Events::new("n".into(), agent_with_web());
        let hook = Arc::new(Count(Mutex::new(0)));
        ev.set_broadcast(hook.clone());
        for i in 0..300 {
            ev.fire(&format!("e{i}"), vec![], "", "", "").unwrap();
        }
        let all = ev.list(None);
        assert_eq!(all.len(), BUFFER);
        assert_eq!(all[0].name, "e44");
        assert_eq!(*hook.0.lock(), 300);
        // an event from elsewhere advances the clock
        let mut remote = all[0].clone();
        remote.id = uuid::Uuid::new_v4().to_string();
        remote.ltime = 10_000;
        assert!(ev.deliver(remote));
        assert_eq!(ev.fire("after", vec![], "", "", "").unwrap().ltime, 10_001);
    }
}
