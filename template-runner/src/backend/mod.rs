//! Where data comes from: a Consul-compatible agent (tribune or Consul), a
//! YAML/JSON file, or the environment. Only the agent supports blocking
//! queries; the others are re-read.

pub mod consul;
pub mod file;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dependency::{Data, Dependency};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Request(String),
    #[error("{what}: unexpected answer {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{0} needs the consul backend")]
    Unsupported(String),
    #[error("{0}")]
    Data(String),
}

/// A fetch result: the data and its index (0 when the backend has none).
pub type Fetched = (Data, u64);

pub enum Backend {
    Consul(consul::Consul),
    File(file::FileBackend),
    Env,
}

impl Backend {
    /// Whether fetches can block until data changes.
    pub fn blocking(&self) -> bool {
        matches!(self, Backend::Consul(_))
    }

    /// Fetch `dep`; with a blocking backend and `index > 0`, wait up to
    /// `wait` for a change past `index`.
    pub async fn fetch(
        &self,
        dep: &Dependency,
        index: u64,
        wait: Duration,
    ) -> Result<Fetched, BackendError> {
        let r = match (self, dep) {
            (_, Dependency::File(p)) => read_file(p).map(|d| (d, 0)),
            (Backend::Consul(c), _) => c.fetch(dep, index, wait).await,
            (Backend::File(f), _) => f.fetch(dep),
            (Backend::Env, _) => env_fetch(dep),
        };
        crate::metrics::fetch(dep.kind(), r.is_ok());
        r
    }
}

/// Largest file `file` reads.
const MAX_FILE: u64 = 16 << 20;

/// A local file for `file`: its text, or `None` while it does not exist.
fn read_file(path: &str) -> Result<Data, BackendError> {
    use std::io::Read;
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut s = String::new();
            f.take(MAX_FILE + 1)
                .read_to_string(&mut s)
                .map_err(|e| BackendError::Data(format!("reading {path}: {e}")))?;
            if s.len() as u64 > MAX_FILE {
                return Err(BackendError::Data(format!("{path}: larger than 16 MiB")));
            }
            Ok(Data::File(Some(s)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Data::File(None)),
        Err(e) => Err(BackendError::Data(format!("reading {path}: {e}"))),
    }
}

/// Flat key -> value view of the environment, confd-style: `NGINX_PORT`
/// is key `nginx/port`.
fn env_fetch(dep: &Dependency) -> Result<Fetched, BackendError> {
    let vars: BTreeMap<String, String> = std::env::vars()
        .map(|(k, v)| (k.to_ascii_lowercase().replace('_', "/"), v))
        .collect();
    kv_view(&vars, dep).map(|d| (d, 0))
}

/// Answer KV dependencies from a flat map.
pub fn kv_view(all: &BTreeMap<String, String>, dep: &Dependency) -> Result<Data, BackendError> {
    match dep {
        Dependency::KvPrefix(p) => Ok(Data::Kv(
            all.range(p.clone()..)
                .take_while(|(k, _)| k.starts_with(p.as_str()))
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        )),
        Dependency::KvKey(k) => Ok(Data::Key(all.get(k).cloned())),
        other => Err(BackendError::Unsupported(other.to_string())),
    }
}
