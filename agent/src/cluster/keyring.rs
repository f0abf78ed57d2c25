//! The gossip keyring: the keys that seal gossip packets (`encrypt`,
//! `tribune keyring`), kept in `<data-dir>/serf/local.keyring` as Consul
//! does (a JSON list of base64 keys, the primary first).
//!
//! A sealed packet is `MAGIC | nonce (12) | AES-256-GCM(ciphertext + tag)`:
//! a fresh random nonce per packet, sealed with the primary key and opened
//! with any installed key, so a key can be rolled without a partition. A
//! plaintext foca packet starts with 0 or 1 (the address family of its
//! sender), never with `MAGIC`.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use parking_lot::RwLock;

/// First byte of a sealed packet.
pub const MAGIC: u8 = 0xA7;
const NONCE: usize = 12;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyringError {
    #[error("Invalid key: {0}")]
    BadKey(String),
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
    #[error("gossip encryption is not enabled on this agent (start it with -encrypt)")]
    Disabled,
    #[error("keyring file {path}: {msg}")]
    File { path: String, msg: String },
}

/// Why a packet could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed packet (plaintext gossip).
    NotSealed,
    /// Sealed, but no installed key opens it (another key, or tampered).
    NoKey,
}

pub type RawKey = [u8; 32];

/// Decode a base64 key as `consul keygen` prints it (32 bytes: AES-256).
pub fn parse_key(s: &str) -> Result<RawKey, KeyringError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| KeyringError::BadKey(e.to_string()))?;
    RawKey::try_from(bytes.as_slice()).map_err(|_| {
        KeyringError::BadKey(format!(
            "key must be 32 bytes (tribune keygen), not {}",
            bytes.len()
        ))
    })
}

pub fn encode_key(k: &RawKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A fresh random key, base64 (`tribune keygen`).
pub fn generate() -> String {
    let k = Aes256Gcm::generate_key(OsRng);
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// The keys (primary first) and where they are kept.
pub struct Keyring {
    keys: RwLock<Vec<RawKey>>,
    file: Option<PathBuf>,
    /// Packets received must be sealed (`encrypt_verify_incoming`).
    pub verify_incoming: bool,
    /// Packets sent are sealed (`encrypt_verify_outgoing`).
    pub verify_outgoing: bool,
}

impl Keyring {
    /// The keyring of an agent: the keyring file when there is one (a
    /// restart without `-encrypt` keeps encrypting), else `encrypt`.
    pub fn load(
        encrypt: Option<&str>,
        file: Option<PathBuf>,
        verify_incoming: bool,
        verify_outgoing: bool,
    ) -> Result<Self, KeyringError> {
        let given = encrypt.map(parse_key).transpose()?;
        let stored = match &file {
            Some(p) => read_file(p)?,
            None => None,
        };
        let keys = match (stored, given) {
            (Some(keys), Some(k)) => {
                if !keys.contains(&k) {
                    tracing::warn!(
                        "LAN keyring exists but -encrypt given, using keyring ({})",
                        file.as_deref()
                            .map(Path::display)
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                    );
                }
                keys
            }
            (Some(keys), None) => keys,
            (None, Some(k)) => vec![k],
            (None, None) => vec![],
        };
        let ring = Self {
            keys: RwLock::new(keys),
            file,
            verify_incoming,
            verify_outgoing,
        };
        if ring.enabled() {
            ring.save()?;
        }
        Ok(ring)
    }

    /// A keyring in memory only (tests, `-dev`).
    pub fn with_keys(keys: Vec<RawKey>) -> Self {
        Self {
            keys: RwLock::new(keys),
            file: None,
            verify_incoming: true,
            verify_outgoing: true,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.read().is_empty()
    }

    /// The installed keys (base64) and the primary one.
    pub fn list(&self) -> (Vec<String>, Option<String>) {
        let k = self.keys.read();
        (
            k.iter().map(encode_key).collect(),
            k.first().map(encode_key),
        )
    }

    /// Seal `plain` with the primary key; `None` without keys or when
    /// outgoing encryption is off.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        if !self.verify_outgoing {
            return None;
        }
        let key = *self.keys.read().first()?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher.encrypt(&nonce, plain).ok()?;
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Open a sealed packet with any installed key.
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, OpenError> {
        if packet.len() < 1 + NONCE + TAG || packet[0] != MAGIC {
            return Err(OpenError::NotSealed);
        }
        let nonce = Nonce::from_slice(&packet[1..1 + NONCE]);
        for key in self.keys.read().iter() {
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
            if let Ok(p) = cipher.decrypt(nonce, &packet[1 + NONCE..]) {
                return Ok(p);
            }
        }
        Err(OpenError::NoKey)
    }

    /// Add a key (not the primary yet). Installing one already there is fine.
    pub fn install(&self, key: &str) -> Result<(), KeyringError> {
        let k = parse_key(key)?;
        self.change(|keys| {
            if keys.is_empty() {
                return Err(KeyringError::Disabled);
            }
            if !keys.contains(&k) {
                keys.push(k);
            }
            Ok(())
        })
    }

    /// Make an installed key the primary one (the one packets are sealed with).
    pub fn use_key(&self, key: &str) -> Result<(), KeyringError> {
        let k = parse_key(key)?;
        self.change(|keys| {
            let i = keys
                .iter()
                .position(|x| *x == k)
                .ok_or(KeyringError::NotInstalled)?;
            let k = keys.remove(i);
            keys.insert(0, k);
            Ok(())
        })
    }

    /// Remove a key other than the primary.
    pub fn remove(&self, key: &str) -> Result<(), KeyringError> {
        let k = parse_key(key)?;
        self.change(|keys| {
            match keys.iter().position(|x| *x == k) {
                Some(0) => return Err(KeyringError::RemovePrimary),
                Some(i) => {
                    keys.remove(i);
                }
                None => {}
            }
            Ok(())
        })
    }

    /// Apply `f`, then persist; on a storage error the change is undone.
    fn change(
        &self,
        f: impl FnOnce(&mut Vec<RawKey>) -> Result<(), KeyringError>,
    ) -> Result<(), KeyringError> {
        let before = self.keys.read().clone();
        let mut next = before.clone();
        f(&mut next)?;
        if next == before {
            return Ok(());
        }
        *self.keys.write() = next;
        if let Err(e) = self.save() {
            *self.keys.write() = before;
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), KeyringError> {
        let Some(p) = &self.file else { return Ok(()) };
        let (keys, _) = self.list();
        let err = |msg: String| KeyringError::File {
            path: p.display().to_string(),
            msg,
        };
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let text = serde_json::to_vec_pretty(&keys).map_err(|e| err(e.to_string()))?;
        crate::fsutil::write_atomic(p, &text).map_err(|e| err(e.to_string()))
    }
}

/// The stored keys; `None` when there is no file.
fn read_file(p: &Path) -> Result<Option<Vec<RawKey>>, KeyringError> {
    let err = |msg: String| KeyringError::File {
        path: p.display().to_string(),
        msg,
    };
    let text = match std::fs::read(p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let list: Vec<String> = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
    let keys = list
        .iter()
        .map(|k| parse_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate() {
        let a = generate();
        let b = generate();
        let ring = Keyring::with_keys(vec![parse_key(&a).unwrap()]);
        let p = ring.seal(b"hello node-1").unwrap();
        assert_eq!(p[0], MAGIC);
        assert!(!p.windows(6).any(|w| w == b"node-1"));
        // a fresh nonce every time
        assert_ne!(ring.seal(b"x").unwrap(), ring.seal(b"x").unwrap());
        assert_eq!(ring.open(&p).unwrap(), b"hello node-1");
        let other = Keyring::with_keys(vec![parse_key(&b).unwrap()]);
        assert_eq!(other.open(&p), Err(OpenError::NoKey));
        assert_eq!(other.open(b"\x00plain"), Err(OpenError::NotSealed));
        // tampering is caught
        let mut t = p.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(ring.open(&t), Err(OpenError::NoKey));
        // rotation: install, use, remove the old one
        ring.install(&b).unwrap();
        assert_eq!(ring.remove(&a), Err(KeyringError::RemovePrimary));
        assert_eq!(ring.use_key(&generate()), Err(KeyringError::NotInstalled));
        ring.use_key(&b).unwrap();
        assert_eq!(other.open(&ring.seal(b"y").unwrap()).unwrap(), b"y");
        // the old key still opens old packets until removed
        assert!(ring.open(&p).is_ok());
        ring.remove(&a).unwrap();
        assert_eq!(ring.open(&p), Err(OpenError::NoKey));
        assert_eq!(ring.list(), (vec![b.clone()], Some(b)));
        assert!(parse_key("c2hvcnQ=").is_err());
        assert!(parse_key("not base64!").is_err());
    }

    #[test]
    fn kept_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serf").join("local.keyring");
        let a = generate();
        let r = Keyring::load(Some(&a), Some(file.clone()), true, true).unwrap();
        let b = generate();
        r.install(&b).unwrap();
        drop(r);
        // a restart without -encrypt keeps both keys
        let r = Keyring::load(None, Some(file.clone()), true, true).unwrap();
        assert_eq!(r.list(), (vec![a.clone(), b.clone()], Some(a.clone())));
        // -encrypt with another key: the file wins
        let r = Keyring::load(Some(&generate()), Some(file), true, true).unwrap();
        assert_eq!(r.list().1, Some(a));
        assert!(!Keyring::load(None, None, true, true).unwrap().enabled());
    }
}
