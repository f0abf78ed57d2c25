//! `tribune event -name N [-node RE] [-service RE] [-tag RE] [payload]`.

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::client::Api;
use super::common::{fail, HttpOpts};
use crate::apiclient::key_path;

#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Name of the event.
    #[arg(long)]
    name: Option<String>,
    /// Regular expression: only nodes whose name matches store the event.
    #[arg(long)]
    node: Option<String>,
    /// Regular expression: only agents with a matching service store the event.
    #[arg(long)]
    service: Option<String>,
    /// Regular expression on the matching services' tags (needs -service).
    #[arg(long)]
    tag: Option<String>,
    /// Optional payload.
    payload: Vec<String>,
}

pub fn run(a: EventArgs) -> ExitCode {
    let name = a.name.clone().unwrap_or_default();
    if name.is_empty() {
        return fail("Event name must be specified");
    }
    let filters = [("node", &a.node), ("service", &a.service), ("tag", &a.tag)];
    for (what, re) in filters {
        if let Some(re) = re.as_deref().filter(|r| !r.is_empty()) {
            if let Err(e) = regex::Regex::new(re) {
                return fail(format!("Failed to compile {what} filter regexp: {e}"));
            }
        }
    }
    if a.tag.as_deref().is_some_and(|t| !t.is_empty())
        && a.service.as_deref().unwrap_or("").is_empty()
    {
        return fail("Cannot provide tag filter without service filter.");
    }
    let payload = match a.payload.as_slice() {
        [] => Vec::new(),
        [p] => p.as_bytes().to_vec(),
        _ => return fail("Too many command line arguments."),
    };
    let api = Api::new(&a.http);
    if let Err(e) = api.call(Method::GET, "agent/self", &[], None) {
        return fail(format!("Error querying Consul agent: {e}"));
    }
    let q: Vec<(&str, String)> = filters
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| (*k, v.to_string()))
        })
        .collect();
    let path = format!("event/fire/{}", key_path(&name));
    match api.call(Method::PUT, &path, &q, Some(payload)) {
        Err(e) => fail(format!("Error firing event: {e}")),
        Ok(body) => {
            let id = body
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("ID").and_then(Value::as_str).map(str::to_string));
            match id {
                Some(id) => {
                    println!("Event ID: {id}");
                    ExitCode::SUCCESS
                }
                None => fail("Error firing event: no event ID in the answer"),
            }
        }
    }
}
