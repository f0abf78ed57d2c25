//! HTTP errors, mapped to Consul's status codes and plain-text bodies in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    #[error("No cluster leader")]
    NoLeader,
    #[error("{0}")]
    Internal(String),
    /// An ACL refused the request (403).
    #[error("Permission denied")]
    PermissionDenied,
    /// An ACL refused the request, saying what it lacks (403, Consul
    /// 1.12's text; the accessor is not named).
    #[error("Permission denied: provided token lacks permission '{perm}'{}", on_name(.name))]
    Lacks { perm: String, name: Option<String> },
    /// The request's token does not exist (403, Consul's text).
    #[error("ACL not found")]
    AclNotFound,
    /// 401 (`ACL support disabled`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 with a text of its own (`ACL bootstrap no longer allowed ...`).
    #[error("{0}")]
    Forbidden(String),
    /// Consul's text; `allow` becomes the `Allow` header.
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String, allow: HeaderValue },
}

/// ` on "name"`, quoted as Go's `%q` (names here are printable UTF-8,
/// which Rust's `{:?}` quotes alike).
fn on_name(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" on {n:?}"))
        .unwrap_or_default()
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied
            | Self::Lacks { .. }
            | Self::AclNotFound
            | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NoPathToDatacenter | Self::NoLeader | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Internal(_) | Self::NoLeader) {
            tracing::warn!(error = %self, "request failed");
        }
        let mut resp = (
            self.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response();
        if let Self::MethodNotAllowed { allow, .. } = self {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        resp
    }
}
