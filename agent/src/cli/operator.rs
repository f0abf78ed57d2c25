//! `tribune operator raft list-peers|remove-peer`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::Api;
use super::common::{fail, get_json, table, HttpOpts};

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
    Autopilot(super::autopilot::AutopilotArgs),
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
    ListPeers(super::common::SimpleArgs),
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

pub fn run(a: OperatorArgs) -> ExitCode {
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
        RaftCmd::TransferLeader(a) => transfer_leader(a),
    }
}

fn transfer_leader(a: TransferLeaderArgs) -> ExitCode {
    let q: Vec<(&str, String)> = a.id.iter().map(|id| ("id", id.clone())).collect();
    let r = Api::new(&a.http).call(Method::POST, "operator/raft/transfer-leader", &q, None);
    let parsed = r.map(|b| b.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()));
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
