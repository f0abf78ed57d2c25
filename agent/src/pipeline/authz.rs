//! What a request may do ([`Authz`]), as the auth step resolved it from
//! its token; handlers and filters ask it, never the token.

use std::sync::Arc;

use super::error::ApiError;
use crate::acl::{Authorizer, Global, Need, Resource};

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Authz {
    /// ACLs are off: every request is allowed.
    #[default]
    AllowAll,
    /// ACLs are on: the token's authority.
    Acl(Arc<Authorizer>),
}

impl Authz {
    /// ACLs are enforced (lists are filtered, the header is set).
    pub fn enabled(&self) -> bool {
        matches!(self, Self::Acl(_))
    }

    /// Whether list answers may be filtered for it (ACLs on, not a
    /// management token).
    pub fn filters(&self) -> bool {
        match self {
            Self::AllowAll => false,
            Self::Acl(a) => !matches!(**a, crate::acl::Authorizer::Manage),
        }
    }

    pub fn can(&self, res: Resource, name: &str, need: Need) -> bool {
        match self {
            Self::AllowAll => true,
            Self::Acl(a) => a.allows(res, name, need),
        }
    }

    pub fn can_global(&self, g: Global, need: Need) -> bool {
        match self {
            Self::AllowAll => true,
            Self::Acl(a) => a.allows_global(g, need),
        }
    }

    /// 403 `Permission denied: ... lacks permission 'key:write' on "k"`
    /// unless `need` of `res` `name` is allowed.
    pub fn require(&self, res: Resource, name: &str, need: Need) -> Result<(), ApiError> {
        match self.can(res, name, need) {
            true => Ok(()),
            false => Err(ApiError::Lacks {
                perm: format!("{}:{}", res.name(), need.name()),
                name: Some(name.to_string()),
            }),
        }
    }

    pub fn require_global(&self, g: Global, need: Need) -> Result<(), ApiError> {
        match self.can_global(g, need) {
            true => Ok(()),
            false => Err(ApiError::Lacks {
                perm: format!("{}:{}", g.name(), need.name()),
                name: None,
            }),
        }
    }

    /// Every key under `prefix` may be written (a recursive delete).
    pub fn require_key_write_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        match self {
            Self::AllowAll => Ok(()),
            Self::Acl(a) if a.allows_key_write_prefix(prefix) => Ok(()),
            Self::Acl(_) => Err(ApiError::Lacks {
                perm: "key:write".into(),
                name: Some(prefix.to_string()),
            }),
        }
    }

    /// Management (`acl:write`).
    pub fn is_management(&self) -> bool {
        self.can_global(Global::Acl, Need::Write)
    }
}
