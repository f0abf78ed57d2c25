//! `tribune leave`: the agent leaves the cluster gracefully and stops.

use std::process::ExitCode;

use reqwest::Method;

use super::client::Api;
use super::common::{fail, SimpleArgs};

pub fn run(a: SimpleArgs) -> ExitCode {
    match Api::new(&a.http).call(Method::PUT, "agent/leave", &[], None) {
        Ok(_) => {
            println!("Graceful leave complete");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error leaving: {e}")),
    }
}
