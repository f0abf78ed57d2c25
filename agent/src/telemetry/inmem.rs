//! The in-memory sink behind `/v1/agent/metrics` (JSON): go-metrics'
//! `InmemSink` as Consul configures it — 10 s intervals, one minute kept;
//! the answer is the last finished interval (the current one while it is
//! the only one).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata};
use metrics::{Recorder, SharedString, Unit};
use parking_lot::Mutex;
use serde::Serialize;

/// Consul's `inmem` interval and retention.
pub const INTERVAL: Duration = Duration::from_secs(10);
const RETAIN: usize = 6;
/// Distinct series one interval holds; past it new names are dropped
/// (every name comes from our own code, so this only guards a bug).
const MAX_SERIES: usize = 4096;

type Labels = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct Aggregate {
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Aggregate {
    fn ingest(&mut self, v: f64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }

    fn stddev(&self) -> f64 {
        let n = self.count as f64;
        let div = n * (n - 1.0);
        if div == 0.0 {
            return 0.0;
        }
        ((n * self.sum_sq - self.sum * self.sum) / div)
            .max(0.0)
            .sqrt()
    }
}

#[derive(Default)]
struct Interval {
    start: u64,
    gauges: BTreeMap<String, (String, Labels, f64)>,
    counters: BTreeMap<String, (String, Labels, Aggregate)>,
    samples: BTreeMap<String, (String, Labels, Aggregate)>,
}

/// The sink: a ring of intervals.
#[derive(Default)]
pub struct Inmem {
    intervals: Mutex<VecDeque<Interval>>,
}

fn series_key(name: &str, labels: &Labels) -> String {
    let mut k = name.to_string();
    for (n, v) in labels {
        k.push(';');
        k.push_str(n);
        k.push('=');
        k.push_str(v);
    }
    k
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum Kind {
    Gauge(f64),
    /// A relative change of a gauge, from the last value held.
    GaugeAdd(f64),
    Counter(f64),
    Sample(f64),
}

impl Inmem {
    #[cfg(test)]
    fn record(&self, name: &str, labels: &Labels, kind: Kind) {
        self.record_keyed(&series_key(name, labels), name, labels, kind)
    }

    /// [`Self::record`] with the series key already built (handles keep it).
    fn record_keyed(&self, key: &str, name: &str, labels: &Labels, kind: Kind) {
        let step = INTERVAL.as_secs();
        let start = now_secs() / step * step;
        let mut ring = self.intervals.lock();
        let kind = match kind {
            Kind::GaugeAdd(d) => {
                let last = ring
                    .iter()
                    .rev()
                    .find_map(|iv| iv.gauges.get(key).map(|g| g.2));
                Kind::Gauge(last.unwrap_or(0.0) + d)
            }
            k => k,
        };
        if ring.back().map(|i| i.start) != Some(start) {
            ring.push_back(Interval {
                start,
                ..Interval::default()
            });
            while ring.len() > RETAIN {
                ring.pop_front();
            }
        }
        let Some(cur) = ring.back_mut() else { return };
        let room = cur.gauges.len() + cur.counters.len() + cur.samples.len() < MAX_SERIES;
        let entry = |m: &mut BTreeMap<String, (String, Labels, Aggregate)>, v: f64| {
            if let Some(e) = m.get_mut(key) {
                e.2.ingest(v);
            } else if room {
                let mut a = Aggregate::default();
                a.ingest(v);
                m.insert(key.to_string(), (name.to_string(), labels.clone(), a));
            }
        };
        match kind {
            Kind::Counter(v) => entry(&mut cur.counters, v),
            Kind::Sample(v) => entry(&mut cur.samples, v),
            Kind::Gauge(v) | Kind::GaugeAdd(v) => {
                if room || cur.gauges.contains_key(key) {
                    cur.gauges
                        .insert(key.to_string(), (name.to_string(), labels.clone(), v));
                }
            }
        }
    }

    /// Consul's `MetricsSummary` of the last finished interval.
    pub fn summary(&self) -> Summary {
        let ring = self.intervals.lock();
        let n = ring.len();
        let pick = match n {
            0 => None,
            1 => ring.back(),
            _ => ring.get(n - 2),
        };
        let Some(iv) = pick else {
            return Summary::empty(now_secs());
        };
        let rate_denom = INTERVAL.as_secs_f64();
        let sampled = |m: &BTreeMap<String, (String, Labels, Aggregate)>| {
            m.values()
                .map(|(name, labels, a)| SampledValue {
                    name: name.clone(),
                    count: a.count,
                    rate: a.sum / rate_denom,
                    sum: a.sum,
                    min: a.min,
                    max: a.max,
                    mean: if a.count == 0 {
                        0.0
                    } else {
                        a.sum / a.count as f64
                    },
                    stddev: a.stddev(),
                    labels: labels.clone(),
                })
                .collect()
        };
        Summary {
            timestamp: go_time(iv.start),
            gauges: iv
                .gauges
                .values()
                .map(|(name, labels, v)| GaugeValue {
                    name: name.clone(),
                    value: *v as f32,
                    labels: labels.clone(),
                })
                .collect(),
            points: Vec::new(),
            counters: sampled(&iv.counters),
            samples: sampled(&iv.samples),
        }
    }
}

/// Go's `time.Time.String()` of a UTC instant, as go-metrics prints it.
fn go_time(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub timestamp: String,
    pub gauges: Vec<GaugeValue>,
    pub points: Vec<PointValue>,
    pub counters: Vec<SampledValue>,
    pub samples: Vec<SampledValue>,
}

impl Summary {
    fn empty(secs: u64) -> Self {
        let step = INTERVAL.as_secs();
        Self {
            timestamp: go_time(secs / step * step),
            gauges: Vec::new(),
            points: Vec::new(),
            counters: Vec::new(),
            samples: Vec::new(),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct GaugeValue {
    pub name: String,
    pub value: f32,
    pub labels: Labels,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct PointValue {
    pub name: String,
    pub points: Vec<f32>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub struct SampledValue {
    pub name: String,
    pub count: u64,
    pub rate: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub labels: Labels,
}

/// One series' handle: records into the sink under its name and labels.
struct Handle {
    sink: Arc<Inmem>,
    key: String,
    name: String,
    labels: Labels,
}

impl Handle {
    fn put(&self, kind: Kind) {
        self.sink
            .record_keyed(&self.key, &self.name, &self.labels, kind);
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.put(Kind::Counter(value as f64));
    }
    // go-metrics has no absolute counters; an absolute value is a gauge there.
    fn absolute(&self, value: u64) {
        self.put(Kind::Gauge(value as f64));
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.put(Kind::GaugeAdd(value));
    }
    fn decrement(&self, value: f64) {
        self.put(Kind::GaugeAdd(-value));
    }
    fn set(&self, value: f64) {
        self.put(Kind::Gauge(value));
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.put(Kind::Sample(value));
    }
}

/// The sink as a `metrics` recorder.
pub struct InmemRecorder(pub Arc<Inmem>);

impl InmemRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let name = key.name().to_string();
        let labels: Labels = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        Arc::new(Handle {
            sink: self.0.clone(),
            key: series_key(&name, &labels),
            name,
            labels,
        })
    }
}

impl Recorder for InmemRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Count, sum, min/max, mean and go-metrics' sample stddev.
    #[test]
    fn aggregates_like_go_metrics() {
        let sink = Inmem::default();
        let l = Labels::new();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            sink.record("consul.x", &l, Kind::Sample(v));
        }
        sink.record("consul.c", &l, Kind::Counter(3.0));
        sink.record("consul.g", &l, Kind::Gauge(1.5));
        let s = sink.summary();
        let x = &s.samples[0];
        assert_eq!(
            (x.count, x.sum, x.min, x.max, x.mean),
            (8, 40.0, 2.0, 9.0, 5.0)
        );
        assert!((x.stddev - 2.138).abs() < 0.001, "{}", x.stddev);
        assert_eq!(s.counters[0].name, "consul.c");
        assert_eq!(s.counters[0].rate, 0.3);
        assert_eq!(s.gauges[0].value, 1.5);
        assert!(s.timestamp.ends_with(" +0000 UTC"), "{}", s.timestamp);
    }
}
