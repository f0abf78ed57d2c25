//! The HTTP options every command that talks to an agent takes, as
//! Consul's CLI has them, read into the shared client's configuration
//! (crate `tribune-apiclient`).

use std::path::PathBuf;

use clap::Args;

pub use crate::apiclient::Api;
use crate::apiclient::Config;

/// Help heading of [`HttpOpts`], listed first as Consul lists them.
const HTTP_OPTIONS: &str = "HTTP API Options";

/// Connection options shared by every command that talks to an agent.
/// `CONSUL_HTTP_SSL` and `CONSUL_HTTP_SSL_VERIFY` have no flag, as in Consul.
#[derive(Args, Debug, Clone)]
pub struct HttpOpts {
    /// Path to a CA file to use for TLS when communicating with Consul.
    /// This can also be specified via the CONSUL_CACERT environment
    /// variable.
    #[arg(long = "ca-file", env = "CONSUL_CACERT", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub ca_file: Option<PathBuf>,
    /// Path to a directory of CA certificates to use for TLS when
    /// communicating with Consul. This can also be specified via the
    /// CONSUL_CAPATH environment variable.
    #[arg(long = "ca-path", env = "CONSUL_CAPATH", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub ca_path: Option<PathBuf>,
    /// Path to a client cert file to use for TLS when 'verify_incoming' is
    /// enabled. This can also be specified via the CONSUL_CLIENT_CERT
    /// environment variable.
    #[arg(long = "client-cert", env = "CONSUL_CLIENT_CERT", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub client_cert: Option<PathBuf>,
    /// Path to a client key file to use for TLS when 'verify_incoming' is
    /// enabled. This can also be specified via the CONSUL_CLIENT_KEY
    /// environment variable.
    #[arg(long = "client-key", env = "CONSUL_CLIENT_KEY", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub client_key: Option<PathBuf>,
    /// The `address` and port of the agent's HTTP API: an IP address or DNS
    /// name, and the port. This can also be specified via the
    /// CONSUL_HTTP_ADDR environment variable.
    #[arg(
        long = "http-addr",
        env = "CONSUL_HTTP_ADDR",
        default_value = "127.0.0.1:8500",
        value_name = "address",
        hide_env = true,
        help_heading = HTTP_OPTIONS
    )]
    pub http_addr: String,
    /// The server name to use as the SNI host when connecting via TLS.
    /// This can also be specified via the CONSUL_TLS_SERVER_NAME
    /// environment variable.
    #[arg(long = "tls-server-name", env = "CONSUL_TLS_SERVER_NAME", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub tls_server_name: Option<String>,
    /// ACL token to use in the request. This can also be specified via the
    /// CONSUL_HTTP_TOKEN environment variable. If unspecified, the query
    /// will default to the token of the agent at the HTTP address.
    #[arg(
        long = "token",
        env = "CONSUL_HTTP_TOKEN",
        value_name = "value",
        hide_env = true,
        help_heading = HTTP_OPTIONS
    )]
    pub token: Option<String>,
    /// File containing the ACL token to use in the request instead of one
    /// specified via the -token argument or CONSUL_HTTP_TOKEN environment
    /// variable. This can also be specified via the
    /// CONSUL_HTTP_TOKEN_FILE environment variable.
    #[arg(long = "token-file", env = "CONSUL_HTTP_TOKEN_FILE", value_name = "value", hide_env = true, help_heading = HTTP_OPTIONS)]
    pub token_file: Option<PathBuf>,
    /// Name of the datacenter to query. If unspecified, this will default
    /// to the datacenter of the queried agent.
    #[arg(long = "datacenter", help_heading = HTTP_OPTIONS)]
    pub datacenter: Option<String>,
    /// Permit any server (non-leader) to respond to this request. This
    /// allows for lower latency and higher throughput, but can result in
    /// stale data. This option has no effect on non-read operations.
    #[arg(long = "stale", help_heading = HTTP_OPTIONS)]
    pub stale: bool,
}

impl HttpOpts {
    /// The client configuration. A bad `CONSUL_HTTP_SSL(_VERIFY)` value is
    /// reported by the client's first request.
    pub fn config(&self) -> Config {
        let mut c = Config {
            address: self.http_addr.clone(),
            token: self.token.clone(),
            token_file: self.token_file.clone(),
            datacenter: self.datacenter.clone(),
            stale: self.stale,
            ..Config::default()
        };
        c.tls.ca_file = self.ca_file.clone();
        c.tls.ca_path = self.ca_path.clone();
        c.tls.cert_file = self.client_cert.clone();
        c.tls.key_file = self.client_key.clone();
        c.tls.server_name = self.tls_server_name.clone();
        if let Err(e) = c.apply_env_switches() {
            c.invalid = Some(e);
        }
        c
    }

    /// For the long-running commands: `-stale` is theirs to apply per
    /// query (watch), not every GET's.
    pub fn async_config(&self) -> Config {
        Config {
            stale: false,
            ..self.config()
        }
    }

    /// The token the commands send (the token file's, else `-token`), for
    /// those that pass it on (watch plans).
    pub fn resolved_token(&self) -> Option<String> {
        self.config().resolved_token().ok().flatten()
    }
}

impl From<&HttpOpts> for Config {
    fn from(o: &HttpOpts) -> Config {
        o.config()
    }
}
