//! Prepared queries: the request body parsed and validated into a
//! [`QueryRec`] (Consul's field names and error texts), rendered back as
//! Consul's JSON; templates ([`template`]); execution, local and with the
//! failover walk ([`execute`]), run across datacenters by [`remote`] for
//! the API (`http::query`) and DNS (`<name>.query.consul`, `dns::lookup`).
//! The table is `state::query`.

pub mod execute;
pub mod remote;
pub mod template;

use serde_json::{json, Map, Value};

use crate::state::query::{QueryRec, ServiceQuery};

/// What is wrong with a query definition (answered 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err(msg: impl Into<String>) -> QueryError {
    QueryError(msg.into())
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<Option<&'a Map<String, Value>>, QueryError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        _ => Err(err(format!(
            "Request decode failed: {what} must be an object"
        ))),
    }
}

fn string(o: &Map<String, Value>, k: &str, name: &str) -> Result<String, QueryError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(err(format!(
            "Request decode failed: {name} must be a string"
        ))),
    }
}

fn boolean(o: &Map<String, Value>, k: &str, name: &str) -> Result<bool, QueryError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(format!(
            "Request decode failed: {name} must be true or false"
        ))),
    }
}

fn strings(o: &Map<String, Value>, k: &str, name: &str) -> Result<Vec<String>, QueryError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    err(format!(
                        "Request decode failed: {name} must be a list of strings"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(err(format!(
            "Request decode failed: {name} must be a list of strings"
        ))),
    }
}

fn string_map(
    o: &Map<String, Value>,
    k: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, QueryError> {
    let bad = || {
        err(format!(
            "Request decode failed: {name} must be an object of strings"
        ))
    };
    match o.get(k) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(a, b)| {
                b.as_str()
                    .map(|b| (a.clone(), b.to_string()))
                    .ok_or_else(bad)
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn parse_service(o: &Map<String, Value>) -> Result<ServiceQuery, QueryError> {
    let mut s = ServiceQuery {
        service: string(o, "service", "Service.Service")?,
        only_passing: boolean(o, "onlypassing", "Service.OnlyPassing")?,
        ignore_check_ids: strings(o, "ignorecheckids", "Service.IgnoreCheckIDs")?,
        near: string(o, "near", "Service.Near")?,
        tags: strings(o, "tags", "Service.Tags")?,
        node_meta: string_map(o, "nodemeta", "Service.NodeMeta")?,
        service_meta: string_map(o, "servicemeta", "Service.ServiceMeta")?,
        ..Default::default()
    };
    if let Some(f) = obj(
        o.get("failover").unwrap_or(&Value::Null),
        "Service.Failover",
    )? {
        s.failover.nearest_n = match f.get("nearestn") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) if n < 0 => return Err(err(format!("Bad NearestN '{n}', must be >= 0"))),
                Some(n) => u32::try_from(n).map_err(|_| err(format!("Bad NearestN '{n}'")))?,
                None => {
                    return Err(err(
                        "Request decode failed: Service.Failover.NearestN must be an integer",
                    ))
                }
            },
            Some(_) => {
                return Err(err(
                    "Request decode failed: Service.Failover.NearestN must be an integer",
                ))
            }
        };
        s.failover.datacenters = strings(f, "datacenters", "Service.Failover.Datacenters")?;
    }
    Ok(s)
}

/// Parse a definition body (keys already normalized: lowercase, no `_`)
/// and validate it as Consul's `parseQuery`. `id` is the query's ID.
pub fn parse(v: &Value, id: &str) -> Result<QueryRec, QueryError> {
    let o = obj(v, "the body")?.ok_or_else(|| err("Request decode failed: expected an object"))?;
    let mut q = QueryRec {
        id: id.to_string(),
        name: string(o, "name", "Name")?,
        session: string(o, "session", "Session")?,
        token: string(o, "token", "Token")?,
        ..Default::default()
    };
    if let Some(t) = obj(o.get("template").unwrap_or(&Value::Null), "Template")? {
        q.template.kind = string(t, "type", "Template.Type")?;
        q.template.regexp = string(t, "regexp", "Template.Regexp")?;
        q.template.remove_empty_tags = boolean(t, "removeemptytags", "Template.RemoveEmptyTags")?;
    }
    if let Some(s) = obj(o.get("service").unwrap_or(&Value::Null), "Service")? {
        q.service = parse_service(s)?;
    }
    if let Some(d) = obj(o.get("dns").unwrap_or(&Value::Null), "DNS")? {
        q.dns_ttl = string(d, "ttl", "DNS.TTL")?;
    }
    validate(&q)?;
    Ok(q)
}

/// Consul's checks, in its order and words.
pub fn validate(q: &QueryRec) -> Result<(), QueryError> {
    if q.name.len() > 512 || q.service.service.len() > 512 {
        return Err(err("Name and Service.Service must be at most 512 bytes"));
    }
    if q.is_template() {
        template::compile(q).map_err(|e| err(e.0))?;
    }
    if q.service.service.is_empty() {
        return Err(err("Must provide a Service name to query"));
    }
    if !q.dns_ttl.is_empty() {
        match gocompat::duration::parse_duration(&q.dns_ttl) {
            Some(_) => {}
            None if q.dns_ttl.starts_with('-') => {
                return Err(err(format!("Bad DNS TTL '{}', must be >=0", q.dns_ttl)))
            }
            None => {
                return Err(err(format!(
                    "Bad DNS TTL '{}': invalid duration",
                    q.dns_ttl
                )))
            }
        }
    }
    Ok(())
}

/// The query `id_or_name` (ID or name) resolves to, rendered for that
/// name when it is a template; `None`: no such query.
pub fn find(t: &crate::state::Tables, id_or_name: &str) -> Option<Result<QueryRec, QueryError>> {
    let q = t.queries.resolve(id_or_name)?;
    if !q.is_template() {
        return Some(Ok(q.clone()));
    }
    Some(
        template::compile(q)
            .and_then(|c| c.render(q, id_or_name))
            .map_err(|e| err(e.0)),
    )
}

/// Consul's JSON for a query; `token` is what to show as its Token (Consul
/// hides it, `<hidden>`, from callers who may not write the query).
pub fn to_json(q: &QueryRec, token: &str) -> Value {
    let s = &q.service;
    let list = |v: &Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
    json!({
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": token,
        "Template": {
            "Type": q.template.kind,
            "Regexp": q.template.regexp,
            "RemoveEmptyTags": q.template.remove_empty_tags,
        },
        "Service": {
            "Service": s.service,
            "Failover": {
                "NearestN": s.failover.nearest_n,
                "Datacenters": list(&s.failover.datacenters),
                "Targets": Value::Null,
            },
            "IgnoreCheckIDs": list(&s.ignore_check_ids),
            "OnlyPassing": s.only_passing,
            "Near": s.near,
            "Tags": list(&s.tags),
            "NodeMeta": if s.node_meta.is_empty() { Value::Null } else { json!(s.node_meta) },
            "ServiceMeta": if s.service_meta.is_empty() { Value::Null } else { json!(s.service_meta) },
            "Peer": "",
            "Connect": {"Enabled": false},
        },
        "DNS": {"TTL": q.dns_ttl},
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::defs::normalize;

    fn p(v: Value) -> Result<QueryRec, QueryError> {
        parse(&normalize(&v), "id1")
    }

    #[test]
    fn consul_validation_texts() {
        assert_eq!(
            p(json!({"Name": "x"})).unwrap_err().0,
            "Must provide a Service name to query"
        );
        assert_eq!(
            p(json!({"Service": {"Service": "web", "Failover": {"NearestN": -1}}}))
                .unwrap_err()
                .0,
            "Bad NearestN '-1', must be >= 0"
        );
        assert_eq!(
            p(json!({"Service": {"Service": "web"}, "DNS": {"TTL": "-5s"}}))
                .unwrap_err()
                .0,
            "Bad DNS TTL '-5s', must be >=0"
        );
        assert!(
            p(json!({"Service": {"Service": "web"}, "DNS": {"TTL": "soon"}}))
                .unwrap_err()
                .0
                .starts_with("Bad DNS TTL 'soon'")
        );
        assert_eq!(
            p(json!({"Service": {"Service": "web"}, "Template": {"Type": "nope"}}))
                .unwrap_err()
                .0,
            "Bad Template.Type 'nope'"
        );
        assert!(p(json!({"Service": {"Service": "web", "Tags": "x"}})).is_err());
        assert!(p(json!([1])).is_err());
        let q = p(
            json!({"Name": "web", "Service": {"Service": "web", "Tags": ["a", "!b"],
            "Failover": {"NearestN": 2, "Datacenters": ["dc2"]}, "OnlyPassing": true},
            "DNS": {"TTL": "10s"}}),
        )
        .unwrap();
        assert_eq!(q.service.tags, ["a", "!b"]);
        assert_eq!(q.service.failover.nearest_n, 2);
        let j = to_json(&q, "");
        assert_eq!(j["Service"]["Failover"]["Datacenters"], json!(["dc2"]));
        assert_eq!(j["DNS"]["TTL"], "10s");
        assert_eq!(j["Service"]["IgnoreCheckIDs"], Value::Null);
    }
}
