//! What both ends of server RPC agree on: the headers a forwarded request
//! carries, and the errors of a call (shared by the pooled client and the
//! write connections).

/// Header counting how many times a request has been forwarded.
pub const HOPS: &str = "x-tribune-hops";
/// Header naming the agent a forwarded request first reached: defaults such
/// as a new session's node are that agent's, not the leader's.
pub const AGENT_NODE: &str = "x-tribune-agent-node";

/// Header carrying the acting secret of a forwarded write (`/rpc/write`),
/// checked by the server that receives it. A header rather than a field
/// of the body, so the body stays as older servers decode it: an older
/// server ignores the header, and a write from an older agent (none)
/// acts as the anonymous token.
pub const TOKEN: &str = "x-tribune-token";

/// How a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("calling {0}: {1}")]
    Transport(String, String),
    #[error("{0} answered {1}: {2}")]
    Status(String, u16, String),
    #[error("decoding the answer of {0}: {1}")]
    Codec(String, String),
}

impl RpcError {
    /// The request certainly did not reach the peer: safe to retry elsewhere.
    pub fn not_sent(&self) -> bool {
        matches!(self, RpcError::Connect(..))
    }
}
