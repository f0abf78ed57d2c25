//! Change notification by key and by prefix.
//!
//! A blocking query registers interest in either one exact key or a key prefix.
//! A change to key `K` wakes the exact watchers of `K` and the prefix watchers of
//! every prefix of `K` (including the empty prefix, i.e. the root) — and nobody
//! else, so a write under `app/` never wakes a watcher of `web/`.
//!
//! Entries are reference counted by their guards and removed when the last
//! watcher leaves, so idle keys cost nothing.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What a parked query watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WatchTarget {
    /// Exactly this KV key.
    Key(String),
    /// Every KV key starting with this string (`""` = the whole KV table).
    Prefix(String),
    /// A named non-KV resource: `svc:<name>`, `node:<name>`, `tbl:<table>`.
    Named(String),
}

#[derive(Default)]
struct Slot {
    notify: Arc<Notify>,
    watchers: usize,
}

#[derive(Default)]
struct Maps {
    exact: HashMap<String, Slot>,
    prefix: HashMap<String, Slot>,
    named: HashMap<String, Slot>,
}

impl Maps {
    fn slot_mut(&mut self, target: &WatchTarget) -> Option<&mut Slot> {
        match target {
            WatchTarget::Key(k) => self.exact.get_mut(k),
            WatchTarget::Prefix(p) => self.prefix.get_mut(p),
            WatchTarget::Named(t) => self.named.get_mut(t),
        }
    }
    fn remove(&mut self, target: &WatchTarget) {
        match target {
            WatchTarget::Key(k) => self.exact.remove(k),
            WatchTarget::Prefix(p) => self.prefix.remove(p),
            WatchTarget::Named(t) => self.named.remove(t),
        };
    }
}

/// Registry of parked watchers.
#[derive(Default)]
pub struct Watches {
    maps: Mutex<Maps>,
}

/// Keeps a registration alive; dropping it unregisters.
pub struct WatchGuard {
    watches: Arc<Watches>,
    target: WatchTarget,
    notify: Arc<Notify>,
}

impl WatchGuard {
    /// The notifier to wait on. Create the `Notified` future and `enable()` it
    /// *before* reading state, so a change in between is not lost.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut maps = self.watches.maps.lock();
        if let Some(slot) = maps.slot_mut(&self.target) {
            slot.watchers -= 1;
            if slot.watchers == 0 {
                maps.remove(&self.target);
            }
        }
    }
}

impl Watches {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Register interest in `target`.
    pub fn watch(self: &Arc<Self>, target: WatchTarget) -> WatchGuard {
        let mut maps = self.maps.lock();
        let slot = match &target {
            WatchTarget::Key(k) => maps.exact.entry(k.clone()).or_default(),
            WatchTarget::Prefix(p) => maps.prefix.entry(p.clone()).or_default(),
            WatchTarget::Named(t) => maps.named.entry(t.clone()).or_default(),
        };
        slot.watchers += 1;
        let notify = slot.notify.clone();
        drop(maps);
        WatchGuard {
            watches: self.clone(),
            target,
            notify,
        }
    }

    /// Wake the watchers affected by changes to `keys`.
    pub fn kv_changed<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let maps = self.maps.lock();
        if maps.exact.is_empty() && maps.prefix.is_empty() {
            return;
        }
        for key in keys {
            if let Some(slot) = maps.exact.get(key) {
                slot.notify.notify_waiters();
            }
            if maps.prefix.is_empty() {
                continue;
            }
            // Every prefix of the key, on char boundaries, including "" and the key itself.
            for (i, _) in key.char_indices() {
                if let Some(slot) = maps.prefix.get(&key[..i]) {
                    slot.notify.notify_waiters();
                }
            }
            if let Some(slot) = maps.prefix.get(key) {
                slot.notify.notify_waiters();
            }
        }
    }

    /// Wake the watchers of named resources.
    pub fn named_changed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let maps = self.maps.lock();
        if maps.named.is_empty() {
            return;
        }
        for n in names {
            if let Some(slot) = maps.named.get(n) {
                slot.notify.notify_waiters();
            }
        }
    }

    /// Wake every parked watcher (the whole state was replaced).
    pub fn wake_all(&self) {
        let maps = self.maps.lock();
        for slot in maps
            .exact
            .values()
            .chain(maps.prefix.values())
            .chain(maps.named.values())
        {
            slot.notify.notify_waiters();
        }
    }

    /// Number of distinct watched targets (for stats and tests).
    pub fn targets(&self) -> usize {
        let m = self.maps.lock();
        m.exact.len() + m.prefix.len() + m.named.len()
    }
}

/// What an apply changed: KV keys and named resources, for wake-ups.
#[derive(Default)]
pub struct Changes {
    pub kv: Vec<String>,
    pub named: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.named.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(g: &WatchGuard, w: &Watches, key: &str) -> bool {
        let n = g.notify().notified();
        tokio::pin!(n);
        n.as_mut().enable();
        w.kv_changed([key]);
        tokio::time::timeout(Duration::from_millis(20), n)
            .await
            .is_ok()
    }

    /// A write wakes exact watchers of the key and prefix watchers of its prefixes only.
    #[tokio::test]
    async fn wakes_by_prefix_only() {
        let w = Watches::new();
        let root = w.watch(WatchTarget::Prefix(String::new()));
        let app = w.watch(WatchTarget::Prefix("app/".into()));
        let web = w.watch(WatchTarget::Prefix("web/".into()));
        let key = w.watch(WatchTarget::Key("app/x".into()));
        let other = w.watch(WatchTarget::Key("app/xy".into()));
        assert!(woken(&root, &w, "app/x").await);
        assert!(woken(&app, &w, "app/x").await);
        assert!(woken(&key, &w, "app/x").await);
        assert!(!woken(&web, &w, "app/x").await);
        assert!(!woken(&other, &w, "app/x").await);
        // unicode keys do not split inside a character
        assert!(woken(&root, &w, "ключ/é").await);
    }

    /// Guards clean up their slots.
    #[test]
    fn guards_unregister() {
        let w = Watches::new();
        let a = w.watch(WatchTarget::Key("a".into()));
        let b = w.watch(WatchTarget::Key("a".into()));
        assert_eq!(w.targets(), 1);
        drop(a);
        assert_eq!(w.targets(), 1);
        drop(b);
        assert_eq!(w.targets(), 0);
    }
}
