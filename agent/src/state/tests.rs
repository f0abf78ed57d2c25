//! Snapshot round trips: a field added to a table but not to what the
//! snapshot carries (its sections, or `CatalogWire` for the older bincode
//! form) is lost on a restart or an installed snapshot: caught here.

use std::time::Duration;

use bincode::Options;

use super::catalog::{CatalogCommand, CheckRec, NodeRec, RegisterReq, ServiceRec};
use super::kv::KvCommand;
use super::session::{Behavior, SessionRec};
use super::{Changes, Command, Health, SessionCommand, Tables};

const SESSION: &str = "8d4b3a28-0000-0000-0000-000000000001";

/// The options `bincode::serialize` uses, but refusing trailing bytes.
fn strict() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// Tables with something in every table: KV (a locked key), the catalog
/// (a node, a service, node and service checks), a session.
fn filled() -> Tables {
    let mut t = Tables::default();
    let mut ch = Changes::default();
    let node = NodeRec {
        node: "n1".into(),
        address: "10.0.0.1".into(),
        ..Default::default()
    };
    let service = ServiceRec {
        id: "web1".into(),
        service: "Web".into(),
        port: 80,
        tags: vec!["a".into()],
        ..Default::default()
    };
    let check = |id: &str, svc: &str| CheckRec {
        check_id: id.into(),
        name: id.into(),
        status: Health::Passing,
        service_id: svc.into(),
        kind: "ttl".into(),
        ..Default::default()
    };
    let cmds = [
        Command::Kv(KvCommand::Set {
            key: "a/b".into(),
            value: b"v".to_vec(),
            flags: 7,
            cas: None,
        }),
        Command::Catalog(CatalogCommand::Register(Box::new(RegisterReq {
            node,
            skip_node_update: false,
            service: Some(service),
            checks: vec![check("serfHealth", ""), check("web-check", "web1")],
        }))),
        Command::Session(SessionCommand::Create(Box::new(SessionRec {
            id: SESSION.into(),
            name: "s".into(),
            node: "n1".into(),
            lock_delay: Duration::from_secs(15),
            behavior: Behavior::Release,
            ttl: "30s".into(),
            ttl_duration: Duration::from_secs(30),
            node_checks: vec!["serfHealth".into()],
            service_checks: vec![],
            create_index: 0,
            modify_index: 0,
            renew_index: 0,
        }))),
        Command::Kv(KvCommand::Acquire {
            key: "lock".into(),
            value: b"held".to_vec(),
            flags: 0,
            session: SESSION.into(),
        }),
    ];
    for (i, c) in cmds.iter().enumerate() {
        t.apply(i as u64 + 1, c, &mut ch);
    }
    for (i, c) in acl_commands().into_iter().enumerate() {
        t.apply(i as u64 + 10, &Command::Acl(c), &mut ch);
    }
    t
}

/// A policy, a role and a token linking both, plus the builtins.
fn acl_commands() -> Vec<super::acl::AclCommand> {
    use super::acl::{AclCommand, PolicyRec, RoleRec, TokenRec};
    vec![
        AclCommand::Init {
            initial_management: None,
            now: "2026-01-01T00:00:00Z".into(),
        },
        AclCommand::SetPolicy(Box::new(PolicyRec {
            id: "p-1".into(),
            name: "app".into(),
            description: "d".into(),
            rules: r#"key_prefix "app/" { policy = "write" }"#.into(),
            datacenters: vec!["dc1".into()],
            create_index: 0,
            modify_index: 0,
        })),
        AclCommand::SetRole(Box::new(RoleRec {
            id: "r-1".into(),
            name: "role".into(),
            description: String::new(),
            policies: vec!["p-1".into()],
            create_index: 0,
            modify_index: 0,
        })),
        AclCommand::SetToken(Box::new(TokenRec {
            accessor_id: "a-1".into(),
            secret_id: "s-1".into(),
            description: "t".into(),
            policies: vec!["p-1".into()],
            roles: vec!["r-1".into()],
            local: true,
            create_time: "2026-01-01T00:00:00Z".into(),
            create_index: 0,
            modify_index: 0,
        })),
        AclCommand::Bootstrap(Box::new(TokenRec {
            accessor_id: "a-2".into(),
            secret_id: "s-2".into(),
            description: "Bootstrap Token (Global Management)".into(),
            policies: vec![super::acl::MANAGEMENT_POLICY_ID.into()],
            roles: vec![],
            local: false,
            create_time: "2026-01-01T00:00:00Z".into(),
            create_index: 0,
            modify_index: 0,
        })),
    ]
}

/// Every table goes through a raft snapshot and back unchanged: compared
/// by the tables' own serde form (every field but the derived ones), so a
/// field that applying the commands above fills, but that the snapshot
/// sections do not carry, fails here (checked by adding one to `Catalog`).
#[test]
fn snapshot_round_trip_keeps_every_field() {
    let t = filled();
    assert!(t.catalog.node("n1").is_some(), "the catalog was filled");
    assert!(t.sessions.exists(SESSION), "the session was created");
    let header = crate::snapshot::header_for(&t, "dc1");
    let file = crate::snapshot::tables::encode(&t, &header, true).unwrap();
    let back = crate::snapshot::tables::decode(&file[..], true)
        .unwrap()
        .tables;
    let same =
        |what: &str, a: Vec<u8>, b: Vec<u8>| assert!(a == b, "{what} changed in the round trip");
    same(
        "catalog",
        bincode::serialize(&t.catalog).unwrap(),
        bincode::serialize(&back.catalog).unwrap(),
    );
    same(
        "kv",
        bincode::serialize(&t.kv).unwrap(),
        bincode::serialize(&back.kv).unwrap(),
    );
    same(
        "sessions",
        bincode::serialize(&t.sessions).unwrap(),
        bincode::serialize(&back.sessions).unwrap(),
    );
    assert!(t.acl.bootstrap_index() > 0, "the ACLs were filled");
    same(
        "acl",
        bincode::serialize(&t.acl).unwrap(),
        bincode::serialize(&back.acl).unwrap(),
    );
    // The derived lookups are rebuilt: the token's secret resolves.
    let deny = crate::acl::DefaultPolicy::Deny;
    let a = back.acl.resolve("s-1", deny).unwrap();
    assert!(a.allows(crate::acl::Resource::Key, "app/x", crate::acl::Need::Write));
    assert_eq!(
        *back.acl.resolve("s-2", deny).unwrap(),
        crate::acl::Authorizer::Manage
    );
    assert_eq!(
        format!(
            "{:?}",
            (&back.last_applied, &back.membership, back.index_offset)
        ),
        format!("{:?}", (&t.last_applied, &t.membership, t.index_offset))
    );
    // Derived state is rebuilt on load (case-folded names), the lock held.
    assert_eq!(back.catalog.instances("WEB").len(), 1);
    assert_eq!(
        back.catalog.node_folded("N1").map(|n| n.node.as_str()),
        Some("n1")
    );
    assert!(back.sessions.exists(SESSION));
    assert!(
        format!("{:?}", back.kv).contains(SESSION),
        "the lock is held"
    );
}

/// Each table's serde form (read from snapshots written before the
/// sectioned format) reads back all of its own bytes.
#[test]
fn each_table_reads_back_whole() {
    let t = filled();
    let catalog = bincode::serialize(&t.catalog).unwrap();
    let c: super::catalog::Catalog = strict().deserialize(&catalog).expect("catalog");
    assert_eq!(bincode::serialize(&c).unwrap(), catalog);
    let kv = bincode::serialize(&t.kv).unwrap();
    let k: super::KvTable = strict().deserialize(&kv).expect("kv");
    assert_eq!(bincode::serialize(&k).unwrap(), kv);
    let sessions = bincode::serialize(&t.sessions).unwrap();
    let s: super::SessionTable = strict().deserialize(&sessions).expect("sessions");
    assert_eq!(bincode::serialize(&s).unwrap(), sessions);
}
