//! `tribune force-leave`: a failed member becomes left.

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;

use super::client::Api;
use super::common::{fail, usage_error, HttpOpts};

#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Remove the node from the member list entirely.
    #[arg(long)]
    pub prune: bool,
    /// Force-leave a member of the WAN pool (named `<node>.<dc>`).
    #[arg(long)]
    pub wan: bool,
    /// The failed node's name.
    #[arg(value_name = "node")]
    pub nodes: Vec<String>,
}

pub fn run(a: ForceLeaveArgs) -> ExitCode {
    let [node] = a.nodes.as_slice() else {
        return usage_error(
            "A single node name must be specified to force leave.",
            &["force-leave"],
        );
    };
    let path = format!("agent/force-leave/{}", crate::apiclient::key_path(node));
    let mut q: Vec<(&str, String)> = vec![];
    if a.prune {
        q.push(("prune", String::new()));
    }
    if a.wan {
        q.push(("wan", "1".into()));
    }
    match Api::new(&a.http).call(Method::PUT, &path, &q, None) {
        Ok(Some(_)) => ExitCode::SUCCESS,
        Ok(None) => fail(format!(
            "Error force leaving: agent: No node found with name '{node}'"
        )),
        Err(e) => fail(format!("Error force leaving: {e}")),
    }
}
