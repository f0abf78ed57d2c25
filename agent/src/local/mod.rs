//! The agent's own services and checks.
//!
//! - [`defs`]: parsing and validating definitions.
//! - [`probe`]: running one HTTP/TCP/gRPC/script probe.
//! - [`sync`]: anti-entropy — keeps this node's catalog entries equal to
//!   the local state, writing through raft only what differs.
//!
//! Services and checks come from HTTP registration or from config files;
//! a reload replaces the config-file ones and leaves HTTP ones alone.

pub mod defs;
pub mod probe;
pub mod sync;
mod timers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::catalog::{CheckRec, ServiceAddress, ServiceRec};
use crate::state::Health;
pub use defs::{CheckDef, DefError, Probe, ServiceDef};
pub use probe::MAX_OUTPUT;

/// Where a definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Http,
    Config,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Invalid(#[from] DefError),
    #[error("Unknown service ID {0:?}")]
    UnknownService(String),
    #[error("Unknown check ID {0:?}")]
    UnknownCheck(String),
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
}

/// Shortest probe interval (Consul's `checks.MinInterval`): a shorter one is
/// raised to it, with a warning.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Whether `def` is probed on an interval (HTTP, TCP, gRPC, script).
fn probed(def: &CheckDef) -> bool {
    matches!(
        def.probe,
        Probe::Http { .. } | Probe::Tcp { .. } | Probe::Grpc { .. } | Probe::Script { .. }
    )
}

/// `def` as it runs: a probed check's interval is at least [`MIN_INTERVAL`].
fn clamped(mut def: CheckDef) -> CheckDef {
    if probed(&def) && def.interval < MIN_INTERVAL {
        def.interval = MIN_INTERVAL;
    }
    def
}

pub fn cap_output(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let total = s.len();
        let mut cut = MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(&format!(" ... (captured {cut} of {total} bytes)"));
    }
    s
}

struct LocalService {
    def: ServiceDef,
    source: Source,
}

struct LocalCheck {
    def: CheckDef,
    source: Source,
    status: Health,
    /// The latest output, shown by the agent's own endpoints.
    output: String,
    /// The output anti-entropy writes to the catalog: it follows `output`
    /// at once on a status change, else when `output_due` passes.
    synced_output: String,
    /// When a pending output-only change goes to the catalog.
    output_due: Option<Instant>,
    /// No result applied yet: the first one is written at once, so a check
    /// failing from the start shows why without waiting for the interval.
    fresh: bool,
    /// Distinguishes re-registrations so stale probe tasks are ignored.
    generation: u64,
    task: Option<CancellationToken>,
    ttl_deadline: Option<Instant>,
    critical_since: Option<Instant>,
    successes: u32,
    failures: u32,
}

impl Drop for LocalCheck {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.cancel();
        }
    }
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
    generation: u64,
    armed: timers::Armed,
}

impl LocalCheck {
    /// When this check next needs the agent's attention, if ever: its TTL
    /// runs out, a deferred output write falls due, or its service has been
    /// critical for DeregisterCriticalServiceAfter.
    fn deadlines(&self) -> impl Iterator<Item = Instant> {
        let reap = match (self.def.deregister_after, self.critical_since) {
            (Some(after), Some(since))
                if self.status == Health::Critical && !self.def.service_id.is_empty() =>
            {
                since.checked_add(after)
            }
            _ => None,
        };
        [self.ttl_deadline, self.output_due, reap]
            .into_iter()
            .flatten()
    }
}

impl Inner {
    /// Arm the scheduler for the check `id`'s next deadline.
    fn arm(&mut self, id: &str) {
        let next = self.checks.get(id).and_then(|c| c.deadlines().min());
        if let Some(at) = next {
            self.armed.arm(at);
        }
    }
}

/// A check as reported by `/v1/agent/checks` and synced to the catalog.
#[derive(Clone, Debug)]
pub struct CheckView {
    pub def: CheckDef,
    pub status: Health,
    /// The latest output.
    pub output: String,
    /// The output the catalog gets (see `check_update_interval`).
    pub synced_output: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
}

impl CheckView {
    /// The check as the catalog should hold it: output-only changes wait
    /// for `check_update_interval`.
    pub fn catalog_rec(&self, node: &str) -> CheckRec {
        CheckRec {
            output: self.synced_output.clone(),
            ..self.to_rec(node)
        }
    }

    /// The check as the local agent reports it, with the latest output.
    pub fn to_rec(&self, node: &str) -> CheckRec {
        CheckRec {
            node: node.to_string(),
            check_id: self.def.id.clone(),
            name: self.def.name.clone(),
            status: self.status,
            notes: self.def.notes.clone(),
            output: self.output.clone(),
            service_id: self.def.service_id.clone(),
            service_name: self.service_name.clone(),
            service_tags: self.service_tags.clone(),
            kind: self.def.probe.kind().to_string(),
            interval: fmt_duration(self.def.interval),
            timeout: if matches!(self.def.probe, Probe::Ttl { .. } | Probe::Maintenance) {
                String::new()
            } else {
                fmt_duration(self.def.timeout)
            },
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// Consul's short form of a check's interval or timeout.
pub use gocompat::duration::short as fmt_duration;

pub fn service_rec(d: &ServiceDef) -> ServiceRec {
    ServiceRec {
        id: d.id.clone(),
        service: d.name.clone(),
        tags: d.tags.clone(),
        address: d.address.clone(),
        port: d.port,
        meta: d.meta.clone(),
        tagged_addresses: d.tagged_addresses.clone(),
        weights: d.weights,
        enable_tag_override: d.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    }
}

pub const NODE_MAINT: &str = "_node_maintenance";
/// Service maintenance checks are `_service_maintenance:<service id>`.
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

pub fn service_maint_id(id: &str) -> String {
    format!("{SERVICE_MAINT_PREFIX}{id}")
}

/// A maintenance check (of the node or of a service), which the agent
/// owns: never replaced by a definition, and critical by design.
pub fn is_maintenance(check_id: &str) -> bool {
    check_id == NODE_MAINT || check_id.starts_with(SERVICE_MAINT_PREFIX)
}
const DEFAULT_MAINT_REASON_NODE: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_MAINT_REASON_SVC: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Tag an IP service address as `lan_ipv4`/`wan_ipv4` (`lan_ipv6`/`wan_ipv6`)
/// unless the definition sets those itself, as Consul's agent does for
/// every service it registers.
fn default_tagged_addresses(def: &mut ServiceDef) {
    let Ok(ip) = def.address.parse::<std::net::IpAddr>() else {
        return;
    };
    // Go's To4 treats a v4-mapped v6 address as v4.
    let v4 = match ip {
        std::net::IpAddr::V4(_) => true,
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    let keys = if v4 {
        ["lan_ipv4", "wan_ipv4"]
    } else {
        ["lan_ipv6", "wan_ipv6"]
    };
    for k in keys {
        def.tagged_addresses
            .entry(k.into())
            .or_insert_with(|| ServiceAddress {
                address: def.address.clone(),
                port: def.port,
            });
    }
}

/// Longest DNS label.
const DNS_LABEL_MAX: usize = 63;

/// Consul accepts a service DNS cannot serve (`redis.db`, `my_svc`) and
/// says so: a warning for the name, a debug line for each such tag, in
/// Consul's words.
fn warn_dns_names(def: &ServiceDef) {
    let bad_chars = |s: &str| !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if bad_chars(&def.name) {
        tracing::warn!(
            service = %def.name,
            "Service name will not be discoverable via DNS due to invalid characters. \
             Valid characters include all alpha-numerics and dashes."
        );
    } else if def.name.len() > DNS_LABEL_MAX {
        tracing::warn!(
            service = %def.name,
            "Service name will not be discoverable via DNS due to it being too long. \
             Valid lengths are between 1 and 63 bytes."
        );
    }
    for tag in &def.tags {
        if bad_chars(tag) {
            tracing::debug!(
                tag = %tag,
                "Service tag will not be discoverable via DNS due to invalid characters. \
                 Valid characters include all alpha-numerics and dashes."
            );
        } else if tag.len() > DNS_LABEL_MAX {
            tracing::debug!(
                tag = %tag,
                "Service tag will not be discoverable via DNS due to it being too long. \
                 Valid lengths are between 1 and 63 bytes."
            );
        }
    }
}

/// The local agent: its services, checks and their runners.
pub struct LocalAgent {
    pub script_checks: bool,
    /// Output-only changes reach the catalog at most this often.
    check_update_interval: Duration,
    inner: Mutex<Inner>,
    /// Wakes the anti-entropy sync after any local change.
    pub changed: Notify,
    /// Counts local changes, for readers that wait on one (hash-blocking
    /// `/v1/agent/service/<id>`).
    revision: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
    http: probe::HttpClients,
}

impl LocalAgent {
    pub fn new(
        script_checks: bool,
        check_update_interval: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let inner = Inner::default();
        let wake = inner.armed.waker();
        let agent = Arc::new(Self {
            script_checks,
            check_update_interval,
            inner: Mutex::new(inner),
            changed: Notify::new(),
            revision: tokio::sync::watch::Sender::new(0),
            shutdown: shutdown.clone(),
            http: probe::HttpClients::new(),
        });
        tokio::spawn(timers::run(Arc::downgrade(&agent), wake, shutdown));
        agent
    }

    fn notify(&self) {
        self.changed.notify_one();
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    /// A receiver that sees every later local change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Register (or replace) a service and its checks.
    pub fn add_service(
        self: &Arc<Self>,
        mut def: ServiceDef,
        source: Source,
        replace_checks: bool,
    ) {
        default_tagged_addresses(&mut def);
        warn_dns_names(&def);
        let checks = std::mem::take(&mut def.checks);
        let id = def.id.clone();
        {
            let mut inner = self.inner.lock();
            inner
                .services
                .insert(id.clone(), LocalService { def, source });
            if replace_checks {
                let keep: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
                inner.checks.retain(|cid, c| {
                    c.def.service_id != id || keep.contains(&cid.as_str()) || is_maintenance(cid)
                });
            }
        }
        for c in checks {
            self.insert_check(c, source);
        }
        self.notify();
    }

    pub fn remove_service(&self, id: &str) -> Result<(), LocalError> {
        let mut inner = self.inner.lock();
        if inner.services.remove(id).is_none() {
            return Err(LocalError::UnknownService(id.to_string()));
        }
        inner.checks.retain(|_, c| c.def.service_id != id);
        drop(inner);
        self.notify();
        Ok(())
    }

    /// Register (or replace) a standalone check.
    pub fn add_check(self: &Arc<Self>, def: CheckDef, source: Source) -> Result<(), LocalError> {
        if !def.service_id.is_empty() && !self.inner.lock().services.contains_key(&def.service_id) {
            return Err(DefError(format!("ServiceID {:?} does not exist", def.service_id)).into());
        }
        self.insert_check(def, source);
        self.notify();
        Ok(())
    }

    fn insert_check(self: &Arc<Self>, def: CheckDef, source: Source) {
        if probed(&def) && def.interval < MIN_INTERVAL {
            tracing::warn!(check = %def.id, minimum_interval = %fmt_duration(MIN_INTERVAL), "check has interval below minimum");
        }
        let def = clamped(def);
        let mut inner = self.inner.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let task = probed(&def).then(|| {
            let token = self.shutdown.child_token();
            tokio::spawn(run_probe(
                Arc::downgrade(self),
                def.clone(),
                generation,
                token.clone(),
            ));
            token
        });
        let ttl_deadline = match def.probe {
            Probe::Ttl { ttl } => Some(Instant::now() + ttl),
            _ => None,
        };
        let status = def.initial;
        let critical_since = (status == Health::Critical).then(Instant::now);
        let output = match def.probe {
            Probe::Maintenance => def.notes.clone(),
            _ => String::new(),
        };
        let id = def.id.clone();
        inner.checks.insert(
            id.clone(),
            LocalCheck {
                def,
                source,
                status,
                synced_output: output.clone(),
                output,
                output_due: None,
                fresh: true,
                generation,
                task,
                ttl_deadline,
                critical_since,
                successes: 0,
                failures: 0,
            },
        );
        inner.arm(&id);
    }

    pub fn remove_check(&self, id: &str) -> Result<(), LocalError> {
        if self.inner.lock().checks.remove(id).is_none() {
            return Err(LocalError::UnknownCheck(id.to_string()));
        }
        self.notify();
        Ok(())
    }

    /// TTL check update (`pass`/`warn`/`fail`/`update`).
    pub fn ttl_update(&self, id: &str, status: Health, output: String) -> Result<(), LocalError> {
        let mut inner = self.inner.lock();
        let c = inner
            .checks
            .get_mut(id)
            .ok_or_else(|| LocalError::UnknownCheck(id.to_string()))?;
        let Probe::Ttl { ttl } = c.def.probe else {
            return Err(LocalError::NotTtl(id.to_string()));
        };
        c.ttl_deadline = Some(Instant::now() + ttl);
        let changed = apply_result(c, status, cap_output(output), self.check_update_interval);
        inner.arm(id);
        drop(inner);
        if changed {
            self.notify();
        }
        Ok(())
    }

    /// A probe finished; thresholds decide whether the status changes.
    fn probe_result(&self, id: &str, generation: u64, status: Health, output: String) {
        let mut inner = self.inner.lock();
        let Some(c) = inner
            .checks
            .get_mut(id)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        let changed = apply_result(c, status, cap_output(output), self.check_update_interval);
        inner.arm(id);
        drop(inner);
        if changed {
            self.notify();
        }
    }

    pub fn set_node_maintenance(self: &Arc<Self>, enable: bool, reason: &str) {
        if enable {
            let notes = if reason.is_empty() {
                DEFAULT_MAINT_REASON_NODE
            } else {
                reason
            };
            self.insert_check(
                maint_check(NODE_MAINT, "Node Maintenance Mode", "", notes),
                Source::Http,
            );
        } else {
            self.inner.lock().checks.remove(NODE_MAINT);
        }
        self.notify();
    }

    pub fn set_service_maintenance(
        self: &Arc<Self>,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), LocalError> {
        if !self.inner.lock().services.contains_key(id) {
            return Err(LocalError::UnknownService(id.to_string()));
        }
        let cid = service_maint_id(id);
        if enable {
            let notes = if reason.is_empty() {
                DEFAULT_MAINT_REASON_SVC
            } else {
                reason
            };
            self.insert_check(
                maint_check(&cid, "Service Maintenance Mode", id, notes),
                Source::Http,
            );
        } else {
            self.inner.lock().checks.remove(&cid);
        }
        self.notify();
        Ok(())
    }

    pub fn services(&self) -> Vec<ServiceDef> {
        self.inner
            .lock()
            .services
            .values()
            .map(|s| s.def.clone())
            .collect()
    }

    pub fn service(&self, id: &str) -> Option<ServiceDef> {
        self.inner.lock().services.get(id).map(|s| s.def.clone())
    }

    pub fn checks(&self) -> Vec<CheckView> {
        let inner = self.inner.lock();
        inner
            .checks
            .values()
            .map(|c| {
                let svc = inner.services.get(&c.def.service_id);
                CheckView {
                    def: c.def.clone(),
                    status: c.status,
                    output: c.output.clone(),
                    synced_output: c.synced_output.clone(),
                    service_name: svc.map(|s| s.def.name.clone()).unwrap_or_default(),
                    service_tags: svc.map(|s| s.def.tags.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Replace every config-file definition with `services` and `checks`.
    /// HTTP-registered services and checks are left alone.
    pub fn reload(self: &Arc<Self>, services: Vec<ServiceDef>, checks: Vec<CheckDef>) {
        let (stale_services, stale_checks, current_services, current_checks) = {
            let inner = self.inner.lock();
            let stale_s: Vec<String> = inner
                .services
                .iter()
                .filter(|(id, s)| {
                    s.source == Source::Config && !services.iter().any(|n| &n.id == *id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let stale_c: Vec<String> = inner
                .checks
                .iter()
                .filter(|(id, c)| {
                    c.source == Source::Config
                        && !checks.iter().any(|n| &n.id == *id)
                        && !services
                            .iter()
                            .flat_map(|s| s.checks.iter())
                            .any(|n| &n.id == *id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let cur_s: BTreeMap<String, ServiceDef> = inner
                .services
                .iter()
                .map(|(id, s)| (id.clone(), s.def.clone()))
                .collect();
            let cur_c: BTreeMap<String, CheckDef> = inner
                .checks
                .iter()
                .map(|(id, c)| (id.clone(), c.def.clone()))
                .collect();
            (stale_s, stale_c, cur_s, cur_c)
        };
        for id in stale_services {
            tracing::info!(service = %id, "reload: removing service");
            let _ = self.remove_service(&id);
        }
        for id in stale_checks {
            tracing::info!(check = %id, "reload: removing check");
            let _ = self.remove_check(&id);
        }
        for s in services {
            let mut bare = s.clone();
            bare.checks.clear();
            default_tagged_addresses(&mut bare);
            let same_service = current_services.get(&s.id) == Some(&bare);
            // Running checks hold clamped intervals: compare like with like.
            let same_checks = s
                .checks
                .iter()
                .all(|c| current_checks.get(&c.id) == Some(&clamped(c.clone())));
            if same_service && same_checks {
                // Unchanged: keep running checks and their state.
                if let Some(ls) = self.inner.lock().services.get_mut(&s.id) {
                    ls.source = Source::Config;
                }
                continue;
            }
            tracing::info!(service = %s.id, "reload: registering service");
            self.add_service(s, Source::Config, true);
        }
        for c in checks {
            if current_checks.get(&c.id) == Some(&clamped(c.clone())) {
                continue;
            }
            tracing::info!(check = %c.id, "reload: registering check");
            if let Err(e) = self.add_check(c, Source::Config) {
                tracing::warn!(error = %e, "reload: check refused");
            }
        }
        self.notify();
    }

    /// Act on every deadline that has passed (expire TTLs, write deferred
    /// output, reap services critical for longer than their
    /// DeregisterCriticalServiceAfter); returns the next deadline.
    fn expire_due(&self, now: Instant) -> Option<Instant> {
        let mut changed = false;
        let mut reap = Vec::new();
        {
            let mut inner = self.inner.lock();
            for c in inner.checks.values_mut() {
                if c.ttl_deadline.is_some_and(|d| now >= d) {
                    c.ttl_deadline = None;
                    if !(c.status == Health::Critical && c.output == "TTL expired") {
                        c.status = Health::Critical;
                        c.output = "TTL expired".into();
                        c.synced_output = c.output.clone();
                        c.output_due = None;
                        c.critical_since.get_or_insert(now);
                        changed = true;
                    }
                }
                if c.output_due.is_some_and(|due| now >= due) {
                    c.output_due = None;
                    c.synced_output = c.output.clone();
                    changed = true;
                }
                if let (Some(after), Some(since)) = (c.def.deregister_after, c.critical_since) {
                    if c.status == Health::Critical
                        && now.duration_since(since) >= after
                        && !c.def.service_id.is_empty()
                    {
                        reap.push(c.def.service_id.clone());
                    }
                }
            }
        }
        for id in reap {
            tracing::info!(service = %id, "deregistering service: critical for longer than DeregisterCriticalServiceAfter");
            let _ = self.remove_service(&id);
        }
        if changed {
            self.notify();
        }
        // Only future deadlines: one already acted on never spins the loop.
        let mut inner = self.inner.lock();
        let next = inner
            .checks
            .values()
            .flat_map(LocalCheck::deadlines)
            .filter(|d| *d > now)
            .min();
        inner.armed.set(next);
        next
    }
}

impl timers::Expire for LocalAgent {
    fn expire(&self, now: Instant) -> Option<Instant> {
        self.expire_due(now)
    }
}

fn maint_check(id: &str, name: &str, service_id: &str, notes: &str) -> CheckDef {
    CheckDef {
        id: id.into(),
        name: name.into(),
        service_id: service_id.into(),
        notes: notes.into(),
        initial: Health::Critical,
        probe: Probe::Maintenance,
        interval: Duration::ZERO,
        timeout: Duration::ZERO,
        deregister_after: None,
        success_before_passing: 0,
        failures_before_critical: 0,
    }
}

/// Apply a result through SuccessBeforePassing / FailuresBeforeCritical.
/// Returns whether the catalog must be synced now: a status change goes at
/// once; an output-only change waits `update_interval` (Consul's
/// `check_update_interval`: half of it plus a random part up to all of it),
/// and then the output of that moment is written.
fn apply_result(
    c: &mut LocalCheck,
    status: Health,
    output: String,
    update_interval: Duration,
) -> bool {
    if matches!(status, Health::Passing | Health::Warning) {
        c.successes = c.successes.saturating_add(1);
        c.failures = 0;
        if c.successes < c.def.success_before_passing {
            return false;
        }
    } else {
        c.failures = c.failures.saturating_add(1);
        c.successes = 0;
        if c.failures < c.def.failures_before_critical {
            return false;
        }
    }
    if c.status == status && c.output == output {
        return false;
    }
    if status == Health::Critical {
        c.critical_since.get_or_insert_with(Instant::now);
    } else {
        c.critical_since = None;
    }
    let fresh = std::mem::take(&mut c.fresh);
    if c.status == status && !update_interval.is_zero() && !fresh {
        c.output = output;
        if c.output_due.is_none() {
            let half = update_interval / 2;
            let stagger = rand::thread_rng().gen_range(Duration::ZERO..=update_interval);
            c.output_due = Some(Instant::now() + half + stagger);
        }
        return false;
    }
    if c.status != status {
        tracing::debug!(check = %c.def.id, from = c.status.as_str(), to = status.as_str(), "check status");
    }
    c.status = status;
    c.synced_output = output.clone();
    c.output = output;
    c.output_due = None;
    true
}

async fn run_probe(
    agent: std::sync::Weak<LocalAgent>,
    def: CheckDef,
    generation: u64,
    stop: CancellationToken,
) {
    // Random stagger so checks registered together do not probe in lockstep.
    let stagger = if def.interval.as_millis() > 0 {
        Duration::from_millis(
            rand::thread_rng().gen_range(0..def.interval.as_millis().min(30_000) as u64 + 1),
        )
    } else {
        Duration::ZERO
    };
    tokio::select! {
        _ = tokio::time::sleep(stagger.min(def.interval)) => {}
        _ = stop.cancelled() => return,
    }
    let mut state = probe::ProbeState::default();
    loop {
        let http = match agent.upgrade() {
            Some(a) => a.http.clone(),
            None => return,
        };
        let result = tokio::select! {
            r = probe::run(&def, &http, &mut state) => r,
            _ = stop.cancelled() => return,
        };
        match agent.upgrade() {
            Some(a) => a.probe_result(&def.id, generation, result.0, result.1),
            None => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(def.interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Parse a catalog-API check (`{"CheckID","Name","Status","ServiceID",...}`,
/// keys already normalized) for node `node`.
pub fn parse_check_rec(v: &serde_json::Value, node: &str) -> Result<CheckRec, DefError> {
    let o = v
        .as_object()
        .ok_or_else(|| DefError("Check must be an object".into()))?;
    let s = |k: &str| -> Result<String, DefError> {
        match o.get(k) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(DefError(format!("Check: {k} must be a string"))),
        }
    };
    let name = s("name")?;
    let id = match s("checkid")? {
        x if x.is_empty() => name.clone(),
        x => x,
    };
    if id.is_empty() {
        return Err(DefError("Check: missing CheckID and Name".into()));
    }
    let status = match s("status")? {
        x if x.is_empty() => Health::Critical,
        x => Health::parse(&x)
            .filter(|h| *h != Health::Maintenance)
            .ok_or_else(|| DefError(format!("Check: invalid status {x:?}")))?,
    };
    let check_node = s("node")?;
    if !check_node.is_empty() && check_node != node {
        return Err(DefError(format!(
            "Check node {check_node:?} does not match {node:?}"
        )));
    }
    Ok(CheckRec {
        node: node.to_string(),
        check_id: id,
        name,
        status,
        notes: s("notes")?,
        output: cap_output(s("output")?),
        service_id: s("serviceid")?,
        service_name: String::new(),
        service_tags: vec![],
        kind: s("type")?,
        interval: String::new(),
        timeout: String::new(),
        create_index: 0,
        modify_index: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_caps() {
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::ZERO), "");
        let long = "é".repeat(3000);
        let capped = cap_output(long);
        assert!(capped.len() < MAX_OUTPUT + 64);
        assert!(capped.contains("captured"));
    }

    fn ttl_check(sbp: u32, fbc: u32) -> LocalCheck {
        LocalCheck {
            def: CheckDef {
                id: "c".into(),
                name: "c".into(),
                service_id: String::new(),
                notes: String::new(),
                initial: Health::Critical,
                probe: Probe::Ttl {
                    ttl: Duration::from_secs(5),
                },
                interval: Duration::ZERO,
                timeout: Duration::ZERO,
                deregister_after: None,
                success_before_passing: sbp,
                failures_before_critical: fbc,
            },
            source: Source::Http,
            status: Health::Critical,
            output: String::new(),
            synced_output: String::new(),
            output_due: None,
            fresh: false,
            generation: 0,
            task: None,
            ttl_deadline: None,
            critical_since: None,
            successes: 0,
            failures: 0,
        }
    }

    /// SuccessBeforePassing and FailuresBeforeCritical hold a status until reached.
    #[test]
    fn thresholds() {
        let mut c = ttl_check(2, 3);
        assert!(!apply_result(
            &mut c,
            Health::Passing,
            "ok".into(),
            Duration::ZERO
        ));
        assert_eq!(c.status, Health::Critical);
        assert!(apply_result(
            &mut c,
            Health::Passing,
            "ok".into(),
            Duration::ZERO
        ));
        assert_eq!(c.status, Health::Passing);
        assert!(!apply_result(
            &mut c,
            Health::Critical,
            "bad".into(),
            Duration::ZERO
        ));
        assert!(!apply_result(
            &mut c,
            Health::Critical,
            "bad".into(),
            Duration::ZERO
        ));
        assert!(apply_result(
            &mut c,
            Health::Critical,
            "bad".into(),
            Duration::ZERO
        ));
        assert_eq!(c.status, Health::Critical);
        // unchanged result: no change reported
        assert!(!apply_result(
            &mut c,
            Health::Critical,
            "bad".into(),
            Duration::ZERO
        ));
    }

    /// A status change reaches the catalog view at once; an output-only
    /// change waits for `check_update_interval`, then carries the latest output.
    #[test]
    fn output_only_changes_are_deferred() {
        let every = Duration::from_secs(60);
        let mut c = ttl_check(0, 0);
        assert!(apply_result(&mut c, Health::Passing, "one".into(), every));
        assert_eq!(
            (c.status, c.synced_output.as_str()),
            (Health::Passing, "one")
        );
        assert!(!apply_result(&mut c, Health::Passing, "two".into(), every));
        assert!(!apply_result(
            &mut c,
            Health::Passing,
            "three".into(),
            every
        ));
        assert_eq!(
            (c.output.as_str(), c.synced_output.as_str()),
            ("three", "one")
        );
        let due = c.output_due.expect("a deferred write is scheduled");
        let wait = due.saturating_duration_since(Instant::now());
        assert!(
            wait >= every / 2 - Duration::from_secs(1) && wait <= every * 3 / 2,
            "{wait:?}"
        );
        // the status changes: written at once with the latest output, nothing pending
        assert!(apply_result(&mut c, Health::Critical, "down".into(), every));
        assert_eq!(c.synced_output, "down");
        assert_eq!(c.output_due, None);
    }

    /// Probed checks run no more often than once a second.
    #[test]
    fn intervals_are_clamped() {
        let mut d = ttl_check(0, 0).def.clone();
        d.probe = Probe::Tcp {
            addr: "127.0.0.1:1".into(),
        };
        d.interval = Duration::from_nanos(1);
        assert_eq!(clamped(d.clone()).interval, MIN_INTERVAL);
        d.interval = Duration::from_secs(5);
        assert_eq!(clamped(d).interval, Duration::from_secs(5));
        // TTL checks have no interval to clamp
        assert_eq!(
            clamped(ttl_check(0, 0).def.clone()).interval,
            Duration::ZERO
        );
    }

    /// A TTL runs out on its own timer, not on a tick: a 100 ms TTL is
    /// critical 100 ms after the last pass (the tick made it 100-200 ms).
    #[tokio::test]
    async fn ttl_expires_on_time() {
        let stop = CancellationToken::new();
        let agent = LocalAgent::new(false, Duration::ZERO, stop.clone());
        let mut def = ttl_check(0, 0).def.clone();
        def.probe = Probe::Ttl {
            ttl: Duration::from_millis(100),
        };
        agent.add_check(def, Source::Http).unwrap();
        for _ in 0..5 {
            agent.ttl_update("c", Health::Passing, "ok".into()).unwrap();
            let t = Instant::now();
            while agent.checks()[0].status != Health::Critical {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let took = t.elapsed();
            assert!(
                took >= Duration::from_millis(100) && took < Duration::from_millis(115),
                "{took:?}"
            );
            assert_eq!(agent.checks()[0].output, "TTL expired");
        }
        // Nothing is due any more: the scheduler sleeps.
        assert_eq!(agent.expire_due(Instant::now()), None);
        stop.cancel();
    }

    /// A reload of an unchanged definition whose interval was raised keeps
    /// the running check (it is compared as it runs, not as written).
    #[tokio::test]
    async fn reload_keeps_a_clamped_check() {
        let stop = CancellationToken::new();
        let agent = LocalAgent::new(false, Duration::ZERO, stop.clone());
        let svc = defs::parse_service(
            &serde_json::json!({"Name": "s", "Check": {"TCP": "127.0.0.1:1", "Interval": "100ms"}}),
            false,
        )
        .unwrap();
        let generation = |a: &LocalAgent| a.inner.lock().checks["service:s"].generation;
        agent.reload(vec![svc.clone()], vec![]);
        let first = generation(&agent);
        assert_eq!(agent.checks()[0].def.interval, MIN_INTERVAL);
        agent.reload(vec![svc], vec![]);
        assert_eq!(generation(&agent), first, "the check was restarted");
        stop.cancel();
    }
}
