//! The client's errors, with Consul's CLI texts.

use reqwest::Method;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// As Go's client says it: `Get "http://...": dial tcp ...: connect:
    /// connection refused`.
    #[error("{}", crate::goerr::request_error(method, url, source))]
    Transport {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
    #[error("Unexpected response code: {status} ({body})")]
    Status { status: u16, body: String },
    #[error("Unreadable response: {0}")]
    Decode(String),
    /// The client could not be set up (a token file, a CA file, ...).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Error {
    /// Worth retrying: the agent is unreachable or answered 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Decode(_) | Self::Config(_) => false,
        }
    }
}
