//! The request pipeline: every HTTP API request takes the same steps, each
//! in a module of its own, so that a concern the next issues add (ACLs,
//! TLS, datacenters, request merging) has one place on every request.
//!
//! # How a request travels
//! 1. [`entry`]: the first step on every API route ([`layer`]: with the
//!    request timer, one tower layer).
//! 2. [`context`]: the common query — `dc`, `token`, consistency
//!    (`stale`/`consistent`), `index`/`wait`, `cached`, `filter`, the hop
//!    count — parsed once into a [`context::RequestCtx`].
//! 3. [`auth`]: who is asking — the token resolved into an [`authz::Authz`],
//!    where the request is answered (forwarded ones are decided there), and
//!    the route's class checked (`crate::http::access`).
//! 4. [`route`]: answered here, by the leader (from a follower) or by a
//!    server (from a client agent), or by a server of the datacenter a
//!    `?dc=` names (from a server; found by `crate::cluster::router`).
//!    Elsewhere means [`forward`]: the request goes whole over server RPC
//!    and re-enters this pipeline there ([`forward::serve_tunnelled`]);
//!    identical blocking reads share one forwarded query ([`coalesce`]).
//!    A follower's default or `?consistent` non-blocking read on replicated
//!    tables is not forwarded: [`read_index`] asks the leader for its
//!    checked index (one question for all reads waiting), waits to apply
//!    it, and answers here.
//! 5. The handler (`crate::http::*`) takes the context, never re-parses
//!    the query nor decides forwarding; a read checks it may be answered
//!    here ([`route`]'s `gate`: the leader lease or a quorum).
//! 6. [`block`]: the blocking wait of a read with `?index`.
//! 7. [`render`]: JSON and the `X-Consul-*` headers; [`error`] maps
//!    failures to Consul's status codes and texts.
//!
//! RPCs arriving on the server port (forwarded writes, DNS lookups) take
//! the same steps in small: [`context::RpcCtx`] (hops), [`auth`], then the
//! RPC's own route (the proposer, or the DNS lookup, each forwards to the
//! leader when it must).
//!
//! # How a write travels
//! A handler validates the request and builds a `Command`; [`write`](mod@write) hands
//! it to the proposer ([`crate::raft::proposer`]), which on the leader
//! folds it with other writes into one raft entry (group commit, one fsync)
//! and elsewhere sends it to the leader over server RPC (`/rpc/write`).
//! Once a quorum has it, the state machine applies it to the tables and
//! wakes the watchers of what changed; the handler answers with the
//! outcome. A write that came in on a follower was forwarded whole in
//! step 4, so it is the leader's handler that proposes it.
//!
//! - [`body`]: body size limits and Consul's answers to bad bodies.
//! - [`tunnel`]: the envelope of a forwarded request, and sending it.
//! - [`cache`]: the agent cache that answers `?cached` reads (after step 2).

pub mod auth;
pub mod authz;
pub mod block;
pub mod body;
pub mod cache;
pub mod coalesce;
pub mod context;
pub mod entry;
pub mod error;
pub mod forward;
pub mod layer;
pub mod next;
pub mod read_index;
pub mod render;
pub mod route;
pub mod tunnel;
pub mod write;
