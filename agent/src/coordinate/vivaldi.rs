//! Vivaldi network coordinates, as serf's `coordinate` package models them
//! (and Consul exchanges them): an 8-dimensional Euclidean vector plus a
//! height (the access link), an adjustment (a rolling correction of the
//! estimates) and an error (confidence). Units are seconds.
//!
//! The update rule, the latency filter (median of the last three samples
//! per peer), the adjustment window and the gravity towards the origin
//! follow serf's `client.go`, so estimates agree with what Consul users
//! see for the same round trips.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Two coordinates closer than this are on top of each other.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// Round trips above this are not believed (serf's `maxRTT`).
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// The peers whose latency samples a client keeps (bounded state).
const MAX_FILTERED_PEERS: usize = 4096;

/// serf's `coordinate.Config`.
#[derive(Clone, Debug)]
pub struct Config {
    pub dimensionality: usize,
    pub vivaldi_error_max: f64,
    pub vivaldi_ce: f64,
    pub vivaldi_cc: f64,
    pub adjustment_window_size: usize,
    pub height_min: f64,
    pub latency_filter_size: usize,
    pub gravity_rho: f64,
}

impl Default for Config {
    /// serf's `DefaultConfig`.
    fn default() -> Self {
        Self {
            dimensionality: 8,
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A network coordinate, in Consul's JSON shape (`Vec`, `Error`,
/// `Adjustment`, `Height`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

/// Why an update or a coordinate was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VivaldiError {
    #[error("dimensions aren't compatible")]
    Dimensions,
    #[error("coordinate is invalid")]
    Invalid,
    #[error("round trip time not in valid range, duration {0:?} is not a positive value less than {MAX_RTT:?}")]
    Rtt(Duration),
}

impl Coordinate {
    /// A coordinate at the origin with the maximum error.
    pub fn new(config: &Config) -> Self {
        Self {
            vec: vec![0.0; config.dimensionality],
            error: config.vivaldi_error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// Every component is a finite number.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// Euclidean distance plus both heights, in seconds (no adjustment).
    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// The estimated round trip to `other`, adjustments included unless
    /// they would make it negative (serf's `DistanceTo`). Incompatible
    /// coordinates are at distance zero, never a panic.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        if !self.is_compatible_with(other) {
            return Duration::ZERO;
        }
        let dist = self.raw_distance_to(other);
        let adjusted = dist + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { dist };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }

    /// Move `force` seconds away from `other` (towards it when negative);
    /// the height grows or shrinks in proportion, never below the floor.
    fn apply_force(
        &self,
        config: &Config,
        force: f64,
        other: &Coordinate,
        rng: &mut StdRng,
    ) -> Coordinate {
        let mut ret = self.clone();
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, rng);
        for (r, u) in ret.vec.iter_mut().zip(&unit) {
            *r += u * force;
        }
        if mag > ZERO_THRESHOLD {
            ret.height = (ret.height + other.height) * force / mag + ret.height;
            ret.height = ret.height.max(config.height_min);
        }
        ret
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector pointing from `b` to `a`, and the distance; a random
/// direction when they coincide (as serf, so two fresh nodes separate).
fn unit_vector_at(a: &[f64], b: &[f64], rng: &mut StdRng) -> (Vec<f64>, f64) {
    let d = diff(a, b);
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (d.iter().map(|x| x / mag).collect(), mag);
    }
    let r: Vec<f64> = d.iter().map(|_| rng.gen::<f64>() - 0.5).collect();
    let m = magnitude(&r);
    if m > ZERO_THRESHOLD {
        return (r.iter().map(|x| x / m).collect(), 0.0);
    }
    let mut unit = vec![0.0; d.len()];
    if let Some(first) = unit.first_mut() {
        *first = 1.0;
    }
    (unit, 0.0)
}

/// One node's view: its coordinate and what it learned to compute it.
#[derive(Debug)]
pub struct Client {
    coord: Coordinate,
    origin: Coordinate,
    config: Config,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    /// The last `latency_filter_size` samples per peer.
    latency_filter: HashMap<String, VecDeque<f64>>,
    /// How often the coordinate went invalid and was reset.
    pub resets: u64,
    /// For the direction away from a coincident peer.
    rng: StdRng,
}

impl Client {
    pub fn new(config: Config) -> Self {
        Self::with_rng(config, StdRng::from_entropy())
    }

    /// A client whose random choices follow `seed` (reproducible tests).
    pub fn seeded(config: Config, seed: u64) -> Self {
        Self::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: Config, rng: StdRng) -> Self {
        Self {
            rng,
            coord: Coordinate::new(&config),
            origin: Coordinate::new(&config),
            adjustment_index: 0,
            adjustment_samples: vec![0.0; config.adjustment_window_size],
            latency_filter: HashMap::new(),
            config,
            resets: 0,
        }
    }

    pub fn coordinate(&self) -> Coordinate {
        self.coord.clone()
    }

    /// Replace the coordinate (tests, a restored value).
    pub fn set_coordinate(&mut self, c: Coordinate) -> Result<(), VivaldiError> {
        self.check(&c)?;
        self.coord = c;
        Ok(())
    }

    /// Forget a peer's latency samples (it left).
    pub fn forget_node(&mut self, node: &str) {
        self.latency_filter.remove(node);
    }

    fn check(&self, c: &Coordinate) -> Result<(), VivaldiError> {
        if !self.coord.is_compatible_with(c) {
            return Err(VivaldiError::Dimensions);
        }
        if !c.is_valid() {
            return Err(VivaldiError::Invalid);
        }
        Ok(())
    }

    /// The median of the last few samples from `node`, `rtt` included.
    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        if !self.latency_filter.contains_key(node)
            && self.latency_filter.len() >= MAX_FILTERED_PEERS
        {
            self.latency_filter.clear();
        }
        let samples = self.latency_filter.entry(node.to_string()).or_default();
        samples.push_back(rtt);
        while samples.len() > self.config.latency_filter_size.max(1) {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let rtt = rtt.max(ZERO_THRESHOLD);
        let dist = self.coord.distance_to(other).as_secs_f64();
        let wrongness = (dist - rtt).abs() / rtt;
        let total = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total;
        let ce = self.config.vivaldi_ce * weight;
        self.coord.error =
            (ce * wrongness + self.coord.error * (1.0 - ce)).min(self.config.vivaldi_error_max);
        let force = self.config.vivaldi_cc * weight * (rtt - dist);
        self.coord = self
            .coord
            .apply_force(&self.config, force, other, &mut self.rng);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let n = self.config.adjustment_window_size;
        if n == 0 {
            return;
        }
        let dist = self.coord.raw_distance_to(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % n;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * n as f64);
    }

    /// A small pull towards the origin, so the whole system does not drift.
    fn update_gravity(&mut self) {
        let dist = self.origin.distance_to(&self.coord).as_secs_f64();
        let force = -(dist / self.config.gravity_rho).powi(2);
        self.coord = self
            .coord
            .apply_force(&self.config, force, &self.origin, &mut self.rng);
    }

    /// Take one observation: `rtt` to `node`, whose coordinate is `other`.
    /// Returns the new coordinate.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
    ) -> Result<Coordinate, VivaldiError> {
        self.check(other)?;
        if rtt > MAX_RTT {
            return Err(VivaldiError::Rtt(rtt));
        }
        let rtt = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::new(&self.config);
        }
        Ok(self.coord.clone())
    }

    /// The estimated round trip from this client to `other`.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        self.coord.distance_to(other)
    }
}

#[cfg(test)]
mod tests;
