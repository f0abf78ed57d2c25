//! How a write travels, from a handler: the command goes to the proposer,
//! which on the leader folds it into the next raft entry (group commit)
//! and elsewhere forwards it over server RPC; once committed and applied
//! its watchers wake, and the handler answers with the outcome.

use super::error::ApiError;
use crate::app::AppState;
use crate::raft::proposer::WriteError;
use crate::state::{Command, Outcome};

impl AppState {
    /// Submit a write through raft; returns the log index and the outcome.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Outcome), ApiError> {
        self.proposer.write(cmd).await.map_err(|e| match e {
            WriteError::NoLeader => ApiError::NoLeader,
            other => ApiError::Internal(other.to_string()),
        })
    }
}
