//! The `tribune` command line. Flags follow Go's `flag` package as Consul's
//! do: `-flag`, `--flag`, `-flag=value`, `-flag value`, and flag parsing stops
//! at the first positional argument; the `goflags` crate rewrites them for
//! clap using the command definitions, so one table describes every flag.

pub mod agent;
pub mod client;
pub mod cluster;
pub mod event;
pub mod kv;
pub mod lock;
pub mod services;
pub mod watch;

use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tribune",
    version,
    about = "Consul-compatible service discovery and configuration"
)]
#[command(disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run an agent.
    Agent(agent::AgentArgs),
    /// Work with the key/value store.
    Kv(kv::KvArgs),
    /// Register and deregister services.
    Services(services::ServicesArgs),
    /// Reload the agent's configuration files.
    Reload(services::SimpleArgs),
    /// List the members of the cluster.
    Members(services::SimpleArgs),
    /// List catalog services, nodes and datacenters.
    Catalog(services::CatalogArgs),
    /// Tell the local agent to join a cluster.
    Join(cluster::JoinArgs),
    /// Leave the cluster gracefully and shut the agent down.
    Leave(services::SimpleArgs),
    /// Move a failed member to the left state.
    #[command(name = "force-leave")]
    ForceLeave(cluster::ForceLeaveArgs),
    /// Cluster operations (raft peers).
    Operator(cluster::OperatorArgs),
    /// Watch a key, prefix, services, nodes, a service, checks or events.
    Watch(watch::WatchArgs),
    /// Run a command while holding a lock (or a semaphore slot).
    Lock(lock::LockArgs),
    /// Fire a user event.
    Event(event::EventArgs),
    /// Print the version.
    Version,
}

/// Connection options shared by every command that talks to an agent.
#[derive(Args, Debug, Clone)]
pub struct HttpOpts {
    /// Agent HTTP address (also CONSUL_HTTP_ADDR).
    #[arg(
        long = "http-addr",
        env = "CONSUL_HTTP_ADDR",
        default_value = "127.0.0.1:8500"
    )]
    pub http_addr: String,
    /// ACL token (also CONSUL_HTTP_TOKEN).
    #[arg(long = "token", env = "CONSUL_HTTP_TOKEN")]
    pub token: Option<String>,
    /// Datacenter to query.
    #[arg(long = "datacenter")]
    pub datacenter: Option<String>,
    /// Read from any server (`?stale`).
    #[arg(long = "stale")]
    pub stale: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cmd = Cli::command();
    let args = goflags::go_style(&cmd, std::env::args_os().collect());
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    match cli.cmd {
        Cmd::Agent(a) => agent::run(a),
        Cmd::Kv(k) => kv::run(k),
        Cmd::Services(a) => services::run(a),
        Cmd::Reload(a) => services::reload(a),
        Cmd::Members(a) => services::members(a),
        Cmd::Catalog(a) => services::catalog(a),
        Cmd::Join(a) => cluster::join(a),
        Cmd::Leave(a) => cluster::leave(a),
        Cmd::ForceLeave(a) => cluster::force_leave(a),
        Cmd::Operator(a) => cluster::operator(a),
        Cmd::Watch(a) => watch::run(a),
        Cmd::Lock(a) => lock::run(a),
        Cmd::Event(a) => event::run(a),
        Cmd::Version => {
            println!("tribune v{}", env!("CARGO_PKG_VERSION"));
            println!("Consul HTTP API and DNS compatible agent");
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let v = args.iter().map(std::ffi::OsString::from).collect();
        goflags::go_style(&Cli::command(), v)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_flags_become_clap_flags() {
        assert_eq!(
            norm(&["t", "agent", "-dev", "-http-port", "0", "-dns-port=-1"]),
            ["t", "agent", "--dev", "--http-port=0", "--dns-port=-1"]
        );
        assert_eq!(
            norm(&["t", "kv", "put", "-cas", "-modify-index=5", "k", "-v"]),
            [
                "t",
                "kv",
                "put",
                "--cas",
                "--modify-index=5",
                "--",
                "k",
                "-v"
            ]
        );
        assert_eq!(
            norm(&[
                "t",
                "kv",
                "get",
                "-recurse=false",
                "--keys",
                "-separator",
                "/",
                "p"
            ]),
            ["t", "kv", "get", "--keys", "--separator=/", "--", "p"]
        );
        assert_eq!(
            norm(&["t", "kv", "put", "k", "-"]),
            ["t", "kv", "put", "--", "k", "-"]
        );
        assert_eq!(
            norm(&[
                "t",
                "lock",
                "-n",
                "2",
                "-shell=false",
                "-verbose",
                "p",
                "cmd",
                "-x"
            ]),
            [
                "t",
                "lock",
                "--n=2",
                "--no-shell",
                "--verbose",
                "--",
                "p",
                "cmd",
                "-x"
            ]
        );
        assert_eq!(
            norm(&["t", "watch", "-type=key", "-key", "a", "-shell=true", "cat"]),
            [
                "t",
                "watch",
                "--type=key",
                "--key=a",
                "--shell",
                "--",
                "cat"
            ]
        );
        // every command definition is valid (clap checks in debug builds)
        Cli::command().debug_assert();
    }
}
