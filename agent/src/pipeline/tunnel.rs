//! The envelope a forwarded request travels in over server RPC, and
//! sending it to a server ([`send`]): used by [`super::forward`] and by the
//! shared blocking queries of [`super::coalesce`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::cluster::Upstream;
use crate::raft::leadership::{Hold, Leadership};
use crate::rpc::client::{RpcError, HOPS};

/// What [`send`] needs to know of this agent.
#[derive(Clone)]
pub struct Here {
    /// A client agent (no raft state).
    pub client: bool,
    pub leadership: Arc<Leadership>,
}

/// Where tunnelled API requests go on the server RPC port.
pub const TUNNEL_PATH: &str = "/rpc/api";

/// An HTTP API request forwarded whole over server RPC. The RPC port
/// serves only envelopes like this one, never the API itself, so `-client`
/// decides who can reach the API.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tunnelled {
    pub method: String,
    /// Path and query, e.g. `/v1/kv/a?index=7`.
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to a [`Tunnelled`] request, as the serving agent gave it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TunnelledAnswer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl IntoResponse for TunnelledAnswer {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_bytes(&v)) {
                // Content-Length is the body's (or, for HEAD, GET's): kept.
                if k == header::CONTENT_LENGTH || !hop_by_hop(&k) {
                    h.append(k, v);
                }
            }
        }
        resp
    }
}

/// What became of a request sent to a server.
pub enum Sent {
    /// The server's answer.
    Answer(TunnelledAnswer),
    /// This server is the leader now: answer here.
    Local,
    /// No server answered (or a write's outcome is unknown).
    Failed(ApiError),
}

/// Send `envelope` to `up`'s targets until one answers, waiting for a
/// leader as long as its [`Hold`] lasts. Reads are repeated elsewhere on
/// failure; a write that may have arrived is not.
pub async fn send(
    at: &Here,
    up: &Upstream,
    envelope: &Tunnelled,
    writes: bool,
    timeout: Duration,
    hop: u32,
) -> Sent {
    let hold = Hold::start();
    loop {
        // Armed before the leader is looked at, so no change is missed.
        let changed = at.leadership.leader_changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if !at.client && at.leadership.is_leader() {
            return Sent::Local;
        }
        for target in up.targets() {
            let r: Result<TunnelledAnswer, RpcError> = if writes {
                up.rpc
                    .call_write(&target, TUNNEL_PATH, envelope, timeout, hop + 1, None)
                    .await
            } else {
                up.rpc
                    .call(&target, TUNNEL_PATH, envelope, timeout, hop + 1)
                    .await
            };
            match r {
                Ok(answer) => {
                    up.good(&target);
                    return Sent::Answer(answer);
                }
                // Never sent, or a read (safe to repeat): try again, elsewhere
                // or once a leader is known. A write that may have reached
                // the old leader is not repeated: its outcome is unknown.
                Err(e) if e.not_sent() || !writes => {
                    tracing::debug!(%target, error = %e, "forward: server unreachable");
                    up.bad(&target);
                }
                Err(e) => {
                    return Sent::Failed(ApiError::Internal(format!("forwarding to {target}: {e}")))
                }
            }
        }
        if hold.over() {
            return Sent::Failed(ApiError::NoLeader);
        }
        // Again once a leader is known.
        hold.pause(Some(changed)).await;
    }
}

pub fn hop_by_hop(h: &HeaderName) -> bool {
    h == header::HOST
        || h == header::CONNECTION
        || h == header::CONTENT_LENGTH
        || h == header::TRANSFER_ENCODING
        || h == header::UPGRADE
        || h.as_str() == "keep-alive"
        || h.as_str() == "proxy-connection"
        || h.as_str() == HOPS
}
