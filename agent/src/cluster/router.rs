//! The WAN router: the alive servers of every known datacenter, from the
//! WAN pool's membership (Consul's `agent/router`).
//!
//! Servers gossip in a second pool, the WAN pool, as `<node>.<dc>`; each
//! member's identity carries its datacenter and server RPC port. The
//! router rebuilds its table whenever that membership changes (join,
//! leave, failure), so a request for another datacenter picks from what
//! gossip knows now. The table is bounded: a pool that claims more
//! datacenters or servers than the caps keeps only the first ones by name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use rand::seq::SliceRandom;
use tokio_util::sync::CancellationToken;

use super::gossip::{Gossip, Member, MemberStatus};

/// At most this many datacenters are routed to.
pub const MAX_DCS: usize = 256;
/// At most this many servers of one datacenter are kept.
pub const MAX_SERVERS_PER_DC: usize = 64;

type Table = BTreeMap<String, Vec<SocketAddr>>;

/// Alive servers by datacenter. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    local_dc: String,
    table: Arc<RwLock<Arc<Table>>>,
    wan: Option<Gossip>,
}

impl Router {
    /// A router over `wan` (a server's WAN pool; `None`: only the local
    /// datacenter is known), kept current until `stop`.
    pub fn start(local_dc: &str, wan: Option<Gossip>, stop: CancellationToken) -> Self {
        let r = Router {
            local_dc: local_dc.to_string(),
            table: Default::default(),
            wan,
        };
        if let Some(g) = &r.wan {
            r.rebuild(&g.members());
            tokio::spawn(r.clone().follow(g.clone(), stop));
        }
        r
    }

    async fn follow(self, g: Gossip, stop: CancellationToken) {
        let mut changes = g.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = stop.cancelled() => return,
            }
            self.rebuild(&g.members());
        }
    }

    /// Replace the table with what `members` say, logging datacenters that
    /// appear or lose their last alive server.
    fn rebuild(&self, members: &[Member]) {
        let table = table_of(members);
        let old = self.table.read().clone();
        for dc in table.keys().filter(|dc| !old.contains_key(*dc)) {
            tracing::info!(
                "router: datacenter {dc} reachable ({} server(s))",
                table[dc].len()
            );
        }
        for dc in old.keys().filter(|dc| !table.contains_key(*dc)) {
            tracing::warn!("router: no alive server left in datacenter {dc}");
        }
        *self.table.write() = Arc::new(table);
    }

    /// The WAN pool (servers only).
    pub fn wan(&self) -> Option<&Gossip> {
        self.wan.as_ref()
    }

    pub fn local_dc(&self) -> &str {
        &self.local_dc
    }

    /// Alive servers of `dc`, in random order (spreads the load; the caller
    /// tries the next on a connection failure).
    pub fn servers(&self, dc: &str) -> Vec<SocketAddr> {
        let mut v = self.table.read().get(dc).cloned().unwrap_or_default();
        v.shuffle(&mut rand::thread_rng());
        v
    }

    /// Every known datacenter: this one first, then the others ordered by
    /// `dist` (an estimated round-trip time; `None` sorts last), then name.
    /// Without coordinates `dist` answers `None`: local first, then by name.
    pub fn sorted_dcs(&self, dist: impl Fn(&str) -> Option<f64>) -> Vec<String> {
        let table = self.table.read().clone();
        let mut others: Vec<(Option<f64>, &String)> = table
            .keys()
            .filter(|dc| **dc != self.local_dc)
            .map(|dc| (dist(dc), dc))
            .collect();
        others.sort_by(|a, b| {
            let d = match (a.0, b.0) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            d.then_with(|| a.1.cmp(b.1))
        });
        let mut v = vec![self.local_dc.clone()];
        v.extend(others.into_iter().map(|(_, dc)| dc.clone()));
        v
    }
}

/// Alive servers by datacenter, capped ([`MAX_DCS`], [`MAX_SERVERS_PER_DC`]).
fn table_of(members: &[Member]) -> Table {
    let mut t = Table::new();
    for m in members {
        let id = &m.ident;
        if m.status != MemberStatus::Alive || !id.server || id.rpc_port == 0 || id.dc.is_empty() {
            continue;
        }
        if !t.contains_key(&id.dc) && t.len() >= MAX_DCS {
            continue;
        }
        let list = t.entry(id.dc.clone()).or_default();
        if list.len() < MAX_SERVERS_PER_DC && !list.contains(&id.rpc_addr()) {
            list.push(id.rpc_addr());
        }
    }
    t
}

/// `<node>.<dc>`: a WAN member's name (Consul's server_serf naming).
pub fn wan_name(node: &str, dc: &str) -> String {
    format!("{node}.{dc}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::gossip::Ident;
    use std::time::Instant;

    fn member(name: &str, dc: &str, port: u16, status: MemberStatus) -> Member {
        Member {
            ident: Ident {
                addr: SocketAddr::from(([127, 0, 0, 1], port + 1)),
                bump: 1,
                name: wan_name(name, dc),
                node_id: String::new(),
                dc: dc.into(),
                server: true,
                rpc_port: port,
                raft_id: 1,
                bootstrap_expect: 0,
                build: String::new(),
            },
            status,
            since: Instant::now(),
        }
    }

    fn router(members: &[Member]) -> Router {
        let r = Router {
            local_dc: "dc2".into(),
            table: Default::default(),
            wan: None,
        };
        r.rebuild(members);
        r
    }

    #[test]
    fn alive_servers_by_dc_and_order() {
        let r = router(&[
            member("a", "dc1", 100, MemberStatus::Alive),
            member("b", "dc1", 200, MemberStatus::Failed),
            member("c", "dc3", 300, MemberStatus::Alive),
            member("d", "dc2", 400, MemberStatus::Alive),
            member("e", "dc4", 500, MemberStatus::Left),
        ]);
        assert_eq!(
            r.servers("dc1"),
            vec![SocketAddr::from(([127, 0, 0, 1], 100))]
        );
        assert!(r.servers("dc4").is_empty());
        assert!(r.servers("nope").is_empty());
        assert_eq!(r.sorted_dcs(|_| None), ["dc2", "dc1", "dc3"]);
        // A distance puts dc3 first; unknown distances sort last.
        let near = |dc: &str| (dc == "dc3").then_some(0.01);
        assert_eq!(r.sorted_dcs(near), ["dc2", "dc3", "dc1"]);
    }

    #[test]
    fn bounded() {
        let many: Vec<Member> = (0..MAX_DCS as u16 + 10)
            .map(|i| member("s", &format!("dc{i:04}"), 1000 + i, MemberStatus::Alive))
            .collect();
        assert_eq!(table_of(&many).len(), MAX_DCS);
        let one_dc: Vec<Member> = (0..100)
            .map(|i| member(&format!("s{i}"), "dc1", 2000 + i, MemberStatus::Alive))
            .collect();
        assert_eq!(table_of(&one_dc)["dc1"].len(), MAX_SERVERS_PER_DC);
    }
}
