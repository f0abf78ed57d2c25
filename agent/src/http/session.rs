//! `/v1/session/*`: create, destroy, renew, info, node, list.
//!
//! Every write goes through raft (renew too, so the leader's TTL clock sees
//! renewals wherever they were received); reads block on the session table.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::routes::{Endpoint as E, Routes};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::body::body_or_error;
use crate::pipeline::context::{Query, RequestCtx};
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::pipeline::render::mark_filtered;
use crate::state::catalog::SERF_CHECK;
use crate::state::session::{Behavior, SessionRec, SESSIONS, TTL_MAX, TTL_MIN};
use crate::state::{Command, Outcome, SessionCommand, SessionOutcome, WatchTarget};
use gocompat::duration::parse_duration;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Consul's default lock-delay.
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// Numeric lock-delays below this many nanoseconds are taken as seconds
/// (clients send `5` meaning 5s; Consul does the same).
const LOCK_DELAY_SECONDS_BELOW: u128 = 1000;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/session/create", E::put(create))
        .route("/v1/session/destroy/{id}", E::put(destroy))
        .route("/v1/session/renew/{id}", E::put(renew))
        .route("/v1/session/info/{id}", E::get(info))
        .route("/v1/session/node/{node}", E::get(node))
        .route("/v1/session/list", E::get(list))
}

/// A session as Consul renders it.
pub fn session_json(s: &SessionRec) -> Value {
    let service_checks = if s.service_checks.is_empty() {
        Value::Null
    } else {
        s.service_checks
            .iter()
            .map(|id| json!({"ID": id, "Namespace": ""}))
            .collect()
    };
    json!({
        "ID": s.id, "Name": s.name, "Node": s.node,
        "LockDelay": s.lock_delay.as_nanos() as u64,
        "Behavior": s.behavior.as_str(), "TTL": s.ttl,
        "NodeChecks": s.node_checks, "ServiceChecks": service_checks,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

fn decode_err(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("Request decode failed: {msg}"))
}

fn string_list(name: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| decode_err(format!("{name} must be a list of strings")))
            })
            .collect(),
        _ => Err(decode_err(format!("{name} must be a list of strings"))),
    }
}

fn lock_delay(v: &Value) -> Result<Duration, ApiError> {
    let d = match v {
        Value::String(s) => {
            parse_duration(s).ok_or_else(|| decode_err(format!("invalid LockDelay {s:?}")))?
        }
        Value::Number(n) => {
            let ns = n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e18)
                .ok_or_else(|| decode_err("LockDelay must be a non-negative duration"))?;
            Duration::from_nanos(ns as u64)
        }
        _ => return Err(decode_err("LockDelay must be a duration")),
    };
    Ok(if d.as_nanos() < LOCK_DELAY_SECONDS_BELOW {
        Duration::from_secs(d.as_nanos() as u64)
    } else {
        d
    })
}

/// Parse a create body (field names case-insensitive, as Go decodes them)
/// over Consul's defaults. Everything is validated here, before raft.
pub fn parse_create(body: &[u8], default_node: &str) -> Result<SessionRec, ApiError> {
    let mut rec = SessionRec {
        id: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        node: default_node.to_string(),
        lock_delay: DEFAULT_LOCK_DELAY,
        behavior: Behavior::Release,
        ttl: String::new(),
        ttl_duration: Duration::ZERO,
        node_checks: vec![SERF_CHECK.to_string()],
        service_checks: Vec::new(),
        create_index: 0,
        modify_index: 0,
        renew_index: 0,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(rec);
    }
    let doc: Value = serde_json::from_slice(body).map_err(decode_err)?;
    let obj = match doc {
        Value::Object(o) => o,
        Value::Null => Map::new(),
        _ => return Err(decode_err("expected a JSON object")),
    };
    let string = |k: &str, v: &Value| -> Result<String, ApiError> {
        match v {
            Value::Null => Ok(String::new()),
            Value::String(s) => Ok(s.clone()),
            _ => Err(decode_err(format!("{k} must be a string"))),
        }
    };
    // Legacy `Checks` and `NodeChecks` each replace the serfHealth default;
    // given together they add up.
    let mut legacy: Option<Vec<String>> = None;
    let mut node_checks: Option<Vec<String>> = None;
    let mut behavior = String::new();
    for (k, v) in &obj {
        match k.to_ascii_lowercase().as_str() {
            "name" => rec.name = string(k, v)?,
            "node" => {
                let n = string(k, v)?;
                if !n.is_empty() {
                    rec.node = n;
                }
            }
            "lockdelay" => rec.lock_delay = lock_delay(v)?,
            "behavior" => behavior = string(k, v)?,
            "ttl" => rec.ttl = string(k, v)?,
            "checks" => legacy = Some(string_list(k, v)?),
            "nodechecks" => node_checks = Some(string_list(k, v)?),
            "servicechecks" => {
                let list = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a.clone(),
                    _ => return Err(decode_err("ServiceChecks must be a list")),
                };
                for c in list {
                    let id = c
                        .as_object()
                        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("ID")))
                        .and_then(|(_, v)| v.as_str())
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| decode_err("ServiceChecks entries need an ID"))?;
                    rec.service_checks.push(id.to_string());
                }
            }
            // ID is assigned here; Namespace/Partition do not apply.
            _ => {}
        }
    }
    if legacy.is_some() || node_checks.is_some() {
        let mut all = legacy.unwrap_or_default();
        for c in node_checks.unwrap_or_default() {
            if !all.contains(&c) {
                all.push(c);
            }
        }
        rec.node_checks = all;
    }
    rec.behavior = match behavior.as_str() {
        "" | "release" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => return Err(ApiError::bad(format!("Invalid Behavior setting '{other}'"))),
    };
    if !rec.ttl.is_empty() {
        let ttl = parse_duration(&rec.ttl)
            .ok_or_else(|| ApiError::bad(format!("Session TTL '{}' invalid", rec.ttl)))?;
        if !ttl.is_zero() && !(TTL_MIN..=TTL_MAX).contains(&ttl) {
            return Err(ApiError::bad(format!(
                "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
                rec.ttl
            )));
        }
        rec.ttl_duration = ttl;
    }
    // A lock-delay above 60s is shown as given and applied as 60s, as Consul does.
    Ok(rec)
}

async fn write_session(s: &Shared, cmd: SessionCommand) -> Result<SessionOutcome, ApiError> {
    match s.write(Command::Session(cmd)).await? {
        (_, Outcome::Session(SessionOutcome::Error(e))) => Err(ApiError::bad(e)),
        (_, Outcome::Session(o)) => Ok(o),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// The dc check every session endpoint starts with.
fn query(ctx: &RequestCtx) -> Result<&Query, ApiError> {
    ctx.check_dc()?;
    Ok(&ctx.query)
}

pub async fn create(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = query(&ctx)?;
    let body = body_or_error(body, &headers)?;
    // Forwarded from another agent: its node is the default.
    let origin = headers
        .get(crate::rpc::client::AGENT_NODE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let rec = parse_create(&body, origin.unwrap_or(&s.node.node))?;
    ctx.authz()
        .require(Resource::Session, &rec.node, Need::Write)?;
    let id = rec.id.clone();
    write_session(&s, SessionCommand::Create(Box::new(rec))).await?;
    tracing::debug!(session = %id, "session created");
    Ok(json(StatusCode::OK, &json!({ "ID": id }), q.has("pretty")))
}

pub async fn destroy(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    query(&ctx)?;
    require_session_write(&s, &ctx, &id)?;
    write_session(&s, SessionCommand::Destroy { id }).await?;
    Ok(json(StatusCode::OK, &true, false))
}

pub async fn renew(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    let q = query(&ctx)?;
    require_session_write(&s, &ctx, &id)?;
    match write_session(&s, SessionCommand::Renew { id: id.clone() }).await? {
        SessionOutcome::Session(rec) => {
            Ok(json(StatusCode::OK, &[session_json(&rec)], q.has("pretty")))
        }
        _ => Err(ApiError::NotFound(format!("Session id '{id}' not found"))),
    }
}

/// Destroying or renewing a session needs `session:write` on its node.
fn require_session_write(s: &Shared, ctx: &RequestCtx, id: &str) -> Result<(), ApiError> {
    let node = s.store.read().sessions.get(id).map(|r| r.node.clone());
    match node {
        Some(n) => ctx.authz().require(Resource::Session, &n, Need::Write),
        None => Ok(()),
    }
}

async fn blocking_sessions(
    s: Shared,
    ctx: RequestCtx,
    select: impl Fn(&SessionRec) -> bool,
) -> Result<Response, ApiError> {
    let authz = ctx.authz().clone();
    let filtered = AtomicBool::new(false);
    let mut resp = s
        .blocking_json(
            &ctx,
            || WatchTarget::Named(SESSIONS.into()),
            |t| t.sessions.table_index(),
            |t| {
                // Per answer built: the blocking wait builds some to compare.
                filtered.store(false, Relaxed);
                Some(
                    t.sessions
                        .list()
                        .filter(|r| select(r))
                        .filter(|r| {
                            let ok = authz.can(Resource::Session, &r.node, Need::Read);
                            filtered.fetch_or(!ok, Relaxed);
                            ok
                        })
                        .map(session_json)
                        .collect::<Vec<_>>(),
                )
            },
        )
        .await?;
    mark_filtered(&mut resp, filtered.load(Relaxed));
    Ok(resp)
}

pub async fn info(
    State(s): State<Shared>,
    Path(id): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    blocking_sessions(s, ctx, move |r| r.id == id).await
}

pub async fn node(
    State(s): State<Shared>,
    Path(node): Path<String>,
    ctx: RequestCtx,
) -> Result<Response, ApiError> {
    blocking_sessions(s, ctx, move |r| r.node == node).await
}

pub async fn list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    blocking_sessions(s, ctx, |_| true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SessionRec, ApiError> {
        parse_create(body.as_bytes(), "me")
    }

    /// Defaults, python-consul's lowercase fields, check lists and bad input.
    #[test]
    fn create_bodies() {
        let r = parse("").unwrap();
        assert_eq!(r.node, "me");
        assert_eq!(r.node_checks, vec!["serfHealth"]);
        assert_eq!(r.lock_delay, Duration::from_secs(15));
        assert_eq!(r.behavior, Behavior::Release);
        assert!(r.ttl_duration.is_zero());
        let r = parse(
            r#"{"name":"n","ttl":"10s","behavior":"delete","lockdelay":"0s","checks":["a"]}"#,
        )
        .unwrap();
        assert_eq!((r.name.as_str(), r.ttl.as_str()), ("n", "10s"));
        assert_eq!(r.ttl_duration, Duration::from_secs(10));
        assert_eq!(r.behavior, Behavior::Delete);
        assert!(r.lock_delay.is_zero());
        assert_eq!(r.node_checks, vec!["a"]);
        let r = parse(r#"{"Checks":[],"LockDelay":5}"#).unwrap();
        assert!(r.node_checks.is_empty());
        assert_eq!(r.lock_delay, Duration::from_secs(5));
        let r = parse(r#"{"LockDelay":2000000000,"ServiceChecks":[{"ID":"svc"}]}"#).unwrap();
        assert_eq!(r.lock_delay, Duration::from_secs(2));
        assert_eq!(r.node_checks, vec!["serfHealth"]);
        assert_eq!(r.service_checks, vec!["svc"]);
        assert!(parse(r#"{"TTL":"0s"}"#).unwrap().ttl_duration.is_zero());
        for bad in [
            r#"{"TTL":"5s"}"#,
            r#"{"TTL":"86401s"}"#,
            r#"{"TTL":"soon"}"#,
            r#"{"Behavior":"explode"}"#,
            r#"{"LockDelay":"-1s"}"#,
            r#"{"Checks":"serfHealth"}"#,
            r#"[1]"#,
            r#"{"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}: {e}");
        }
    }
}
