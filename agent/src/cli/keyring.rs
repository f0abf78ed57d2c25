//! `tribune keygen` (a fresh gossip key) and `tribune keyring` (the gossip
//! keys of every member: list, install, use, remove).

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::client::Api;
use super::common::{fail, usage_error, HttpOpts};

#[derive(Args, Debug)]
pub struct KeygenArgs {}

/// `tribune keygen`: 32 random bytes, base64, as `consul keygen` prints.
pub fn keygen(_: KeygenArgs) -> ExitCode {
    println!("{}", crate::cluster::keyring::generate());
    ExitCode::SUCCESS
}

#[derive(Args, Debug)]
pub struct KeyringArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Install a new encryption key. This will broadcast the new key to
    /// all members in the cluster.
    #[arg(long, value_name = "key")]
    pub install: Option<String>,
    /// Change the primary encryption key, which is used to encrypt
    /// messages. The key must already be installed before this operation
    /// can succeed.
    #[arg(long = "use", value_name = "key")]
    pub use_key: Option<String>,
    /// Remove the given key from the cluster. This operation may only be
    /// performed on keys which are not currently the primary key.
    #[arg(long, value_name = "key")]
    pub remove: Option<String>,
    /// List all keys currently in use within the cluster.
    #[arg(long)]
    pub list: bool,
}

pub fn keyring(a: KeyringArgs) -> ExitCode {
    let given = [
        a.install.is_some(),
        a.use_key.is_some(),
        a.remove.is_some(),
        a.list,
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return usage_error(
            "Exactly one of -list, -install, -use, or -remove must be provided",
            &["keyring"],
        );
    }
    let api = Api::new(&a.http);
    if a.list {
        println!("==> Gathering installed encryption keys...");
        return match api.call(Method::GET, "operator/keyring", &[], None) {
            Ok(Some(b)) => match serde_json::from_slice::<Value>(&b) {
                Ok(v) => {
                    print_pools(&v);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("error: {e}")),
            },
            Ok(None) => fail("error: no keyring endpoint"),
            Err(e) => fail(format!("error: {e}")),
        };
    }
    let (method, key, doing) = if let Some(k) = a.install {
        (Method::POST, k, "Installing new gossip encryption key...")
    } else if let Some(k) = a.use_key {
        (Method::PUT, k, "Changing primary gossip encryption key...")
    } else if let Some(k) = a.remove {
        (Method::DELETE, k, "Removing gossip encryption key...")
    } else {
        return usage_error("nothing to do", &["keyring"]);
    };
    println!("==> {doing}");
    let body = serde_json::json!({ "Key": key }).to_string().into_bytes();
    match api.call(method, "operator/keyring", &[], Some(body)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("error: {e}")),
    }
}

/// Each pool's keys with how many members hold them (`key [n/total]`).
fn print_pools(v: &Value) {
    for pool in v.as_array().into_iter().flatten() {
        let total = pool["NumNodes"].as_u64().unwrap_or(0);
        let name = if pool["WAN"].as_bool() == Some(true) {
            "WAN".to_string()
        } else {
            format!("{} (LAN)", pool["Datacenter"].as_str().unwrap_or(""))
        };
        println!();
        println!("{name}:");
        for (k, n) in pool["Keys"].as_object().into_iter().flatten() {
            let primary = if pool["PrimaryKeys"].get(k).is_some() {
                " (primary)"
            } else {
                ""
            };
            println!("  {k} [{}/{total}]{primary}", n.as_u64().unwrap_or(0));
        }
    }
}
