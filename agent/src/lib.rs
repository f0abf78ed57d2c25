//! tribune: a Consul-compatible service-discovery and configuration agent.
//!
//! # Layout
//! Read in this order: the core, then the request path, then what lies
//! below it. No file imports another that imports it back (checked by
//! `tests/structure.rs`).
//!
//! - [`app`]: the agent's shared state ([`app::AppState`]) and its
//!   operations on the whole agent (`reload`, `graceful_leave`); above
//!   `http/`, `cluster/`, `raft/`, `local/`, which get only the handles
//!   they use.
//! - [`agent`]: running an agent — the start-up steps (identity, the server
//!   RPC port, gossip, raft, the shared state, the listeners), waiting,
//!   graceful shutdown; [`banner`]: what it prints as it starts.
//! - [`config`]: agent configuration (defaults, JSON/HCL files, flags).
//! - [`acl`]: ACL rules (HCL/JSON), the authorizer (Consul's precedence),
//!   the `acl` config block, replication from `primary_datacenter`
//!   (`acl::replication`), what each raft command needs (`acl::command`,
//!   checked on writes arriving over server RPC and on the agent's own);
//!   the tables are `state::acl`, the API `http::acl`, resolution the
//!   pipeline's auth step.
//! - [`limits`]: connection caps and timeouts (Consul's `limits` block).
//! - [`consul_keys`]: the config-file keys Consul accepts (typos are errors).
//! - [`pipeline`]: the steps every API request takes (below).
//! - [`http`]: the Consul HTTP API — route table (`http::routes`: each
//!   route with its methods), one handler file per area; `http::serve` is
//!   the accept loop (per-client caps, the descriptor budget) and
//!   `http::timeouts` the per-connection timeouts; `http::access` is every
//!   route's ACL class (checked in the pipeline), `http::acl` the ACL API;
//!   `http::ui` serves the
//!   web UI (`-ui`), whose HTML/CSS/JS lives in `agent/ui/` and is embedded
//!   at build.
//! - [`rpc`]: the server RPC port — `rpc::server` (raft, forwarded
//!   requests and writes, DNS lookups), `rpc::client` (how any layer calls
//!   a server).
//! - [`query`]: prepared queries — definitions and their validation,
//!   templates, execution with the failover walk over other datacenters
//!   (`query::execute::failover`; `query::remote` runs it for both the API
//!   `http::query` and DNS `dns::lookup`); the table is `state::query`.
//! - [`state`]: the replicated tables (KV, catalog, sessions, coordinates,
//!   prepared queries) and
//!   per-key/prefix watchers.
//! - [`raft`]: openraft wiring — log store (memory or redb, group commit),
//!   state machine with snapshots, peer network, leadership tracking, the
//!   proposer.
//! - [`local`]: this agent's services and checks — definitions, probes,
//!   anti-entropy sync into the catalog.
//! - [`cluster`]: several agents as one — gossip membership (foca; the LAN
//!   pool, and the servers' WAN pool), the WAN router (alive servers of
//!   every datacenter), the upstream servers, bootstrap and voter
//!   management (autopilot), the round trips of gossip probes
//!   (`cluster::rtt`).
//! - [`coordinate`]: network coordinates — serf's Vivaldi model, the
//!   agent's loop that feeds it probe round trips and sends its coordinate
//!   to the servers, the servers' update batches, `?near` sorting, a
//!   server's WAN coordinates and the datacenters by distance
//!   (`coordinate::wan`); the table is `state::coordinate`, the API
//!   `http::coordinate`.
//! - [`logging`]: the log in Consul's shape, on stderr and streamed to
//!   `/v1/agent/monitor` watchers.
//! - [`remote_exec`]: running `tribune exec` jobs (off unless
//!   `disable_remote_exec = false`).
//! - [`session_ttl`]: session TTL expiry, decided by the raft leader.
//! - [`snapshot`]: the snapshot file format (save, restore, inspect, and
//!   the raft snapshots servers keep).
//! - [`events`]: user events — the agent's buffer, receive-side filters,
//!   and the broadcast hook gossip plugs into.
//! - [`apiclient`]: the Consul HTTP API client crate `tribune-apiclient`
//!   (the CLI, watch plans, `lock`, `exec`; tribune-template uses it too).
//! - [`watchplan`]: Consul's watches — one blocking-query loop per watch,
//!   a handler (print, script, HTTP) run once per real change.
//! - [`dns`]: the DNS interface (node, service and prepared-query lookups,
//!   SRV, recursors; names of other datacenters asked of their servers).
//! - [`sockaddr`] (in `gocompat`): go-sockaddr templates in addresses, and the address to
//!   advertise when bound to `0.0.0.0`.
//! - [`cli`]: the `tribune` command line (Go-style flags), one file per command.
//! - [`fsutil`]: atomic, fsynced file replacement.
//! - [`alloc`]: the allocator (mimalloc) and handing freed memory back.
//! - [`supervisor`]: telling systemd (sd_notify) and init scripts (the pid
//!   file) about the agent.
//! - [`tls`]: TLS for the HTTPS API and server RPC (rustls): files of the
//!   `tls` block, server and client configurations, reload; `tls::certs`
//!   makes a CA and certificates (`tribune tls`). Gossip encryption lives
//!   in `cluster::keyring`.
//! - [`telemetry`]: metrics — the recorder (Consul's names), the in-memory
//!   sink of `/v1/agent/metrics` and its Prometheus text.
//! - [`version`]: the Consul API version tribune reports, and its own.
//! - [`goerr`]: error texts as Go's net/http prints them (CLI, HTTP checks;
//!   defined in `tribune-apiclient`).
//!
//! # How a request travels
//! Every HTTP API request passes [`pipeline::entry`], the one middleware:
//! 1. [`pipeline::context`] parses the common query (`dc`, `token`,
//!    `stale`/`consistent`, `index`/`wait`, `cached`, `filter`, the hop
//!    count) once into a `RequestCtx`;
//! 2. [`pipeline::auth`] resolves the token into an `Authz` (where the
//!    request is answered, after routing) and the route's ACL class is
//!    checked ([`http::access`]); handlers filter lists with it;
//! 3. [`pipeline::route`] decides where it is answered: here, by the leader
//!    (from a follower), by a server (from a client agent), or, for a
//!    `?dc=` naming another datacenter, by a server there (chosen by the
//!    WAN router, [`cluster::router`]; it answers through its leader);
//!    elsewhere,
//!    [`pipeline::forward`] carries it whole over server RPC, and it enters
//!    the same pipeline there; identical forwarded blocking reads share one
//!    upstream query ([`pipeline::coalesce`]), and a `?cached` read is
//!    answered by the agent cache ([`pipeline::cache`]) once its token is
//!    resolved;
//! 4. the handler (`http::*`) takes the context — it never re-parses the
//!    query nor decides forwarding — and a read passes the route's gate
//!    (the leader lease, or a quorum's confirmation);
//! 5. [`pipeline::block`] holds a read with `?index` until its data change;
//! 6. [`pipeline::render`] writes the JSON and the `X-Consul-*` headers,
//!    [`pipeline::error`] Consul's status codes and texts.
//!
//! An RPC on the server port (a forwarded write, a DNS lookup) takes the
//! same steps in small: an `RpcCtx` (hops), auth, then its own route.
//!
//! # How a write travels
//! The handler validates the request and builds a `state::Command`;
//! [`pipeline::write`] hands it to the proposer ([`raft::proposer`]). On
//! the leader the proposer folds it with other writes into one raft entry
//! (group commit, one fsync); elsewhere it sends it to the leader over
//! server RPC (`/rpc/write`, on a connection of its own), carrying its
//! token, which every server that takes it checks (the agent's own writes
//! act with its `agent` token). Once a quorum has
//! the entry, the state machine applies it to the tables and wakes the
//! watchers of what changed, and the handler answers with the outcome.

pub mod acl;
pub mod agent;
pub mod alloc;
/// The Consul HTTP API client (crate `tribune-apiclient`).
pub use tribune_apiclient as apiclient;
/// Go's error texts (in `tribune-apiclient`, which prints them first).
pub use tribune_apiclient::goerr;
pub mod app;
pub mod banner;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consul_keys;
pub mod coordinate;
pub mod dns;
pub mod events;
pub mod fsutil;
pub mod http;
pub mod limits;
pub mod local;
pub mod logging;
pub mod pipeline;
pub mod query;
pub mod raft;
pub mod remote_exec;
pub mod rpc;
pub mod session_ttl;
pub mod snapshot;
/// go-sockaddr (in `gocompat`, shared with tribune-template).
pub use gocompat::sockaddr;
pub mod state;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod version;
pub mod watchplan;
