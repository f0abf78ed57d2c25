//! `tribune operator autopilot get-config | set-config | state`, with
//! Consul's output.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::client::Api;
use super::common::{get_json, HttpOpts, SimpleArgs};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct AutopilotArgs {
    #[command(subcommand)]
    pub cmd: AutopilotCmd,
}

#[derive(Subcommand, Debug)]
pub enum AutopilotCmd {
    /// Display the current autopilot configuration.
    #[command(name = "get-config")]
    GetConfig(SimpleArgs),
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

const CONFIG: &str = "operator/autopilot/configuration";

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

pub fn run(a: AutopilotArgs) -> ExitCode {
    match a.cmd {
        AutopilotCmd::GetConfig(a) => match get_json(&Api::new(&a.http), CONFIG) {
            Ok(v) => {
                print!("{}", config_text(&v));
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error querying Autopilot configuration: {e}")),
        },
        AutopilotCmd::SetConfig(a) => set_config(a),
        AutopilotCmd::State(a) => state(a),
    }
}

/// `get-config`'s lines.
pub fn config_text(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let b = |k: &str| v[k].as_bool().unwrap_or(false);
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "CleanupDeadServers = {}\nLastContactThreshold = {}\nMaxTrailingLogs = {}\nMinQuorum = {}\n\
         ServerStabilizationTime = {}\nRedundancyZoneTag = {:?}\nDisableUpgradeMigration = {}\n\
         UpgradeVersionTag = {:?}\n",
        b("CleanupDeadServers"),
        s("LastContactThreshold"),
        n("MaxTrailingLogs"),
        n("MinQuorum"),
        s("ServerStabilizationTime"),
        s("RedundancyZoneTag"),
        b("DisableUpgradeMigration"),
        s("UpgradeVersionTag"),
    )
}

/// Read the configuration, change what was given, write it back with
/// `?cas` (as Consul's command).
fn set_config(a: SetConfigArgs) -> ExitCode {
    let api = Api::new(&a.http);
    let mut v = match get_json(&api, CONFIG) {
        Ok(v) => v,
        Err(e) => return fail(format!("Error querying Autopilot configuration: {e}")),
    };
    if let Some(b) = &a.cleanup_dead_servers {
        match b.parse::<bool>() {
            Ok(b) => v["CleanupDeadServers"] = Value::Bool(b),
            Err(_) => return fail(format!("invalid value {b:?} for -cleanup-dead-servers")),
        }
    }
    for (key, flag, val) in [
        (
            "LastContactThreshold",
            "last-contact-threshold",
            &a.last_contact_threshold,
        ),
        (
            "ServerStabilizationTime",
            "server-stabilization-time",
            &a.server_stabilization_time,
        ),
    ] {
        if let Some(d) = val {
            if gocompat::duration::parse_duration(d).is_none() {
                return fail(format!(
                    "invalid value {d:?} for -{flag}: use a duration like 200ms"
                ));
            }
            v[key] = Value::String(d.clone());
        }
    }
    if let Some(n) = a.max_trailing_logs {
        v["MaxTrailingLogs"] = n.into();
    }
    if let Some(n) = a.min_quorum {
        v["MinQuorum"] = n.into();
    }
    let cas = v["ModifyIndex"].as_u64().unwrap_or(0).to_string();
    let body = v.to_string().into_bytes();
    match api.call(Method::PUT, CONFIG, &[("cas", cas)], Some(body)) {
        Ok(Some(b)) if b.trim_ascii() == b"true" => {
            println!("Configuration updated!");
            ExitCode::SUCCESS
        }
        Ok(_) => fail("Configuration could not be atomically updated, please try again"),
        Err(e) => fail(format!("Error setting Autopilot configuration: {e}")),
    }
}

fn state(a: StateArgs) -> ExitCode {
    let api = Api::new(&a.http);
    let v = match get_json(&api, "operator/autopilot/state") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error querying Autopilot state: {e}")),
    };
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        "pretty" => {
            print!("{}", state_text(&v));
            ExitCode::SUCCESS
        }
        other => fail(format!("Invalid format: {other} (use pretty or json)")),
    }
}

/// `state`'s pretty form.
fn state_text(v: &Value) -> String {
    let mut out = format!(
        "Healthy:                      {}\nFailure Tolerance:            {}\n\
         Optimistic Failure Tolerance: {}\nLeader:                       {}\nVoters:\n",
        v["Healthy"].as_bool().unwrap_or(false),
        v["FailureTolerance"],
        v["OptimisticFailureTolerance"],
        v["Leader"].as_str().unwrap_or(""),
    );
    for id in v["Voters"].as_array().into_iter().flatten() {
        out.push_str(&format!("   {}\n", id.as_str().unwrap_or("")));
    }
    out.push_str("\nServers:\n");
    for (id, x) in v["Servers"].as_object().into_iter().flatten() {
        let s = |k: &str| x[k].as_str().unwrap_or("").to_string();
        out.push_str(&format!(
            "   {id}\n      Name:            {}\n      Address:         {}\n      Version:         {}\n      \
             Status:          {}\n      Node Type:       {}\n      Node Status:     {}\n      \
             Healthy:         {}\n      Last Contact:    {}\n      Last Term:       {}\n      \
             Last Index:      {}\n      Stable Since:    {}\n\n",
            s("Name"),
            s("Address"),
            s("Version"),
            s("Status"),
            s("NodeType"),
            s("NodeStatus"),
            x["Healthy"].as_bool().unwrap_or(false),
            s("LastContact"),
            x["LastTerm"],
            x["LastIndex"],
            s("StableSince"),
        ));
    }
    out
}
