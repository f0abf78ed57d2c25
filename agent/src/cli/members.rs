//! `tribune members`: the gossip members the agent knows.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::client::Api;
use super::common::{fail, table, HttpOpts};
use reqwest::Method;

#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Provides detailed information about nodes.
    #[arg(long)]
    pub detailed: bool,
    /// If provided, output is filtered to only nodes matching the regular
    /// expression for status.
    #[arg(long, default_value = ".*")]
    pub status: String,
    /// List the WAN pool's members (servers of every datacenter).
    #[arg(long)]
    pub wan: bool,
}

/// Serf's member status names, by their number in `/v1/agent/members`.
fn status_name(code: Option<u64>) -> &'static str {
    match code {
        Some(1) => "alive",
        Some(2) => "leaving",
        Some(3) => "left",
        Some(4) => "failed",
        _ => "none",
    }
}

/// `ip:port` as Go's `net.TCPAddr` prints it (IPv6 in brackets).
fn member_addr(m: &Value) -> String {
    let ip = m["Addr"].as_str().unwrap_or("");
    let port = m["Port"].as_u64().unwrap_or(0);
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port as u16).to_string(),
        Err(_) => format!("{ip}:{port}"),
    }
}

pub fn run(a: MembersArgs) -> ExitCode {
    let status_re = match regex::Regex::new(&a.status) {
        Ok(r) => r,
        Err(e) => return fail(format!("Failed to compile status regexp: {e}")),
    };
    let q: Vec<(&str, String)> = if a.wan {
        vec![("wan", "1".into())]
    } else {
        vec![]
    };
    let v: Value = match Api::new(&a.http).call(Method::GET, "agent/members", &q, None) {
        Ok(Some(b)) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => return fail(format!("Error retrieving members: {e}")),
        },
        Ok(None) => return fail("Error retrieving members: not found"),
        Err(e) => return fail(format!("Error retrieving members: {e}")),
    };
    let mut list: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    for m in &mut list {
        // As Consul shows them: the default partition, and servers in every segment.
        let server = m["Tags"]["role"] == "consul";
        if let Some(tags) = m["Tags"].as_object_mut() {
            if tags
                .get("partition")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                tags.insert("partition".into(), json!("default"));
            }
            if server {
                tags.insert("segment".into(), json!("<all>"));
            } else if tags
                .get("segment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                tags.insert("segment".into(), json!("<default>"));
            }
        }
    }
    list.retain(|m| status_re.is_match(status_name(m["Status"].as_u64())));
    if list.is_empty() {
        // No member matches: Consul prints nothing and exits 2.
        return ExitCode::from(2);
    }
    let tag = |m: &Value, k: &str| m["Tags"][k].as_str().unwrap_or("").to_string();
    // Servers first, then by segment, partition and name.
    list.sort_by_key(|m| {
        (
            tag(m, "role") != "consul",
            tag(m, "partition") != "default",
            tag(m, "segment"),
            tag(m, "partition"),
            m["Name"].as_str().unwrap_or("").to_string(),
        )
    });
    let rows = if a.detailed {
        detailed_rows(&list)
    } else {
        standard_rows(&list)
    };
    table(rows);
    ExitCode::SUCCESS
}

fn standard_rows(list: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .map(String::from)
    .to_vec()];
    for m in list {
        let tag = |k: &str| m["Tags"][k].as_str().unwrap_or("").to_string();
        let kind = match tag("role").as_str() {
            "consul" => "server",
            "node" => "client",
            _ => "unknown",
        };
        let name = m["Name"].as_str().unwrap_or("").to_string();
        let status = status_name(m["Status"].as_u64()).to_string();
        if kind == "unknown" {
            rows.push(vec![name, member_addr(m), status, kind.into()]);
            continue;
        }
        let build = tag("build");
        let build = match build.split_once(':') {
            _ if build.is_empty() => "< 0.3".to_string(),
            Some((b, _)) => b.to_string(),
            None => build,
        };
        rows.push(vec![
            name,
            member_addr(m),
            status,
            kind.into(),
            build,
            tag("vsn"),
            tag("dc"),
            tag("partition"),
            tag("segment"),
        ]);
    }
    rows
}

/// `-detailed`: every tag, as `k=v` pairs sorted by key.
fn detailed_rows(list: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![["Node", "Address", "Status", "Tags"]
        .map(String::from)
        .to_vec()];
    for m in list {
        let tags: BTreeMap<&str, &str> = m["Tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
            .collect();
        let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec![
            m["Name"].as_str().unwrap_or("").to_string(),
            member_addr(m),
            status_name(m["Status"].as_u64()).to_string(),
            pairs.join(","),
        ]);
    }
    rows
}
