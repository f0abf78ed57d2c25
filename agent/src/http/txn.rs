//! `PUT /v1/txn`: atomic multi-key KV operations.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json as j, Map, Value};

use super::kv::{validate_key, KvJson};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::authz::Authz;
use crate::pipeline::body::body_or_error;
use crate::pipeline::context::{Consistency, RequestCtx};
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::state::{Command, KvCommand, KvOutcome, KvVerb, Outcome, TxnOp, TxnOutcome};

/// Consul's limit on operations per transaction.
pub const MAX_OPS: usize = 128;

/// Case-insensitive field lookup (Go's JSON decoding is case-insensitive).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn parse_op(i: usize, v: &Value) -> Result<TxnOp, ApiError> {
    let bad = |msg: String| ApiError::bad(format!("Invalid operation {i}: {msg}"));
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected an object".into()))?;
    let Some(kv) = field(obj, "KV") else {
        let kind = obj.keys().next().cloned().unwrap_or_default();
        return Err(bad(format!(
            "only KV operations are supported (got {kind:?})"
        )));
    };
    let kv = kv
        .as_object()
        .ok_or_else(|| bad("KV must be an object".into()))?;
    let s = |name: &str| -> Result<String, ApiError> {
        match field(kv, name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    };
    let n = |name: &str| -> Result<u64, ApiError> {
        match field(kv, name) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("{name} must be an unsigned integer"))),
        }
    };
    let verb_s = s("Verb")?;
    let verb = KvVerb::parse(&verb_s).ok_or_else(|| bad(format!("unknown KV verb {verb_s:?}")))?;
    let key = s("Key")?;
    validate_key(&key)?;
    if key.is_empty() && !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) {
        return Err(bad("Missing key name".into()));
    }
    let value = base64::engine::general_purpose::STANDARD
        .decode(s("Value")?)
        .map_err(|e| bad(format!("Value is not valid base64: {e}")))?;
    Ok(TxnOp {
        verb,
        key,
        value,
        flags: n("Flags")?,
        index: n("Index")?,
        session: s("Session")?,
    })
}

/// The whole transaction is refused when the token may not do one of its
/// operations; the keys of `get-tree` answers are filtered instead.
fn check_ops(authz: &Authz, ops: &[TxnOp]) -> Result<(), ApiError> {
    for o in ops {
        match o.verb {
            KvVerb::GetTree => {}
            KvVerb::DeleteTree => authz.require_key_write_prefix(&o.key)?,
            v if v.is_read() => authz.require(Resource::Key, &o.key, Need::Read)?,
            _ => authz.require(Resource::Key, &o.key, Need::Write)?,
        }
    }
    Ok(())
}

fn render(outcome: TxnOutcome, pretty: bool, authz: &Authz) -> Response {
    match outcome {
        TxnOutcome::Committed(mut results) => {
            results.retain(|r| authz.can(Resource::Key, &r.key, Need::Read));
            let results: Vec<Value> = results
                .iter()
                .map(|r| j!({ "KV": KvJson::new(&r.key, &r.entry, r.with_value) }))
                .collect();
            json(
                StatusCode::OK,
                &j!({ "Results": results, "Errors": null }),
                pretty,
            )
        }
        TxnOutcome::RolledBack(errors) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| j!({ "OpIndex": e.op_index, "What": e.what }))
                .collect();
            json(
                StatusCode::CONFLICT,
                &j!({ "Results": null, "Errors": errors }),
                pretty,
            )
        }
    }
}

pub async fn handle(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run(s, ctx, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run(
    s: Shared,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    let body = body_or_error(body, &headers)?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("Failed to parse body: {e}")))?;
    let list = doc.as_array().ok_or_else(|| {
        ApiError::bad("Failed to parse body: expected a JSON array of operations")
    })?;
    if list.len() > MAX_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            list.len()
        )));
    }
    let ops = list
        .iter()
        .enumerate()
        .map(|(i, v)| parse_op(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let pretty = q.has("pretty");
    check_ops(ctx.authz(), &ops)?;
    if ops.iter().all(|o| o.verb.is_read()) {
        // Read-only: answer from local state, like Consul.
        let consistency = if q.has("stale") {
            Consistency::Stale
        } else {
            Consistency::Default
        };
        s.gate(consistency).await?;
        let (index, outcome) = {
            let t = s.store.read();
            (t.kv.table_index(), t.kv.read_txn(&ops))
        };
        let mut resp = render(outcome, pretty, ctx.authz());
        s.meta(&mut resp, index, consistency);
        return Ok(resp);
    }
    // Lock-delay is local time: checked before raft, as Consul's leader does.
    let delayed: Vec<Value> = {
        let t = s.store.read();
        let now = std::time::Instant::now();
        ops.iter()
            .enumerate()
            .filter(|(_, o)| o.verb == KvVerb::Lock && t.sessions.lock_delayed(&o.key, now))
            .map(|(i, o)| {
                j!({ "OpIndex": i, "What": format!("failed to lock key {:?} due to lock delay", o.key) })
            })
            .collect()
    };
    if !delayed.is_empty() {
        return Ok(json(
            StatusCode::CONFLICT,
            &j!({ "Results": null, "Errors": delayed }),
            pretty,
        ));
    }
    let _t = crate::telemetry::timer("txn.apply");
    match s.write(Command::Kv(KvCommand::Txn(ops))).await? {
        (_, Outcome::Kv(KvOutcome::Txn(outcome))) => Ok(render(outcome, pretty, ctx.authz())),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}
