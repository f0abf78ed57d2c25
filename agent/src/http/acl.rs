//! `/v1/acl/*` (Consul's `agent/acl_endpoint.go`): bootstrap, tokens
//! (`/token`, `/token/<accessor>`, `/token/self`, `/clone`, `/tokens`),
//! and `/v1/agent/token/<kind>`. Policies and roles are
//! [`super::acl_policy`]. Reads need `acl:read`, writes `acl:write`;
//! `/token/self` only the token itself, `/bootstrap` nothing (once).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::acl_common::{acl_disabled, field, hash, link_ids, now, require, str_field, write_acl};
use super::acl_policy;
use super::routes::{Endpoint as E, Routes};
use crate::acl::{Global, Need};
use crate::app::{AppState, Shared};
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::state::acl::{AclCommand, AclTable, TokenRec, MANAGEMENT_POLICY_ID};

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/acl/bootstrap", E::put(bootstrap))
        .route("/v1/acl/token", E::put(token_create))
        .route("/v1/acl/token/self", E::get(token_self))
        .route(
            "/v1/acl/token/{id}",
            E::get(token_read)
                .on(Method::PUT, token_update)
                .on(Method::DELETE, token_delete),
        )
        .route("/v1/acl/token/{id}/clone", E::put(token_clone))
        .route("/v1/acl/tokens", E::get(token_list))
        .route("/v1/agent/token/{kind}", E::put(agent_token))
        .merge(acl_policy::routes())
}

/// `[{"ID","Name"}]` of linked policies (or roles) that still exist.
fn links(ids: &[String], name: impl Fn(&str) -> Option<String>) -> Vec<Value> {
    ids.iter()
        .filter_map(|id| name(id).map(|n| json!({"ID": id, "Name": n})))
        .collect()
}

/// A token as Consul shows it (`structs.ACLToken`, empty lists omitted).
pub fn token_json(acl: &AclTable, t: &TokenRec, show_secret: bool) -> Value {
    let mut v = json!({
        "AccessorID": t.accessor_id,
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
        "Local": t.local,
        "CreateTime": t.create_time,
        "Hash": hash(&[&t.description, &t.policies.join(","), &t.roles.join(",")]),
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    });
    let policies = links(&t.policies, |id| acl.policy(id).map(|p| p.name.clone()));
    if !policies.is_empty() {
        v["Policies"] = Value::Array(policies);
    }
    let roles = links(&t.roles, |id| acl.role(id).map(|r| r.name.clone()));
    if !roles.is_empty() {
        v["Roles"] = Value::Array(roles);
    }
    v
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
async fn bootstrap(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    if !s.config.acl.enabled {
        return Err(acl_disabled());
    }
    ctx.check_dc()?;
    let tok = TokenRec {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![MANAGEMENT_POLICY_ID.into()],
        roles: vec![],
        local: false,
        create_time: now(),
        create_index: 0,
        modify_index: 0,
    };
    write_acl(&s, AclCommand::Bootstrap(Box::new(tok.clone()))).await?;
    tracing::info!(accessor = %tok.accessor_id, "ACL bootstrap completed");
    answer_token(&s, &ctx, &tok.accessor_id)
}

fn answer_token(s: &AppState, ctx: &RequestCtx, accessor: &str) -> Result<Response, ApiError> {
    let t = s.store.read();
    let tok = t
        .acl
        .token(accessor)
        .ok_or_else(|| ApiError::NotFound("ACL not found".into()))?;
    let v = token_json(&t.acl, tok, true);
    Ok(json(StatusCode::OK, &v, ctx.query.has("pretty")))
}

/// The token a create/update body describes (`accessor`: the existing one).
fn token_from_body(
    s: &AppState,
    body: &Value,
    existing: Option<TokenRec>,
) -> Result<TokenRec, ApiError> {
    let t = s.store.read();
    let acl = &t.acl;
    let policies = link_ids(
        body,
        "Policies",
        |id| acl.policy(id).is_some(),
        |n| acl.policy_by_name(n).map(|p| p.id.clone()),
    )?;
    let roles = link_ids(
        body,
        "Roles",
        |id| acl.role(id).is_some(),
        |n| acl.role_by_name(n).map(|r| r.id.clone()),
    )?;
    let uuid_or_new = |key: &str| -> Result<String, ApiError> {
        let v = str_field(body, key)?;
        if v.is_empty() {
            return Ok(uuid::Uuid::new_v4().to_string());
        }
        uuid::Uuid::parse_str(&v)
            .map(|u| u.to_string())
            .map_err(|_| ApiError::bad(format!("Invalid {key}: not a UUID")))
    };
    let local = field(body, "Local")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let description = str_field(body, "Description")?;
    Ok(match existing {
        Some(mut old) => {
            let secret = str_field(body, "SecretID")?;
            if !secret.is_empty() && secret != old.secret_id {
                return Err(ApiError::bad(
                    "Changing a token's SecretID is not permitted",
                ));
            }
            old.description = description;
            old.policies = policies;
            old.roles = roles;
            old
        }
        None => TokenRec {
            accessor_id: uuid_or_new("AccessorID")?,
            secret_id: uuid_or_new("SecretID")?,
            description,
            policies,
            roles,
            local,
            create_time: now(),
            create_index: 0,
            modify_index: 0,
        },
    })
}

/// The primary datacenter when this one is a secondary with ACLs on: a
/// global token's write goes there (and is replicated back); a local
/// token's stays here, as Consul keeps it.
fn primary_elsewhere(s: &AppState) -> Option<String> {
    let primary = s.config.primary_datacenter.as_deref()?;
    (s.config.acl.enabled && primary != s.config.datacenter).then(|| primary.to_string())
}

/// Send the request to the primary when `global` and this is a secondary.
async fn global_write_to_primary(
    s: &Shared,
    global: bool,
    ctx: RequestCtx,
    parts: Parts,
    body: Bytes,
) -> Result<Response, RequestCtx> {
    match primary_elsewhere(s).filter(|_| global) {
        Some(primary) => {
            Ok(crate::pipeline::forward::to_datacenter(s.clone(), primary, ctx, parts, body).await)
        }
        None => Err(ctx),
    }
}

/// Whether the token `id` here is a local one (`false` when unknown: a
/// global token the replication has not brought yet).
fn is_local(s: &AppState, id: &str) -> bool {
    s.store.read().acl.token(id).is_some_and(|t| t.local)
}

/// `PUT /v1/acl/token`.
async fn token_create(
    State(s): State<Shared>,
    ctx: RequestCtx,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let headers = parts.headers.clone();
    let raw = crate::pipeline::body::body_or_error(body, &headers)?;
    let body = json_body(Ok(raw.clone()), &headers)?;
    let local = field(&body, "Local").and_then(Value::as_bool) == Some(true);
    let ctx = match global_write_to_primary(&s, !local, ctx, parts, raw).await {
        Ok(resp) => return Ok(resp),
        Err(ctx) => ctx,
    };
    let tok = token_from_body(&s, &body, None)?;
    if s.store.read().acl.token(&tok.accessor_id).is_some() {
        return Err(ApiError::bad("Invalid Token: AccessorID is already in use"));
    }
    write_acl(&s, AclCommand::SetToken(Box::new(tok.clone()))).await?;
    tracing::info!(accessor = %tok.accessor_id, "ACL token created");
    answer_token(&s, &ctx, &tok.accessor_id)
}

/// `PUT /v1/acl/token/<accessor>`.
async fn token_update(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let headers = parts.headers.clone();
    let raw = crate::pipeline::body::body_or_error(body, &headers)?;
    let body = json_body(Ok(raw.clone()), &headers)?;
    let global = !is_local(&s, &id);
    let ctx = match global_write_to_primary(&s, global, ctx, parts, raw).await {
        Ok(resp) => return Ok(resp),
        Err(ctx) => ctx,
    };
    let in_body = str_field(&body, "AccessorID")?;
    if !in_body.is_empty() && in_body != id {
        return Err(ApiError::bad(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    let old = s.store.read().acl.token(&id).cloned();
    let Some(old) = old else {
        return Err(ApiError::bad(format!("Cannot find token {id:?}")));
    };
    let tok = token_from_body(&s, &body, Some(old))?;
    write_acl(&s, AclCommand::SetToken(Box::new(tok))).await?;
    answer_token(&s, &ctx, &id)
}

/// `GET /v1/acl/token/<accessor>`.
async fn token_read(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let t = s.store.read();
    let Some(tok) = t.acl.token(&id) else {
        return Err(ApiError::Forbidden("ACL not found".into()));
    };
    let show = ctx.authz().can_global(Global::Acl, Need::Write);
    let mut resp = json(StatusCode::OK, &token_json(&t.acl, tok, show), opts.pretty);
    s.meta(&mut resp, t.acl.table_index(), opts.consistency);
    Ok(resp)
}

/// `GET /v1/acl/token/self`: the request's own token.
async fn token_self(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    if !s.config.acl.enabled {
        return Err(acl_disabled());
    }
    let secret = match ctx.token() {
        Some(t) => t.to_string(),
        None => s.default_secret().to_string(),
    };
    let t = s.store.read();
    let Some(tok) = t.acl.token_by_secret(&secret) else {
        return Err(ApiError::Forbidden("ACL not found".into()));
    };
    let v = token_json(&t.acl, tok, true);
    Ok(json(StatusCode::OK, &v, ctx.query.has("pretty")))
}

/// `DELETE /v1/acl/token/<accessor>`: `true`.
async fn token_delete(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let global = !is_local(&s, &id);
    if let Ok(resp) = global_write_to_primary(&s, global, ctx, parts, Bytes::new()).await {
        return Ok(resp);
    }
    write_acl(&s, AclCommand::DeleteToken(id.clone())).await?;
    tracing::info!(accessor = %id, "ACL token deleted");
    Ok(json(StatusCode::OK, &json!(true), false))
}

/// `PUT /v1/acl/token/<accessor>/clone`: a new token with the same links
/// (local where a local one was).
async fn token_clone(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let headers = parts.headers.clone();
    let raw = crate::pipeline::body::body_or_error(body, &headers)?;
    let global = !is_local(&s, &id);
    let ctx = match global_write_to_primary(&s, global, ctx, parts, raw.clone()).await {
        Ok(resp) => return Ok(resp),
        Err(ctx) => ctx,
    };
    let description = match raw {
        b if b.iter().all(u8::is_ascii_whitespace) => None,
        b => {
            let v: Value = serde_json::from_slice(&b)
                .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
            Some(str_field(&v, "Description")?).filter(|d| !d.is_empty())
        }
    };
    let old = s.store.read().acl.token(&id).cloned();
    let Some(old) = old else {
        return Err(ApiError::bad(format!("Cannot find token {id:?}")));
    };
    let tok = TokenRec {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: uuid::Uuid::new_v4().to_string(),
        description: description.unwrap_or(old.description),
        create_time: now(),
        create_index: 0,
        modify_index: 0,
        ..old
    };
    write_acl(&s, AclCommand::SetToken(Box::new(tok.clone()))).await?;
    answer_token(&s, &ctx, &tok.accessor_id)
}

/// `GET /v1/acl/tokens[?policy=<id>&role=<id>]`.
async fn token_list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let policy = ctx.query.get("policy").filter(|p| !p.is_empty());
    let role = ctx.query.get("role").filter(|p| !p.is_empty());
    let show = ctx.authz().can_global(Global::Acl, Need::Write);
    let t = s.store.read();
    let list: Vec<Value> = t
        .acl
        .tokens()
        .filter(|x| policy.is_none_or(|p| x.policies.iter().any(|y| y == p)))
        .filter(|x| role.is_none_or(|r| x.roles.iter().any(|y| y == r)))
        .map(|x| {
            let mut v = token_json(&t.acl, x, show);
            v["Legacy"] = json!(false);
            v
        })
        .collect();
    let mut resp = json(StatusCode::OK, &list, opts.pretty);
    s.meta(&mut resp, t.acl.table_index(), opts.consistency);
    Ok(resp)
}

/// `PUT /v1/agent/token/<kind>` with `{"Token": "..."}`: this agent's
/// `default` or `agent` token, in memory (Consul's persistence is off by
/// default).
async fn agent_token(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !s.config.acl.enabled {
        return Err(acl_disabled());
    }
    ctx.check_dc()?;
    let body = json_body(body, &headers)?;
    let token = str_field(&body, "Token")?;
    if !s.acl_tokens.set(&kind, token) {
        return Err(ApiError::NotFound(format!("Token {kind:?} is unknown")));
    }
    if let Some(path) = persisted_tokens_path(&s) {
        s.acl_tokens
            .persist(&path)
            .map_err(|e| ApiError::Internal(format!("persisting the agent's tokens: {e}")))?;
    }
    tracing::info!(kind = %kind, "Updated agent's ACL token");
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

/// Where `enable_token_persistence` keeps the agent's tokens.
pub fn persisted_tokens_path(s: &AppState) -> Option<std::path::PathBuf> {
    let c = &s.config;
    (c.acl.enable_token_persistence)
        .then(|| c.data_dir.as_ref().map(|d| d.join("acl-tokens.json")))
        .flatten()
}
