//! ACLs (Consul's token/policy/role model): the rules language
//! ([`rules`]), deciding a request ([`authorizer`]), the agent's `acl`
//! configuration ([`config`]), a client agent's fallback while no
//! server answers ([`fallback`]). The replicated tables are
//! `crate::state::acl`; resolving a request's token is the pipeline's
//! auth step (`crate::pipeline::auth`); the API is `crate::http::acl`.

pub mod authorizer;
pub mod command;
pub mod config;
pub mod fallback;
pub mod leader;
pub mod replication;
pub mod rules;

pub use authorizer::{Authorizer, DefaultPolicy, Need};
pub use rules::{Global, Level, Resource};
