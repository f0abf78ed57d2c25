//! `tribune rtt <node1> [node2]`: the estimated round trip between two
//! nodes from their network coordinates (the second defaults to the agent's
//! own node), printed as Consul's `consul rtt`. With `-wan`, between two
//! servers (`<node>.<dc>`) from `/v1/coordinate/datacenters`.

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
    let api = Api::new(&a.http);
    if a.wan {
        return run_wan(&api, a.nodes);
    }
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
    match coords_of(&nodes, |n| find(&list, n)) {
        Ok(c) => show(&nodes, &c[0], &c[1], "LAN"),
        Err(e) => fail(e),
    }
}

/// Each node's coordinate by `find`, or Consul's message for the first
/// without one.
fn coords_of(
    nodes: &[String],
    find: impl Fn(&str) -> Option<Coordinate>,
) -> Result<Vec<Coordinate>, String> {
    nodes
        .iter()
        .map(|n| find(n).ok_or_else(|| format!("Could not find a coordinate for node {n:?}")))
        .collect()
}

/// The coordinate of WAN member `name` (`<node>.<dc>`) in a
/// `/v1/coordinate/datacenters` answer. Entries name the member in full;
/// the bare node name is accepted too.
fn find_wan(dcs: &Value, name: &str) -> Option<Coordinate> {
    let (node, dc) = name.split_once('.')?;
    dcs.as_array()?
        .iter()
        .filter(|d| d["Datacenter"] == dc)
        .flat_map(|d| d["Coordinates"].as_array().into_iter().flatten())
        .filter(|e| {
            let n = e["Node"].as_str().unwrap_or("");
            n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(node)
        })
        .find_map(|e| serde_json::from_value(e["Coord"].clone()).ok())
}

/// `rtt -wan`: between two servers' WAN coordinates, the second
/// defaulting to this agent (`<node>.<dc>`), as Consul's command.
fn run_wan(api: &Api, mut nodes: Vec<String>) -> ExitCode {
    if nodes.len() == 1 {
        match get_json(api, "agent/self") {
            Ok(v) => match (
                v["Config"]["NodeName"].as_str(),
                v["Config"]["Datacenter"].as_str(),
            ) {
                (Some(n), Some(dc)) => nodes.push(format!("{n}.{dc}")),
                _ => return fail("Unable to look up agent info: no node name"),
            },
            Err(e) => return fail(format!("Unable to look up agent info: {e}")),
        }
    }
    if nodes.iter().any(|n| n.split('.').count() != 2) {
        return fail("Node names must be specified as <node name>.<datacenter> with -wan");
    }
    let dcs = match get_json(api, "coordinate/datacenters") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error getting coordinates: {e}")),
    };
    match coords_of(&nodes, |n| find_wan(&dcs, n)) {
        Ok(c) => show(&nodes, &c[0], &c[1], "WAN"),
        Err(e) => fail(e),
    }
}

/// Consul's line: the estimate in ms with three decimals.
fn show(nodes: &[String], a: &Coordinate, b: &Coordinate, source: &str) -> ExitCode {
    if !a.is_compatible_with(b) {
        return fail("Coordinates are not compatible");
    }
    let ms = a.distance_to(b).as_secs_f64() * 1000.0;
    println!(
        "Estimated {} <-> {} rtt: {ms:.3} ms (using {source} coordinates)",
        nodes[0], nodes[1]
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_names_in_full_or_bare_within_their_dc() {
        let c = serde_json::json!({"Vec": vec![0.0; 8], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5});
        let dcs = serde_json::json!([
            {"Datacenter": "dc1", "AreaID": "wan", "Coordinates": [{"Node": "s1.dc1", "Segment": "", "Coord": c}]},
            {"Datacenter": "dc2", "AreaID": "wan", "Coordinates": [{"Node": "s1", "Segment": "", "Coord": c}]},
        ]);
        assert!(find_wan(&dcs, "s1.dc1").is_some());
        assert!(find_wan(&dcs, "S1.dc2").is_some());
        assert!(find_wan(&dcs, "s1.dc3").is_none());
        assert!(find_wan(&dcs, "s2.dc1").is_none());
        assert!(find_wan(&dcs, "s1").is_none());
    }
}
