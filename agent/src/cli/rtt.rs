//! `tribune rtt <node1> [node2]`: the estimated round trip between two
//! nodes from their network coordinates (the second defaults to the agent's
//! own node), printed as Consul's `consul rtt`.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::client::Api;
use super::common::{fail, get_json, HttpOpts};
use crate::coordinate::Coordinate;

#[derive(Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Use WAN coordinates instead of LAN coordinates.
    #[arg(long)]
    pub wan: bool,
    /// One or two node names.
    pub nodes: Vec<String>,
}

/// The coordinate of `node` in a `/v1/coordinate/nodes` answer.
fn find(list: &Value, node: &str) -> Option<Coordinate> {
    list.as_array()?
        .iter()
        .filter(|e| e["Node"] == node && e["Segment"].as_str().unwrap_or("").is_empty())
        .find_map(|e| serde_json::from_value(e["Coord"].clone()).ok())
}

pub fn run(a: RttArgs) -> ExitCode {
    if a.nodes.is_empty() || a.nodes.len() > 2 {
        return fail("One or two node names must be specified");
    }
    if a.wan {
        return fail(
            "Error: WAN coordinates are not available: this agent has no WAN pool \
             (tribune does not federate datacenters yet); use LAN coordinates without -wan",
        );
    }
    let api = Api::new(&a.http);
    let mut nodes = a.nodes.clone();
    if nodes.len() == 1 {
        match get_json(&api, "agent/self") {
            Ok(v) => match v["Config"]["NodeName"].as_str() {
                Some(n) => nodes.push(n.to_string()),
                None => return fail("Unable to look up agent info: no node name"),
            },
            Err(e) => return fail(format!("Unable to look up agent info: {e}")),
        }
    }
    let list = match get_json(&api, "coordinate/nodes") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error getting coordinates: {e}")),
    };
    let mut coords = Vec::new();
    for n in &nodes {
        match find(&list, n) {
            Some(c) => coords.push(c),
            None => return fail(format!("Could not find a coordinate for node {n:?}")),
        }
    }
    if !coords[0].is_compatible_with(&coords[1]) {
        return fail("Coordinates are not compatible");
    }
    let ms = coords[0].distance_to(&coords[1]).as_secs_f64() * 1000.0;
    println!(
        "Estimated {} <-> {} rtt: {ms:.3} ms (using LAN coordinates)",
        nodes[0], nodes[1]
    );
    ExitCode::SUCCESS
}
