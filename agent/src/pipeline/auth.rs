//! Step 2 of the pipeline: who is asking. The request's token
//! ([`RequestCtx::token`], else the agent's `acl.tokens.default`, else
//! anonymous) resolves into an [`Authz`] that the handlers, the blocking
//! wait and the filters of list answers consult.
//!
//! A server resolves from its own replicated ACL tables (a token deleted
//! is refused from the apply of its deletion on); a client agent, which
//! holds no state, asks a server on every request (`/rpc/acl/resolve`),
//! so a revocation reaches it within one round trip; the answers it got
//! are read only while no server answers (`down_policy`,
//! [`crate::acl::fallback`]).
//! Requests answered elsewhere are resolved there: forwarded requests
//! carry their token (query and headers travel whole), and the agent that
//! answers decides.

use std::sync::Arc;
use std::time::Duration;

pub use super::authz::Authz;
use super::context::{RequestCtx, RpcCtx};
use super::error::ApiError;
use crate::acl::{Authorizer, DefaultPolicy};
use crate::app::AppState;
use crate::state::acl::{Unresolved, ANONYMOUS_SECRET};

/// How long a client agent waits for a server to resolve a token.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl AppState {
    /// The secret a request without one acts with: the agent's `default`
    /// token, else the anonymous token.
    pub fn default_secret(&self) -> Arc<str> {
        self.acl_tokens
            .default_token()
            .unwrap_or_else(|| Arc::from(ANONYMOUS_SECRET))
    }

    /// Resolve a secret (`None`: the agent's default). Never fails while
    /// ACLs are off.
    pub async fn resolve_token(&self, secret: Option<&str>) -> Result<Authz, ApiError> {
        if !self.config.acl.enabled {
            return Ok(Authz::AllowAll);
        }
        let default;
        let secret = match secret {
            Some(s) => s,
            None => {
                default = self.default_secret();
                &*default
            }
        };
        if self.raft.is_some() {
            return self.resolve_local(secret);
        }
        self.resolve_remote(secret).await
    }

    /// On a server: from this server's tables.
    pub fn resolve_local(&self, secret: &str) -> Result<Authz, ApiError> {
        let default = self.config.acl.default_policy;
        match self.store.read().acl.resolve(secret, default) {
            Ok(a) => Ok(Authz::Acl(a)),
            Err(Unresolved::NotFound) => Err(ApiError::AclNotFound),
        }
    }

    /// On a client agent: ask a server, the next when one cannot answer;
    /// with none reachable, `down_policy` decides: `allow` allows,
    /// `extend-cache`/`async-cache` keep the rules a server last gave for
    /// this token (else refused), `deny` refuses.
    async fn resolve_remote(&self, secret: &str) -> Result<Authz, ApiError> {
        use crate::acl::config::DownPolicy;
        if let Some(up) = self.upstream.as_ref() {
            for target in up.targets() {
                let r: Result<Result<Authorizer, Unresolved>, _> = self
                    .rpc
                    .call(&target, RESOLVE_PATH, &secret, RESOLVE_TIMEOUT, 0)
                    .await;
                match r {
                    Ok(Ok(a)) => {
                        up.good(&target);
                        let a = Arc::new(a);
                        self.acl_fallback.resolved(secret, &a);
                        return Ok(Authz::Acl(a));
                    }
                    Ok(Err(Unresolved::NotFound)) => {
                        self.acl_fallback.not_found(secret);
                        return Err(ApiError::AclNotFound);
                    }
                    Err(e) => {
                        tracing::debug!(%target, error = %e, "token lookup: server unreachable");
                        up.bad(&target);
                    }
                }
            }
        }
        match self.config.acl.down_policy {
            DownPolicy::Allow => Ok(Authz::Acl(Arc::new(Authorizer::from_policies(
                [],
                DefaultPolicy::Allow,
            )))),
            DownPolicy::ExtendCache | DownPolicy::AsyncCache => match self.acl_fallback.get(secret)
            {
                Some(a) => {
                    tracing::debug!("no server resolves tokens: using the rules they last gave");
                    Ok(Authz::Acl(a))
                }
                None => Err(ApiError::NoLeader),
            },
            DownPolicy::Deny => Err(ApiError::NoLeader),
        }
    }
}

/// The server RPC that resolves a token for a client agent.
pub const RESOLVE_PATH: &str = "/rpc/acl/resolve";

/// The server side of [`RESOLVE_PATH`]: the authorizer, or why not.
pub fn resolve_for_client(s: &AppState, secret: &str) -> Result<Authorizer, Unresolved> {
    let default = s.config.acl.default_policy;
    s.store
        .read()
        .acl
        .resolve(secret, default)
        .map(|a| (*a).clone())
}

/// Resolve the request's token. Done only where the request is answered.
pub async fn authenticate(s: &AppState, ctx: &RequestCtx) -> Result<Authz, ApiError> {
    s.resolve_token(ctx.token()).await
}

/// The same step for an RPC arriving on the server port: the request it
/// carries is authenticated by the pipeline it re-enters.
pub fn authenticate_rpc(ctx: &RpcCtx) -> Authz {
    let _ = ctx.hops;
    Authz::AllowAll
}
