//! The `tribune` command line. Flags follow Go's `flag` package as Consul's
//! do: `-flag`, `--flag`, `-flag=value`, `-flag value`, and flag parsing stops
//! at the first positional argument; `gocompat::flags` rewrites them for
//! clap using the command definitions, so one table describes every flag.

pub mod acl;
pub mod agent;
pub mod autopilot;
pub mod catalog;
pub mod client;
pub mod common;
pub mod complete;
pub mod event;
pub mod exec;
pub mod force_leave;
pub mod info;
pub mod join;
pub mod keyring;
pub mod kv;
pub mod leave;
pub mod lock;
pub mod maint;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod reload;
pub mod rtt;
pub mod services;
pub mod snapshot;
pub mod tls;
pub mod validate;
pub mod version;
pub mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use common::{HttpOpts, SimpleArgs};

#[derive(Parser, Debug)]
#[command(name = "tribune")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands; each doc comment's first line is the synopsis in the
/// command list, the rest its help text.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Runs a tribune agent
    ///
    /// Starts the agent and runs until an interrupt is received. The agent
    /// represents a single node in a cluster.
    Agent(agent::AgentArgs),
    /// Interact with the key-value store
    ///
    /// This command has subcommands for interacting with the key-value store:
    /// get, put, delete, export and import.
    Kv(kv::KvArgs),
    /// Interact with services
    ///
    /// This command has subcommands for interacting with services registered
    /// with the local agent.
    Services(services::ServicesArgs),
    /// Triggers the agent to reload configuration files
    ///
    /// Causes the agent to reload configurations. This can be used instead
    /// of sending the SIGHUP signal to the agent.
    Reload(SimpleArgs),
    /// Lists the members of a tribune cluster
    ///
    /// Outputs the members of a running tribune agent.
    Members(members::MembersArgs),
    /// Estimates network round trip time between nodes
    ///
    /// Estimates the round trip time between two nodes using their network
    /// coordinates. With one node, the other is the agent's own node.
    Rtt(rtt::RttArgs),
    /// Interact with the catalog
    ///
    /// This command has subcommands for interacting with the catalog:
    /// datacenters, nodes and services.
    Catalog(catalog::CatalogArgs),
    /// Tell the agent to join a cluster
    ///
    /// Tells a running agent to join the cluster by specifying at least
    /// one existing member.
    Join(join::JoinArgs),
    /// Gracefully leaves the cluster and shuts down
    ///
    /// Causes the agent to gracefully leave the cluster and shut down.
    Leave(SimpleArgs),
    /// Forces a member of the cluster to enter the "left" state
    ///
    /// Forces a member of the cluster to enter the "left" state. Note that
    /// if the member is still actually alive, it will eventually rejoin
    /// the cluster.
    #[command(name = "force-leave")]
    ForceLeave(force_leave::ForceLeaveArgs),
    /// Provides cluster-level tools for operators
    ///
    /// Provides cluster-level tools for operators, such as interacting with
    /// the Raft subsystem.
    Operator(operator::OperatorArgs),
    /// Watch for changes
    ///
    /// Watches for changes in a given data view from the agent. If a child
    /// process is specified, it will be invoked with the latest results on
    /// changes. Otherwise, the latest values are dumped to stdout and the
    /// watch terminates.
    Watch(watch::WatchArgs),
    /// Execute a command holding a lock
    ///
    /// Acquires a lock or semaphore at a given path, and invokes a child
    /// process when successful. The child process can assume the lock is
    /// held while it executes.
    Lock(lock::LockArgs),
    /// Fire a new event
    ///
    /// Dispatches a custom user event across a datacenter. An event must
    /// provide a name, but a payload is optional. Events support filtering
    /// using regular expressions on node name, service, and tag definitions.
    Event(event::EventArgs),
    /// Executes a command on tribune nodes
    ///
    /// Evaluates a command on remote nodes. The nodes responding can be
    /// filtered using regular expressions on node name, service, and tag
    /// definitions. If a command is '-', stdin will be read until EOF and
    /// used as a script input.
    Exec(exec::ExecArgs),
    /// Provides debugging information for operators.
    ///
    /// Provides debugging information for operators.
    Info(SimpleArgs),
    /// Stream logs from an agent
    ///
    /// Shows recent log messages of an agent, and attaches to the agent,
    /// outputting log messages as they occur in real time. The monitor lets
    /// you listen for log levels that may be filtered out of the agent. For
    /// example your agent may only be logging at INFO level, but with the
    /// monitor you can see the DEBUG level logs.
    Monitor(monitor::MonitorArgs),
    /// Saves, restores and inspects snapshots of tribune server state
    ///
    /// This command has subcommands for saving, restoring, and inspecting the
    /// state of the tribune servers for disaster recovery. These are atomic,
    /// point-in-time snapshots which include key/value entries, the service
    /// catalog and sessions.
    Snapshot(snapshot::SnapshotArgs),
    /// Controls node or service maintenance mode
    ///
    /// Places a node or service into maintenance mode. During maintenance
    /// mode, the node or service will be excluded from all queries through
    /// the DNS or API interfaces, effectively taking it out of the pool of
    /// available nodes. This is done by registering an additional critical
    /// health check. Without -enable or -disable, lists what is currently
    /// under maintenance (nothing is printed when nothing is).
    Maint(maint::MaintArgs),
    /// Validate config files/directories
    ///
    /// Performs a basic sanity test on tribune configuration files. For each
    /// file or directory given, the validate command will attempt to parse
    /// the contents just as the "tribune agent" command would, and catch any
    /// errors. Returns 0 if the configuration is valid, or 1 if there are
    /// problems.
    Validate(validate::ValidateArgs),
    /// Interact with tribune's ACLs
    ///
    /// This command has subcommands for interacting with the ACL system:
    /// bootstrap, policy, token, role and set-agent-token.
    Acl(acl::AclArgs),
    /// Prints the tribune version
    Version(version::VersionArgs),
    /// Generates a new encryption key
    ///
    /// Generates a new encryption key that can be used to configure the
    /// agent to encrypt traffic. The output of this command is already in
    /// the proper format that the agent expects.
    Keygen(keyring::KeygenArgs),
    /// Manages gossip layer encryption keys
    ///
    /// Manages encryption keys used for gossip messages. Gossip encryption
    /// is optional. When enabled, this command may be used to examine
    /// active encryption keys in the cluster, add new keys, and remove old
    /// ones. When combined, this functionality provides the ability to
    /// perform key rotation cluster-wide, without disrupting the cluster.
    Keyring(keyring::KeyringArgs),
    /// Builtin helpers for creating CAs and certificates
    ///
    /// Builtin helpers for creating CAs and certificates: `tls ca create`,
    /// then `tls cert create -server|-client|-cli`.
    Tls(tls::TlsArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    common::set_root_command(Cli::command);
    let cmd = Cli::command();
    // The shell asking for completions, or -autocomplete-(un)install.
    if let Some(code) = complete::handle(&cmd) {
        return code;
    }
    let matches = match gocompat::flags::parse(&cmd, std::env::args_os().collect()) {
        gocompat::flags::Parsed::Matches(m) => m,
        gocompat::flags::Parsed::Version => return version::print_pretty(),
        gocompat::flags::Parsed::Exit(e) => {
            e.print();
            return ExitCode::from(e.code);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if !matches!(
        cli.cmd,
        Cmd::Agent(_) | Cmd::Lock(_) | Cmd::Watch(_) | Cmd::Exec(_)
    ) {
        // Like a Go program, stop quietly when the reader of the output
        // goes away (`tribune members | head -1`). The agent and the
        // commands that run children keep ignoring SIGPIPE.
        // SAFETY: restoring the default disposition of one signal.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.cmd {
        Cmd::Agent(a) => agent::run(a),
        Cmd::Kv(k) => kv::run(k),
        Cmd::Services(a) => services::run(a),
        Cmd::Reload(a) => reload::run(a),
        Cmd::Members(a) => members::run(a),
        Cmd::Rtt(a) => rtt::run(a),
        Cmd::Catalog(a) => catalog::run(a),
        Cmd::Join(a) => join::run(a),
        Cmd::Leave(a) => leave::run(a),
        Cmd::ForceLeave(a) => force_leave::run(a),
        Cmd::Operator(a) => operator::run(a),
        Cmd::Watch(a) => watch::run(a),
        Cmd::Lock(a) => lock::run(a),
        Cmd::Event(a) => event::run(a),
        Cmd::Exec(a) => exec::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Monitor(a) => monitor::run(a),
        Cmd::Snapshot(a) => snapshot::run(a),
        Cmd::Maint(a) => maint::run(a),
        Cmd::Validate(a) => validate::run(a),
        Cmd::Acl(a) => acl::run(a),
        Cmd::Version(a) => version::run(a),
        Cmd::Keygen(a) => keyring::keygen(a),
        Cmd::Keyring(a) => keyring::keyring(a),
        Cmd::Tls(a) => tls::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let v = args.iter().map(std::ffi::OsString::from).collect();
        gocompat::flags::go_style(&Cli::command(), v)
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
