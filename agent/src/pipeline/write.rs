//! How a write travels, from a handler: the command goes to the proposer,
//! which on the leader folds it into the next raft entry (group commit)
//! and elsewhere forwards it over server RPC; once committed and applied
//! its watchers wake, and the handler answers with the outcome.
//!
//! A write forwarded over server RPC carries the request's secret: the
//! server that receives it checks it again (Consul: the token of the RPC).
//! The entry step sets that secret for the handler's task ([`acting`]),
//! so handlers need not pass it along.

use std::sync::Arc;

use super::error::ApiError;
use crate::app::AppState;
use crate::raft::proposer::{Actor, WriteError};
use crate::state::{Command, Outcome};

tokio::task_local! {
    /// The acting secret of the API request this task answers (ACLs on).
    static ACTING: Arc<str>;
}

/// Run `f` (a handler) with `secret` as the acting secret of its writes.
pub fn acting<F: std::future::Future>(
    secret: Arc<str>,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<str>, F> {
    ACTING.scope(secret, f)
}

impl AppState {
    /// Submit a write through raft; returns the log index and the outcome.
    /// Authorized by the pipeline here; its secret travels with it.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Outcome), ApiError> {
        let actor = match ACTING.try_with(Arc::clone) {
            Ok(secret) => Actor::Checked(secret),
            // ACLs off, or a task of the agent's own.
            Err(_) => Actor::Leader,
        };
        self.proposer.write_as(cmd, &actor).await.map_err(api_error)
    }

    /// The agent's own write (leave, ...), on its `agent` token.
    pub async fn agent_write(&self, cmd: Command) -> Result<(u64, Outcome), WriteError> {
        self.proposer.write_as(cmd, &self.agent_actor()).await
    }

    /// The agent's own authority: `acl.tokens.agent`, else `default`,
    /// else anonymous.
    pub fn agent_actor(&self) -> Actor {
        agent_actor(&self.acl_tokens)
    }
}

/// [`AppState::agent_actor`] from the tokens alone.
pub fn agent_actor(tokens: &crate::acl::config::AgentTokens) -> Actor {
    Actor::Agent(
        tokens
            .agent_token()
            .unwrap_or_else(|| Arc::from(crate::state::acl::ANONYMOUS_SECRET)),
    )
}

fn api_error(e: WriteError) -> ApiError {
    match e {
        WriteError::NoLeader => ApiError::NoLeader,
        WriteError::Denied(why) if why == "ACL not found" => ApiError::AclNotFound,
        WriteError::Denied(_) => ApiError::PermissionDenied,
        other => ApiError::Internal(other.to_string()),
    }
}
