//! What the `/v1/acl` handlers share: the permission check, writing an
//! ACL command, reading Consul's bodies (case-insensitive keys, policy and
//! role links by ID or name).

use serde_json::Value;

use crate::acl::{Global, Need};
use crate::app::AppState;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::state::acl::{AclCommand, AclOutcome};
use crate::state::{Command, Outcome};

/// ACLs off: Consul answers every `/v1/acl` call with this 401.
pub fn acl_disabled() -> ApiError {
    ApiError::Unauthorized("ACL support disabled".into())
}

/// ACLs on, and the token may `need` ACLs.
pub fn require(s: &AppState, ctx: &RequestCtx, need: Need) -> Result<(), ApiError> {
    if !s.config.acl.enabled {
        return Err(acl_disabled());
    }
    ctx.check_dc()?;
    ctx.authz().require_global(Global::Acl, need)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Write an ACL command; an error outcome is a 400 with its text.
pub async fn write_acl(s: &AppState, cmd: AclCommand) -> Result<u64, ApiError> {
    match s.write(Command::Acl(cmd)).await? {
        (i, Outcome::Acl(AclOutcome::Done)) => Ok(i),
        (_, Outcome::Acl(AclOutcome::Error(e))) => Err(ApiError::bad(e)),
        (_, Outcome::Acl(AclOutcome::BootstrapDenied(i))) => Err(ApiError::Forbidden(format!(
            "Permission denied: ACL bootstrap no longer allowed (reset index: {i})"
        ))),
        (_, other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Policy (or role) links of a body: each `{"ID"}` or `{"Name"}`, named
/// ones looked up; every one must exist.
pub fn link_ids(
    body: &Value,
    key: &str,
    by_id: impl Fn(&str) -> bool,
    by_name: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ApiError> {
    let Some(list) = field(body, key) else {
        return Ok(vec![]);
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::bad(format!("Request decode failed: {key} must be a list")))?;
    let what = key.trim_end_matches('s');
    let mut out = Vec::new();
    for l in list {
        let id = field(l, "ID").and_then(Value::as_str).unwrap_or("");
        let name = field(l, "Name").and_then(Value::as_str).unwrap_or("");
        let found = if !id.is_empty() {
            by_id(id).then(|| id.to_string())
        } else if !name.is_empty() {
            by_name(name)
        } else {
            return Err(ApiError::bad(format!(
                "{what} link is missing both ID and Name"
            )));
        };
        match found {
            Some(id) if !out.contains(&id) => out.push(id),
            Some(_) => {}
            None => {
                return Err(ApiError::bad(format!(
                    "cannot find {} {}",
                    what.to_lowercase(),
                    if id.is_empty() { name } else { id }
                )))
            }
        }
    }
    Ok(out)
}

/// A body field, matched case-insensitively (Go's JSON decoder does).
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub fn str_field(v: &Value, key: &str) -> Result<String, ApiError> {
    match field(v, key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad(format!(
            "Request decode failed: {key} must be a string"
        ))),
    }
}

/// Consul's `Hash` field: a digest of what the object grants.
pub fn hash(parts: &[&str]) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}
