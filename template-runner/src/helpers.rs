//! The template functions, as Handlebars helpers.
//!
//! - confd: `getv key [default]`, `get`, `gets pattern`, `getvs pattern`,
//!   `exists`, `ls dir`, `lsdir dir`.
//! - consul-template: `key`, `keyOrDefault`, `keyExists`, `ls`, `tree`,
//!   `service "[tag.]name[|filter]" [filter]`, `services`, `nodes`, `node [name]`,
//!   `datacenters`, `byTag`.
//! - text and data: `base dir split join toUpper toLower contains replace
//!   trimSuffix trimPrefix trimSpace json jsonArray toJSON toJSONPretty
//!   parseBool parseInt atoi parseFloat base64Encode base64Decode map reverse
//!   sortByLength seq add sub mul div mod getenv env datetime timestamp
//!   fileExists lookupIP lookupSRV regexMatch regexReplaceAll sha256Hex md5sum printf
//!   concat`.
//!
//! Keys work with or without a leading `/`. `ls` with a `/`-style path
//! returns names (confd); without, `{Key, Value}` pairs (consul-template).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderErrorReason, ScopedJson,
};
use serde_json::{json, Map, Value};

use crate::dependency::{Data, Dependency, Instance};
use crate::render::Ctx;
use crate::resource::join_key;

const NAMES: &[&str] = &[
    "getv",
    "get",
    "gets",
    "getvs",
    "exists",
    "ls",
    "lsdir",
    "key",
    "keyOrDefault",
    "keyExists",
    "tree",
    "service",
    "services",
    "nodes",
    "node",
    "datacenters",
    "byTag",
    "base",
    "dir",
    "split",
    "join",
    "toUpper",
    "toLower",
    "contains",
    "replace",
    "trimSuffix",
    "trimPrefix",
    "trimSpace",
    "json",
    "jsonArray",
    "toJSON",
    "toJSONPretty",
    "parseBool",
    "parseInt",
    "atoi",
    "parseFloat",
    "base64Encode",
    "base64Decode",
    "map",
    "reverse",
    "sortByLength",
    "seq",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "getenv",
    "env",
    "datetime",
    "timestamp",
    "fileExists",
    "lookupIP",
    "lookupSRV",
    "regexMatch",
    "regexReplaceAll",
    "sha256Hex",
    "md5sum",
    "printf",
    "concat",
];

struct Fn {
    name: &'static str,
    ctx: Arc<Ctx>,
}

impl HelperDef for Fn {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let args: Vec<Value> = h.params().iter().map(|p| p.value().clone()).collect();
        match eval(self.name, &args, &self.ctx) {
            Ok(v) => Ok(ScopedJson::Derived(v)),
            Err(msg) => Err(RenderErrorReason::Other(format!("{}: {msg}", self.name)).into()),
        }
    }
}

pub fn register(hb: &mut Handlebars<'static>, ctx: &Arc<Ctx>) {
    for name in NAMES {
        hb.register_helper(
            name,
            Box::new(Fn {
                name,
                ctx: ctx.clone(),
            }),
        );
    }
}

type R = Result<Value, String>;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a Value, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {} ({what})", i + 1))
}

fn s_arg(args: &[Value], i: usize, what: &str) -> Result<String, String> {
    arg(args, i, what).map(text)
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("{n} is not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an integer")),
        Value::Bool(b) => Ok(*b as i64),
        other => Err(format!("{other} is not an integer")),
    }
}

fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

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

    fn full(&self, key: &str) -> String {
        join_key(&self.scope.lock().prefix, key)
    }

    /// One key's value: Err(()) = data not here yet, Ok(None) = no such key.
    fn value(&self, key: &str) -> Result<Option<String>, ()> {
        let full = self.full(key);
        let dep = self.kv_dep(&full, Dependency::KvKey(full.clone()));
        match self.fetch(dep) {
            Kv::Missing => Err(()),
            Kv::Map(d) => Ok(match &*d {
                Data::Key(v) => v.clone(),
                Data::Kv(m) => m.get(&full).cloned(),
                _ => None,
            }),
        }
    }

    /// Every key under `dir` (full keys); Err(()) = data not here yet.
    fn under(&self, dir: &str) -> Result<BTreeMap<String, String>, ()> {
        let full = self.full(dir);
        let prefix = if full.is_empty() || full.ends_with('/') {
            full.clone()
        } else {
            format!("{full}/")
        };
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

    fn data(&self, dep: Dependency) -> Option<Arc<Data>> {
        match self.fetch(dep) {
            Kv::Missing => None,
            Kv::Map(d) => Some(d),
        }
    }

    fn template(&self) -> String {
        self.scope.lock().template.clone()
    }
}

/// Directory part of a glob (`/upstream/*` -> `/upstream/`).
fn glob_dir(pattern: &str) -> &str {
    let cut = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    match pattern[..cut].rfind('/') {
        Some(i) => &pattern[..=i],
        None => "",
    }
}

fn glob_pairs(ctx: &Ctx, pattern: &str) -> Result<Vec<(String, String)>, ()> {
    let slash = pattern.starts_with('/');
    let pat = glob::Pattern::new(&ctx.shown(&ctx.full(pattern), true)).ok();
    let entries = ctx.under(glob_dir(pattern))?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| {
            let shown = ctx.shown(&k, true);
            let ok = pat.as_ref().map(|p| p.matches(&shown)).unwrap_or(false);
            ok.then(|| (ctx.shown(&k, slash), v))
        })
        .collect())
}

/// Direct children of `dir`: (name, is_dir).
fn children(ctx: &Ctx, dir: &str) -> Result<BTreeMap<String, bool>, ()> {
    let full = ctx.full(dir);
    let prefix = if full.is_empty() || full.ends_with('/') {
        full
    } else {
        format!("{full}/")
    };
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

fn instance_json(i: &Instance) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

/// `service "[tag.]name[|filter]" [filter]`.
fn service(ctx: &Ctx, args: &[Value]) -> R {
    let spec = s_arg(args, 0, "service name")?;
    let (spec, mut filter) = match spec.split_once('|') {
        Some((a, f)) => (a.to_string(), f.to_string()),
        None => (spec.clone(), "passing".to_string()),
    };
    if let Some(f) = args.get(1) {
        filter = text(f);
    }
    let (tag, name) = match spec.rsplit_once('.') {
        Some((t, n)) => (Some(t.to_string()), n.to_string()),
        None => (None, spec.clone()),
    };
    if name.is_empty() {
        return Err("empty service name".into());
    }
    let wanted: Vec<&str> = filter.split(',').map(str::trim).collect();
    for w in &wanted {
        if !matches!(
            *w,
            "any" | "passing" | "warning" | "critical" | "maintenance"
        ) {
            return Err(format!(
                "invalid health filter {w:?} (any, passing, warning, critical)"
            ));
        }
    }
    let Some(d) = ctx.data(Dependency::Service { name, tag }) else {
        return Ok(json!([]));
    };
    let Data::Service(list) = &*d else {
        return Ok(json!([]));
    };
    Ok(Value::Array(
        list.iter()
            .filter(|i| wanted.contains(&"any") || wanted.contains(&i.status.as_str()))
            .map(instance_json)
            .collect(),
    ))
}

fn go_layout_to_strftime(layout: &str) -> String {
    let mut out = layout.to_string();
    for (go, c) in [
        ("2006", "%Y"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("04", "%M"),
        ("05", "%S"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("-0700", "%z"),
        ("Z07:00", "%:z"),
    ] {
        out = out.replace(go, c);
    }
    out
}

fn missing_key(ctx: &Ctx, key: &str) -> String {
    format!("key {key:?} not found (template {})", ctx.template())
}

pub fn eval(name: &str, args: &[Value], ctx: &Ctx) -> R {
    let b64 = &base64::engine::general_purpose::STANDARD;
    match name {
        // ---- KV: confd ----
        "getv" | "key" | "keyOrDefault" => {
            let k = s_arg(args, 0, "key")?;
            let default = if name == "keyOrDefault" {
                Some(s_arg(args, 1, "default")?)
            } else {
                args.get(1).map(text)
            };
            match ctx.value(&k) {
                Err(()) => Ok(Value::Null),
                Ok(Some(v)) => Ok(Value::String(v)),
                Ok(None) => default
                    .map(Value::String)
                    .ok_or_else(|| missing_key(ctx, &k)),
            }
        }
        "exists" | "keyExists" => {
            let k = s_arg(args, 0, "key")?;
            Ok(Value::Bool(matches!(ctx.value(&k), Ok(Some(_)))))
        }
        "get" => {
            let k = s_arg(args, 0, "key")?;
            match ctx.value(&k) {
                Err(()) => Ok(Value::Null),
                Ok(Some(v)) => Ok(json!({"Key": k, "Value": v})),
                Ok(None) => Err(missing_key(ctx, &k)),
            }
        }
        "gets" | "getvs" => {
            let p = s_arg(args, 0, "pattern")?;
            let Ok(pairs) = glob_pairs(ctx, &p) else {
                return Ok(json!([]));
            };
            Ok(Value::Array(
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        if name == "gets" {
                            json!({"Key": k, "Value": v})
                        } else {
                            Value::String(v)
                        }
                    })
                    .collect(),
            ))
        }
        "ls" => {
            let d = s_arg(args, 0, "dir")?;
            if d.starts_with('/') {
                let Ok(c) = children(ctx, &d) else {
                    return Ok(json!([]));
                };
                return Ok(Value::Array(c.into_keys().map(Value::String).collect()));
            }
            // consul-template: top-level {Key, Value} pairs under the prefix.
            let full = ctx.full(&d);
            let prefix = if full.is_empty() || full.ends_with('/') {
                full
            } else {
                format!("{full}/")
            };
            let Ok(all) = ctx.under(&d) else {
                return Ok(json!([]));
            };
            Ok(Value::Array(
                all.iter()
                    .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
                    .map(|(k, v)| json!({"Key": &k[prefix.len()..], "Value": v, "Path": k}))
                    .collect(),
            ))
        }
        "lsdir" => {
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
        "tree" => {
            let d = s_arg(args, 0, "prefix")?;
            let full = ctx.full(&d);
            let prefix = if full.is_empty() || full.ends_with('/') {
                full
            } else {
                format!("{full}/")
            };
            let Ok(all) = ctx.under(&d) else {
                return Ok(json!([]));
            };
            Ok(Value::Array(
                all.iter()
                    .filter(|(k, _)| k.len() > prefix.len())
                    .map(|(k, v)| json!({"Key": &k[prefix.len()..], "Value": v, "Path": k}))
                    .collect(),
            ))
        }
        // ---- catalog ----
        "service" => service(ctx, args),
        "services" => match ctx.data(Dependency::Services).as_deref() {
            Some(Data::Services(m)) => Ok(Value::Array(
                m.iter()
                    .map(|(n, t)| json!({"Name": n, "Tags": t}))
                    .collect(),
            )),
            _ => Ok(json!([])),
        },
        "nodes" => match ctx.data(Dependency::Nodes).as_deref() {
            Some(Data::Nodes(n)) => Ok(serde_json::to_value(n).unwrap_or(Value::Null)),
            _ => Ok(json!([])),
        },
        // consul-template's `node`: the agent's own node without an argument.
        "node" => {
            let name = args.first().map(text).filter(|n| !n.is_empty());
            match ctx.data(Dependency::Node(name)).as_deref() {
                Some(Data::Node(Some(n))) => Ok(serde_json::to_value(n).unwrap_or(Value::Null)),
                _ => Ok(Value::Null),
            }
        }
        "datacenters" => match ctx.data(Dependency::Datacenters).as_deref() {
            Some(Data::Datacenters(d)) => Ok(json!(d)),
            _ => Ok(json!([])),
        },
        "byTag" => {
            let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for i in list(arg(args, 0, "instances")?) {
                for t in i["Tags"].as_array().into_iter().flatten() {
                    out.entry(text(t)).or_default().push(i.clone());
                }
            }
            Ok(json!(out))
        }
        // ---- text ----
        "base" => Ok(json!(s_arg(args, 0, "path")?
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(""))),
        "dir" => {
            let p = s_arg(args, 0, "path")?;
            let p = p.trim_end_matches('/');
            Ok(json!(match p.rfind('/') {
                Some(0) => "/".to_string(),
                Some(i) => p[..i].to_string(),
                None => ".".to_string(),
            }))
        }
        "split" => {
            let s = s_arg(args, 0, "string")?;
            let sep = s_arg(args, 1, "separator")?;
            if s.is_empty() {
                return Ok(json!([]));
            }
            Ok(json!(s.split(sep.as_str()).collect::<Vec<_>>()))
        }
        "join" => {
            let l = list(arg(args, 0, "list")?);
            let sep = s_arg(args, 1, "separator")?;
            Ok(json!(l.iter().map(text).collect::<Vec<_>>().join(&sep)))
        }
        "toUpper" => Ok(json!(s_arg(args, 0, "string")?.to_uppercase())),
        "toLower" => Ok(json!(s_arg(args, 0, "string")?.to_lowercase())),
        "trimSpace" => Ok(json!(s_arg(args, 0, "string")?.trim())),
        "trimSuffix" => {
            let s = s_arg(args, 0, "string")?;
            let x = s_arg(args, 1, "suffix")?;
            Ok(json!(s.strip_suffix(x.as_str()).unwrap_or(&s)))
        }
        "trimPrefix" => {
            let s = s_arg(args, 0, "string")?;
            let x = s_arg(args, 1, "prefix")?;
            Ok(json!(s.strip_prefix(x.as_str()).unwrap_or(&s)))
        }
        "contains" => {
            let hay = arg(args, 0, "string or list")?;
            let needle = arg(args, 1, "value")?;
            Ok(Value::Bool(match hay {
                Value::Array(a) => a.iter().any(|x| text(x) == text(needle)),
                other => text(other).contains(&text(needle)),
            }))
        }
        "replace" => {
            let s = s_arg(args, 0, "string")?;
            let old = s_arg(args, 1, "old")?;
            let new = s_arg(args, 2, "new")?;
            match args.get(3).map(int).transpose()? {
                Some(n) if n >= 0 => Ok(json!(s.replacen(old.as_str(), &new, n as usize))),
                _ => Ok(json!(s.replace(old.as_str(), &new))),
            }
        }
        "json" | "jsonArray" => {
            let s = s_arg(args, 0, "JSON text")?;
            let v: Value = serde_json::from_str(&s).map_err(|e| format!("invalid JSON: {e}"))?;
            match (name, &v) {
                ("json", Value::Object(_)) | ("jsonArray", Value::Array(_)) => Ok(v),
                ("json", _) => Err("expected a JSON object".into()),
                _ => Err("expected a JSON array".into()),
            }
        }
        "toJSON" => Ok(json!(
            serde_json::to_string(arg(args, 0, "value")?).map_err(|e| e.to_string())?
        )),
        "toJSONPretty" => Ok(json!(
            serde_json::to_string_pretty(arg(args, 0, "value")?).map_err(|e| e.to_string())?
        )),
        "parseBool" => match s_arg(args, 0, "string")?.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(json!(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(json!(false)),
            other => Err(format!("{other:?} is not a boolean")),
        },
        "parseInt" | "atoi" => Ok(json!(int(arg(args, 0, "string")?)?)),
        "parseFloat" => Ok(json!(float(arg(args, 0, "string")?)?)),
        "base64Encode" => Ok(json!(b64.encode(s_arg(args, 0, "string")?))),
        "base64Decode" => {
            let d = b64
                .decode(s_arg(args, 0, "string")?.trim())
                .map_err(|e| format!("invalid base64: {e}"))?;
            Ok(json!(String::from_utf8_lossy(&d)))
        }
        "map" => {
            if !args.len().is_multiple_of(2) {
                return Err("map needs key/value pairs".into());
            }
            let m: Map<String, Value> = args
                .chunks(2)
                .map(|kv| (text(&kv[0]), kv[1].clone()))
                .collect();
            Ok(Value::Object(m))
        }
        "reverse" => match arg(args, 0, "list or string")? {
            Value::String(s) => Ok(json!(s.chars().rev().collect::<String>())),
            v => Ok(Value::Array(list(v).into_iter().rev().collect())),
        },
        "sortByLength" => {
            let mut l = list(arg(args, 0, "list")?);
            l.sort_by_key(|v| text(v).chars().count());
            Ok(Value::Array(l))
        }
        "seq" => {
            let (a, b) = match args.len() {
                1 => (1, int(&args[0])?),
                _ => (int(arg(args, 0, "start")?)?, int(arg(args, 1, "end")?)?),
            };
            if (b - a).abs() > 100_000 {
                return Err("sequence too long".into());
            }
            Ok(json!((a..=b).collect::<Vec<_>>()))
        }
        "add" | "sub" | "mul" | "div" | "mod" => {
            let x = arg(args, 0, "number")?;
            let y = arg(args, 1, "number")?;
            let both_int = int(x).is_ok()
                && int(y).is_ok()
                && !text(x).contains('.')
                && !text(y).contains('.');
            if both_int {
                let (a, b) = (int(x)?, int(y)?);
                let r = match name {
                    "add" => a.checked_add(b),
                    "sub" => a.checked_sub(b),
                    "mul" => a.checked_mul(b),
                    "div" => a.checked_div(b),
                    _ => a.checked_rem(b),
                };
                return r
                    .map(|v| json!(v))
                    .ok_or_else(|| "integer overflow or division by zero".to_string());
            }
            let (a, b) = (float(x)?, float(y)?);
            let r = match name {
                "add" => a + b,
                "sub" => a - b,
                "mul" => a * b,
                "div" if b != 0.0 => a / b,
                "mod" if b != 0.0 => a % b,
                _ => return Err("division by zero".into()),
            };
            Ok(num(r))
        }
        "getenv" | "env" => {
            let k = s_arg(args, 0, "variable")?;
            Ok(json!(std::env::var(&k)
                .ok()
                .or_else(|| args.get(1).map(text))
                .unwrap_or_default()))
        }
        "datetime" => Ok(json!(chrono::Local::now().to_rfc3339())),
        "timestamp" => {
            let now = chrono::Local::now();
            match args.first().map(text) {
                None => Ok(json!(now.to_rfc3339())),
                Some(f) if f == "unix" => Ok(json!(now.timestamp().to_string())),
                Some(f) if f.contains('%') => Ok(json!(now.format(&f).to_string())),
                Some(f) => Ok(json!(now.format(&go_layout_to_strftime(&f)).to_string())),
            }
        }
        "fileExists" => Ok(json!(
            std::path::Path::new(&s_arg(args, 0, "path")?).exists()
        )),
        "lookupIP" => {
            use std::net::ToSocketAddrs;
            let host = s_arg(args, 0, "host")?;
            let mut ips: Vec<String> = (host.as_str(), 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip().to_string()).collect())
                .unwrap_or_default();
            ips.sort();
            ips.dedup();
            Ok(json!(ips))
        }
        "lookupSRV" => {
            let name = match args.len() {
                1 => s_arg(args, 0, "name")?,
                _ => format!(
                    "_{}._{}.{}",
                    s_arg(args, 0, "service")?,
                    s_arg(args, 1, "proto")?,
                    s_arg(args, 2, "name")?
                ),
            };
            lookup_srv(&name).map(Value::Array)
        }
        "regexMatch" => {
            let re = regex::Regex::new(&s_arg(args, 0, "pattern")?).map_err(|e| e.to_string())?;
            Ok(json!(re.is_match(&s_arg(args, 1, "string")?)))
        }
        "regexReplaceAll" => {
            let re = regex::Regex::new(&s_arg(args, 0, "pattern")?).map_err(|e| e.to_string())?;
            let rep = s_arg(args, 1, "replacement")?;
            Ok(json!(
                re.replace_all(&s_arg(args, 2, "string")?, rep.as_str())
            ))
        }
        "sha256Hex" => {
            use sha2::Digest;
            let d = sha2::Sha256::digest(s_arg(args, 0, "string")?.as_bytes());
            Ok(json!(d
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()))
        }
        "md5sum" => {
            use md5::Digest;
            let d = md5::Md5::digest(s_arg(args, 0, "string")?.as_bytes());
            Ok(json!(d
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()))
        }
        "printf" => {
            let fmt = s_arg(args, 0, "format")?;
            let mut out = String::new();
            let mut rest = args[1..].iter();
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('%') => out.push('%'),
                    Some('s' | 'v' | 'd' | 'f') => {
                        out.push_str(&rest.next().map(text).unwrap_or_default())
                    }
                    Some('q') => {
                        out.push_str(&format!("{:?}", rest.next().map(text).unwrap_or_default()))
                    }
                    Some(o) => {
                        return Err(format!("unsupported verb %{o} (use %s, %d, %v, %f, %q)"))
                    }
                    None => out.push('%'),
                }
            }
            Ok(json!(out))
        }
        "concat" => Ok(json!(args.iter().map(text).collect::<String>())),
        other => Err(format!("unknown function {other}")),
    }
}

/// The resolver for `lookupSRV`: `TRIBUNE_DNS` (ip:port), else the first
/// nameserver of /etc/resolv.conf.
fn resolver() -> Option<std::net::SocketAddr> {
    if let Ok(v) = std::env::var("TRIBUNE_DNS") {
        return v.parse().ok();
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// SRV records of `name`, sorted by priority then weight (confd's shape:
/// `{Target, Port, Priority, Weight}`).
fn lookup_srv(name: &str) -> Result<Vec<Value>, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;
    let server = resolver().ok_or("no DNS resolver (set TRIBUNE_DNS or /etc/resolv.conf)")?;
    let qname = Name::from_str(&format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("bad name: {e}"))?;
    let mut m = Message::new();
    m.set_id(rand::random());
    m.set_message_type(MessageType::Query);
    m.set_op_code(OpCode::Query);
    m.set_recursion_desired(true);
    m.add_query(Query::query(qname, RecordType::SRV));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, server)
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let mut buf = vec![0u8; 65535];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let resp = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    let mut out: Vec<(u16, u16, Value)> = resp
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some((
                srv.priority(),
                srv.weight(),
                json!({"Target": srv.target().to_ascii(), "Port": srv.port(),
                       "Priority": srv.priority(), "Weight": srv.weight()}),
            )),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (a.0, a.1, a.2["Target"].as_str()).cmp(&(b.0, b.1, b.2["Target"].as_str())));
    Ok(out.into_iter().map(|(_, _, v)| v).collect())
}
