//! `/v1/kv/<key>`: GET and HEAD (single, recurse, keys, raw, blocking), PUT, DELETE.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::Serialize;

mod encode;

use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::pipeline::authz::Authz;
use crate::pipeline::body::read_body;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::pipeline::render::{json, json_bytes, mark_filtered};
use crate::state::{Command, KvCommand, KvEntry, KvOutcome, Outcome, Tables, WatchTarget};

/// One entry as Consul renders it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvJson<'a> {
    pub lock_index: u64,
    pub key: &'a str,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl<'a> KvJson<'a> {
    pub fn new(key: &'a str, e: &'a KvEntry, with_value: bool) -> Self {
        Self {
            lock_index: e.lock_index,
            key,
            flags: e.flags,
            // Consul sends null for an empty value.
            value: (with_value && !e.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
            session: e.session.as_deref(),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// Reject only what Consul rejects: `..` segments and surrounding whitespace.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    // What `trim` would take off, without scanning the whole key.
    let edge = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if edge(key.chars().next()) || edge(key.chars().next_back()) {
        return Err(ApiError::bad(
            "Invalid key: leading or trailing whitespace is not allowed",
        ));
    }
    if key.contains("..") && key.split('/').any(|seg| seg == "..") {
        return Err(ApiError::bad(
            "Invalid key: \"..\" path segments are not allowed",
        ));
    }
    Ok(())
}

fn key_from_uri(uri: &Uri) -> Result<String, ApiError> {
    let raw = uri.path().strip_prefix("/v1/kv").unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    // Most keys have nothing escaped: no decoding pass for them.
    let key = if raw.contains('%') {
        percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::bad("Invalid key: not valid UTF-8"))?
            .into_owned()
    } else {
        raw.to_string()
    };
    validate_key(&key)?;
    Ok(key)
}

/// What a request asks for, decided before anything waits.
enum Op {
    Get(String),
    /// Boxed: the enum lives in every parked GET's future.
    Put(String, Box<Request>),
    Delete(String),
}

/// Not an async fn: a parked blocking GET lives in this future for minutes,
/// so it keeps only what the read needs (not the request's headers, its URI
/// or the write path's state, which is boxed). Only a PUT reads the body.
pub fn handle(
    State(s): State<Shared>,
    ctx: RequestCtx,
    req: Request,
) -> impl std::future::Future<Output = Response> + Send {
    // Every method by name: HEAD is a read (answered as GET, without the
    // body); anything else must never fall through to a write.
    let op = match req.method() {
        &Method::GET | &Method::HEAD => key_from_uri(req.uri()).map(Op::Get),
        &Method::PUT => key_from_uri(req.uri()).map(|key| Op::Put(key, Box::new(req))),
        &Method::DELETE => key_from_uri(req.uri()).map(Op::Delete),
        other => Err(ApiError::MethodNotAllowed {
            method: other.to_string(),
            allow: HeaderValue::from_static("OPTIONS,GET,HEAD,PUT,DELETE"),
        }),
    };
    async move {
        let res = match op {
            Err(e) => Err(e),
            Ok(Op::Get(key)) => get(&s, key, &ctx).await,
            Ok(Op::Put(key, req)) => {
                Box::pin(async {
                    let body = read_body(*req).await?;
                    put(&s, key, &ctx, body).await
                })
                .await
            }
            Ok(Op::Delete(key)) => Box::pin(delete(&s, key, &ctx)).await,
        };
        res.unwrap_or_else(IntoResponse::into_response)
    }
}

async fn get(s: &Shared, key: String, ctx: &RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    // `acl.enable_key_list_policy`: listing needs `list` on the prefix.
    if s.config.acl.enable_key_list_policy && (q.has("keys") || q.has("recurse")) {
        ctx.authz().require(Resource::Key, &key, Need::List)?;
    }
    if q.has("keys") {
        let sep = q
            .get("separator")
            .or_else(|| q.get("seperator"))
            .unwrap_or("")
            .to_string();
        let authz = ctx.authz();
        let index_of = |t: &Tables| visible_index(t, &key, authz);
        s.block(&opts, || WatchTarget::Prefix(key.clone()), index_of)
            .await;
        let (index, mut keys) = {
            let t = s.store.read();
            (index_of(&t), t.kv.keys(&key, &sep))
        };
        let before = keys.len();
        keys.retain(|k| authz.can(Resource::Key, k, Need::Read));
        let filtered = keys.len() != before;
        // As Consul: no keys under a prefix is 404; the root is always a list.
        let mut resp = if keys.is_empty() && !key.is_empty() {
            StatusCode::NOT_FOUND.into_response()
        } else {
            json(StatusCode::OK, &keys, opts.pretty)
        };
        s.meta(&mut resp, index, opts.consistency);
        mark_filtered(&mut resp, filtered);
        return Ok(resp);
    }
    if q.has("recurse") {
        let authz = ctx.authz();
        let index_of = |t: &Tables| visible_index(t, &key, authz);
        s.block(&opts, || WatchTarget::Prefix(key.clone()), index_of)
            .await;
        let mut filtered = false;
        let (index, body) = {
            let t = s.store.read();
            let list: Vec<(&str, &KvEntry)> =
                t.kv.list(&key)
                    .filter(|(k, _)| {
                        let ok = authz.can(Resource::Key, k, Need::Read);
                        filtered |= !ok;
                        ok
                    })
                    .map(|(k, e)| (k.as_str(), e))
                    .collect();
            let body = (!list.is_empty()).then(|| entries_json(list, opts.pretty));
            (index_of(&t), body)
        };
        let mut resp = body.unwrap_or_else(|| StatusCode::NOT_FOUND.into_response());
        s.meta(&mut resp, index, opts.consistency);
        mark_filtered(&mut resp, filtered);
        return Ok(resp);
    }
    ctx.authz().require(Resource::Key, &key, Need::Read)?;
    s.block(
        &opts,
        || WatchTarget::Key(key.clone()),
        |t| t.kv.key_index(&key),
    )
    .await;
    let raw = q.has("raw");
    let (index, mut resp) = {
        let t = s.store.read();
        let resp = match t.kv.get(&key) {
            None => StatusCode::NOT_FOUND.into_response(),
            Some(e) if raw => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                e.value.clone(),
            )
                .into_response(),
            Some(e) => entries_json([(key.as_str(), e)], opts.pretty),
        };
        (t.kv.key_index(&key), resp)
    };
    s.meta(&mut resp, index, opts.consistency);
    Ok(resp)
}

/// A list of entries with their values as Consul's JSON answer.
fn entries_json<'a, I>(list: I, pretty: bool) -> Response
where
    I: IntoIterator<Item = (&'a str, &'a KvEntry)>,
{
    if pretty {
        let list: Vec<KvJson> = list
            .into_iter()
            .map(|(k, e)| KvJson::new(k, e, true))
            .collect();
        json(StatusCode::OK, &list, true)
    } else {
        json_bytes(StatusCode::OK, encode::entries(list))
    }
}

/// The blocking index of a prefix as the token sees it (with ACLs on, only
/// keys it may read move it).
fn visible_index(t: &Tables, prefix: &str, authz: &Authz) -> u64 {
    match authz.enabled() {
        false => t.kv.prefix_index(prefix),
        true => {
            t.kv.prefix_index_where(prefix, |k| authz.can(Resource::Key, k, Need::Read))
        }
    }
}

fn bool_outcome(o: Outcome) -> Result<Response, ApiError> {
    match o {
        Outcome::Kv(KvOutcome::Bool(b)) => Ok(json(StatusCode::OK, &b, false)),
        Outcome::Kv(KvOutcome::Error(e)) => Err(ApiError::bad(e)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn put(s: &Shared, key: String, ctx: &RequestCtx, body: Bytes) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    if key.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    ctx.authz().require(Resource::Key, &key, Need::Write)?;
    q.conflicting(&["cas", "acquire", "release"])?;
    let flags = q
        .u64("flags", "Invalid flags: must be an unsigned integer")?
        .unwrap_or(0);
    let cas = q.u64("cas", "Invalid cas index: must be an unsigned integer")?;
    let lock = |name: &str| -> Result<Option<String>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some("") => Err(ApiError::bad("Missing session")),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let cmd = match (lock("acquire")?, lock("release")?) {
        (Some(session), _) => {
            // Lock-delay is checked here, before raft, as Consul's leader does:
            // it is local time, so it must not decide inside the state machine.
            if s.store.read().sessions.lock_delayed(&key, Instant::now()) {
                tracing::info!(key = %key, session = %session, "lock refused: key in lock-delay");
                return Ok(json(StatusCode::OK, &false, false));
            }
            KvCommand::Acquire {
                key,
                value: body.to_vec(),
                flags,
                session,
            }
        }
        (None, Some(session)) => KvCommand::Release {
            key,
            value: body.to_vec(),
            flags,
            session,
        },
        (None, None) => KvCommand::Set {
            key,
            value: body.to_vec(),
            flags,
            cas,
        },
    };
    let _t = crate::telemetry::timer("kvs.apply");
    let (_, outcome) = s.write(Command::Kv(cmd)).await?;
    bool_outcome(outcome)
}

async fn delete(s: &Shared, key: String, ctx: &RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    ctx.check_dc()?;
    q.conflicting(&["recurse", "cas"])?;
    let recurse = q.has("recurse");
    if key.is_empty() && !recurse {
        return Err(ApiError::bad("Missing key name"));
    }
    let cas = q.u64("cas", "Invalid cas index: must be an unsigned integer")?;
    match recurse {
        true => ctx.authz().require_key_write_prefix(&key)?,
        false => ctx.authz().require(Resource::Key, &key, Need::Write)?,
    }
    let _t = crate::telemetry::timer("kvs.apply");
    let (_, outcome) = s
        .write(Command::Kv(KvCommand::Delete { key, recurse, cas }))
        .await?;
    bool_outcome(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for ok in ["a", "a/b/", "x.json", "ключ", "a/./b", "a..b", "..a/b.."] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../x",
            "a/../b",
            "a/..",
            "..",
            " a",
            "a ",
            "a\n",
            "\u{3000}a",
            "a\u{a0}",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_from_the_path() {
        let k = |p: &str| key_from_uri(&p.parse::<Uri>().unwrap());
        assert_eq!(k("/v1/kv/a/b").unwrap(), "a/b");
        assert_eq!(k("/v1/kv").unwrap(), "");
        assert_eq!(k("/v1/kv/a%20b").unwrap(), "a b");
        assert_eq!(k("/v1/kv/%D0%BA/x").unwrap(), "к/x");
        assert!(k("/v1/kv/%FF").is_err(), "not UTF-8");
        assert!(k("/v1/kv/%2E%2E/x").is_err(), "an escaped ..");
        assert!(k("/v1/kv/%20a").is_err(), "an escaped space");
    }
}
