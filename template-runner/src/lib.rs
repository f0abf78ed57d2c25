//! tribune-template: renders configuration files from a Consul-compatible
//! agent (or files, or the environment), the way confd and consul-template do.
//!
//! # Layout
//! - [`resource`]: template resources (`conf.d/*.toml`, `-template` flags).
//! - [`dependency`]: what templates depend on, one identity per datum.
//! - [`backend`]: consul (blocking queries, through the shared
//!   `tribune-apiclient` client: token, TLS), file, env.
//! - [`watch`]: one long-poll (or poll) task per distinct dependency.
//! - [`render`], [`helpers`], [`gosyntax`]: the two engines (Handlebars and
//!   Go text/template), the one function table both register, and the rule
//!   choosing an engine per file.
//! - [`write`](mod@write): atomic stage / check / rename / fsync.
//! - [`retry`]: when to try a failed write again.
//! - [`command`]: `sh -c` with timeout and captured output.
//! - [`runner`]: the daemon — debounce, render what changed, SIGHUP, conf.d watching.
//! - [`signals`]: which signal reloads, stops, or goes to the child.
//! - [`exec`]: sidecar mode, supervising one child process.
//! - [`metrics`]: `-metrics-addr`, the renderer's Prometheus metrics.
//! - [`cli`]: flags (confd's and consul-template's, Go style).
//! - [`ctconfig`]: consul-template's HCL/JSON `-config` files.

pub mod backend;
pub mod cli;
pub mod command;
pub mod ctconfig;
pub mod dependency;
pub mod exec;
pub mod gosyntax;
pub mod helpers;
pub mod metrics;
pub mod render;
pub mod resource;
pub mod retry;
pub mod runner;
pub mod signals;
pub mod watch;
pub mod write;
