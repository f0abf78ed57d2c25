//! Catalog functions (consul-template's): `service services node nodes
//! datacenters`, and the grouping helpers `byTag byMeta`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{arg, list, s_arg, text, Helper, R};
use crate::dependency::{Data, Dependency};
use crate::helpers::both;
use crate::render::Ctx;

pub const HELPERS: &[Helper] = &[
    both("service", service),
    both("services", services),
    both("nodes", nodes),
    both("node", node),
    both("datacenters", datacenters),
    both("byTag", by_tag),
    both("byMeta", by_meta),
];

const FILTERS: &[&str] = &["any", "passing", "warning", "critical", "maintenance"];

/// A parsed `[tag.]name[@dc][~near][|filter,...]`.
#[derive(Debug, PartialEq)]
pub struct ServiceSpec {
    pub tag: Option<String>,
    pub name: String,
    pub dc: Option<String>,
    pub filters: Vec<String>,
}

/// consul-template's service query syntax; extra arguments are filters
/// (`service "web" "any"` is `service "web|any"`). Healthy only by default.
pub fn parse_service(args: &[Value]) -> Result<ServiceSpec, String> {
    let joined = args.iter().map(text).collect::<Vec<_>>().join("|");
    let (spec, filter) = match joined.split_once('|') {
        Some((a, f)) => (a.to_string(), f.to_string()),
        None => (joined.clone(), "passing".to_string()),
    };
    // `~near` sorts by distance to a node; with one agent there is nothing to sort.
    let spec = spec.split_once('~').map_or(spec.as_str(), |(s, _)| s);
    let (spec, dc) = match spec.split_once('@') {
        Some((s, dc)) if !dc.is_empty() => (s, Some(dc.to_string())),
        Some((s, _)) => (s, None),
        None => (spec, None),
    };
    let (tag, name) = match spec.rsplit_once('.') {
        Some((t, n)) => (Some(t.to_string()), n.to_string()),
        None => (None, spec.to_string()),
    };
    if name.is_empty() {
        return Err("empty service name".into());
    }
    let filters: Vec<String> = filter
        .split([',', '|'])
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(bad) = filters.iter().find(|f| !FILTERS.contains(&f.as_str())) {
        return Err(format!(
            "invalid health filter {bad:?} (any, passing, warning, critical)"
        ));
    }
    Ok(ServiceSpec {
        tag,
        name,
        dc,
        filters,
    })
}

/// `service "[tag.]name[@dc][|filter]" [filter]`: healthy instances by
/// default, with consul-template's field names.
fn service(ctx: &Ctx, args: &[Value]) -> R {
    if args.first().is_none_or(|a| text(a).is_empty()) {
        return Ok(json!([]));
    }
    let s = parse_service(args)?;
    let dep = Dependency::Service {
        name: s.name,
        tag: s.tag,
        dc: s.dc,
    };
    let Some(d) = ctx.data(dep) else {
        return Ok(json!([]));
    };
    let Data::Service(list) = &*d else {
        return Ok(json!([]));
    };
    let any = s.filters.iter().any(|f| f == "any");
    Ok(Value::Array(
        list.iter()
            .filter(|i| any || s.filters.contains(&i.status))
            .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
            .collect(),
    ))
}

fn services(ctx: &Ctx, _: &[Value]) -> R {
    match ctx.data(Dependency::Services).as_deref() {
        Some(Data::Services(m)) => Ok(Value::Array(
            m.iter()
                .map(|(n, t)| json!({"Name": n, "Tags": t}))
                .collect(),
        )),
        _ => Ok(json!([])),
    }
}

fn nodes(ctx: &Ctx, _: &[Value]) -> R {
    match ctx.data(Dependency::Nodes).as_deref() {
        Some(Data::Nodes(n)) => Ok(serde_json::to_value(n).unwrap_or(Value::Null)),
        _ => Ok(json!([])),
    }
}

/// consul-template's `node`: the agent's own node without an argument.
fn node(ctx: &Ctx, args: &[Value]) -> R {
    let name = args.first().map(text).filter(|n| !n.is_empty());
    match ctx.data(Dependency::Node(name)).as_deref() {
        Some(Data::Node(Some(n))) => Ok(serde_json::to_value(n).unwrap_or(Value::Null)),
        _ => Ok(Value::Null),
    }
}

fn datacenters(ctx: &Ctx, _: &[Value]) -> R {
    match ctx.data(Dependency::Datacenters).as_deref() {
        Some(Data::Datacenters(d)) => Ok(json!(d)),
        _ => Ok(json!([])),
    }
}

/// `byTag instances`: tag -> the instances carrying it.
fn by_tag(_: &Ctx, args: &[Value]) -> R {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in list(arg(args, 0, "instances")?) {
        for t in i["Tags"].as_array().into_iter().flatten() {
            out.entry(text(t)).or_default().push(i.clone());
        }
    }
    Ok(json!(out))
}

/// `byMeta "k1,k2|int" instances`: instances grouped by service meta
/// values (consul-template's key: values joined by `_`, characters outside
/// `[A-Za-z0-9_-]` replaced by `_`, `|int` values zero-padded to 5 digits,
/// a missing value `_no_<key>_`).
fn by_meta(_: &Ctx, args: &[Value]) -> R {
    let keys = s_arg(args, 0, "meta keys")?;
    let norm = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in list(arg(args, 1, "instances")?) {
        let mut parts = Vec::new();
        for k in keys.split(',') {
            let (real, is_int) = match k.strip_suffix("|int") {
                Some(r) => (r, true),
                None => (k, false),
            };
            let v = i["ServiceMeta"][real].as_str().unwrap_or("").to_string();
            let v = match (v.is_empty(), is_int) {
                (true, true) => "0".to_string(),
                (true, false) => format!("_no_{real}_"),
                (false, _) => v,
            };
            let v = if is_int {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("cannot parse {v:?} as number"))?;
                format!("{n:05}")
            } else {
                v
            };
            parts.push(norm(&v));
        }
        out.entry(parts.join("_")).or_default().push(i);
    }
    Ok(json!(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_specs() {
        let s = parse_service(&[json!("blue.web@dc2|passing,warning")]).unwrap();
        assert_eq!(s.tag.as_deref(), Some("blue"));
        assert_eq!(s.name, "web");
        assert_eq!(s.dc.as_deref(), Some("dc2"));
        assert_eq!(s.filters, ["passing", "warning"]);
        let s = parse_service(&[json!("v1.2.web"), json!("any")]).unwrap();
        assert_eq!(s.tag.as_deref(), Some("v1.2"));
        assert_eq!(s.filters, ["any"]);
        assert_eq!(parse_service(&[json!("web")]).unwrap().filters, ["passing"]);
        assert!(parse_service(&[json!("web|bogus")]).is_err());
    }
}
