//! The `file` backend: YAML or JSON files whose nested maps become keys
//! (`nginx: {port: 80}` is key `nginx/port`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{kv_view, BackendError, Fetched};
use crate::dependency::Dependency;

pub struct FileBackend {
    pub paths: Vec<PathBuf>,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}/{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k.trim_matches('/')), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Null => {
            out.insert(prefix.to_string(), String::new());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

impl FileBackend {
    /// Read and flatten every file (later files override earlier ones).
    pub fn load(&self) -> Result<BTreeMap<String, String>, BackendError> {
        let mut all = BTreeMap::new();
        for p in &self.paths {
            let text = std::fs::read_to_string(p)
                .map_err(|e| BackendError::Data(format!("reading {}: {e}", p.display())))?;
            let v: Value = if p.extension().and_then(|e| e.to_str()) == Some("json") {
                serde_json::from_str(&text)
                    .map_err(|e| BackendError::Data(format!("{}: {e}", p.display())))?
            } else {
                serde_yaml::from_str(&text)
                    .map_err(|e| BackendError::Data(format!("{}: {e}", p.display())))?
            };
            flatten("", &v, &mut all);
        }
        Ok(all)
    }

    pub fn fetch(&self, dep: &Dependency) -> Result<Fetched, BackendError> {
        let all = self.load()?;
        kv_view(&all, dep).map(|d| (d, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dependency::Data;

    #[test]
    fn yaml_flattens_to_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.yaml");
        std::fs::write(
            &f,
            "nginx:\n  port: 80\n  names: [a, b]\n  /proxy: x.example\nflag: true\n",
        )
        .unwrap();
        let b = FileBackend { paths: vec![f] };
        let all = b.load().unwrap();
        assert_eq!(all["nginx/port"], "80");
        assert_eq!(all["nginx/names/1"], "b");
        assert_eq!(all["nginx/proxy"], "x.example");
        assert_eq!(all["flag"], "true");
        let (d, _) = b.fetch(&Dependency::KvPrefix("nginx/".into())).unwrap();
        assert!(matches!(d, Data::Kv(m) if m.len() == 4));
    }
}
