//! The template functions: one table of (name, function), split by kind,
//! registered by both engines (Handlebars helpers and Go text/template
//! functions) from the same entries.
//!
//! Every function is engine-neutral: it takes its arguments as JSON values
//! and the render context ([`Ctx`]), through which KV and catalog reads are
//! answered from fetched data and recorded as dependencies.
//!
//! - [`kv`]: confd's `getv get gets getvs exists ls lsdir` and
//!   consul-template's `key keyOrDefault keyExists ls safeLs tree safeTree`.
//! - [`catalog`]: `service services node nodes datacenters byTag byMeta`.
//! - [`text`](mod@text): strings, paths, regular expressions, hashes.
//! - [`data`]: JSON/YAML/TOML, parsing, lists and maps, math ([`goenc`]:
//!   the `to*` encoders, byte for byte as Go's).
//! - [`net`]: `lookupIP lookupSRV sockaddr` ([`sockaddr`]: go-sockaddr's
//!   expressions over this host's interfaces).
//! - [`sys`]: environment, time ([`gotime`]: Go layouts), files, `plugin`.
//!
//! The Go engine adds `executeTemplate`, `scratch` and method calls
//! ([`crate::render::go`]); Go's builtins (`printf`, `index`, ...) are its own.
//!
//! Keys work with or without a leading `/`. Where confd and consul-template
//! give one name different argument orders (`split`, `join`, `contains`,
//! `trimPrefix`, `trimSuffix`), the arguments' types decide when they can,
//! else the template's [`Flavor`].

pub mod catalog;
pub mod data;
pub mod goenc;
pub mod gotime;
pub mod kv;
pub mod net;
pub mod sockaddr;
pub mod sys;
pub mod text;

use serde_json::{json, Value};

use crate::render::Ctx;

/// A function's result: a value, or an error message (the engine adds the
/// function's name and the template's position).
pub type R = Result<Value, String>;

pub type HelperFn = fn(&Ctx, &[Value]) -> R;

/// Which engine registers a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engines {
    Both,
    /// Go templates have their own (`printf` is Go's builtin there).
    Handlebars,
}

pub struct Helper {
    pub name: &'static str,
    pub f: HelperFn,
    pub engines: Engines,
}

/// A function both engines register.
pub const fn both(name: &'static str, f: HelperFn) -> Helper {
    Helper {
        name,
        f,
        engines: Engines::Both,
    }
}

/// Whose conventions a template follows where confd and consul-template
/// disagree: confd for `conf.d` resources, consul-template for Go templates
/// given by `-template` or a `-config` file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    #[default]
    Confd,
    ConsulTemplate,
}

/// Every function, in table order.
pub fn all() -> impl Iterator<Item = &'static Helper> {
    [
        kv::HELPERS,
        catalog::HELPERS,
        text::HELPERS,
        data::HELPERS,
        net::HELPERS,
        sys::HELPERS,
    ]
    .into_iter()
    .flatten()
}

/// Call a function by name (tests and tools).
pub fn eval(name: &str, args: &[Value], ctx: &Ctx) -> R {
    match all().find(|h| h.name == name) {
        Some(h) => (h.f)(ctx, args),
        None => Err(format!("unknown function {name}")),
    }
}

// ---- argument helpers shared by the kinds ----

/// A value as text, the way templates print it.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn arg<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a Value, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {} ({what})", i + 1))
}

pub fn s_arg(args: &[Value], i: usize, what: &str) -> Result<String, String> {
    arg(args, i, what).map(text)
}

pub fn int(v: &Value) -> Result<i64, String> {
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

pub fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

/// A float as JSON, integral values as integers.
pub fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// A value as a list: arrays as they are, maps by their values (in key
/// order), null as empty, anything else as a one-element list.
pub fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry per name: both engines register the table as it is.
    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for h in all() {
            assert!(seen.insert(h.name), "{} twice in the table", h.name);
        }
        assert!(seen.len() > 90, "{}", seen.len());
    }
}
