//! The coordinate table: each node's latest network coordinate (per
//! network segment; tribune has only the default, `""`), as Consul's
//! `coordinates` table. Written in batches; an update for a node the
//! catalog does not know is dropped (as Consul: the coordinate dies with
//! its node, so it must not outlive it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::coordinate::Coordinate;

/// The watch name of the whole table.
pub const COORDINATES: &str = "coordinates";

/// One node's coordinate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoordEntry {
    pub node: String,
    pub segment: String,
    pub coord: Coordinate,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CoordinateCommand {
    /// Set these nodes' coordinates `(node, segment, coordinate)`.
    Update(Vec<(String, String, Coordinate)>),
}

/// The table, keyed by (node, segment).
#[derive(Clone, Debug, Default)]
pub struct CoordinateTable {
    entries: BTreeMap<(String, String), CoordEntry>,
    index: u64,
}

impl CoordinateTable {
    pub fn from_parts(list: Vec<CoordEntry>, index: u64) -> Self {
        Self {
            entries: list
                .into_iter()
                .map(|e| ((e.node.clone(), e.segment.clone()), e))
                .collect(),
            index,
        }
    }

    /// The table's index (the last write or removal).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn list(&self) -> impl Iterator<Item = &CoordEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A node's entries (one per segment).
    pub fn node(&self, node: &str) -> impl Iterator<Item = &CoordEntry> {
        let node = node.to_string();
        self.entries
            .range((node.clone(), String::new())..)
            .take_while(move |((n, _), _)| *n == node)
            .map(|(_, e)| e)
    }

    /// The coordinate of `node` in the default segment.
    pub fn get(&self, node: &str) -> Option<&Coordinate> {
        self.entries
            .get(&(node.to_string(), String::new()))
            .map(|e| &e.coord)
    }

    /// Apply `cmd` at `index`; `known` says whether the catalog has a node.
    /// Returns how many entries were written.
    pub fn apply(
        &mut self,
        index: u64,
        cmd: &CoordinateCommand,
        known: &dyn Fn(&str) -> bool,
    ) -> usize {
        let CoordinateCommand::Update(list) = cmd;
        let mut n = 0;
        for (node, segment, coord) in list {
            if !known(node) {
                continue;
            }
            let key = (node.clone(), segment.clone());
            let create = self.entries.get(&key).map_or(index, |e| e.create_index);
            self.entries.insert(
                key,
                CoordEntry {
                    node: node.clone(),
                    segment: segment.clone(),
                    coord: coord.clone(),
                    create_index: create,
                    modify_index: index,
                },
            );
            n += 1;
        }
        if n > 0 {
            self.index = index;
        }
        n
    }

    /// Drop a node's coordinates (the node left the catalog).
    pub fn remove_node(&mut self, index: u64, node: &str) -> bool {
        let keys: Vec<_> = self
            .node(node)
            .map(|e| (e.node.clone(), e.segment.clone()))
            .collect();
        for k in &keys {
            self.entries.remove(k);
        }
        if !keys.is_empty() {
            self.index = index;
        }
        !keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::Config;

    #[test]
    fn unknown_nodes_are_dropped_and_removal_follows_the_node() {
        let mut t = CoordinateTable::default();
        let c = Coordinate::new(&Config::default());
        let cmd = CoordinateCommand::Update(vec![
            ("a".into(), String::new(), c.clone()),
            ("ghost".into(), String::new(), c.clone()),
        ]);
        assert_eq!(t.apply(5, &cmd, &|n| n == "a"), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.index(), 5);
        assert_eq!(t.apply(7, &cmd, &|n| n == "a"), 1);
        let e = t.node("a").next().unwrap();
        assert_eq!((e.create_index, e.modify_index), (5, 7));
        assert!(t.node("ab").next().is_none());
        assert!(t.remove_node(9, "a"));
        assert!(t.is_empty());
        assert_eq!(t.index(), 9);
        assert!(!t.remove_node(10, "a"));
        assert_eq!(t.index(), 9);
    }
}
