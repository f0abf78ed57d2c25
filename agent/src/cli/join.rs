//! `tribune join`: the agent joins a cluster through the given members.

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;

use super::client::Api;
use super::common::{fail, usage_error, HttpOpts};

#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Join the WAN pool (a server joining servers of other datacenters).
    #[arg(long)]
    pub wan: bool,
    /// Gossip addresses of agents to join (ip or ip:port).
    #[arg(value_name = "address")]
    pub addresses: Vec<String>,
}

/// Joins each address through the local agent; succeeds if any joined.
pub fn run(a: JoinArgs) -> ExitCode {
    if a.addresses.is_empty() {
        return usage_error("At least one address to join must be specified.", &["join"]);
    }
    let api = Api::new(&a.http);
    let mut joined = 0;
    let mut last_err = String::new();
    let q: Vec<(&str, String)> = if a.wan {
        vec![("wan", "1".into())]
    } else {
        vec![]
    };
    for addr in &a.addresses {
        let path = format!("agent/join/{}", crate::apiclient::key_path(addr));
        match api.call(Method::PUT, &path, &q, None) {
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
