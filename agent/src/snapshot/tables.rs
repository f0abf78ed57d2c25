//! [`Tables`] as snapshot sections, and back.
//!
//! Each table is its own section with its own version, so a table added
//! later is a new section (older files simply lack it and load it empty),
//! and a record whose layout changes gets a new section version while the
//! old one stays readable. The records are the state's own structs,
//! bincode-encoded; `tests::layout_is_pinned` fails when one of them
//! changes shape, which is the moment to bump that section's version.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::error::SnapshotError;
use super::format::{self, decode_record, Header, SectionInfo, Summary, Writer};
use crate::raft::{LogId, Node, NodeId};
use crate::state::acl::{AclTable, PolicyRec, RoleRec, TokenRec};
use crate::state::autopilot::AutopilotConfig;
use crate::state::catalog::{Catalog, CatalogParts, CheckRec, NodeRec, ServiceRec};
use crate::state::coordinate::{CoordEntry, CoordinateTable};
use crate::state::kv::{KvEntry, KvTable};
use crate::state::query::{QueryRec, QueryTable};
use crate::state::restore::Staging;
use crate::state::session::{SessionRec, SessionTable};
use crate::state::Tables;
use openraft::StoredMembership;

/// The sections this version writes and reads, with their versions.
pub const SECTIONS: &[(&str, u32)] = &[
    ("kv", 1),
    ("tombstones", 1),
    ("nodes", 1),
    ("services", 1),
    ("checks", 1),
    ("sessions", 1),
    ("index", 1),
    ("raft", 1),
    ("restore", 1),
    ("autopilot", 1),
    ("acl_policies", 1),
    ("acl_roles", 1),
    ("acl_tokens", 1),
    ("coordinates", 1),
    ("prepared_queries", 1),
];

/// Sections that describe the raft node that wrote them, not the data: in
/// raft snapshots only, and ignored by a restore.
pub const RAFT_ONLY: &[&str] = &["raft", "restore"];

/// Consul's names for the record types, for `snapshot inspect`.
pub fn display_name(section: &str) -> &str {
    match section {
        "kv" => "KVS",
        "tombstones" => "Tombstone",
        "nodes" => "Node",
        "services" => "Service",
        "checks" => "Check",
        "sessions" => "Session",
        "index" => "Index",
        "raft" => "Raft",
        "restore" => "RestoreChunk",
        "autopilot" => "Autopilot",
        "acl_policies" => "ACLPolicy",
        "acl_roles" => "ACLRole",
        "acl_tokens" => "ACLToken",
        "coordinates" => "Coordinate",
        "prepared_queries" => "PreparedQuery",
        other => other,
    }
}

/// The `raft` section's one record.
#[derive(Serialize, Deserialize)]
struct RaftMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, Node>,
    index_offset: u64,
}

/// Names in the `index` section.
const IDX_KV: &str = "kv";
const IDX_NODES: &str = "catalog.nodes";
const IDX_SERVICES: &str = "catalog.services";
const IDX_CHECKS: &str = "catalog.checks";
const IDX_SESSIONS: &str = "sessions";
const IDX_SERVICE: &str = "service/";
const IDX_NODE: &str = "node/";
const IDX_ACL: &str = "acl";
const IDX_ACL_BOOTSTRAP: &str = "acl.bootstrap";
const IDX_COORDINATES: &str = "coordinates";
const IDX_QUERIES: &str = "prepared-queries";

/// Encode `t`. `raft`: also this node's raft position and staged restore
/// (a raft snapshot); without, the portable file `GET /v1/snapshot` serves.
pub fn encode(t: &Tables, header: &Header, raft: bool) -> Result<Vec<u8>, SnapshotError> {
    let estimate = t.kv.len() * 160 + t.catalog.counts().1 * 400;
    let mut w = Writer::new(header, estimate)?;
    w.section("kv", 1);
    for (k, e) in t.kv.entries() {
        w.record(&(k, e))?;
    }
    w.section("tombstones", 1);
    for (k, i) in t.kv.tombstones() {
        w.record(&(k, i))?;
    }
    w.section("nodes", 1);
    for n in t.catalog.nodes() {
        w.record(n)?;
    }
    w.section("services", 1);
    for (node, s) in t.catalog.all_services() {
        w.record(&(node, s))?;
    }
    w.section("checks", 1);
    for c in t.catalog.checks() {
        w.record(c)?;
    }
    w.section("sessions", 1);
    for s in t.sessions.list() {
        w.record(s)?;
    }
    w.section("index", 1);
    let (nodes, services, checks) = t.catalog.table_indexes();
    for (name, i) in [
        (IDX_KV, t.kv.table_index()),
        (IDX_NODES, nodes),
        (IDX_SERVICES, services),
        (IDX_CHECKS, checks),
        (IDX_SESSIONS, t.sessions.raw_index()),
    ] {
        w.record(&(name, i))?;
    }
    let (by_service, by_node) = t.catalog.name_indexes();
    for (name, i) in by_service {
        w.record(&(format!("{IDX_SERVICE}{name}"), i))?;
    }
    for (name, i) in by_node {
        w.record(&(format!("{IDX_NODE}{name}"), i))?;
    }
    // Only when set: a file without ACLs keeps its layout.
    for (name, i) in [
        (IDX_ACL, t.acl.table_index()),
        (IDX_ACL_BOOTSTRAP, t.acl.bootstrap_index()),
        (IDX_COORDINATES, t.coordinates.index()),
        (IDX_QUERIES, t.queries.index()),
    ] {
        if i > 0 {
            w.record(&(name, i))?;
        }
    }
    w.section("autopilot", 1);
    if let Some(a) = &t.autopilot {
        w.record(a)?;
    }
    w.section("acl_policies", 1);
    for p in t.acl.policies() {
        w.record(p)?;
    }
    w.section("acl_roles", 1);
    for r in t.acl.roles() {
        w.record(r)?;
    }
    w.section("acl_tokens", 1);
    for x in t.acl.tokens() {
        w.record(x)?;
    }
    w.section("coordinates", 1);
    for c in t.coordinates.list() {
        w.record(c)?;
    }
    w.section("prepared_queries", 1);
    for q in t.queries.list() {
        w.record(q)?;
    }
    if raft {
        w.section("raft", 1);
        w.record(&RaftMeta {
            last_applied: t.last_applied,
            membership: t.membership.clone(),
            index_offset: t.index_offset,
        })?;
        w.section("restore", 1);
        if let Some(s) = &t.restore {
            for (seq, data) in &s.chunks {
                w.record(&(s.id, *seq, &data[..]))?;
            }
        }
    }
    Ok(w.finish())
}

/// What a file decodes to.
pub struct Decoded {
    pub summary: Summary,
    /// The tables; for a portable file, `last_applied`, `membership`,
    /// `index_offset` and `restore` are empty.
    pub tables: Tables,
    /// The highest index found anywhere in the file (header included).
    pub max_index: u64,
}

#[derive(Default)]
struct Parts {
    kv: Vec<(String, KvEntry)>,
    tombstones: Vec<(String, u64)>,
    nodes: Vec<NodeRec>,
    services: Vec<ServiceRec>,
    service_nodes: Vec<String>,
    checks: Vec<CheckRec>,
    sessions: Vec<SessionRec>,
    index: BTreeMap<String, u64>,
    raft: Option<RaftMeta>,
    restore: Option<Staging>,
    autopilot: Option<AutopilotConfig>,
    acl_policies: Vec<PolicyRec>,
    acl_roles: Vec<RoleRec>,
    acl_tokens: Vec<TokenRec>,
    coordinates: Vec<CoordEntry>,
    queries: Vec<QueryRec>,
    max_index: u64,
}

/// Refuse a section this version cannot read: silently dropping a table
/// would be a restore that loses data.
fn check_known(info: &SectionInfo) -> Result<(), SnapshotError> {
    match SECTIONS.iter().find(|(n, _)| *n == info.name) {
        Some((_, v)) if *v == info.version => Ok(()),
        _ => Err(SnapshotError::UnknownSection {
            name: info.name.clone(),
            version: info.version,
        }),
    }
}

/// Refuse a file holding a section this version cannot read.
pub fn check_sections(s: &Summary) -> Result<(), SnapshotError> {
    s.sections.iter().try_for_each(check_known)
}

impl Parts {
    fn add(&mut self, info: &SectionInfo, rec: &[u8], raft: bool) -> bincode::Result<()> {
        let max = &mut self.max_index;
        match info.name.as_str() {
            "kv" => {
                let (k, e): (String, KvEntry) = decode_record(rec)?;
                *max = (*max).max(e.modify_index).max(e.create_index);
                self.kv.push((k, e));
            }
            "tombstones" => {
                let (k, i): (String, u64) = decode_record(rec)?;
                *max = (*max).max(i);
                self.tombstones.push((k, i));
            }
            "nodes" => {
                let n: NodeRec = decode_record(rec)?;
                *max = (*max).max(n.modify_index);
                self.nodes.push(n);
            }
            "services" => {
                let (node, s): (String, ServiceRec) = decode_record(rec)?;
                *max = (*max).max(s.modify_index);
                self.services.push(s);
                self.service_nodes.push(node);
            }
            "checks" => {
                let c: CheckRec = decode_record(rec)?;
                *max = (*max).max(c.modify_index);
                self.checks.push(c);
            }
            "sessions" => {
                let s: SessionRec = decode_record(rec)?;
                *max = (*max).max(s.modify_index).max(s.renew_index);
                self.sessions.push(s);
            }
            "index" => {
                let (name, i): (String, u64) = decode_record(rec)?;
                *max = (*max).max(i);
                self.index.insert(name, i);
            }
            "autopilot" => {
                let a: AutopilotConfig = decode_record(rec)?;
                *max = (*max).max(a.modify_index);
                self.autopilot = Some(a);
            }
            "acl_policies" => {
                let p: PolicyRec = decode_record(rec)?;
                *max = (*max).max(p.modify_index);
                self.acl_policies.push(p);
            }
            "acl_roles" => {
                let r: RoleRec = decode_record(rec)?;
                *max = (*max).max(r.modify_index);
                self.acl_roles.push(r);
            }
            "acl_tokens" => {
                let x: TokenRec = decode_record(rec)?;
                *max = (*max).max(x.modify_index);
                self.acl_tokens.push(x);
            }
            "coordinates" => {
                let c: CoordEntry = decode_record(rec)?;
                *max = (*max).max(c.modify_index);
                self.coordinates.push(c);
            }
            "prepared_queries" => {
                let q: QueryRec = decode_record(rec)?;
                *max = (*max).max(q.modify_index);
                self.queries.push(q);
            }
            "raft" if raft => self.raft = Some(decode_record(rec)?),
            "restore" if raft => {
                let (id, seq, data): (u64, u32, serde_bytes::ByteBuf) = decode_record(rec)?;
                Staging::stage(&mut self.restore, id, seq, &data);
            }
            _ => {}
        }
        Ok(())
    }

    fn into_tables(mut self) -> Tables {
        let mut take = |k: &str| self.index.remove(k).unwrap_or(0);
        let acl = AclTable::from_parts(
            std::mem::take(&mut self.acl_tokens),
            std::mem::take(&mut self.acl_policies),
            std::mem::take(&mut self.acl_roles),
            take(IDX_ACL_BOOTSTRAP),
            take(IDX_ACL),
        );
        let coordinates = CoordinateTable::from_parts(
            std::mem::take(&mut self.coordinates),
            take(IDX_COORDINATES),
        );
        let queries = QueryTable::from_parts(std::mem::take(&mut self.queries), take(IDX_QUERIES));
        let (kv_i, nodes_i, services_i, checks_i, sessions_i) = (
            take(IDX_KV),
            take(IDX_NODES),
            take(IDX_SERVICES),
            take(IDX_CHECKS),
            take(IDX_SESSIONS),
        );
        let mut service_index = BTreeMap::new();
        let mut node_index = BTreeMap::new();
        for (name, i) in self.index {
            if let Some(n) = name.strip_prefix(IDX_SERVICE) {
                service_index.insert(n.to_string(), i);
            } else if let Some(n) = name.strip_prefix(IDX_NODE) {
                node_index.insert(n.to_string(), i);
            }
        }
        let catalog = Catalog::from_parts(CatalogParts {
            nodes: self
                .nodes
                .into_iter()
                .map(|n| (n.node.clone(), n))
                .collect(),
            services: self.services,
            service_nodes: self.service_nodes,
            checks: self.checks,
            service_index,
            node_index,
            nodes_index: nodes_i,
            services_index: services_i,
            checks_index: checks_i,
        });
        // Sorted already (the writer walks ordered maps): a linear build.
        let kv = KvTable::from_parts(
            self.kv.into_iter().collect(),
            self.tombstones.into_iter().collect(),
            kv_i,
        );
        let sessions = SessionTable::from_parts(
            self.sessions
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            sessions_i,
        );
        let (last_applied, membership, index_offset) = match self.raft {
            Some(r) => (r.last_applied, r.membership, r.index_offset),
            None => (None, StoredMembership::default(), 0),
        };
        Tables {
            kv,
            catalog,
            sessions,
            last_applied,
            membership,
            index_offset,
            restore: self.restore,
            autopilot: self.autopilot,
            acl,
            coordinates,
            queries,
        }
    }
}

/// Decode a whole file (checked as it is read). `raft`: a raft snapshot,
/// whose raft position and staged restore are kept; otherwise those
/// sections are ignored (they describe the cluster that wrote the file).
pub fn decode<R: Read>(r: R, raft: bool) -> Result<Decoded, SnapshotError> {
    let mut parts = Parts::default();
    let summary = format::read(r, |info, n, rec| {
        if n == 0 {
            check_known(info)?;
        }
        parts
            .add(info, rec, raft)
            .map_err(|e| SnapshotError::Record {
                section: info.name.clone(),
                n,
                msg: e.to_string(),
            })
    })?;
    for s in &summary.sections {
        check_known(s)?;
    }
    let max_index = parts.max_index.max(summary.header.index);
    Ok(Decoded {
        summary,
        tables: parts.into_tables(),
        max_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{CatalogCommand, RegisterReq};
    use crate::state::kv::KvCommand;
    use crate::state::session::{Behavior, SessionCommand};
    use crate::state::{Changes, Command};
    use std::time::Duration;

    pub(crate) fn sample() -> Tables {
        let mut t = Tables::default();
        let mut ch = Changes::default();
        let set = |k: &str, v: &str| {
            Command::Kv(KvCommand::Set {
                key: k.into(),
                value: v.into(),
                flags: 7,
                cas: None,
            })
        };
        t.apply(3, &set("app/a", "1"), &mut ch);
        t.apply(4, &set("app/b", "2"), &mut ch);
        t.apply(
            5,
            &Command::Kv(KvCommand::Delete {
                key: "app/b".into(),
                recurse: false,
                cas: None,
            }),
            &mut ch,
        );
        let reg = RegisterReq {
            node: NodeRec {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: Some(ServiceRec {
                id: "web-1".into(),
                service: "Web".into(),
                port: 80,
                tags: vec!["v1".into()],
                ..Default::default()
            }),
            checks: vec![CheckRec {
                check_id: "c1".into(),
                service_id: "web-1".into(),
                status: crate::state::Health::Passing,
                ..Default::default()
            }],
            ..Default::default()
        };
        t.apply(
            6,
            &Command::Catalog(CatalogCommand::Register(Box::new(reg))),
            &mut ch,
        );
        let sess = SessionRec {
            id: "s-1".into(),
            name: "lock".into(),
            node: "n1".into(),
            lock_delay: Duration::from_secs(15),
            behavior: Behavior::Release,
            ttl: "30s".into(),
            ttl_duration: Duration::from_secs(30),
            node_checks: vec![],
            service_checks: vec![],
            create_index: 0,
            modify_index: 0,
            renew_index: 0,
        };
        t.apply(
            7,
            &Command::Session(SessionCommand::Create(Box::new(sess))),
            &mut ch,
        );
        t
    }

    fn header() -> Header {
        Header {
            id: "1-7-0".into(),
            index: 7,
            ..Default::default()
        }
    }

    /// Every record, index and derived lookup survives a round trip.
    #[test]
    fn round_trip() {
        let t = sample();
        let f = encode(&t, &header(), false).unwrap();
        let d = decode(&f[..], false).unwrap();
        let r = d.tables;
        assert_eq!(d.max_index, 7);
        assert_eq!(r.kv.get("app/a"), t.kv.get("app/a"));
        assert_eq!(r.kv.key_index("app/b"), 5);
        assert_eq!(r.kv.prefix_index("app/"), 5);
        assert_eq!(r.kv.table_index(), t.kv.table_index());
        assert_eq!(r.catalog.instances("web").len(), 1);
        assert_eq!(r.catalog.service_index("WEB"), 6);
        assert_eq!(r.catalog.node_index("n1"), 6);
        assert_eq!(
            r.catalog.check("n1", "c1").map(|c| c.service_name.as_str()),
            Some("Web")
        );
        assert_eq!(r.catalog.nodes_index(), t.catalog.nodes_index());
        assert_eq!(r.sessions.get("s-1"), t.sessions.get("s-1"));
        assert_eq!(r.sessions.table_index(), 7);
        assert_eq!(r.kv.get("app/a").unwrap().modify_index, 3);
    }

    /// The autopilot configuration travels in its own section, indexes kept.
    #[test]
    fn autopilot_round_trip() {
        use crate::state::autopilot::AutopilotCommand;
        let mut t = sample();
        let config = AutopilotConfig {
            max_trailing_logs: 42,
            ..Default::default()
        };
        let set = Command::Autopilot(AutopilotCommand::Set { config, cas: None });
        t.apply(8, &set, &mut Changes::default());
        let f = encode(&t, &header(), false).unwrap();
        let d = decode(&f[..], false).unwrap();
        assert_eq!(d.tables.autopilot, t.autopilot);
        assert_eq!(
            d.tables
                .autopilot
                .map(|a| (a.max_trailing_logs, a.modify_index)),
            Some((42, 8))
        );
        assert_eq!(d.max_index, 8);
        // Without one, none comes back (Consul's defaults apply).
        let f = encode(&sample(), &header(), false).unwrap();
        assert_eq!(decode(&f[..], false).unwrap().tables.autopilot, None);
    }

    /// A raft snapshot also carries the raft position, the offset and a
    /// staged restore; a portable file does not.
    #[test]
    fn raft_sections() {
        let mut t = sample();
        t.index_offset = 40;
        Staging::stage(&mut t.restore, 9, 0, b"piece");
        let f = encode(&t, &header(), true).unwrap();
        let r = decode(&f[..], true).unwrap().tables;
        assert_eq!(r.index_offset, 40);
        assert_eq!(r.restore, t.restore);
        let r = decode(&f[..], false).unwrap().tables;
        assert_eq!((r.index_offset, r.restore), (0, None));
        let f = encode(&t, &header(), false).unwrap();
        let s = format::verify(&f[..]).unwrap();
        assert!(s
            .sections
            .iter()
            .all(|x| !RAFT_ONLY.contains(&x.name.as_str())));
    }

    /// A section this version does not know is refused, not skipped.
    #[test]
    fn unknown_section_is_refused() {
        let mut w = Writer::new(&header(), 0).unwrap();
        w.section("acl_unknown", 1);
        w.record(&1u8).unwrap();
        let f = w.finish();
        assert!(matches!(
            decode(&f[..], false),
            Err(SnapshotError::UnknownSection { .. })
        ));
        let mut w = Writer::new(&header(), 0).unwrap();
        w.section("kv", 2);
        let f = w.finish();
        assert!(decode(&f[..], false).is_err());
    }

    /// The encoding of one record per section, byte for byte: when this
    /// fails, a record struct changed shape, so bump its section version
    /// (keeping a decoder for the old one) and then update the bytes here.
    #[test]
    fn layout_is_pinned() {
        let f = encode(&sample(), &header(), false).unwrap();
        let mut got = Vec::new();
        format::read(&f[..], |info, _, rec| {
            got.push(format!("{} {}", info.name, hex(rec)));
            Ok(())
        })
        .unwrap();
        let want = [
            "kv 056170702f6101310703030000",
            "tombstones 056170702f6205",
            "nodes 00026e310831302e302e302e310000000606",
            "services 026e31057765622d310357656201027631005000000202000606",
            "checks 026e3102633100000000057765622d3103576562010276310000000606",
            "sessions 03732d31046c6f636b026e310f0000033330731e000000070707",
            "index 026b7605",
            "index 0d636174616c6f672e6e6f64657306",
            "index 10636174616c6f672e736572766963657306",
            "index 0e636174616c6f672e636865636b7306",
            "index 0873657373696f6e7307",
            "index 0b736572766963652f57656206",
            "index 076e6f64652f6e3106",
        ];
        assert_eq!(got, want);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
