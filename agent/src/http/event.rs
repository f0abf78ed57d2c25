//! `/v1/event/fire/<name>` and `/v1/event/list` (see [`crate::events`]).
//!
//! Events are this agent's own buffer, not raft state: the list answers
//! without a leader, and its index is Consul's: derived from the last event's
//! ID, so a blocking list returns as soon as the index *differs* from `?index`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};

use super::routes::{Endpoint as E, Routes};
use crate::acl::{Need, Resource};
use crate::app::Shared;
use crate::events::{list_index, EventError, UserEvent};
use crate::pipeline::body::body_or_error;
use crate::pipeline::context::{Consistency, RequestCtx};
use crate::pipeline::error::ApiError;
use crate::pipeline::render::json;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/event/fire/{name}", E::put(fire))
        .route("/v1/event/list", E::get(list))
}

/// An event as Consul renders it (payload base64, null when empty).
pub fn event_json(e: &UserEvent) -> Value {
    let payload = if e.payload.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(&e.payload))
    };
    json!({
        "ID": e.id, "Name": e.name, "Payload": payload,
        "NodeFilter": e.node_filter, "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter, "Version": e.version, "LTime": e.ltime,
    })
}

pub async fn fire(
    State(s): State<Shared>,
    Path(name): Path<String>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let res = (|| {
        let q = &ctx.query;
        ctx.check_dc()?;
        ctx.authz().require(Resource::Event, &name, Need::Write)?;
        let payload = body_or_error(body, &headers)?;
        let get = |k: &str| q.get(k).unwrap_or("");
        let ev = s
            .events
            .fire(
                &name,
                payload.to_vec(),
                get("node"),
                get("service"),
                get("tag"),
            )
            .map_err(|e| match e {
                EventError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
                EventError::Broadcast(_) => ApiError::Internal(e.to_string()),
                _ => ApiError::bad(e.to_string()),
            })?;
        tracing::debug!(event = %ev.name, id = %ev.id, "event fired");
        Ok::<_, ApiError>(json(StatusCode::OK, &event_json(&ev), q.has("pretty")))
    })();
    res.unwrap_or_else(IntoResponse::into_response)
}

pub async fn list(State(s): State<Shared>, ctx: RequestCtx) -> Response {
    let res = async {
        let q = &ctx.query;
        let opts = ctx.read_opts()?;
        let name = q.get("name").filter(|n| !n.is_empty());
        let jitter_max = opts.wait.as_millis() as u64 / 16;
        let jitter = if jitter_max > 0 {
            rand::thread_rng().gen_range(0..=jitter_max)
        } else {
            0
        };
        let deadline =
            tokio::time::Instant::now() + opts.wait + std::time::Duration::from_millis(jitter);
        let (index, events) = loop {
            let notified = s.events.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let events = s.events.list(name);
            let index = list_index(&events);
            if opts.index == 0 || index != opts.index {
                break (index, events);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => break (index, events),
                _ = s.shutdown.cancelled() => break (index, events),
            }
        };
        let body: Vec<Value> = events
            .iter()
            .filter(|e| ctx.authz().can(Resource::Event, &e.name, Need::Read))
            .map(event_json)
            .collect();
        let mut resp = json(StatusCode::OK, &body, opts.pretty);
        s.meta(&mut resp, index, Consistency::Default);
        crate::pipeline::render::mark_filtered(&mut resp, body.len() != events.len());
        Ok::<_, ApiError>(resp)
    }
    .await;
    res.unwrap_or_else(IntoResponse::into_response)
}
