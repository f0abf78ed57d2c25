//! A client agent's last answers from the servers, for `down_policy =
//! "extend-cache"` and `"async-cache"` (Consul's default): while no server
//! can resolve a token, a token the servers resolved before keeps its
//! rules; one never seen is refused.
//!
//! Not a cache in front of the servers: a client agent asks them on every
//! request (a revocation reaches it within one round trip); this is read
//! only when none answers. Keyed by the SHA-256 of the secret, so no
//! secret sits in it; bounded.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::Authorizer;

/// Tokens remembered at most (one entry is a few hundred bytes).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct Fallback {
    entries: Mutex<HashMap<[u8; 32], Arc<Authorizer>>>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("acl::Fallback")
    }
}

fn key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Fallback {
    /// A server resolved `secret` to `a`.
    pub fn resolved(&self, secret: &str, a: &Arc<Authorizer>) {
        let k = key(secret);
        let mut m = self.entries.lock();
        if m.len() >= MAX_ENTRIES && !m.contains_key(&k) {
            // Any one out: which is not worth an LRU for a fallback.
            if let Some(old) = m.keys().next().copied() {
                m.remove(&old);
            }
        }
        m.insert(k, a.clone());
    }

    /// A server said `secret` is no token: forget it.
    pub fn not_found(&self, secret: &str) {
        self.entries.lock().remove(&key(secret));
    }

    /// The last rules a server gave for `secret`.
    pub fn get(&self, secret: &str) -> Option<Arc<Authorizer>> {
        self.entries.lock().get(&key(secret)).cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_is_bounded() {
        let f = Fallback::default();
        let a = Arc::new(Authorizer::Manage);
        f.resolved("s1", &a);
        assert!(f.get("s1").is_some() && f.get("s2").is_none());
        f.not_found("s1");
        assert!(f.get("s1").is_none());
        for i in 0..(MAX_ENTRIES + 10) {
            f.resolved(&format!("t{i}"), &a);
        }
        assert_eq!(f.len(), MAX_ENTRIES);
        // The newest is always kept.
        assert!(f.get(&format!("t{}", MAX_ENTRIES + 9)).is_some());
    }
}
