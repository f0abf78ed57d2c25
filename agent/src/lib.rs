//! tribune: a Consul-compatible service-discovery and configuration agent.
//!
//! # Layout
//! - [`config`]: agent configuration (defaults, JSON/HCL files, flags).
//! - [`limits`]: connection caps and timeouts (Consul's `limits` block).
//! - [`consul_keys`]: the config-file keys Consul accepts (typos are errors).
//! - [`agent`]: running an agent — raft, listeners, graceful shutdown;
//!   [`banner`]: what it prints as it starts.
//! - [`state`]: the replicated tables (KV, ...) and per-key/prefix watchers.
//! - [`raft`]: openraft wiring — log store (memory or redb, group commit),
//!   state machine with snapshots, peer network, leadership tracking.
//! - [`local`]: this agent's services and checks — definitions, probes,
//!   anti-entropy sync into the catalog.
//! - [`cluster`]: several agents as one — gossip membership (foca), the
//!   server RPC port (raft, forwarding), bootstrap and voter management.
//! - [`http`]: the Consul HTTP API — route table (`http::routes`: each
//!   route with its methods), one file per area, blocking queries, Consul's
//!   error mapping; `http::serve` is the accept loop (per-client caps, the
//!   descriptor budget) and `http::timeouts` the per-connection timeouts;
//!   `http::ui` serves the web UI
//!   (`-ui`), whose HTML/CSS/JS lives in `agent/ui/` and is embedded at build.
//! - [`logging`]: the log in Consul's shape, on stderr and streamed to
//!   `/v1/agent/monitor` watchers.
//! - [`remote_exec`]: running `tribune exec` jobs (off unless
//!   `disable_remote_exec = false`).
//! - [`session_ttl`]: session TTL expiry, decided by the raft leader.
//! - [`snapshot`]: the snapshot file format (save, restore, inspect, and
//!   the raft snapshots servers keep).
//! - [`events`]: user events — the agent's buffer, receive-side filters,
//!   and the broadcast hook gossip plugs into.
//! - [`apiclient`]: an async client of the Consul HTTP API (watch plans, `lock`).
//! - [`watchplan`]: Consul's watches — one blocking-query loop per watch,
//!   a handler (print, script, HTTP) run once per real change.
//! - [`dns`]: the DNS interface (node and service lookups, SRV, recursors).
//! - [`sockaddr`]: go-sockaddr templates in addresses, and the address to
//!   advertise when bound to `0.0.0.0`.
//! - [`cli`]: the `tribune` command line (Go-style flags), one file per command.
//! - [`fsutil`]: atomic, fsynced file replacement.
//! - [`supervisor`]: telling systemd (sd_notify) and init scripts (the pid
//!   file) about the agent.
//! - [`telemetry`]: metrics — the recorder (Consul's names), the in-memory
//!   sink of `/v1/agent/metrics` and its Prometheus text.
//! - [`version`]: the Consul API version tribune reports, and its own.
//! - [`goerr`]: error texts as Go's net/http prints them (CLI, HTTP checks).

pub mod agent;
pub mod apiclient;
pub mod banner;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consul_keys;
pub mod dns;
pub mod events;
pub mod fsutil;
pub mod goerr;
pub mod http;
pub mod limits;
pub mod local;
pub mod logging;
pub mod raft;
pub mod remote_exec;
pub mod session_ttl;
pub mod snapshot;
pub mod sockaddr;
pub mod state;
pub mod supervisor;
pub mod telemetry;
pub mod version;
pub mod watchplan;
