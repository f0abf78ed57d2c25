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
    pub near: Option<String>,
    pub filters: Vec<String>,
}

/// consul-template's `[[:word:].-]+` for datacenter, node and near names.
fn word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `[name][@dc][~near]` (the arguments joined, as consul-template joins
/// them): each part present only if given, and made of word characters.
fn name_dc_near(what: &str, args: &[Value]) -> Result<[Option<String>; 3], String> {
    let raw = args.iter().map(text).collect::<String>();
    let (rest, near) = match raw.split_once('~') {
        Some((r, n)) => (r, Some(n.to_string())),
        None => (raw.as_str(), None),
    };
    let (name, dc) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (rest, None),
    };
    let name = (!name.is_empty()).then(|| name.to_string());
    let parts = [name, dc, near];
    if parts.iter().flatten().any(|p| !word(p)) {
        return Err(format!("{what}: invalid format: {raw:?}"));
    }
    Ok(parts)
}

/// consul-template's service query syntax; extra arguments are filters
/// (`service "web" "any"` is `service "web|any"`). Healthy only by default.
pub fn parse_service(args: &[Value]) -> Result<ServiceSpec, String> {
    let joined = args.iter().map(text).collect::<Vec<_>>().join("|");
    let (spec, filter) = match joined.split_once('|') {
        Some((a, f)) => (a.to_string(), f.to_string()),
        None => (joined.clone(), "passing".to_string()),
    };
    // `~near` asks the agent to sort by distance to a node (by network
    // coordinates); the backend keeps the agent's order then.
    let (spec, near) = match spec.split_once('~') {
        Some((s, n)) if word(n) => (s, Some(n.to_string())),
        Some(_) => return Err(format!("service: invalid near in {joined:?}")),
        None => (spec.as_str(), None),
    };
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
        near,
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
        near: s.near,
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

/// `services ["@dc"]`: every service name with its tags.
fn services(ctx: &Ctx, args: &[Value]) -> R {
    let [name, dc, near] = name_dc_near("catalog.services", args)?;
    if name.is_some() || near.is_some() {
        return Err(format!(
            "catalog.services: invalid format: {:?} (only \"@dc\")",
            args.iter().map(text).collect::<String>()
        ));
    }
    match ctx.data(Dependency::Services { dc }).as_deref() {
        Some(Data::Services(m)) => Ok(Value::Array(
            m.iter()
                .map(|(n, t)| json!({"Name": n, "Tags": t}))
                .collect(),
        )),
        _ => Ok(json!([])),
    }
}

/// `nodes ["@dc~near"]`.
fn nodes(ctx: &Ctx, args: &[Value]) -> R {
    let [name, dc, near] = name_dc_near("catalog.nodes", args)?;
    if name.is_some() {
        return Err(format!(
            "catalog.nodes: invalid format: {:?} (only \"@dc~near\")",
            args.iter().map(text).collect::<String>()
        ));
    }
    match ctx.data(Dependency::Nodes { dc, near }).as_deref() {
        Some(Data::Nodes(n)) => Ok(serde_json::to_value(n).unwrap_or(Value::Null)),
        _ => Ok(json!([])),
    }
}

/// consul-template's `node ["name"] ["@dc"]`: the agent's own node
/// without a name.
fn node(ctx: &Ctx, args: &[Value]) -> R {
    let [name, dc, near] = name_dc_near("catalog.node", args)?;
    if near.is_some() {
        return Err("catalog.node: ~near is not accepted here".into());
    }
    match ctx.data(Dependency::Node { name, dc }).as_deref() {
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
        let s = parse_service(&[json!("web@dc1~n1|any")]).unwrap();
        assert_eq!(
            (s.dc.as_deref(), s.near.as_deref()),
            (Some("dc1"), Some("n1"))
        );
        assert!(parse_service(&[json!("web~")]).is_err());
        let s = parse_service(&[json!("v1.2.web"), json!("any")]).unwrap();
        assert_eq!(s.tag.as_deref(), Some("v1.2"));
        assert_eq!(s.filters, ["any"]);
        assert_eq!(parse_service(&[json!("web")]).unwrap().filters, ["passing"]);
        assert!(parse_service(&[json!("web|bogus")]).is_err());
    }

    #[test]
    fn dc_and_near_arguments() {
        let p = |a: &[&str]| name_dc_near("x", &a.iter().map(|s| json!(s)).collect::<Vec<_>>());
        assert_eq!(p(&[]).unwrap(), [None, None, None]);
        assert_eq!(
            p(&["@dc2~n1"]).unwrap(),
            [None, Some("dc2".into()), Some("n1".into())]
        );
        // node "n1" "@dc2" is node "n1@dc2".
        assert_eq!(
            p(&["n1", "@dc2"]).unwrap(),
            [Some("n1".into()), Some("dc2".into()), None]
        );
        assert!(p(&["@"]).is_err());
        assert!(p(&["@dc 2"]).is_err());
        assert!(p(&["@dc?x=1"]).is_err());
    }
}
