//! `tribune watch -type key|keyprefix|services|nodes|service|checks|event
//! [-key|-prefix|-service|-tag|-passingonly|-state|-name] [handler...]`.
//!
//! Prints the JSON on every real change (the first answer included), or runs
//! the handler with the JSON on stdin and `CONSUL_INDEX` set; a failing
//! handler ends the watch with exit code 1, as Consul's does. Unlike
//! Consul's, printing does not stop after the first answer.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Map, Value};

use super::common::{cli_runtime, fail, on_signals, HttpOpts};
use crate::apiclient::ApiClient;
use crate::watchplan::{shell_argv, Handler, WatchSpec};
use gocompat::duration::parse_duration;

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Key to watch (type key).
    #[arg(long)]
    key: Option<String>,
    /// Key prefix to watch (type keyprefix).
    #[arg(long)]
    prefix: Option<String>,
    /// Service to watch (types service and checks).
    #[arg(long)]
    service: Option<String>,
    /// Service tag to filter on (type service; repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// true: only passing instances (type service).
    #[arg(long)]
    passingonly: Option<String>,
    /// Check state to watch (type checks): any, passing, warning, critical.
    #[arg(long)]
    state: Option<String>,
    /// Event name to watch (type event).
    #[arg(long)]
    name: Option<String>,
    /// Run the handler through the shell (default true; -shell=false runs it directly).
    #[arg(long)]
    shell: bool,
    #[arg(long = "no-shell", hide = true)]
    no_shell: bool,
    /// Longest each blocking query waits (tribune extension; default: the agent's 5m).
    #[arg(long)]
    wait: Option<String>,
    /// Handler command; without one the JSON is printed.
    handler: Vec<String>,
}

fn params(a: &WatchArgs) -> Result<Map<String, Value>, String> {
    let mut p = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            p.insert(k.into(), Value::String(v.clone()));
        }
    };
    put("type", &a.kind);
    put("key", &a.key);
    put("prefix", &a.prefix);
    put("service", &a.service);
    put("state", &a.state);
    put("name", &a.name);
    put("datacenter", &a.http.datacenter);
    put("token", &a.http.resolved_token());
    if !a.tag.is_empty() {
        p.insert(
            "tag".into(),
            Value::Array(a.tag.iter().cloned().map(Value::String).collect()),
        );
    }
    if let Some(v) = &a.passingonly {
        let b = match v.as_str() {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
            "false" | "0" | "f" | "F" | "FALSE" | "False" | "" => false,
            other => return Err(format!("Failed to parse passingonly flag: {other:?}")),
        };
        p.insert("passingonly".into(), Value::Bool(b));
    }
    if a.http.stale {
        p.insert("stale".into(), Value::Bool(true));
    }
    Ok(p)
}

pub fn run(a: WatchArgs) -> ExitCode {
    if a.kind.as_deref().unwrap_or("").is_empty() {
        return fail("Watch type must be specified");
    }
    let spec = match params(&a).and_then(|p| WatchSpec::parse(&p).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let wait: Option<Duration> = match a.wait.as_deref() {
        None => None,
        Some(w) => match parse_duration(w) {
            Some(d) if !d.is_zero() => Some(d),
            _ => return fail(format!("Invalid -wait {w:?}: use a duration like 30s")),
        },
    };
    // -shell is the default; -shell=false arrives as -no-shell.
    let shell = a.shell || !a.no_shell;
    let handler = match (a.handler.is_empty(), shell) {
        (true, _) => Handler::Print,
        (false, true) => Handler::Exec {
            argv: shell_argv(&a.handler.join(" ")),
            log_output: false,
        },
        (false, false) => Handler::Exec {
            argv: a.handler.clone(),
            log_output: false,
        },
    };
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async move {
        let api = ApiClient::new(a.http.async_config());
        if let Err(e) = api
            .call(reqwest::Method::GET, "agent/self", &[], None)
            .await
        {
            return fail(format!("Error querying Consul agent: {e}"));
        }
        let stop = on_signals();
        match spec.run(&api, wait, &handler, true, &stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}
