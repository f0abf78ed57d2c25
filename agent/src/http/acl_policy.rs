//! `/v1/acl/policy*` and `/v1/acl/role*`: create (`PUT`), read by ID or
//! name, update, delete, list. Rules are validated on write: a policy
//! whose rules do not parse is a 400 naming the problem.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::acl_common::{field, hash, link_ids, require, str_field, write_acl};
use super::routes::{Endpoint as E, Routes};
use crate::acl::Need;
use crate::app::{AppState, Shared};
use crate::pipeline::body::json_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;
use crate::state::acl::{AclCommand, AclTable, PolicyRec, RoleRec};

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/acl/policy", E::put(policy_create))
        .route(
            "/v1/acl/policy/{id}",
            E::get(policy_read)
                .on(Method::PUT, policy_update)
                .on(Method::DELETE, policy_delete),
        )
        .route("/v1/acl/policy/name/{name}", E::get(policy_by_name))
        .route("/v1/acl/policies", E::get(policy_list))
        .route("/v1/acl/role", E::put(role_create))
        .route(
            "/v1/acl/role/{id}",
            E::get(role_read)
                .on(Method::PUT, role_update)
                .on(Method::DELETE, role_delete),
        )
        .route("/v1/acl/role/name/{name}", E::get(role_by_name))
        .route("/v1/acl/roles", E::get(role_list))
}

fn policy_json(p: &PolicyRec, rules: bool) -> Value {
    let mut v = json!({
        "ID": p.id,
        "Name": p.name,
        "Description": p.description,
        "Hash": hash(&[&p.name, &p.description, &p.rules]),
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if rules {
        v["Rules"] = json!(p.rules);
    }
    if !p.datacenters.is_empty() {
        v["Datacenters"] = json!(p.datacenters);
    }
    v
}

fn role_json(acl: &AclTable, r: &RoleRec) -> Value {
    let mut v = json!({
        "ID": r.id,
        "Name": r.name,
        "Description": r.description,
        "Hash": hash(&[&r.name, &r.description, &r.policies.join(",")]),
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    });
    let links: Vec<Value> = r
        .policies
        .iter()
        .filter_map(|id| acl.policy(id).map(|p| json!({"ID": id, "Name": p.name})))
        .collect();
    if !links.is_empty() {
        v["Policies"] = Value::Array(links);
    }
    v
}

/// Consul's name rule for policies and roles.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn policy_from_body(body: &Value, id: String) -> Result<PolicyRec, ApiError> {
    let name = str_field(body, "Name")?;
    if !valid_name(&name) {
        return Err(ApiError::bad(format!(
            "Invalid Policy: invalid Name {name:?}"
        )));
    }
    let rules = str_field(body, "Rules")?;
    crate::acl::rules::parse(&rules).map_err(|e| ApiError::bad(format!("Invalid Policy: {e}")))?;
    let datacenters = match field(body, "Datacenters") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| d.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad("Request decode failed: Datacenters must be strings"))?,
        Some(_) => {
            return Err(ApiError::bad(
                "Request decode failed: Datacenters must be a list",
            ))
        }
    };
    Ok(PolicyRec {
        id,
        name,
        description: str_field(body, "Description")?,
        rules,
        datacenters,
        create_index: 0,
        modify_index: 0,
    })
}

fn answer_policy(s: &AppState, ctx: &RequestCtx, id: &str) -> Result<Response, ApiError> {
    let t = s.store.read();
    let p = t
        .acl
        .policy(id)
        .ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    Ok(json(
        StatusCode::OK,
        &policy_json(p, true),
        ctx.query.has("pretty"),
    ))
}

async fn policy_create(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let body = json_body(body, &headers)?;
    let p = policy_from_body(&body, uuid::Uuid::new_v4().to_string())?;
    let id = p.id.clone();
    write_acl(&s, AclCommand::SetPolicy(Box::new(p))).await?;
    tracing::info!(policy = %id, "ACL policy created");
    answer_policy(&s, &ctx, &id)
}

async fn policy_update(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let body = json_body(body, &headers)?;
    let in_body = str_field(&body, "ID")?;
    if !in_body.is_empty() && in_body != id {
        return Err(ApiError::bad("Policy ID in URL and payload do not match"));
    }
    if s.store.read().acl.policy(&id).is_none() {
        return Err(ApiError::bad(format!("Cannot find policy {id:?}")));
    }
    let p = policy_from_body(&body, id.clone())?;
    write_acl(&s, AclCommand::SetPolicy(Box::new(p))).await?;
    answer_policy(&s, &ctx, &id)
}

async fn policy_read(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    s.gate(ctx.read_opts()?.consistency).await?;
    answer_policy(&s, &ctx, &id)
}

async fn policy_by_name(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    s.gate(ctx.read_opts()?.consistency).await?;
    let id = s
        .store
        .read()
        .acl
        .policy_by_name(&name)
        .map(|p| p.id.clone());
    let id = id.ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    answer_policy(&s, &ctx, &id)
}

async fn policy_delete(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    write_acl(&s, AclCommand::DeletePolicy(id)).await?;
    Ok(json(StatusCode::OK, &json!(true), false))
}

async fn policy_list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let t = s.store.read();
    let list: Vec<Value> = t.acl.policies().map(|p| policy_json(p, false)).collect();
    let mut resp = json(StatusCode::OK, &list, opts.pretty);
    s.meta(&mut resp, t.acl.table_index(), opts.consistency);
    Ok(resp)
}

fn role_from_body(s: &AppState, body: &Value, id: String) -> Result<RoleRec, ApiError> {
    let name = str_field(body, "Name")?;
    if !valid_name(&name) {
        return Err(ApiError::bad(format!(
            "Invalid Role: invalid Name {name:?}"
        )));
    }
    let t = s.store.read();
    let policies = link_ids(
        body,
        "Policies",
        |id| t.acl.policy(id).is_some(),
        |n| t.acl.policy_by_name(n).map(|p| p.id.clone()),
    )?;
    Ok(RoleRec {
        id,
        name,
        description: str_field(body, "Description")?,
        policies,
        create_index: 0,
        modify_index: 0,
    })
}

fn answer_role(s: &AppState, ctx: &RequestCtx, id: &str) -> Result<Response, ApiError> {
    let t = s.store.read();
    let r = t
        .acl
        .role(id)
        .ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    Ok(json(
        StatusCode::OK,
        &role_json(&t.acl, r),
        ctx.query.has("pretty"),
    ))
}

async fn role_create(
    State(s): State<Shared>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let body = json_body(body, &headers)?;
    let r = role_from_body(&s, &body, uuid::Uuid::new_v4().to_string())?;
    let id = r.id.clone();
    write_acl(&s, AclCommand::SetRole(Box::new(r))).await?;
    answer_role(&s, &ctx, &id)
}

async fn role_update(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    let body = json_body(body, &headers)?;
    if s.store.read().acl.role(&id).is_none() {
        return Err(ApiError::bad(format!("Cannot find role {id:?}")));
    }
    let r = role_from_body(&s, &body, id.clone())?;
    write_acl(&s, AclCommand::SetRole(Box::new(r))).await?;
    answer_role(&s, &ctx, &id)
}

async fn role_read(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    s.gate(ctx.read_opts()?.consistency).await?;
    answer_role(&s, &ctx, &id)
}

async fn role_by_name(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    s.gate(ctx.read_opts()?.consistency).await?;
    let id = s.store.read().acl.role_by_name(&name).map(|r| r.id.clone());
    let id = id.ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    answer_role(&s, &ctx, &id)
}

async fn role_delete(
    State(s): State<Shared>,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Write)?;
    write_acl(&s, AclCommand::DeleteRole(id)).await?;
    Ok(json(StatusCode::OK, &json!(true), false))
}

async fn role_list(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    require(&s, &ctx, Need::Read)?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let t = s.store.read();
    let list: Vec<Value> = t.acl.roles().map(|r| role_json(&t.acl, r)).collect();
    let mut resp = json(StatusCode::OK, &list, opts.pretty);
    s.meta(&mut resp, t.acl.table_index(), opts.consistency);
    Ok(resp)
}
