//! Request bodies: Consul's size limit and its answers to a body too large
//! or unreadable.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::Value;

use super::error::ApiError;

/// Largest request body accepted (Consul's kv_max_value_size / txn_max_req_len).
pub const MAX_BODY: usize = 524_288;

pub fn body_too_large(len: Option<usize>) -> ApiError {
    match len {
        Some(n) => ApiError::TooLarge(format!(
            "Request body({n} bytes) too large, max size: {MAX_BODY} bytes"
        )),
        None => ApiError::TooLarge(format!(
            "Request body too large, max size: {MAX_BODY} bytes"
        )),
    }
}

/// Map a body-extraction failure to Consul's answer (413 names the declared size).
pub fn body_or_error(
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| rejected(r, declared_len(headers)))
}

/// Read a request's whole body (within the route's limit), with
/// [`body_or_error`]'s answers.
pub async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    let declared = declared_len(req.headers());
    Bytes::from_request(req, &())
        .await
        .map_err(|r| rejected(r, declared))
}

/// The body size a request's `Content-Length` declares (413 names it).
fn declared_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn rejected(r: BytesRejection, declared: Option<usize>) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large(declared)
    } else {
        ApiError::bad(format!("Failed to read body: {r}"))
    }
}

/// Parse a JSON body (Go's decoder is case-insensitive; so are we).
pub fn json_body(
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
) -> Result<Value, ApiError> {
    let body = body_or_error(body, headers)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("Request decode failed: empty body"));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))
}
