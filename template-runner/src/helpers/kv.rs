//! KV functions: confd's (`getv get gets getvs exists ls lsdir`) and
//! consul-template's (`key keyOrDefault keyExists ls safeLs tree safeTree`),
//! and the context's KV reads they share.
//!
//! Missing data behaves as in the originals: confd's `getv`/`get` fail the
//! render on a missing key (the old file is kept); consul-template's `key`
//! (and `safeLs`/`safeTree` on an empty prefix) waits for the data, so the
//! template is not rendered until it exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{both, s_arg, text, Flavor, Helper, R};
use crate::dependency::{Data, Dependency, KvEntry};
use crate::render::Ctx;
use crate::resource::join_key;

pub const HELPERS: &[Helper] = &[
    both("getv", getv),
    both("get", get),
    both("gets", gets),
    both("getvs", getvs),
    both("exists", exists),
    both("ls", ls),
    both("lsdir", lsdir),
    both("key", key),
    both("keyOrDefault", key_or_default),
    both("keyExists", key_exists),
    both("safeLs", safe_ls),
    both("tree", tree),
    both("safeTree", safe_tree),
];

/// Where a KV read is answered from.
enum Kv {
    Missing,
    Map(Arc<Data>),
}

impl Ctx {
    /// The dependency answering reads at or under `full`: a declared prefix
    /// that covers it, else `fallback`.
    fn kv_dep(&self, full: &str, fallback: Dependency) -> Dependency {
        let s = self.scope.lock();
        s.declared
            .iter()
            .find(|d| full.starts_with(d.as_str()))
            .map(|d| Dependency::KvPrefix(d.clone()))
            .unwrap_or(fallback)
    }

    fn fetch(&self, dep: Dependency) -> Kv {
        let data = self.store.get(&dep);
        let mut s = self.scope.lock();
        s.used.insert(dep.clone());
        match data {
            Some(d) => Kv::Map(d),
            None => {
                s.missing.insert(dep);
                Kv::Missing
            }
        }
    }

    /// Data of a non-KV dependency, recorded as used (and as missing when
    /// it has not been fetched yet).
    pub fn data(&self, dep: Dependency) -> Option<Arc<Data>> {
        match self.fetch(dep) {
            Kv::Missing => None,
            Kv::Map(d) => Some(d),
        }
    }

    /// Hold the render until `dep` changes (consul-template's "wait for
    /// the data": the result is not written).
    pub fn wait_for(&self, dep: Dependency) {
        self.scope.lock().missing.insert(dep);
    }

    pub fn full(&self, key: &str) -> String {
        join_key(&self.scope.lock().prefix, key)
    }

    pub fn flavor(&self) -> Flavor {
        self.scope.lock().flavor
    }

    pub fn template(&self) -> String {
        self.scope.lock().template.clone()
    }

    fn key_dep(&self, key: &str) -> Dependency {
        let full = self.full(key);
        self.kv_dep(&full, Dependency::KvKey(full.clone()))
    }

    /// consul-template's `key@dc`: the dependency of `key` in `dc` (or here).
    fn key_dep_in(&self, key: &str, dc: Option<&str>) -> Dependency {
        match dc {
            None => self.key_dep(key),
            Some(dc) => Dependency::KvKeyDc {
                key: self.full(key),
                dc: dc.to_string(),
            },
        }
    }

    /// [`Self::value`] of `key` in datacenter `dc` (`None`: this one).
    fn value_in(&self, key: &str, dc: Option<&str>) -> Result<Option<String>, ()> {
        if dc.is_none() {
            return self.value(key);
        }
        match self.fetch(self.key_dep_in(key, dc)) {
            Kv::Missing => Err(()),
            Kv::Map(d) => Ok(match &*d {
                Data::Key(v) => v.clone(),
                _ => None,
            }),
        }
    }

    /// The dependency of every key under `prefix` in `dc` (or here).
    fn prefix_dep_in(&self, prefix: &str, dc: Option<&str>) -> Dependency {
        match dc {
            None => self.kv_dep(prefix, Dependency::KvPrefix(prefix.to_string())),
            Some(dc) => Dependency::KvPrefixDc {
                prefix: prefix.to_string(),
                dc: dc.to_string(),
            },
        }
    }

    /// [`Self::under`] in datacenter `dc` (`None`: this one).
    fn under_in(&self, dir: &str, dc: Option<&str>) -> Result<BTreeMap<String, KvEntry>, ()> {
        if dc.is_none() {
            return self.under(dir);
        }
        let prefix = self.dir_prefix(dir);
        match self.fetch(self.prefix_dep_in(&prefix, dc)) {
            Kv::Missing => Err(()),
            Kv::Map(d) => Ok(match &*d {
                Data::Kv(m) => m
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                _ => BTreeMap::new(),
            }),
        }
    }

    /// One key's value: Err(()) = data not here yet, Ok(None) = no such key.
    fn value(&self, key: &str) -> Result<Option<String>, ()> {
        let full = self.full(key);
        match self.fetch(self.key_dep(key)) {
            Kv::Missing => Err(()),
            Kv::Map(d) => Ok(match &*d {
                Data::Key(v) => v.clone(),
                Data::Kv(m) => m.get(&full).map(|e| e.value.clone()),
                _ => None,
            }),
        }
    }

    /// `dir` as a full prefix ending in `/` (or "" for the root).
    fn dir_prefix(&self, dir: &str) -> String {
        let full = self.full(dir);
        if full.is_empty() || full.ends_with('/') {
            full
        } else {
            format!("{full}/")
        }
    }

    /// Every key under `dir` (full keys); Err(()) = data not here yet.
    fn under(&self, dir: &str) -> Result<BTreeMap<String, KvEntry>, ()> {
        let prefix = self.dir_prefix(dir);
        let dep = self.kv_dep(&prefix, Dependency::KvPrefix(prefix.clone()));
        match self.fetch(dep) {
            Kv::Missing => Err(()),
            Kv::Map(d) => Ok(match &*d {
                Data::Kv(m) => m
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                _ => BTreeMap::new(),
            }),
        }
    }

    /// Key as the template sees it: without the resource prefix, with a
    /// leading slash when the template used one.
    fn shown(&self, full: &str, slash: bool) -> String {
        let p = self.scope.lock().prefix.clone();
        let rel = if p.is_empty() {
            full
        } else {
            full.strip_prefix(&p)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(full)
        };
        if slash {
            format!("/{rel}")
        } else {
            rel.to_string()
        }
    }
}

/// consul-template's `<key>@<dc>`: the key and the datacenter it names
/// (a datacenter name is letters, digits, `-` and `_`; anything else after
/// an `@` is part of the key).
fn split_dc(arg: &str) -> (&str, Option<&str>) {
    match arg.rsplit_once('@') {
        Some((k, dc))
            if !k.is_empty()
                && !dc.is_empty()
                && dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            (k, Some(dc))
        }
        _ => (arg, None),
    }
}

fn missing_key(ctx: &Ctx, key: &str) -> String {
    format!("key {key:?} not found (template {})", ctx.template())
}

/// Directory part of a glob (`/upstream/*` -> `/upstream/`).
fn glob_dir(pattern: &str) -> &str {
    let cut = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    match pattern[..cut].rfind('/') {
        Some(i) => &pattern[..=i],
        None => "",
    }
}

/// (key as shown, value) of every key matching a confd glob, by key.
fn glob_pairs(ctx: &Ctx, pattern: &str) -> Result<Vec<(String, String)>, ()> {
    let slash = pattern.starts_with('/');
    let pat = glob::Pattern::new(&ctx.shown(&ctx.full(pattern), true)).ok();
    let entries = ctx.under(glob_dir(pattern))?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| {
            let shown = ctx.shown(&k, true);
            let ok = pat.as_ref().map(|p| p.matches(&shown)).unwrap_or(false);
            ok.then(|| (ctx.shown(&k, slash), v.value))
        })
        .collect())
}

/// Direct children of `dir`: (name, is_dir).
fn children(ctx: &Ctx, dir: &str) -> Result<BTreeMap<String, bool>, ()> {
    let prefix = ctx.dir_prefix(dir);
    let mut out = BTreeMap::new();
    for k in ctx.under(dir)?.keys() {
        let rest = &k[prefix.len()..];
        match rest.split_once('/') {
            Some((first, _)) if !first.is_empty() => {
                out.insert(first.to_string(), true);
            }
            None if !rest.is_empty() => {
                out.entry(rest.to_string()).or_insert(false);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// confd `getv key [default]`: a missing key without a default fails.
fn getv(ctx: &Ctx, args: &[Value]) -> R {
    let k = s_arg(args, 0, "key")?;
    match ctx.value(&k) {
        Err(()) => Ok(Value::Null),
        Ok(Some(v)) => Ok(Value::String(v)),
        Ok(None) => args
            .get(1)
            .map(|d| Value::String(text(d)))
            .ok_or_else(|| missing_key(ctx, &k)),
    }
}

/// consul-template `key` (`"k@dc2"` for another datacenter): waits until
/// the key exists.
fn key(ctx: &Ctx, args: &[Value]) -> R {
    let arg = s_arg(args, 0, "key")?;
    let (k, dc) = split_dc(&arg);
    if k.is_empty() {
        return Ok(json!(""));
    }
    match ctx.value_in(k, dc) {
        Err(()) => Ok(json!("")),
        Ok(Some(v)) => Ok(Value::String(v)),
        Ok(None) => {
            ctx.wait_for(ctx.key_dep_in(k, dc));
            Ok(json!(""))
        }
    }
}

/// consul-template `keyOrDefault`: the default for a missing or empty key.
fn key_or_default(ctx: &Ctx, args: &[Value]) -> R {
    let arg = s_arg(args, 0, "key")?;
    let (k, dc) = split_dc(&arg);
    let default = s_arg(args, 1, "default")?;
    match ctx.value_in(k, dc) {
        Ok(Some(v)) if !v.is_empty() => Ok(Value::String(v)),
        _ => Ok(Value::String(default)),
    }
}

/// consul-template `keyExists` (`"k@dc2"` too).
fn key_exists(ctx: &Ctx, args: &[Value]) -> R {
    let arg = s_arg(args, 0, "key")?;
    let (k, dc) = split_dc(&arg);
    Ok(Value::Bool(matches!(ctx.value_in(k, dc), Ok(Some(_)))))
}

fn exists(ctx: &Ctx, args: &[Value]) -> R {
    let k = s_arg(args, 0, "key")?;
    Ok(Value::Bool(matches!(ctx.value(&k), Ok(Some(_)))))
}

fn get(ctx: &Ctx, args: &[Value]) -> R {
    let k = s_arg(args, 0, "key")?;
    match ctx.value(&k) {
        Err(()) => Ok(Value::Null),
        Ok(Some(v)) => Ok(json!({"Key": k, "Value": v})),
        Ok(None) => Err(missing_key(ctx, &k)),
    }
}

/// confd `gets pattern`: `{Key, Value}` pairs, by key.
fn gets(ctx: &Ctx, args: &[Value]) -> R {
    let p = s_arg(args, 0, "pattern")?;
    let Ok(pairs) = glob_pairs(ctx, &p) else {
        return Ok(json!([]));
    };
    Ok(Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    ))
}

/// confd `getvs pattern`: the values, sorted (as confd's memkv sorts them).
fn getvs(ctx: &Ctx, args: &[Value]) -> R {
    let p = s_arg(args, 0, "pattern")?;
    let Ok(pairs) = glob_pairs(ctx, &p) else {
        return Ok(json!([]));
    };
    let mut values: Vec<String> = pairs.into_iter().map(|(_, v)| v).collect();
    values.sort();
    Ok(json!(values))
}

/// consul-template's `KeyPair`: key relative to the listed prefix, the
/// full path, and the entry's indexes, flags and session.
fn pair(prefix: &str, full: &str, e: &KvEntry) -> Value {
    json!({
        "Path": full,
        "Key": &full[prefix.len()..],
        "Value": e.value,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
        "LockIndex": e.lock_index,
        "Flags": e.flags,
        "Session": e.session,
    })
}

/// consul-template `ls`/`safeLs`: top-level pairs under a prefix
/// (`"p@dc2"`: another datacenter's).
fn ct_ls(ctx: &Ctx, arg: &str, safe: bool) -> R {
    let (d, dc) = split_dc(arg);
    let prefix = ctx.dir_prefix(d);
    let Ok(all) = ctx.under_in(d, dc) else {
        return Ok(json!([]));
    };
    let out: Vec<Value> = all
        .iter()
        .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
        .map(|(k, v)| pair(&prefix, k, v))
        .collect();
    if safe && out.is_empty() {
        ctx.wait_for(ctx.prefix_dep_in(&prefix, dc));
    }
    Ok(Value::Array(out))
}

/// `ls`: confd's child names for a `/`-style path in a confd template, else
/// consul-template's top-level `{Key, Value}` pairs.
fn ls(ctx: &Ctx, args: &[Value]) -> R {
    let d = s_arg(args, 0, "dir")?;
    if d.starts_with('/') && ctx.flavor() == Flavor::Confd {
        let Ok(c) = children(ctx, &d) else {
            return Ok(json!([]));
        };
        return Ok(Value::Array(c.into_keys().map(Value::String).collect()));
    }
    ct_ls(ctx, &d, false)
}

fn safe_ls(ctx: &Ctx, args: &[Value]) -> R {
    ct_ls(ctx, &s_arg(args, 0, "prefix")?, true)
}

fn lsdir(ctx: &Ctx, args: &[Value]) -> R {
    let d = s_arg(args, 0, "dir")?;
    let Ok(c) = children(ctx, &d) else {
        return Ok(json!([]));
    };
    Ok(Value::Array(
        c.into_iter()
            .filter(|(_, dir)| *dir)
            .map(|(n, _)| Value::String(n))
            .collect(),
    ))
}

/// consul-template `tree`/`safeTree`: every pair under a prefix
/// (`"p@dc2"`: another datacenter's).
fn ct_tree(ctx: &Ctx, arg: &str, safe: bool) -> R {
    let (d, dc) = split_dc(arg);
    let prefix = ctx.dir_prefix(d);
    let Ok(all) = ctx.under_in(d, dc) else {
        return Ok(json!([]));
    };
    let out: Vec<Value> = all
        .iter()
        .filter(|(k, _)| k.len() > prefix.len() && !k.ends_with('/'))
        .map(|(k, v)| pair(&prefix, k, v))
        .collect();
    if safe && out.is_empty() {
        ctx.wait_for(ctx.prefix_dep_in(&prefix, dc));
    }
    Ok(Value::Array(out))
}

fn tree(ctx: &Ctx, args: &[Value]) -> R {
    ct_tree(ctx, &s_arg(args, 0, "prefix")?, false)
}

fn safe_tree(ctx: &Ctx, args: &[Value]) -> R {
    ct_tree(ctx, &s_arg(args, 0, "prefix")?, true)
}
