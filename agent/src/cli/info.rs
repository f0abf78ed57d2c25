//! `tribune info`: the agent's `Stats` from `/v1/agent/self`, one section
//! per subsystem, keys sorted, as Consul prints them.

use std::process::ExitCode;

use serde_json::Value;

use super::client::Api;
use super::common::{fail, get_json, SimpleArgs};

/// The text of a `Stats` object: `section:` then `\tkey = value` lines.
pub fn render(stats: &serde_json::Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut sections: Vec<(&String, &Value)> = stats.iter().collect();
    sections.sort_by_key(|(k, _)| k.as_str());
    for (name, sub) in sections {
        let Some(sub) = sub.as_object() else {
            return Err(format!("Got invalid subkey in stats: {sub}"));
        };
        out.push_str(name);
        out.push_str(":\n");
        let mut keys: Vec<(&String, &Value)> = sub.iter().collect();
        keys.sort_by_key(|(k, _)| k.as_str());
        for (k, v) in keys {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("\t{k} = {v}\n"));
        }
    }
    Ok(out)
}

pub fn run(a: SimpleArgs) -> ExitCode {
    let v = match get_json(&Api::new(&a.http), "agent/self") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error querying agent: {e}")),
    };
    let Some(stats) = v.get("Stats").and_then(Value::as_object) else {
        return fail(format!("Agent response did not contain 'Stats' key: {v}"));
    };
    match render(stats) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
