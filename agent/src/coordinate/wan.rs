//! WAN coordinates: a server's second Vivaldi client, on its WAN pool.
//!
//! As serf does for Consul's WAN pool, the round trips of the WAN gossip
//! probes (`cluster::rtt`, on the WAN `Gossip`) feed a Vivaldi client of
//! their own, separate from the LAN one (the two spaces are not
//! comparable). foca's acks carry no payload, so the peer's coordinate
//! that serf takes from the ack is fetched instead: every [`REFRESH`]
//! this server asks each alive WAN member for its own coordinate over
//! server RPC ([`PATH`]), at most [`CONCURRENCY`] at a time, each within
//! [`TIMEOUT`]. The cache holds one entry per alive WAN member (members
//! that leave or fail drop out at the next refresh), so it is bounded by
//! the router's caps.
//!
//! Handlers read [`WanCoords::wan_coordinates`] (`/v1/coordinate/datacenters`)
//! and [`WanCoords::sorted_dcs`] (datacenters by the median estimated round
//! trip to their servers, Consul's `GetDatacentersByDistance`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Client, Config, Coordinate};
use crate::cluster::gossip::{Gossip, MemberStatus};
use crate::cluster::router::{Router, MAX_DCS, MAX_SERVERS_PER_DC};
use crate::rpc::client::RpcClient;

/// The RPC path answering this server's WAN name and coordinate.
pub const PATH: &str = "/rpc/wan-coordinate";

/// How often peers' coordinates are fetched.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long one peer may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Peers asked at once.
pub const CONCURRENCY: usize = 8;
/// Most peers cached (the router's bound on servers).
pub const MAX_PEERS: usize = MAX_DCS * MAX_SERVERS_PER_DC;

/// A WAN member's latest coordinate.
#[derive(Clone, Debug)]
struct Peer {
    dc: String,
    coord: Coordinate,
}

#[derive(Default)]
struct Inner {
    /// This server's WAN name, datacenter and coordinate; `None` without
    /// a WAN pool (client agents, `ports.serf_wan = -1`).
    me: Option<(String, String, Coordinate)>,
    /// Alive WAN members' coordinates, by WAN name (`<node>.<dc>`).
    peers: HashMap<String, Peer>,
}

/// The WAN coordinates this server knows. Cheap to clone.
#[derive(Clone, Default)]
pub struct WanCoords {
    inner: Arc<RwLock<Inner>>,
}

impl WanCoords {
    /// This server's WAN name and coordinate (`None` without a WAN pool).
    pub fn own(&self) -> Option<(String, Coordinate)> {
        let i = self.inner.read();
        i.me.as_ref().map(|(n, _, c)| (n.clone(), c.clone()))
    }

    /// Per datacenter, its servers' WAN names and coordinates, this one's
    /// included; `None` without a WAN pool.
    pub fn wan_coordinates(&self) -> Option<BTreeMap<String, Vec<(String, Coordinate)>>> {
        let i = self.inner.read();
        let (name, dc, c) = i.me.as_ref()?;
        let mut out: BTreeMap<String, Vec<(String, Coordinate)>> = BTreeMap::new();
        out.entry(dc.clone())
            .or_default()
            .push((name.clone(), c.clone()));
        for (n, p) in &i.peers {
            out.entry(p.dc.clone())
                .or_default()
                .push((n.clone(), p.coord.clone()));
        }
        for list in out.values_mut() {
            list.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Some(out)
    }

    /// The median estimated round trip (seconds) from this server to the
    /// servers of `dc` (0 for its own); `None` when unknown.
    pub fn dc_distance(&self, dc: &str) -> Option<f64> {
        self.dc_distances().get(dc).copied()
    }

    /// [`Self::dc_distance`] of every datacenter with a known coordinate.
    pub fn dc_distances(&self) -> BTreeMap<String, f64> {
        let i = self.inner.read();
        let Some((_, local, me)) = &i.me else {
            return BTreeMap::new();
        };
        let others = i.peers.values().map(|p| (p.dc.as_str(), &p.coord));
        median_distances(me, local, others)
    }

    /// Every datacenter `router` knows: this one first, the others by
    /// [`Self::dc_distance`], then by name (those without one last).
    pub fn sorted_dcs(&self, router: &Router) -> Vec<String> {
        let d = self.dc_distances();
        router.sorted_dcs(|dc| d.get(dc).copied())
    }

    fn set_own(&self, c: Coordinate) {
        if let Some(me) = self.inner.write().me.as_mut() {
            me.2 = c;
        }
    }

    fn peer(&self, name: &str) -> Option<Coordinate> {
        self.inner.read().peers.get(name).map(|p| p.coord.clone())
    }
}

/// Consul's `GetDatacentersByDistance` for one area: per datacenter, the
/// median of the estimated round trips from `me` to its servers (the
/// local datacenter is 0). Infinite or NaN estimates are left out.
pub fn median_distances<'a>(
    me: &Coordinate,
    local: &str,
    servers: impl Iterator<Item = (&'a str, &'a Coordinate)>,
) -> BTreeMap<String, f64> {
    let mut by_dc: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (dc, c) in servers {
        if dc == local || !me.is_compatible_with(c) {
            continue;
        }
        let d = me.distance_to(c).as_secs_f64();
        if d.is_finite() {
            by_dc.entry(dc.to_string()).or_default().push(d);
        }
    }
    let mut out: BTreeMap<String, f64> = by_dc
        .into_iter()
        .map(|(dc, mut v)| {
            v.sort_by(f64::total_cmp);
            (dc, v[v.len() / 2])
        })
        .collect();
    out.insert(local.to_string(), 0.0);
    out
}

/// Start the WAN client on `wan` (a server's WAN pool): samples in from
/// its probes, peers' coordinates fetched. Ends at `stop`.
pub fn spawn(
    coords: &WanCoords,
    wan: &Gossip,
    rpc: RpcClient,
    stop: tokio_util::sync::CancellationToken,
) {
    let client = Client::new(Config::default());
    let me = wan.me();
    coords.inner.write().me = Some((me.name, me.dc, client.coordinate()));
    let (tx, rx) = mpsc::channel(256);
    wan.set_rtt_sink(tx);
    tokio::spawn(run(coords.clone(), client, wan.clone(), rpc, rx, stop));
}

async fn run(
    coords: WanCoords,
    mut client: Client,
    wan: Gossip,
    rpc: RpcClient,
    mut samples: mpsc::Receiver<crate::cluster::rtt::Sample>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The fetch runs beside the sample loop, so a slow peer delays no sample.
    let mut refresh: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            sample = samples.recv() => {
                let Some((node, rtt)) = sample else { return };
                let other = coords
                    .peer(&node)
                    .unwrap_or_else(|| Coordinate::new(&Config::default()));
                match client.update(&node, &other, rtt) {
                    Ok(c) => coords.set_own(c),
                    Err(e) => tracing::debug!(%node, error = %e, "coordinate (WAN): sample refused"),
                }
            }
            _ = tick.tick() => {
                if refresh.as_ref().is_none_or(|h| h.is_finished()) {
                    for gone in forget_gone(&coords, &wan) {
                        client.forget_node(&gone);
                    }
                    refresh = Some(tokio::spawn(fetch_all(coords.clone(), wan.clone(), rpc.clone())));
                }
            }
            _ = stop.cancelled() => {
                if let Some(h) = refresh { h.abort() }
                return;
            }
        }
    }
}

/// Drop cached peers that are no longer alive WAN members; returns the
/// names gossip forgot entirely (the Vivaldi client drops their samples).
fn forget_gone(coords: &WanCoords, wan: &Gossip) -> Vec<String> {
    let members = wan.members();
    let alive: HashSet<&str> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .map(|m| m.ident.name.as_str())
        .collect();
    let known: HashSet<&str> = members.iter().map(|m| m.ident.name.as_str()).collect();
    let mut i = coords.inner.write();
    let mut forgotten = Vec::new();
    i.peers.retain(|name, _| {
        if !known.contains(name.as_str()) {
            forgotten.push(name.clone());
        }
        alive.contains(name.as_str())
    });
    forgotten
}

/// Ask every alive WAN server (but this one) for its coordinate.
async fn fetch_all(coords: WanCoords, wan: Gossip, rpc: RpcClient) {
    let me = wan.me().name;
    let targets: Vec<(String, String, String)> = wan
        .members()
        .into_iter()
        .filter(|m| m.status == MemberStatus::Alive && m.ident.name != me)
        .filter(|m| m.ident.server && m.ident.rpc_port != 0 && !m.ident.dc.is_empty())
        .take(MAX_PEERS)
        .map(|m| {
            let addr = m.ident.rpc_addr().to_string();
            (m.ident.name, m.ident.dc, addr)
        })
        .collect();
    let mut todo = targets.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < CONCURRENCY {
            let Some((name, dc, addr)) = todo.next() else {
                break;
            };
            let rpc = rpc.clone();
            running.spawn(async move {
                let r = tokio::time::timeout(TIMEOUT, rpc.get::<(String, Coordinate)>(&addr, PATH))
                    .await;
                (name, dc, addr, r)
            });
        }
        let Some(done) = running.join_next().await else {
            return;
        };
        let Ok((name, dc, addr, r)) = done else {
            continue;
        };
        match r {
            Ok(Ok((said, c))) if said == name && super::sync::validate(&c).is_ok() => {
                let mut i = coords.inner.write();
                if i.peers.len() < MAX_PEERS || i.peers.contains_key(&name) {
                    i.peers.insert(name, Peer { dc, coord: c });
                }
            }
            Ok(Ok((said, _))) => {
                tracing::debug!(%addr, %name, %said, "coordinate (WAN): peer answered with another name or a bad coordinate")
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, %name, error = %e, "coordinate (WAN): peer unavailable")
            }
            Err(_) => tracing::debug!(%addr, %name, "coordinate (WAN): peer timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coordinate `x` seconds along the first axis.
    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::new(&Config::default());
        c.vec[0] = x;
        c.height = 0.0;
        c
    }

    #[test]
    fn median_per_datacenter_local_zero() {
        let me = at(0.0);
        let list = [
            ("dc2", at(0.010)),
            ("dc2", at(0.030)),
            ("dc2", at(0.500)),
            ("dc3", at(0.020)),
            ("dc3", at(0.040)),
            ("dc1", at(0.900)),
        ];
        let d = median_distances(&me, "dc1", list.iter().map(|(dc, c)| (*dc, c)));
        // Heights are clamped to the minimum, so allow that much.
        let close = |dc: &str, want: f64| (d[dc] - want).abs() < 1e-3;
        assert_eq!(d["dc1"], 0.0, "{d:?}");
        assert!(close("dc2", 0.030), "median of three: {d:?}");
        // Two servers: Consul takes the upper one (len / 2).
        assert!(close("dc3", 0.040), "{d:?}");
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn incompatible_coordinates_are_skipped() {
        let me = at(0.0);
        let mut short = at(0.01);
        short.vec.truncate(2);
        let list = [("dc2", short)];
        let d = median_distances(&me, "dc1", list.iter().map(|(dc, c)| (*dc, c)));
        assert_eq!(d.keys().collect::<Vec<_>>(), ["dc1"]);
    }

    #[test]
    fn sorted_by_distance_then_name() {
        let coords = WanCoords::default();
        {
            let mut i = coords.inner.write();
            i.me = Some(("s1.dc1".into(), "dc1".into(), at(0.0)));
            for (n, dc, x) in [
                ("s1.dc2", "dc2", 0.040),
                ("s1.dc3", "dc3", 0.005),
                ("s2.dc3", "dc3", 0.006),
            ] {
                let coord = at(x);
                i.peers.insert(
                    n.into(),
                    Peer {
                        dc: dc.into(),
                        coord,
                    },
                );
            }
        }
        let d = coords.dc_distances();
        assert!(d["dc3"] < d["dc2"], "{d:?}");
        assert_eq!(coords.dc_distance("dc4"), None);
        let map = coords.wan_coordinates().unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["dc1", "dc2", "dc3"]);
        let dc3: Vec<&str> = map["dc3"].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(dc3, ["s1.dc3", "s2.dc3"]);
        assert!(WanCoords::default().wan_coordinates().is_none());
    }
}
