//! `/v1/operator/keyring`: the gossip keys of every member (GET), install
//! (POST), use (PUT) and remove (DELETE) a key, as Consul's API does. The
//! operation travels to every member by gossip ([`crate::cluster::gossip::Gossip::keyring_op`]).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::routes::{Endpoint as E, Routes};
use crate::app::Shared;
use crate::cluster::gossip::{GossipError, KeyOp, KeyringReport};
use crate::cluster::keyring::KeyringError;
use crate::pipeline::body::body_or_error;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;

pub fn routes() -> Routes {
    Routes::new().route(
        "/v1/operator/keyring",
        E::get(list)
            .on(Method::POST, install)
            .on(Method::PUT, use_key)
            .on(Method::DELETE, remove),
    )
}

fn gossip_error(e: GossipError) -> ApiError {
    match e {
        GossipError::Keyring(k @ KeyringError::BadKey(_)) => ApiError::bad(k.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// The members' answers in Consul's shape (one entry: the LAN pool).
fn report_json(dc: &str, r: &KeyringReport) -> serde_json::Value {
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    let mut primary: BTreeMap<&str, usize> = BTreeMap::new();
    let mut messages: BTreeMap<&str, &str> = BTreeMap::new();
    for a in &r.acks {
        for k in &a.keys {
            *keys.entry(k).or_default() += 1;
        }
        if !a.primary.is_empty() {
            *primary.entry(&a.primary).or_default() += 1;
        }
        if !a.error.is_empty() {
            messages.insert(&a.node, &a.error);
        }
    }
    json!([{
        "WAN": false,
        "Datacenter": dc,
        "Segment": "",
        "Partition": "",
        "Keys": keys,
        "PrimaryKeys": primary,
        "NumNodes": r.num_nodes,
        "Messages": messages,
    }])
}

/// A change failed unless every member answered without error.
fn check_all(r: &KeyringReport) -> Result<(), ApiError> {
    let failed: Vec<String> = r
        .acks
        .iter()
        .filter(|a| !a.error.is_empty())
        .map(|a| format!("{}: {}", a.node, a.error))
        .collect();
    let silent = r.num_nodes.saturating_sub(r.acks.len());
    if failed.is_empty() && silent == 0 {
        return Ok(());
    }
    let mut msg = format!(
        "{}/{} nodes reported failure",
        failed.len() + silent,
        r.num_nodes
    );
    if silent > 0 {
        msg.push_str(&format!(" ({silent} did not answer within 5s)"));
    }
    for f in failed {
        msg.push_str(&format!("\n{f}"));
    }
    Err(ApiError::Internal(msg))
}

async fn run(s: &Shared, op: KeyOp, key: &str) -> Result<KeyringReport, ApiError> {
    let g = s
        .gossip
        .as_ref()
        .ok_or_else(|| ApiError::Internal("gossip is off (ports.serf_lan = -1)".into()))?;
    g.keyring_op(op, key).await.map_err(gossip_error)
}

pub async fn list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let r = run(&s, KeyOp::List, "").await?;
    Ok(json(
        StatusCode::OK,
        &report_json(&s.config.datacenter, &r),
        ctx.query.has("pretty"),
    ))
}

/// The `{"Key": "..."}` body of a change.
fn key_of(body: Result<Bytes, BytesRejection>, headers: &HeaderMap) -> Result<String, ApiError> {
    let b = body_or_error(body, headers)?;
    let v: serde_json::Value = serde_json::from_slice(&b)
        .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
    v.get("Key")
        .and_then(|k| k.as_str())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad("Request decode failed: Key (a base64 string) is required"))
}

async fn change(
    s: Shared,
    op: KeyOp,
    body: Result<Bytes, BytesRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_of(body, &headers)?;
    let r = run(&s, op, &key).await?;
    check_all(&r)?;
    Ok(StatusCode::OK.into_response())
}

pub async fn install(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    change(s, KeyOp::Install, body, headers).await
}

pub async fn use_key(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    change(s, KeyOp::Use, body, headers).await
}

pub async fn remove(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    change(s, KeyOp::Remove, body, headers).await
}
