//! Moving coordinates around.
//!
//! - Every agent runs [`run`]: it feeds the round trips of its gossip
//!   probes (`cluster::rtt`) to its Vivaldi client, taking each peer's
//!   coordinate from a cache it refreshes from the servers, and sends its
//!   own coordinate to the servers (a raft write) every sync interval.
//!   As Consul, that interval grows with the cluster so the servers see
//!   about `sync_coordinate_rate_target` updates a second in all, never
//!   more often than `sync_coordinate_interval_min`.
//! - Servers batch `PUT /v1/coordinate/update` in a [`Batcher`] and apply
//!   the batch every `coordinate_update_period` (Consul's
//!   `Coordinate.Update` endpoint), at most [`MAX_PENDING`] nodes a round;
//!   more are dropped with a warning.

use std::collections::HashMap;
use std::time::Duration;

use gocompat::duration::parse_duration;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Client, Config, Coordinate};
use crate::app::Shared;
use crate::state::coordinate::CoordinateCommand;
use crate::state::Command;

/// Consul's `CoordinateUpdateBatchSize * CoordinateUpdateMaxBatches`.
pub const MAX_PENDING: usize = 128 * 5;

/// The `coordinate` settings.
#[derive(Clone, Debug)]
pub struct CoordConfig {
    pub disabled: bool,
    pub sync_interval_min: Duration,
    pub sync_rate_target: f64,
    pub update_period: Duration,
}

impl Default for CoordConfig {
    /// Consul's defaults.
    fn default() -> Self {
        Self {
            disabled: false,
            sync_interval_min: Duration::from_secs(15),
            sync_rate_target: 64.0,
            update_period: Duration::from_secs(5),
        }
    }
}

impl CoordConfig {
    /// One config-file key; `Err`: what it should have been.
    pub fn merge(&mut self, key: &str, val: &Value) -> Result<(), &'static str> {
        let dur = || {
            val.as_str()
                .and_then(parse_duration)
                .filter(|d| *d >= Duration::from_millis(100))
                .ok_or("a duration of at least 100ms, like \"15s\"")
        };
        match key {
            "disable_coordinates" => self.disabled = val.as_bool().ok_or("true or false")?,
            "sync_coordinate_interval_min" => self.sync_interval_min = dur()?,
            "coordinate_update_period" => self.update_period = dur()?,
            _ => {
                self.sync_rate_target = val
                    .as_f64()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or("a positive number")?
            }
        }
        Ok(())
    }

    /// Consul's `lib.RateScaledInterval`: the interval that keeps `nodes`
    /// agents at `rate` updates a second in all.
    pub fn sync_interval(&self, nodes: usize) -> Duration {
        let scaled = Duration::from_secs_f64(nodes as f64 / self.sync_rate_target);
        scaled.max(self.sync_interval_min)
    }
}

/// Why a coordinate in an API body was refused.
pub fn validate(c: &Coordinate) -> Result<(), String> {
    let dims = Config::default().dimensionality;
    if c.vec.len() != dims {
        return Err(format!(
            "incompatible coordinate: Vec has {} dimensions, want {dims}",
            c.vec.len()
        ));
    }
    if !c.is_valid() {
        return Err("invalid coordinate".into());
    }
    // Far beyond any round trip on Earth (seconds), yet finite: such
    // values would only push every estimate out of range.
    const LIMIT: f64 = 1000.0;
    if c.vec.iter().any(|v| v.abs() > LIMIT) || c.adjustment.abs() > LIMIT {
        return Err(format!(
            "invalid coordinate: components must be within ±{LIMIT} s"
        ));
    }
    if !(0.0..=LIMIT).contains(&c.height) {
        return Err(format!(
            "invalid coordinate: Height must be within 0..{LIMIT} s"
        ));
    }
    if !(0.0..=Config::default().vivaldi_error_max).contains(&c.error) {
        return Err("invalid coordinate: Error must be within 0..1.5".into());
    }
    Ok(())
}

/// Updates by (node, segment), and how many were dropped.
type Pending = (HashMap<(String, String), Coordinate>, usize);

/// Pending API updates on a server.
#[derive(Default)]
pub struct Batcher {
    pending: parking_lot::Mutex<Pending>,
}

impl Batcher {
    /// Queue one update. When the batch is full it is dropped and counted
    /// (as Consul discards what exceeds its batches, logged once a round).
    pub fn push(&self, node: String, segment: String, c: Coordinate) {
        let mut p = self.pending.lock();
        let key = (node, segment);
        if p.0.len() >= MAX_PENDING && !p.0.contains_key(&key) {
            p.1 += 1;
            return;
        }
        p.0.insert(key, c);
    }

    /// The batch, and how many updates were dropped since the last one.
    fn take(&self) -> (Vec<(String, String, Coordinate)>, usize) {
        let (map, dropped) = std::mem::take(&mut *self.pending.lock());
        let list = map.into_iter().map(|((n, s), c)| (n, s, c)).collect();
        (list, dropped)
    }
}

/// The servers' side: apply queued API updates every update period.
pub async fn run_batcher(s: Shared) {
    let mut tick = tokio::time::interval(s.config.coordinates.update_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = s.shutdown.cancelled() => return,
        }
        let (batch, dropped) = s.coord_batch.take();
        if dropped > 0 {
            tracing::warn!("coordinate: Discarded {dropped} coordinate updates (more than {MAX_PENDING} in one period)");
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        let cmd = Command::Coordinate(CoordinateCommand::Update(batch));
        if let Err(e) = s.agent_write(cmd).await {
            tracing::warn!("coordinate: Batch update of {n} coordinates failed: {e}");
        }
    }
}

/// Peers' coordinates as the servers last told this agent.
async fn fetch_peers(s: &Shared) -> Option<HashMap<String, Coordinate>> {
    if s.raft.is_some() {
        return Some(peers(&s.store.read()).into_iter().collect());
    }
    let up = s.upstream.as_ref()?;
    for target in up.targets() {
        match up
            .rpc
            .get::<Vec<(String, Coordinate)>>(&target, PEERS_PATH)
            .await
        {
            Ok(list) => {
                up.good(&target);
                return Some(list.into_iter().collect());
            }
            Err(e) => {
                tracing::debug!(%target, error = %e, "coordinate: peers unavailable");
                up.bad(&target);
            }
        }
    }
    None
}

/// The RPC path a client agent reads its peers' coordinates from.
pub const PEERS_PATH: &str = "/rpc/coordinates";

/// Every node's coordinate (default segment), for [`PEERS_PATH`].
pub fn peers(t: &crate::state::Tables) -> Vec<(String, Coordinate)> {
    t.coordinates
        .list()
        .filter(|e| e.segment.is_empty())
        .map(|e| (e.node.clone(), e.coord.clone()))
        .collect()
}

/// The agent's loop: samples in, its coordinate out. Ends at shutdown.
pub async fn run(s: Shared, mut samples: mpsc::Receiver<crate::cluster::rtt::Sample>) {
    let mut client = Client::new(Config::default());
    let mut peers: HashMap<String, Coordinate> = HashMap::new();
    let mut changed = false;
    let mut next = tokio::time::Instant::now() + s.config.coordinates.sync_interval_min;
    loop {
        tokio::select! {
            sample = samples.recv() => {
                let Some((node, rtt)) = sample else { return };
                let fresh = Coordinate::new(&Config::default());
                let other = peers.get(&node).unwrap_or(&fresh);
                match client.update(&node, other, rtt) {
                    Ok(_) => changed = true,
                    Err(e) => tracing::debug!(%node, error = %e, "coordinate: sample refused"),
                }
            }
            _ = tokio::time::sleep_until(next) => {
                let members = s.gossip.as_ref().map_or(1, |g| g.members().len());
                next = tokio::time::Instant::now() + s.config.coordinates.sync_interval(members);
                if changed && send(&s, client.coordinate()).await {
                    changed = false;
                }
                if let Some(p) = fetch_peers(&s).await {
                    peers = p;
                    for gone in client_peers_gone(&peers, &s) {
                        client.forget_node(&gone);
                    }
                }
            }
            _ = s.shutdown.cancelled() => return,
        }
    }
}

/// Members gossip no longer knows, whose samples the client can drop.
fn client_peers_gone(peers: &HashMap<String, Coordinate>, s: &Shared) -> Vec<String> {
    let Some(g) = &s.gossip else {
        return Vec::new();
    };
    let members: std::collections::HashSet<String> =
        g.members().into_iter().map(|m| m.ident.name).collect();
    peers
        .keys()
        .filter(|n| !members.contains(*n))
        .cloned()
        .collect()
}

/// Send this agent's coordinate to the servers; whether it was taken.
async fn send(s: &Shared, c: Coordinate) -> bool {
    let cmd = Command::Coordinate(CoordinateCommand::Update(vec![(
        s.node.node.clone(),
        String::new(),
        c,
    )]));
    match s.agent_write(cmd).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "coordinate: update not sent");
            false
        }
    }
}

/// Start the coordinate tasks for this agent (none with
/// `disable_coordinates` or without gossip; the WAN ones are
/// `coordinate::wan::spawn`).
pub fn spawn(s: &Shared) {
    if s.config.coordinates.disabled {
        return;
    }
    if s.raft.is_some() {
        tokio::spawn(run_batcher(s.clone()));
    }
    let Some(g) = &s.gossip else { return };
    let (tx, rx) = mpsc::channel(256);
    g.set_rtt_sink(tx);
    tokio::spawn(run(s.clone(), rx));
}
