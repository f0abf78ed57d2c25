//! `tribune join`, `leave`, `force-leave` and `operator raft`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::Api;
use super::services::{get_json, table};
use super::HttpOpts;

#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Join the WAN pool (accepted; this build has one datacenter).
    #[arg(long)]
    pub wan: bool,
    /// Gossip addresses of agents to join (ip or ip:port).
    #[arg(value_name = "address")]
    pub addresses: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Remove the node from the member list entirely.
    #[arg(long)]
    pub prune: bool,
    /// The failed node's name.
    #[arg(value_name = "node")]
    pub nodes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub cmd: OperatorCmd,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Raft operations.
    Raft(RaftArgs),
    /// Autopilot: its configuration and the servers' health.
    Autopilot(AutopilotArgs),
}

#[derive(Args, Debug)]
pub struct AutopilotArgs {
    #[command(subcommand)]
    pub cmd: AutopilotCmd,
}

#[derive(Subcommand, Debug)]
pub enum AutopilotCmd {
    /// Display the current autopilot configuration.
    #[command(name = "get-config")]
    GetConfig(super::services::SimpleArgs),
    /// Modify the current autopilot configuration.
    #[command(name = "set-config")]
    SetConfig(SetConfigArgs),
    /// Display the current autopilot state.
    State(StateArgs),
}

#[derive(Args, Debug)]
pub struct SetConfigArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Remove dead servers once a replacement joins (true or false).
    #[arg(long = "cleanup-dead-servers", num_args = 0..=1, default_missing_value = "true")]
    pub cleanup_dead_servers: Option<String>,
    /// Longest time since a server heard from the leader and is still healthy.
    #[arg(long = "last-contact-threshold")]
    pub last_contact_threshold: Option<String>,
    /// Most log entries a server may trail the leader by and still be healthy.
    #[arg(long = "max-trailing-logs")]
    pub max_trailing_logs: Option<u64>,
    /// Fewest servers autopilot keeps before it stops removing dead ones.
    #[arg(long = "min-quorum")]
    pub min_quorum: Option<u64>,
    /// Time a new server must be healthy before it is promoted.
    #[arg(long = "server-stabilization-time")]
    pub server_stabilization_time: Option<String>,
}

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct RaftArgs {
    #[command(subcommand)]
    pub cmd: RaftCmd,
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// List the raft peers (voters and non-voters).
    #[command(name = "list-peers")]
    ListPeers(super::services::SimpleArgs),
    /// Remove a (dead) server from the raft configuration.
    #[command(name = "remove-peer")]
    RemovePeer(RemovePeerArgs),
    /// Transfer raft leadership to another server.
    #[command(name = "transfer-leader")]
    TransferLeader(TransferLeaderArgs),
}

#[derive(Args, Debug)]
pub struct TransferLeaderArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// The ID of the node to transfer leadership to (else the most
    /// caught-up voter).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args, Debug)]
pub struct RemovePeerArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// The server's node ID (or raft ID).
    #[arg(long)]
    pub id: Option<String>,
    /// The server's raft address, ip:port.
    #[arg(long)]
    pub address: Option<String>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

/// A usage error: the message, a blank line and the command's help.
fn usage_error(msg: &str, path: &[&str]) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    for p in path {
        cmd = cmd.find_subcommand(p).cloned().unwrap_or(cmd);
    }
    let words: Vec<String> = std::iter::once("tribune")
        .chain(path.iter().copied())
        .map(String::from)
        .collect();
    fail(format!("{msg}\n\n{}", goflags::command_help(&cmd, &words)))
}

/// Joins each address through the local agent; succeeds if any joined.
pub fn join(a: JoinArgs) -> ExitCode {
    if a.addresses.is_empty() {
        return usage_error("At least one address to join must be specified.", &["join"]);
    }
    let api = Api::new(&a.http);
    let mut joined = 0;
    let mut last_err = String::new();
    for addr in &a.addresses {
        let path = format!("agent/join/{}", crate::apiclient::key_path(addr));
        match api.call(Method::PUT, &path, &[], None) {
            Ok(_) => joined += 1,
            Err(e) => last_err = e.to_string(),
        }
    }
    if joined == 0 {
        return fail(format!("Error joining address(es): {last_err}"));
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    ExitCode::SUCCESS
}

pub fn leave(a: super::services::SimpleArgs) -> ExitCode {
    match Api::new(&a.http).call(Method::PUT, "agent/leave", &[], None) {
        Ok(_) => {
            println!("Graceful leave complete");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error leaving: {e}")),
    }
}

pub fn force_leave(a: ForceLeaveArgs) -> ExitCode {
    let [node] = a.nodes.as_slice() else {
        return usage_error(
            "A single node name must be specified to force leave.",
            &["force-leave"],
        );
    };
    let path = format!("agent/force-leave/{}", crate::apiclient::key_path(node));
    let q: Vec<(&str, String)> = if a.prune {
        vec![("prune", String::new())]
    } else {
        vec![]
    };
    match Api::new(&a.http).call(Method::PUT, &path, &q, None) {
        Ok(Some(_)) => ExitCode::SUCCESS,
        Ok(None) => fail(format!(
            "Error force leaving: agent: No node found with name '{node}'"
        )),
        Err(e) => fail(format!("Error force leaving: {e}")),
    }
}

pub fn operator(a: OperatorArgs) -> ExitCode {
    let r = match a.cmd {
        OperatorCmd::Raft(r) => r,
        OperatorCmd::Autopilot(a) => return super::autopilot::run(a),
    };
    match r.cmd {
        RaftCmd::ListPeers(a) => {
            let v = match get_json(&Api::new(&a.http), "operator/raft/configuration") {
                Ok(v) => v,
                Err(e) => return fail(format!("Failed to retrieve raft configuration: {e}")),
            };
            let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
                .map(String::from)
                .to_vec()];
            for s in v["Servers"].as_array().into_iter().flatten() {
                let state = if s["Leader"].as_bool() == Some(true) {
                    "leader"
                } else {
                    "follower"
                };
                rows.push(vec![
                    s["Node"].as_str().unwrap_or("").into(),
                    s["ID"].as_str().unwrap_or("").into(),
                    s["Address"].as_str().unwrap_or("").into(),
                    state.into(),
                    s["Voter"].as_bool().unwrap_or(false).to_string(),
                    s["ProtocolVersion"].as_str().unwrap_or("3").into(),
                ]);
            }
            table(rows);
            ExitCode::SUCCESS
        }
        RaftCmd::RemovePeer(a) => {
            let q = match (&a.id, &a.address) {
                (Some(id), None) => vec![("id", id.clone())],
                (None, Some(addr)) => vec![("address", addr.clone())],
                _ => return fail("Error removing peer: give exactly one of -id or -address"),
            };
            match Api::new(&a.http).call(Method::DELETE, "operator/raft/peer", &q, None) {
                Ok(_) => {
                    println!("Removed peer with {} {}", q[0].0, q[0].1);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("Error removing peer: {e}")),
            }
        }
        RaftCmd::TransferLeader(a) => {
            let q: Vec<(&str, String)> = a.id.iter().map(|id| ("id", id.clone())).collect();
            let r = Api::new(&a.http).call(Method::POST, "operator/raft/transfer-leader", &q, None);
            let parsed =
                r.map(|b| b.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()));
            match parsed {
                Ok(Some(v)) if v["Success"] == true => {
                    println!("Success");
                    ExitCode::SUCCESS
                }
                Ok(_) => fail("Error transfering leadership: Failed to transfer leadership"),
                Err(e) => fail(format!(
                    "Error transfering leadership: Failed to transfer leadership {e}"
                )),
            }
        }
    }
}
