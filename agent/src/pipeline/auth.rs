//! Step 2 of the pipeline: who is asking. A no-op until ACLs (issue 15),
//! which resolve [`RequestCtx::token`] here into an [`Authz`] that the
//! handlers, the blocking wait and the filters of list answers consult.
//!
//! Forwarded requests carry their token (query and headers travel whole),
//! and the agent that answers authenticates them again: the leader decides.

use super::context::{RequestCtx, RpcCtx};
use super::error::ApiError;

/// What a request may do. Today: everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authz {
    /// ACLs are off: every request is allowed.
    AllowAll,
}

/// Resolve the request's token. Never fails while ACLs are off.
pub fn authenticate(ctx: &RequestCtx) -> Result<Authz, ApiError> {
    let _ = ctx.token();
    Ok(Authz::AllowAll)
}

/// The same step for an RPC arriving on the server port.
pub fn authenticate_rpc(ctx: &RpcCtx) -> Authz {
    let _ = ctx.hops;
    Authz::AllowAll
}
