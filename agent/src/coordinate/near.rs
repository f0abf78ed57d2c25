//! `?near=<node>` / `?near=_agent`: answers sorted by estimated round trip
//! from a node, as Consul's `sortNodesByDistanceFrom`. Stable; nodes with no
//! coordinate go last; when the origin has no coordinate the order is left
//! alone.

use axum::http::HeaderMap;
use serde_json::Value;

use super::Coordinate;
use crate::pipeline::context::Query;
use crate::state::Tables;

/// The node `?near` names: `_agent` is the agent the client asked (when
/// the request was forwarded, the agent it first reached).
pub fn origin(query: &Query, headers: &HeaderMap, me: &str) -> Option<String> {
    let near = query.get("near").filter(|n| !n.is_empty())?;
    if near != "_agent" {
        return Some(near.to_string());
    }
    let first = headers
        .get(crate::rpc::client::AGENT_NODE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    Some(first.unwrap_or(me).to_string())
}

/// Estimated seconds between two coordinates; unknown is infinitely far.
pub fn distance(from: &Coordinate, to: Option<&Coordinate>) -> f64 {
    match to {
        Some(c) if from.is_compatible_with(c) => from.distance_to(c).as_secs_f64(),
        _ => f64::INFINITY,
    }
}

/// Sort `items` by distance from `origin`; `node_of` names an item's node.
pub fn sort<T>(t: &Tables, origin: Option<&str>, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    let Some((name, from)) = origin.and_then(|o| Some((o, t.coordinates.get(o)?))) else {
        return;
    };
    // The origin itself first: its own estimate (twice its height) can
    // exceed that to a close neighbour, which would be no answer to "near".
    let mut keyed: Vec<(f64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, x)| match node_of(x) {
            n if n == name => (-1.0, i),
            n => (distance(from, t.coordinates.get(n)), i),
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    apply_order(items, order);
}

/// Permute `items` so that position k holds what was at `order[k]`.
fn apply_order<T>(items: &mut [T], order: Vec<usize>) {
    let mut taken: Vec<Option<usize>> = order.into_iter().map(Some).collect();
    // Follow each cycle of the permutation, swapping in place.
    for start in 0..items.len() {
        let mut k = start;
        while let Some(src) = taken[k].take() {
            if src == start {
                break;
            }
            items.swap(k, src);
            k = src;
        }
    }
}

/// The node name of a rendered entry: `"Node": "n"` (catalog) or
/// `"Node": {"Node": "n"}` (health).
pub fn json_node(v: &Value) -> &str {
    match v.get("Node") {
        Some(Value::String(s)) => s,
        Some(Value::Object(o)) => o.get("Node").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::{Config, Coordinate};
    use crate::state::coordinate::CoordinateCommand;

    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::new(&Config::default());
        c.vec[0] = x;
        c
    }

    #[test]
    fn sorts_by_distance_unknown_last_stable() {
        let mut t = Tables::default();
        let cmd = CoordinateCommand::Update(vec![
            ("me".into(), String::new(), at(0.0)),
            ("far".into(), String::new(), at(0.9)),
            ("near".into(), String::new(), at(0.1)),
            ("mid".into(), String::new(), at(0.5)),
        ]);
        t.coordinates.apply(3, &cmd, &|_| true);
        let mut v = vec!["far", "ghost1", "mid", "ghost2", "near", "me"];
        sort(&t, Some("me"), &mut v, |x| x);
        assert_eq!(v, vec!["me", "near", "mid", "far", "ghost1", "ghost2"]);
        // An origin without a coordinate leaves the order alone.
        let mut w = vec!["far", "near"];
        sort(&t, Some("ghost1"), &mut w, |x| x);
        assert_eq!(w, vec!["far", "near"]);
    }

    #[test]
    fn permutation_in_place() {
        for order in [
            vec![2, 0, 1],
            vec![1, 2, 3, 0],
            vec![0, 1],
            vec![3, 2, 1, 0],
        ] {
            let mut items: Vec<usize> = (0..order.len()).collect();
            apply_order(&mut items, order.clone());
            assert_eq!(items, order);
        }
    }
}
