//! Percentiles over recorded samples.

use std::time::{Duration, Instant};

/// Signed microseconds from `from` to `to` (negative when `to` came first).
pub fn signed_us(from: Instant, to: Instant) -> i64 {
    if to >= from {
        micros(to - from)
    } else {
        -micros(from - to)
    }
}

pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Order statistics of one series.
pub struct Summary {
    sorted: Vec<i64>,
}

impl Summary {
    pub fn new(mut samples: Vec<i64>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile, `p` in 0..=100; 0 for an empty series.
    pub fn pct(&self, p: f64) -> i64 {
        if self.sorted.is_empty() {
            return 0;
        }
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    pub fn max(&self) -> i64 {
        self.sorted.last().copied().unwrap_or(0)
    }

    pub fn min(&self) -> i64 {
        self.sorted.first().copied().unwrap_or(0)
    }

    /// Print `RESULT {name}_{p50,p90,p99,max}{unit}=...`.
    pub fn report(&self, name: &str, unit: &str) {
        crate::result(&format!("{name}_p50_{unit}"), self.pct(50.0));
        crate::result(&format!("{name}_p90_{unit}"), self.pct(90.0));
        crate::result(&format!("{name}_p99_{unit}"), self.pct(99.0));
        crate::result(&format!("{name}_max_{unit}"), self.max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest rank: p50 of 1..=10 is 5, p90 is 9, p99 and p100 are 10.
    #[test]
    fn nearest_rank() {
        let s = Summary::new((1..=10).rev().collect());
        assert_eq!(s.pct(50.0), 5);
        assert_eq!(s.pct(90.0), 9);
        assert_eq!(s.pct(99.0), 10);
        assert_eq!(s.pct(0.0), 1);
        assert_eq!(s.max(), 10);
        assert_eq!(s.min(), 1);
        assert_eq!(Summary::new(vec![]).pct(50.0), 0);
    }

    #[test]
    fn signed() {
        let a = Instant::now();
        let b = a + Duration::from_micros(250);
        assert_eq!(signed_us(a, b), 250);
        assert_eq!(signed_us(b, a), -250);
    }
}
