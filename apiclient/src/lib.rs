//! The one client of the Consul HTTP API that tribune's programs share:
//! the `tribune` CLI, watch plans (CLI and agent), `tribune lock` and
//! `exec`, and tribune-template's consul backend.
//!
//! # Layout
//! - [`config`]: where the agent is and how to reach it — address and
//!   scheme, token (and token file), datacenter, `?stale`, TLS, timeouts —
//!   and Consul's `CONSUL_*` environment variables.
//! - `tls`: the configuration read into reqwest's terms (CA roots, client
//!   identity, TLS server name), applied to both client kinds.
//! - [`blocking`]: [`Api`], for one-shot CLI commands.
//! - [`nonblocking`]: [`ApiClient`], for blocking-query loops.
//! - [`error`]: [`Error`], with Consul's CLI texts.
//! - [`goerr`]: error texts as Go's net/http prints them.
//! - [`key_path`]: a KV key (or any name) escaped for a URL path.
//!
//! Every request carries the token as `X-Consul-Token` and the
//! configured datacenter as `?dc=`.

pub mod blocking;
pub mod config;
pub mod error;
pub mod goerr;
pub mod nonblocking;
mod tls;

pub use blocking::Api;
pub use config::{Config, ConfigError, TlsConfig};
pub use error::Error;
pub use nonblocking::{ApiClient, Reply};

use reqwest::Method;

/// The header the token travels in.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// The caller's query pairs plus the configured `?dc=` and (on a GET)
/// `?stale`.
fn common_query<'a>(
    c: &Config,
    method: &Method,
    query: &[(&'a str, String)],
) -> Vec<(&'a str, String)> {
    let mut q: Vec<(&str, String)> = query.to_vec();
    if let Some(dc) = &c.datacenter {
        q.push(("dc", dc.clone()));
    }
    if c.stale && method == Method::GET {
        q.push(("stale", String::new()));
    }
    q
}

/// Percent-encode a key for a URL path, keeping `/`.
pub fn key_path(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}
