//! tribune: a Consul-compatible service-discovery and configuration agent.
//!
//! # Layout
//! - [`config`]: agent configuration (defaults, JSON/HCL files, flags).
//! - [`agent`]: running an agent — raft, listeners, graceful shutdown.
//! - [`state`]: the replicated tables (KV, ...) and per-key/prefix watchers.
//! - [`raft`]: openraft wiring — log store (memory or redb, group commit),
//!   state machine with snapshots, peer network, leadership tracking.
//! - [`local`]: this agent's services and checks — definitions, probes,
//!   anti-entropy sync into the catalog.
//! - [`cluster`]: several agents as one — gossip membership (foca), the
//!   server RPC port (raft, forwarding), bootstrap and voter management.
//! - [`http`]: the Consul HTTP API — route table, one file per area,
//!   blocking queries, Consul's error mapping; `http::ui` serves the web UI
//!   (`-ui`), whose HTML/CSS/JS lives in `agent/ui/` and is embedded at build.
//! - [`dns`]: the DNS interface (node and service lookups, SRV, recursors).
//! - [`cli`]: the `tribune` command line (Go-style flags), one file per command.
//! - [`fsutil`]: atomic, fsynced file replacement.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod fsutil;
pub mod http;
pub mod local;
pub mod raft;
pub mod state;
