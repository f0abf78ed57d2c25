//! `tribune reload`: the agent re-reads its configuration files.

use std::process::ExitCode;

use reqwest::Method;

use super::client::Api;
use super::common::{fail, SimpleArgs};

pub fn run(a: SimpleArgs) -> ExitCode {
    match Api::new(&a.http).call(Method::PUT, "agent/reload", &[], None) {
        Ok(_) => {
            println!("Configuration reload triggered");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reloading: {e}")),
    }
}
