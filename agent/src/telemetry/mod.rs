//! Telemetry: the `metrics` facade behind one process-wide recorder that
//! feeds two sinks — the in-memory one Consul's `/v1/agent/metrics` JSON
//! shows ([`inmem`]) and, when `telemetry.prometheus_retention_time` is
//! positive, a Prometheus registry (`?format=prometheus`).
//!
//! Call sites use Consul's names without the prefix (`raft.apply`,
//! `http.GET.v1.kv._`); the recorder adds `metrics_prefix` (`consul`) and,
//! for gauges unless `disable_hostname`, the host name after it, as
//! go-metrics does. Names starting `tribune.` keep that prefix instead.

pub mod http;
pub mod inmem;
pub mod raft;
pub mod runtime;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::{Fanout, FanoutBuilder};
use metrics_util::{KeyHasher, MetricKindMask};
use parking_lot::RwLock;
use serde_json::Value;

/// The `telemetry` block tribune reads.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// How long Prometheus keeps a series not updated; 0 = no Prometheus output.
    pub prometheus_retention_time: Duration,
    pub disable_hostname: bool,
    pub metrics_prefix: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            prometheus_retention_time: Duration::ZERO,
            disable_hostname: false,
            metrics_prefix: "consul".into(),
        }
    }
}

/// A bad `telemetry` block: the key and what it must be.
#[derive(Debug, thiserror::Error)]
#[error("{key}: expected {want}")]
pub struct TelemetryConfigError {
    pub key: String,
    pub want: &'static str,
}

impl TelemetryConfig {
    /// Merge one file's `telemetry` object; keys tribune does not read are
    /// returned for the caller's "not supported" handling.
    pub fn merge(&mut self, val: &Value) -> Result<Vec<String>, TelemetryConfigError> {
        let obj = val.as_object().ok_or_else(|| TelemetryConfigError {
            key: "telemetry".into(),
            want: "an object",
        })?;
        let mut other = Vec::new();
        for (k, v) in obj {
            let bad = |want: &'static str| TelemetryConfigError {
                key: format!("telemetry.{k}"),
                want,
            };
            match k.as_str() {
                "prometheus_retention_time" => {
                    self.prometheus_retention_time = v
                        .as_str()
                        .and_then(gocompat::duration::parse_duration)
                        .ok_or_else(|| bad("a duration like \"60s\""))?
                }
                "disable_hostname" => {
                    self.disable_hostname = v.as_bool().ok_or_else(|| bad("true or false"))?
                }
                "metrics_prefix" => {
                    let p = v.as_str().ok_or_else(|| bad("a string"))?;
                    let ok = !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                    if !ok {
                        return Err(bad("letters, digits, '_' or '.'"));
                    }
                    self.metrics_prefix = p.trim_matches('.').to_string();
                }
                _ => other.push(k.clone()),
            }
        }
        Ok(other)
    }
}

/// The sinks the HTTP endpoint reads.
pub struct Sinks {
    pub inmem: Arc<inmem::Inmem>,
    pub prometheus: Option<PrometheusHandle>,
}

static SINKS: OnceLock<Sinks> = OnceLock::new();

/// The installed sinks (`None` before [`install`]).
pub fn sinks() -> Option<&'static Sinks> {
    SINKS.get()
}

/// Install the process-wide recorder once; later calls keep the first
/// configuration (a reload does not rename series).
pub fn install(cfg: &TelemetryConfig) -> &'static Sinks {
    if let Some(s) = SINKS.get() {
        return s;
    }
    let inmem = Arc::new(inmem::Inmem::default());
    let mut fan = FanoutBuilder::default().add_recorder(inmem::InmemRecorder(inmem.clone()));
    let mut prometheus = None;
    if !cfg.prometheus_retention_time.is_zero() {
        let rec = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::ALL, Some(cfg.prometheus_retention_time))
            .set_quantiles(&[0.5, 0.9, 0.99])
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        prometheus = Some(rec.handle());
        fan = fan.add_recorder(rec);
    }
    let host = (!cfg.disable_hostname).then(|| {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.replace('.', "_"))
            .unwrap_or_else(|| "localhost".into())
    });
    let named = Named {
        inner: fan.build(),
        prefix: cfg.metrics_prefix.clone(),
        host,
        // Prometheus drops a series idle for its retention time; a handle
        // kept here would then record into the dropped one for good.
        handles: prometheus.is_none().then(Handles::default),
    };
    let sinks = Sinks { inmem, prometheus };
    if SINKS.set(sinks).is_ok() {
        if let Err(e) = metrics::set_global_recorder(named) {
            tracing::warn!(error = %e, "metrics recorder already installed");
        }
    }
    let sinks = SINKS.get().expect("sinks just set");
    if let Some(h) = sinks.prometheus.clone() {
        // Drains histograms into summaries and bounds their memory.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                h.run_upkeep();
            }
        });
    }
    sinks
}

/// Adds the prefix (and host name, for gauges) to every series.
struct Named {
    inner: Fanout,
    prefix: String,
    host: Option<String>,
    handles: Option<Handles>,
}

/// Series already registered, by the caller's key: `metrics::histogram!`
/// registers on every call, and naming plus the fan-out's registration cost
/// more than recording (a tenth of a PUT's instructions). Bounded: past
/// [`MAX_HANDLES`] keys a series is registered each time, as before.
#[derive(Default)]
struct Handles {
    counters: RwLock<ByKey<Counter>>,
    gauges: RwLock<ByKey<Gauge>>,
    histograms: RwLock<ByKey<Histogram>>,
}

/// A `Key` carries its hash, computed once when it is built: the map uses
/// it as is (hashing it again was most of a lookup's cost).
type ByKey<T> = HashMap<Key, T, BuildHasherDefault<KeyHasher>>;

const MAX_HANDLES: usize = 4096;

fn cached<T: Clone>(map: Option<&RwLock<ByKey<T>>>, key: &Key, make: impl FnOnce() -> T) -> T {
    let Some(map) = map else {
        return make();
    };
    if let Some(h) = map.read().get(key) {
        return h.clone();
    }
    let h = make();
    let mut m = map.write();
    if m.len() < MAX_HANDLES {
        m.insert(key.clone(), h.clone());
    }
    h
}

impl Named {
    fn name(&self, raw: &str, gauge: bool) -> String {
        let (prefix, rest) = match raw.strip_prefix("tribune.") {
            Some(rest) => ("tribune", rest),
            None => (self.prefix.as_str(), raw),
        };
        match self.host.as_deref().filter(|_| gauge) {
            Some(h) => format!("{prefix}.{h}.{rest}"),
            None => format!("{prefix}.{rest}"),
        }
    }

    fn key(&self, key: &Key, gauge: bool) -> Key {
        let labels: Vec<metrics::Label> = key.labels().cloned().collect();
        Key::from_parts(self.name(key.name(), gauge), labels)
    }
}

impl Recorder for Named {
    fn describe_counter(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        let k = KeyName::from(self.name(k.as_str(), false));
        self.inner.describe_counter(k, u, d)
    }
    fn describe_gauge(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        let k = KeyName::from(self.name(k.as_str(), true));
        self.inner.describe_gauge(k, u, d)
    }
    fn describe_histogram(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        let k = KeyName::from(self.name(k.as_str(), false));
        self.inner.describe_histogram(k, u, d)
    }
    fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
        cached(self.handles.as_ref().map(|h| &h.counters), key, || {
            self.inner.register_counter(&self.key(key, false), m)
        })
    }
    fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
        cached(self.handles.as_ref().map(|h| &h.gauges), key, || {
            self.inner.register_gauge(&self.key(key, true), m)
        })
    }
    fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
        cached(self.handles.as_ref().map(|h| &h.histograms), key, || {
            self.inner.register_histogram(&self.key(key, false), m)
        })
    }
}

/// Milliseconds since `start`, as go-metrics' `MeasureSince` records them.
pub fn ms_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Record a timer sample (milliseconds) when dropped: one line at a call site.
pub struct Timer {
    name: &'static str,
    start: std::time::Instant,
}

/// Start a timer named `name` (Consul's name without the prefix).
pub fn timer(name: &'static str) -> Timer {
    Timer {
        name,
        start: std::time::Instant::now(),
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(self.name).record(ms_since(self.start));
    }
}

/// A blocking query parked here: one more in `tribune.blocking.parked`
/// and in Consul's `consul.rpc.queries_blocking` (forwarded ones included:
/// they park here like local ones) while held.
/// The latter is sampled each second ([`runtime`]) from a count, so that
/// every interval shows it, changed or not.
pub struct Parked(());

/// Blocking queries parked now.
pub static QUERIES_BLOCKING: AtomicI64 = AtomicI64::new(0);
/// Waiters on shared (coalesced) blocking queries now.
pub static COALESCED_WAITERS: AtomicI64 = AtomicI64::new(0);

pub fn parked() -> Parked {
    metrics::gauge!("tribune.blocking.parked").increment(1.0);
    QUERIES_BLOCKING.fetch_add(1, Ordering::Relaxed);
    Parked(())
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!("tribune.blocking.parked").decrement(1.0);
        QUERIES_BLOCKING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Consul's `consul.rpc.query`: one more read served from this server's
/// state, blocking or not.
pub fn query() {
    metrics::counter!("rpc.query").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_registered_once_and_the_cache_is_bounded() {
        let map: RwLock<ByKey<u32>> = RwLock::default();
        let mut made = 0;
        let mut get = |name: String| {
            cached(Some(&map), &Key::from_name(name), || {
                made += 1;
                made
            })
        };
        assert_eq!(get("a".into()), 1);
        assert_eq!(get("a".into()), 1, "the kept handle, not a new one");
        for i in 0..MAX_HANDLES {
            get(format!("k{i}"));
        }
        assert_eq!(map.read().len(), MAX_HANDLES);
        // Past the cap a series is registered on each call, as without it.
        let over = get("over".into());
        assert_ne!(get("over".into()), over);
        // Off (Prometheus on): registered every time.
        assert_ne!(cached(None, &Key::from_name("a"), || 7), 1);
    }

    #[test]
    fn names_like_go_metrics() {
        let n = Named {
            inner: FanoutBuilder::default().build(),
            prefix: "consul".into(),
            host: Some("h1".into()),
            handles: None,
        };
        assert_eq!(n.name("raft.apply", false), "consul.raft.apply");
        assert_eq!(
            n.name("runtime.alloc_bytes", true),
            "consul.h1.runtime.alloc_bytes"
        );
        assert_eq!(
            n.name("tribune.blocking.parked", true),
            "tribune.h1.blocking.parked"
        );
    }

    #[test]
    fn config_keys() {
        let mut c = TelemetryConfig::default();
        let v = serde_json::json!({"prometheus_retention_time": "60s", "disable_hostname": true,
            "metrics_prefix": "tb", "statsd_address": "x"});
        let rest = c.merge(&v).unwrap();
        assert_eq!(rest, vec!["statsd_address".to_string()]);
        assert_eq!(c.prometheus_retention_time, Duration::from_secs(60));
        assert!(c.disable_hostname);
        assert_eq!(c.metrics_prefix, "tb");
        let bad = serde_json::json!({"prometheus_retention_time": "soon"});
        assert!(c.merge(&bad).is_err());
    }
}
