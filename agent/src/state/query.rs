//! Prepared queries (Consul's `prepared-queries` table): stored
//! definitions, looked up by ID, by name, or by the longest template
//! name prefix. Parsing, validation, templates and execution live in
//! `crate::query`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The watch name of the whole table.
pub const QUERIES: &str = "prepared-queries";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    pub nearest_n: u32,
    pub datacenters: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceQuery {
    pub service: String,
    pub failover: Failover,
    pub only_passing: bool,
    pub ignore_check_ids: Vec<String>,
    pub near: String,
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryTemplate {
    /// `""` (not a template) or `name_prefix_match`.
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// One prepared query, as Consul's `structs.PreparedQuery`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryRec {
    pub id: String,
    pub name: String,
    pub session: String,
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    pub dns_ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl QueryRec {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueryCommand {
    /// Create (the ID is new) or replace a query.
    Set(Box<QueryRec>),
    Delete {
        id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueryOutcome {
    Done,
    Error(String),
}

#[derive(Clone, Debug, Default)]
pub struct QueryTable {
    by_id: BTreeMap<String, QueryRec>,
    index: u64,
}

impl QueryTable {
    pub fn from_parts(list: Vec<QueryRec>, index: u64) -> Self {
        Self {
            by_id: list.into_iter().map(|q| (q.id.clone(), q)).collect(),
            index,
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn list(&self) -> impl Iterator<Item = &QueryRec> {
        self.by_id.values()
    }

    pub fn get(&self, id: &str) -> Option<&QueryRec> {
        self.by_id.get(id)
    }

    /// Consul's `PreparedQueryResolve`: an ID, else a query's exact name,
    /// else the template whose name is the longest prefix of `name`.
    pub fn resolve(&self, id_or_name: &str) -> Option<&QueryRec> {
        if let Some(q) = self.by_id.get(id_or_name) {
            return Some(q);
        }
        if id_or_name.is_empty() {
            return None;
        }
        if let Some(q) = self
            .by_id
            .values()
            .find(|q| !q.is_template() && q.name == id_or_name)
        {
            return Some(q);
        }
        self.by_id
            .values()
            .filter(|q| q.is_template() && id_or_name.starts_with(q.name.as_str()))
            .max_by_key(|q| q.name.len())
    }

    fn check_set(&self, q: &QueryRec, session_exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if !q.session.is_empty() && !session_exists(&q.session) {
            return Err(format!("invalid session {:?}", q.session));
        }
        if q.name.is_empty() {
            // Only a template may go without a name (it matches everything).
            let other_catch_all = self
                .by_id
                .values()
                .any(|o| o.id != q.id && o.is_template() && o.name.is_empty());
            if q.is_template() && other_catch_all {
                return Err("a query template with an empty name already exists".into());
            }
            return Ok(());
        }
        if self.by_id.contains_key(&q.name) {
            return Err(format!("name {:?} aliases an existing query ID", q.name));
        }
        if self
            .by_id
            .values()
            .any(|o| o.id != q.id && o.name == q.name)
        {
            return Err(format!("name {:?} aliases an existing query name", q.name));
        }
        Ok(())
    }

    pub fn apply(
        &mut self,
        index: u64,
        cmd: &QueryCommand,
        session_exists: &dyn Fn(&str) -> bool,
    ) -> QueryOutcome {
        match cmd {
            QueryCommand::Set(q) => {
                if let Err(e) = self.check_set(q, session_exists) {
                    return QueryOutcome::Error(e);
                }
                let create = self.by_id.get(&q.id).map_or(index, |o| o.create_index);
                let mut q = (**q).clone();
                q.create_index = create;
                q.modify_index = index;
                self.by_id.insert(q.id.clone(), q);
            }
            QueryCommand::Delete { id } => {
                if self.by_id.remove(id).is_none() {
                    return QueryOutcome::Error(format!("Query not found: {id}"));
                }
            }
        }
        self.index = index;
        QueryOutcome::Done
    }

    /// Queries tied to a session go when it does (Consul: deleted).
    pub fn drop_orphans(&mut self, index: u64, session_exists: &dyn Fn(&str) -> bool) -> bool {
        if self.by_id.values().all(|q| q.session.is_empty()) {
            return false;
        }
        let before = self.by_id.len();
        self.by_id
            .retain(|_, q| q.session.is_empty() || session_exists(&q.session));
        let changed = self.by_id.len() != before;
        if changed {
            self.index = index;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, name: &str, template: bool) -> QueryRec {
        QueryRec {
            id: id.into(),
            name: name.into(),
            template: QueryTemplate {
                kind: if template {
                    "name_prefix_match".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn names_are_unique_and_resolve_by_id_name_or_longest_prefix() {
        let mut t = QueryTable::default();
        let no = |_: &str| false;
        let set = |x: QueryRec| QueryCommand::Set(Box::new(x));
        assert_eq!(
            t.apply(1, &set(q("a", "web", false)), &no),
            QueryOutcome::Done
        );
        assert_eq!(
            t.apply(2, &set(q("b", "we", true)), &no),
            QueryOutcome::Done
        );
        assert_eq!(t.apply(3, &set(q("c", "", true)), &no), QueryOutcome::Done);
        assert!(
            matches!(t.apply(4, &set(q("d", "web", false)), &no), QueryOutcome::Error(e) if e.contains("existing query name"))
        );
        assert!(
            matches!(t.apply(4, &set(q("d", "a", false)), &no), QueryOutcome::Error(e) if e.contains("existing query ID"))
        );
        assert!(matches!(
            t.apply(4, &set(q("d", "", true)), &no),
            QueryOutcome::Error(_)
        ));
        let mut sess = q("e", "s", false);
        sess.session = "nope".into();
        assert!(
            matches!(t.apply(4, &set(sess), &no), QueryOutcome::Error(e) if e.contains("invalid session"))
        );
        assert_eq!(t.resolve("a").unwrap().id, "a");
        assert_eq!(t.resolve("web").unwrap().id, "a");
        assert_eq!(t.resolve("west").unwrap().id, "b");
        assert_eq!(t.resolve("db").unwrap().id, "c");
        assert_eq!(t.index(), 3);
        // Same ID again: an update keeps CreateIndex.
        assert_eq!(
            t.apply(5, &set(q("a", "web", false)), &no),
            QueryOutcome::Done
        );
        assert_eq!(
            (
                t.get("a").unwrap().create_index,
                t.get("a").unwrap().modify_index
            ),
            (1, 5)
        );
        assert_eq!(
            t.apply(6, &QueryCommand::Delete { id: "a".into() }, &no),
            QueryOutcome::Done
        );
        assert!(matches!(
            t.apply(7, &QueryCommand::Delete { id: "a".into() }, &no),
            QueryOutcome::Error(_)
        ));
    }
}
