//! Step 6 of the pipeline: the answer in Consul's shape — JSON bodies
//! (`?pretty` indents) and the `X-Consul-*` headers of every read. Errors
//! become Consul's status codes and texts in [`super::error`].

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::context::Consistency;
use super::error::ApiError;
use crate::app::AppState;

static X_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
static X_KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
static X_LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
/// Set on a list answer the token's ACLs left entries out of.
pub static FILTERED: HeaderName = HeaderName::from_static("x-consul-results-filtered-by-acls");
static X_CONSISTENCY: HeaderName = HeaderName::from_static("x-consul-effective-consistency");

impl AppState {
    /// Add the read headers every Consul client expects (on 404s too).
    pub fn meta(&self, resp: &mut Response, index: u64, c: Consistency) {
        // A read-index read: the leader just answered, as it would itself.
        let via_leader = matches!(c, Consistency::ReadIndex | Consistency::ReadIndexConsistent);
        let h = resp.headers_mut();
        h.insert(X_INDEX.clone(), HeaderValue::from(index.max(1)));
        h.insert(
            X_KNOWN_LEADER.clone(),
            HeaderValue::from_static(if via_leader || self.leadership.known() {
                "true"
            } else {
                "false"
            }),
        );
        let contact = if via_leader {
            0
        } else {
            self.leadership.last_contact_ms()
        };
        // A leader's contact is always 0: no allocation for it.
        let contact = match contact {
            0 => HeaderValue::from_static("0"),
            n => HeaderValue::from(n),
        };
        h.insert(X_LAST_CONTACT.clone(), contact);
        h.insert(X_CONSISTENCY.clone(), HeaderValue::from_static(c.header()));
    }
}

/// Serialize `v` as a JSON response (`?pretty` indents).
pub fn json<T: Serialize + ?Sized>(status: StatusCode, v: &T, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    match body {
        Ok(b) => json_bytes(status, b),
        Err(e) => ApiError::Internal(format!("encoding response: {e}")).into_response(),
    }
}

/// A JSON body already encoded. Built directly rather than through
/// `IntoResponse` for a tuple, which sets a content type only to replace it,
/// and with room for the headers a read adds ([`AppState::meta`], the
/// content length), so the header map is allocated once.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.reserve(8);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `X-Consul-Results-Filtered-By-ACLs: true` when entries were left out.
pub fn mark_filtered(resp: &mut Response, filtered: bool) {
    if filtered {
        resp.headers_mut()
            .insert(FILTERED.clone(), HeaderValue::from_static("true"));
    }
}
