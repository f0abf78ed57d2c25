//! `tribune maint`: node and service maintenance mode, with Consul's
//! messages. Without `-enable` or `-disable` it lists what is in
//! maintenance on the agent.

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::client::Api;
use super::common::get_json;
use super::HttpOpts;

#[derive(Args, Debug)]
pub struct MaintArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Enable maintenance mode.
    #[arg(long)]
    enable: bool,
    /// Disable maintenance mode.
    #[arg(long)]
    disable: bool,
    /// Text describing the maintenance reason.
    #[arg(long, default_value = "")]
    reason: String,
    /// Control maintenance mode for a specific service ID.
    #[arg(long, default_value = "")]
    service: String,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

pub fn run(a: MaintArgs) -> ExitCode {
    if a.enable && a.disable {
        return fail("Only one of -enable or -disable may be provided");
    }
    if !a.enable && !a.reason.is_empty() {
        return fail("Reason may only be provided with -enable");
    }
    if !a.enable && !a.disable && !a.service.is_empty() {
        return fail("Service requires either -enable or -disable");
    }
    let api = Api::new(&a.http);
    let node = match get_json(&api, "agent/self") {
        Ok(v) => v["Config"]["NodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    if !a.enable && !a.disable {
        return list(&api, &node);
    }
    let enable = if a.enable { "true" } else { "false" };
    let mut query = vec![("enable", enable.to_string())];
    if a.enable && !a.reason.is_empty() {
        query.push(("reason", a.reason.clone()));
    }
    let (path, what) = if a.service.is_empty() {
        ("agent/maintenance".to_string(), "node")
    } else {
        (
            format!("agent/service/maintenance/{}", encode(&a.service)),
            "service",
        )
    };
    // A 404 is an unknown service: an error, not "nothing there".
    let r = api.send(Method::PUT, &path, &query, None).map(|r| {
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    });
    let verb = if a.enable { "enabling" } else { "disabling" };
    match r {
        Ok((s, _)) if (200..300).contains(&s) => {}
        Ok((s, body)) => {
            return fail(format!(
                "Error {verb} {what} maintenance: Unexpected response code: {s} ({})",
                body.trim()
            ))
        }
        Err(e) => return fail(format!("Error {verb} {what} maintenance: {e}")),
    }
    let state = if a.enable { "enabled" } else { "disabled" };
    if a.service.is_empty() {
        println!("Node maintenance is now {state}");
    } else {
        println!("Service maintenance is now {state} for {:?}", a.service);
    }
    ExitCode::SUCCESS
}

/// List mode: what is in maintenance, as Consul prints it.
fn list(api: &Api, node: &str) -> ExitCode {
    let checks = match get_json(api, "agent/checks") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error getting checks: {e}")),
    };
    let mut checks: Vec<&Value> = checks
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    checks.sort_by_key(|c| c["CheckID"].as_str().unwrap_or_default().to_string());
    let text = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    for c in checks {
        let id = text(c, "CheckID");
        if id == "_node_maintenance" {
            println!("Node:");
            println!("  Name:   {node}");
            println!("  Reason: {}", text(c, "Notes"));
            println!();
        } else if id.starts_with("_service_maintenance:") {
            println!("Service:");
            println!("  ID:     {}", text(c, "ServiceID"));
            println!("  Reason: {}", text(c, "Notes"));
            println!();
        }
    }
    ExitCode::SUCCESS
}

/// A service ID as one path segment.
fn encode(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}
