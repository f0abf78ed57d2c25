//! Agent configuration: defaults, then config files (`-config-file`, then
//! `*.json`/`*.hcl` of `-config-dir` in name order), then command-line flags.
//! A key Consul does not know is an error naming it, as Consul's
//! `invalid config key X`; a Consul key tribune does not implement is a
//! warning, so an existing Consul config still loads.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::consul_keys;

pub mod security;
use gocompat::duration::parse_duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("invalid value for {key}: {msg}")]
    Invalid { key: String, msg: String },
    #[error("{0}")]
    Conflict(String),
    #[error("failed to parse {}: invalid config key {key}", path.display())]
    UnknownKey { path: PathBuf, key: String },
    #[error("node_meta invalid: {0}")]
    NodeMeta(crate::local::defs::MetaError),
    #[error("{0}")]
    Address(#[from] crate::sockaddr::SockaddrError),
    #[error("{0}")]
    Security(#[from] security::SecurityConfigError),
}

/// The address settings as written (go-sockaddr templates allowed), which
/// [`AgentConfig::load`] resolves into `bind_addr`, `client_addr` and
/// `advertise_addr`.
#[derive(Clone, Debug, Default)]
pub struct WrittenAddrs {
    pub bind: Option<String>,
    pub client: Option<String>,
    pub advertise: Option<String>,
}

/// Listener ports; -1 disables one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub http: i32,
    pub dns: i32,
    pub server: i32,
    pub serf_lan: i32,
    pub serf_wan: i32,
    /// The HTTPS API (Consul's default -1: off; 8501 by convention).
    pub https: i32,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            http: 8500,
            dns: 8600,
            server: 8300,
            serf_lan: 8301,
            serf_wan: 8302,
            https: -1,
        }
    }
}

/// DNS interface settings (`dns_config`, `recursors`, `domain`).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsConfig {
    pub domain: String,
    pub node_ttl: Duration,
    /// Per-service TTL; key `*` is the default.
    pub service_ttl: BTreeMap<String, Duration>,
    pub recursors: Vec<SocketAddr>,
    pub only_passing: bool,
    /// Answers in a UDP reply to a query without EDNS (Consul's default 3;
    /// at most 8 in any case).
    pub udp_answer_limit: usize,
    /// A/AAAA records in a service answer, UDP or TCP (0: no limit).
    pub a_record_limit: usize,
    /// Set TC when `udp_answer_limit` drops answers, so clients retry over
    /// TCP (answers cut to fit the size always get TC).
    pub enable_truncate: bool,
    /// Any server may answer from its own state (Consul's default); off,
    /// the leader answers every lookup.
    pub allow_stale: bool,
    /// A stale answer whose server heard from the leader longer ago than
    /// this is asked again of the leader (Consul's default: 87600h).
    pub max_stale: Duration,
    /// A client agent answers service lookups from its agent cache (kept
    /// fresh by a background blocking query) instead of asking a server
    /// each time.
    pub use_cache: bool,
    /// With `use_cache`: an entry older than this is fetched again (0: no
    /// limit).
    pub cache_max_age: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            domain: "consul".into(),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            recursors: Vec::new(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            use_cache: false,
            cache_max_age: Duration::ZERO,
        }
    }
}

impl DnsConfig {
    /// Keys are lowercase; so is `name` when it comes from a DNS query.
    pub fn service_ttl(&self, name: &str) -> Duration {
        self.service_ttl
            .get(name)
            .or_else(|| self.service_ttl.get("*"))
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

/// Parse a recursor address; port 53 when none is given.
pub fn parse_recursor(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The resolved agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub dev: bool,
    pub server: bool,
    /// Form a cluster of this one server at once (`-bootstrap`).
    pub bootstrap: bool,
    pub bootstrap_expect: Option<u32>,
    pub data_dir: Option<PathBuf>,
    pub node_name: String,
    pub datacenter: String,
    pub bind_addr: IpAddr,
    pub client_addr: IpAddr,
    pub ports: Ports,
    pub raft_multiplier: u64,
    /// Raft entries between snapshots (Consul's `raft_snapshot_threshold`).
    pub raft_snapshot_threshold: u64,
    pub enable_script_checks: bool,
    pub ui: bool,
    pub log_level: String,
    /// JSON log lines (`-log-json`, `log_json`).
    pub log_json: bool,
    /// Also log to this file (`-log-file`, `log_file`), rotated by `log_rotate`.
    pub log_file: Option<PathBuf>,
    /// `log_rotate_bytes`, `log_rotate_duration`, `log_rotate_max_files`.
    pub log_rotate: crate::logging::Rotation,
    /// Set when bound to `0.0.0.0` or `::` (detected as Consul does).
    pub advertise_addr: Option<IpAddr>,
    /// The three addresses above as written.
    pub written_addrs: WrittenAddrs,
    pub node_meta: BTreeMap<String, String>,
    /// Raw `service`/`services` and `check`/`checks` definitions from files,
    /// parsed (and validated) when the agent applies them.
    pub service_defs: Vec<Value>,
    pub check_defs: Vec<Value>,
    /// Raw `watches` definitions, parsed by [`crate::watchplan`] at start.
    pub watch_defs: Vec<Value>,
    pub dns: DnsConfig,
    /// A check whose output changes but not its status is written to the
    /// catalog at most this often (Consul's `check_update_interval`; 0: at once).
    pub check_update_interval: Duration,
    /// Gossip addresses to join at start (`-join`, `start_join`): failing is fatal.
    pub start_join: Vec<String>,
    /// Gossip addresses to join at start, retried until one answers.
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    /// A server's WAN pool joins (`-join-wan`, `start_join_wan`: fatal),
    /// `-retry-join-wan` / `retry_join_wan`, and its retry interval.
    pub start_join_wan: Vec<String>,
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: Duration,
    /// Rejoin the remembered peers even after a graceful leave (`-rejoin`).
    pub rejoin_after_leave: bool,
    /// How long a failed member is remembered before it is reaped.
    pub reconnect_timeout: Duration,
    /// Leave gracefully on SIGTERM (default: clients yes, servers no).
    pub leave_on_terminate: Option<bool>,
    /// Skip the graceful leave on SIGINT (default: servers yes, clients no).
    pub skip_leave_on_interrupt: Option<bool>,
    /// Where the agent writes its process id (`-pid-file`, `pid_file`).
    pub pid_file: Option<PathBuf>,
    /// Connection limits and timeouts (`limits`).
    pub limits: crate::limits::Limits,
    /// Metrics (`telemetry`).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The datacenter whose ACLs are authoritative (`primary_datacenter`;
    /// `None`: this one). Other datacenters' leaders replicate from it.
    pub primary_datacenter: Option<String>,
    /// ACLs (`acl`, and the legacy `acl_*` keys).
    pub acl: crate::acl::config::AclConfig,
    /// Ignore `tribune exec` requests (Consul's `disable_remote_exec`,
    /// default true: running commands from the network is opt-in).
    pub disable_remote_exec: bool,
    /// Network coordinates (`disable_coordinates`, `sync_coordinate_*`,
    /// `coordinate_update_period`).
    pub coordinates: crate::coordinate::sync::CoordConfig,
    /// Gossip encryption and TLS (`encrypt`, `tls`).
    pub security: security::Security,
    /// The agent cache's cap in bytes (`cache.max_bytes`, tribune's own;
    /// least recently used entries go first).
    pub cache_max_bytes: usize,
    /// Problems worth a warning (unknown keys...), logged once tracing is up.
    pub warnings: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: None,
            data_dir: None,
            node_name: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "tribune".into()),
            datacenter: "dc1".into(),
            bind_addr: IpAddr::from([127, 0, 0, 1]),
            client_addr: IpAddr::from([127, 0, 0, 1]),
            ports: Ports::default(),
            raft_multiplier: 5,
            raft_snapshot_threshold: 8192,
            enable_script_checks: false,
            ui: false,
            log_level: "info".into(),
            log_json: false,
            log_file: None,
            log_rotate: crate::logging::Rotation::default(),
            advertise_addr: None,
            written_addrs: WrittenAddrs::default(),
            node_meta: BTreeMap::new(),
            service_defs: Vec::new(),
            check_defs: Vec::new(),
            watch_defs: Vec::new(),
            dns: DnsConfig::default(),
            check_update_interval: Duration::from_secs(300),
            start_join: Vec::new(),
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            start_join_wan: Vec::new(),
            retry_join_wan: Vec::new(),
            retry_interval_wan: Duration::from_secs(30),
            rejoin_after_leave: false,
            reconnect_timeout: Duration::from_secs(72 * 3600),
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            pid_file: None,
            limits: crate::limits::Limits::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            primary_datacenter: None,
            acl: Default::default(),
            disable_remote_exec: true,
            coordinates: Default::default(),
            security: security::Security::default(),
            cache_max_bytes: crate::pipeline::cache::DEFAULT_MAX_BYTES,
            warnings: Vec::new(),
        }
    }
}

/// Values given on the command line (all optional: they override files).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub dev: bool,
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: Option<u32>,
    pub data_dir: Option<PathBuf>,
    pub node: Option<String>,
    pub datacenter: Option<String>,
    pub bind: Option<String>,
    pub client: Option<String>,
    pub http_port: Option<i32>,
    pub dns_port: Option<i32>,
    pub config_dir: Vec<PathBuf>,
    pub config_file: Vec<PathBuf>,
    pub log_level: Option<String>,
    pub log_json: bool,
    pub log_file: Option<PathBuf>,
    pub log_rotate_bytes: Option<u64>,
    pub log_rotate_duration: Option<Duration>,
    pub log_rotate_max_files: Option<i64>,
    pub enable_script_checks: bool,
    pub ui: bool,
    pub recursors: Vec<String>,
    pub advertise: Option<String>,
    pub join: Vec<String>,
    pub retry_join: Vec<String>,
    pub retry_interval: Option<Duration>,
    pub join_wan: Vec<String>,
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: Option<Duration>,
    pub rejoin: bool,
    pub server_port: Option<i32>,
    pub serf_lan_port: Option<i32>,
    pub serf_wan_port: Option<i32>,
    pub pid_file: Option<PathBuf>,
    /// `-encrypt`: the gossip key.
    pub encrypt: Option<String>,
    pub https_port: Option<i32>,
}

impl AgentConfig {
    /// Leave gracefully on this signal? (Consul's defaults: a client leaves,
    /// a server stays a voter so a restart keeps the quorum.)
    pub fn leave_on(&self, interrupt: bool) -> bool {
        if interrupt {
            !self.skip_leave_on_interrupt.unwrap_or(self.server)
        } else {
            self.leave_on_terminate.unwrap_or(!self.server)
        }
    }

    /// This server forms a one-voter cluster by itself (`-bootstrap`,
    /// `-bootstrap-expect 1`, `-dev`) instead of waiting for others.
    pub fn bootstraps_alone(&self) -> bool {
        self.server && (self.dev || self.bootstrap || self.bootstrap_expect == Some(1))
    }

    /// Resolve defaults, files and flags into one configuration.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let mut c = AgentConfig::default();
        if flags.dev {
            c.dev = true;
            c.server = true;
            c.ui = true;
            c.raft_multiplier = 1;
            // A dev agent stands alone: its gossip and RPC ports need not be
            // the well-known ones (many dev agents may share a machine).
            c.ports.server = 0;
            c.ports.serf_lan = 0;
            c.ports.serf_wan = 0;
        }
        let mut files = flags.config_file.clone();
        for dir in &flags.config_dir {
            files.extend(config_dir_files(dir)?);
        }
        for f in &files {
            let v = read_file(f)?;
            c.merge_file(f, &v)?;
        }
        c.apply_flags(flags);
        for r in &flags.recursors {
            let addr = parse_recursor(r).ok_or_else(|| ConfigError::Invalid {
                key: "-recursor".into(),
                msg: format!("{r:?} is not an IP address or ip:port"),
            })?;
            c.dns.recursors.push(addr);
        }
        if c.bootstrap_expect == Some(0) {
            c.bootstrap_expect = None;
        }
        c.resolve_addrs()?;
        c.validate()?;
        c.bootstrap_warnings();
        Ok(c)
    }

    /// Expand the written addresses (go-sockaddr templates) as Consul's
    /// config builder does; bound to `0.0.0.0` (or `::`) with no advertise
    /// address, advertise the host's one private IPv4 (public IPv6) address.
    fn resolve_addrs(&mut self) -> Result<(), ConfigError> {
        use crate::sockaddr::{detect_advertise, expand_ips, expand_one, SockaddrError};
        let w = self.written_addrs.clone();
        if w.bind.is_none() && w.client.is_none() && w.advertise.is_none() {
            return Ok(());
        }
        let fail = |m: &str| ConfigError::Address(SockaddrError::Config(m.into()));
        let env = crate::sockaddr::host_env()?;
        if let Some(b) = &w.bind {
            match expand_ips("bind_addr", b, &env)?.as_slice() {
                [] => return Err(fail("bind_addr cannot be empty")),
                [one] => self.bind_addr = *one,
                _ => return Err(fail(
                    "bind_addr cannot contain multiple addresses. Use 'addresses.{dns,http,https}' instead.",
                )),
            }
        }
        if let Some(c) = &w.client {
            match expand_ips("client_addr", c, &env)?.as_slice() {
                [] => {
                    return Err(fail(
                        "client_addr is empty: the HTTP API and DNS would listen nowhere",
                    ))
                }
                [one] => self.client_addr = *one,
                many => {
                    let list: Vec<String> = many.iter().map(IpAddr::to_string).collect();
                    return Err(fail(&format!(
                        "client_addr: multiple addresses found: {} (tribune listens on one client address)",
                        list.join(" ")
                    )));
                }
            }
        }
        if let Some(a) = &w.advertise {
            if matches!(a.trim(), "0.0.0.0" | "::" | "[::]") {
                return Err(fail("Advertise address cannot be 0.0.0.0, :: or [::]"));
            }
            self.advertise_addr = expand_one("advertise_addr", a, &env)?;
        }
        let advertise = self.advertise_addr.unwrap_or(self.bind_addr);
        if advertise.is_unspecified() {
            self.advertise_addr = Some(detect_advertise(advertise, &env.addrs)?);
        }
        Ok(())
    }

    fn apply_flags(&mut self, f: &Flags) {
        if f.server {
            self.server = true;
        }
        if f.bootstrap {
            self.bootstrap = true;
        }
        if f.bootstrap_expect.is_some() {
            self.bootstrap_expect = f.bootstrap_expect;
        }
        if let Some(d) = &f.data_dir {
            self.data_dir = Some(d.clone());
        }
        if let Some(n) = &f.node {
            self.node_name = n.clone();
        }
        if let Some(d) = &f.datacenter {
            self.datacenter = d.clone();
        }
        if let Some(b) = &f.bind {
            self.written_addrs.bind = Some(b.clone());
        }
        if let Some(c) = &f.client {
            self.written_addrs.client = Some(c.clone());
        }
        if let Some(p) = f.http_port {
            self.ports.http = p;
        }
        if let Some(p) = f.dns_port {
            self.ports.dns = p;
        }
        if let Some(l) = &f.log_level {
            self.log_level = l.clone();
        }
        if f.log_json {
            self.log_json = true;
        }
        if let Some(p) = &f.log_file {
            self.log_file = Some(p.clone());
        }
        if let Some(n) = f.log_rotate_bytes {
            self.log_rotate.max_bytes = n;
        }
        if let Some(d) = f.log_rotate_duration {
            self.log_rotate.duration = d;
        }
        if let Some(n) = f.log_rotate_max_files {
            self.log_rotate.max_files = n;
        }
        if f.enable_script_checks {
            self.enable_script_checks = true;
        }
        if f.ui {
            self.ui = true;
        }
        if let Some(a) = &f.advertise {
            self.written_addrs.advertise = Some(a.clone());
        }
        self.start_join.extend(f.join.iter().cloned());
        self.retry_join.extend(f.retry_join.iter().cloned());
        if let Some(d) = f.retry_interval {
            self.retry_interval = d;
        }
        self.start_join_wan.extend(f.join_wan.iter().cloned());
        self.retry_join_wan.extend(f.retry_join_wan.iter().cloned());
        if let Some(d) = f.retry_interval_wan {
            self.retry_interval_wan = d;
        }
        if f.rejoin {
            self.rejoin_after_leave = true;
        }
        if let Some(p) = f.server_port {
            self.ports.server = p;
        }
        if let Some(p) = f.serf_lan_port {
            self.ports.serf_lan = p;
        }
        if let Some(p) = f.serf_wan_port {
            self.ports.serf_wan = p;
        }
        if let Some(p) = &f.pid_file {
            self.pid_file = Some(p.clone());
        }
        if let Some(k) = &f.encrypt {
            self.security.encrypt = Some(k.clone());
        }
        if let Some(p) = f.https_port {
            self.ports.https = p;
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: &str| ConfigError::Invalid {
            key: key.into(),
            msg: msg.into(),
        };
        if self.node_name.trim().is_empty() {
            return Err(bad("node_name", "must not be empty"));
        }
        if crate::logging::parse_level(&self.log_level).is_none() {
            return Err(bad(
                "log_level",
                &format!(
                    "invalid level {:?}: use trace, debug, info, warn or err",
                    self.log_level
                ),
            ));
        }
        if self.datacenter.is_empty()
            || !self
                .datacenter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("datacenter", "use letters, digits, '-' and '_'"));
        }
        for (name, p) in [
            ("ports.http", self.ports.http),
            ("ports.dns", self.ports.dns),
            ("ports.server", self.ports.server),
            ("ports.serf_lan", self.ports.serf_lan),
            ("ports.serf_wan", self.ports.serf_wan),
            ("ports.https", self.ports.https),
        ] {
            if !(-1..=65535).contains(&p) {
                return Err(bad(name, "must be -1 (off) or 0..65535"));
            }
        }
        if !(1..=10).contains(&self.raft_multiplier) {
            return Err(bad(
                "performance.raft_multiplier",
                "must be between 1 and 10",
            ));
        }
        crate::local::defs::validate_meta(&self.node_meta).map_err(ConfigError::NodeMeta)?;
        self.security.validate(self.ports.https)?;
        if self.server && !self.dev && self.data_dir.is_none() {
            return Err(bad("data_dir", "a server needs -data-dir (or use -dev)"));
        }
        if self.dev && self.data_dir.is_some() {
            return Err(ConfigError::Conflict(
                "-dev keeps everything in memory: drop -data-dir, or use -server -data-dir".into(),
            ));
        }
        // Consul's rules and words (agent/config/builder.go).
        let conflict = |m: &str| Err(ConfigError::Conflict(m.into()));
        if self.bootstrap && !self.server {
            return conflict("'bootstrap = true' requires 'server = true'");
        }
        if let Some(n) = self.bootstrap_expect {
            if !self.server {
                return conflict("'bootstrap_expect > 0' requires 'server = true'");
            }
            if self.dev {
                return conflict("'bootstrap_expect > 0' not allowed in dev mode");
            }
            if self.bootstrap {
                return conflict(
                    "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
                );
            }
            if n > 7 {
                return Err(bad(
                    "bootstrap_expect",
                    "must be between 1 and 7 (use 3 or 5)",
                ));
            }
        }
        Ok(())
    }

    /// Consul's start-up warnings about how the servers bootstrap.
    fn bootstrap_warnings(&mut self) {
        if !self.server || self.dev {
            return;
        }
        let w = &mut self.warnings;
        match self.bootstrap_expect {
            Some(1) => {
                w.push("BootstrapExpect is set to 1; this is the same as Bootstrap mode.".into());
                w.push("bootstrap = true: do not enable unless necessary".into());
            }
            Some(n) => {
                if n == 2 {
                    w.push("bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance. See https://www.consul.io/docs/internals/consensus.html#deployment-table".into());
                } else if n % 2 == 0 {
                    w.push("bootstrap_expect is even number: A cluster with an even number of servers does not achieve optimum fault tolerance. See https://www.consul.io/docs/internals/consensus.html#deployment-table".into());
                }
                w.push(format!("bootstrap_expect > 0: expecting {n} servers"));
            }
            None if self.bootstrap => {
                w.push("bootstrap = true: do not enable unless necessary".into());
            }
            None => {}
        }
    }

    fn merge_file(&mut self, path: &Path, v: &Value) -> Result<(), ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::Parse {
                path: path.into(),
                msg: "top level must be an object".into(),
            });
        };
        let invalid = |key: &str, want: &str| invalid(path, key, want);
        let s = |key: &str, v: &Value| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid(key, "a string"))
        };
        let b = |key: &str, v: &Value| v.as_bool().ok_or_else(|| invalid(key, "true or false"));
        for (key, val) in map {
            match key.as_str() {
                "datacenter" => self.datacenter = s(key, val)?,
                "node_name" => self.node_name = s(key, val)?,
                "data_dir" => self.data_dir = Some(PathBuf::from(s(key, val)?)),
                "client_addr" => self.written_addrs.client = Some(s(key, val)?),
                "bind_addr" => self.written_addrs.bind = Some(s(key, val)?),
                "server" => self.server = b(key, val)?,
                "bootstrap" => self.bootstrap = b(key, val)?,
                "disable_remote_exec" => self.disable_remote_exec = b(key, val)?,
                "disable_coordinates"
                | "sync_coordinate_interval_min"
                | "sync_coordinate_rate_target"
                | "coordinate_update_period" => self
                    .coordinates
                    .merge(key, val)
                    .map_err(|want| invalid(key, want))?,
                "ui" => self.ui = b(key, val)?,
                "enable_script_checks" => self.enable_script_checks = b(key, val)?,
                "log_level" => self.log_level = s(key, val)?,
                "log_json" => self.log_json = b(key, val)?,
                "log_file" => self.log_file = Some(PathBuf::from(s(key, val)?)),
                "log_rotate_bytes" => {
                    self.log_rotate.max_bytes = val
                        .as_u64()
                        .ok_or_else(|| invalid(key, "a number of bytes"))?
                }
                "log_rotate_max_files" => {
                    self.log_rotate.max_files =
                        val.as_i64().ok_or_else(|| invalid(key, "a number"))?
                }
                "log_rotate_duration" => {
                    self.log_rotate.duration = val
                        .as_str()
                        .and_then(parse_duration)
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| invalid(key, "a duration like \"24h\""))?
                }
                "raft_snapshot_threshold" => {
                    self.raft_snapshot_threshold = val
                        .as_u64()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid(key, "a positive number"))?
                }
                "bootstrap_expect" => {
                    self.bootstrap_expect = Some(
                        val.as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| invalid(key, "a number"))?,
                    )
                }
                "ports" => self.merge_ports(path, key, val)?,
                "performance" => self.merge_performance(path, key, val)?,
                "limits" => self
                    .limits
                    .merge(path, val, &mut self.warnings)
                    .map_err(|msg| ConfigError::Invalid {
                        key: format!("limits in {}", path.display()),
                        msg,
                    })?,
                "telemetry" => {
                    let rest = self
                        .telemetry
                        .merge(val)
                        .map_err(|e| ConfigError::Invalid {
                            key: format!("telemetry in {}", path.display()),
                            msg: e.to_string(),
                        })?;
                    for k in rest {
                        self.unsupported(path, &format!("telemetry.{k}"))?;
                    }
                }
                "service" | "services" | "check" | "checks" | "watches" => {
                    self.merge_definitions(path, key, val)?
                }
                "advertise_addr" => self.written_addrs.advertise = Some(s(key, val)?),
                "start_join"
                | "retry_join"
                | "retry_interval"
                | "start_join_wan"
                | "retry_join_wan"
                | "retry_interval_wan"
                | "reconnect_timeout"
                | "check_update_interval" => self.merge_joining(path, key, val)?,
                "rejoin_after_leave" => self.rejoin_after_leave = b(key, val)?,
                "leave_on_terminate" => self.leave_on_terminate = Some(b(key, val)?),
                "skip_leave_on_interrupt" => self.skip_leave_on_interrupt = Some(b(key, val)?),
                "pid_file" => self.pid_file = Some(PathBuf::from(s(key, val)?)),
                "primary_datacenter" => self.primary_datacenter = Some(s(key, val)?),
                "node_meta" => {
                    let obj = val
                        .as_object()
                        .ok_or_else(|| invalid(key, "an object of strings"))?;
                    for (k, v) in obj {
                        let v = v
                            .as_str()
                            .ok_or_else(|| invalid(key, "an object of strings"))?;
                        self.node_meta.insert(k.clone(), v.to_string());
                    }
                }
                "domain" => self.dns.domain = s(key, val)?.trim_matches('.').to_string(),
                "recursors" => self.merge_recursors(path, key, val)?,
                "dns_config" => self.merge_dns_config(path, val)?,
                "acl" => self.acl.merge(val).map_err(|e| ConfigError::Invalid {
                    key: format!("acl in {}", path.display()),
                    msg: e.to_string(),
                })?,
                "cache" => self.merge_cache(path, val)?,
                k if security::owns(k) => self.security.merge(path, k, val)?,
                other => {
                    let legacy =
                        self.acl
                            .merge_legacy(other, val)
                            .map_err(|e| ConfigError::Invalid {
                                key: format!("{other} in {}", path.display()),
                                msg: e.to_string(),
                            })?;
                    if !legacy {
                        self.unsupported(path, other)?
                    }
                }
            }
        }
        Ok(())
    }

    /// `ports`: each a number (-1 turns a listener off).
    fn merge_ports(&mut self, path: &Path, key: &str, val: &Value) -> Result<(), ConfigError> {
        let obj = val
            .as_object()
            .ok_or_else(|| invalid(path, key, "an object"))?;
        for (p, pv) in obj {
            let n = pv
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| invalid(path, &format!("ports.{p}"), "a number"))?;
            match p.as_str() {
                "http" => self.ports.http = n,
                "dns" => self.ports.dns = n,
                "server" => self.ports.server = n,
                "serf_lan" => self.ports.serf_lan = n,
                "serf_wan" => self.ports.serf_wan = n,
                "https" => self.ports.https = n,
                other => self.unsupported(path, &format!("ports.{other}"))?,
            }
        }
        Ok(())
    }

    /// `performance`: the raft timing multiplier.
    fn merge_performance(
        &mut self,
        path: &Path,
        key: &str,
        val: &Value,
    ) -> Result<(), ConfigError> {
        let obj = val
            .as_object()
            .ok_or_else(|| invalid(path, key, "an object"))?;
        for (p, pv) in obj {
            match p.as_str() {
                "raft_multiplier" => {
                    self.raft_multiplier = pv
                        .as_u64()
                        .ok_or_else(|| invalid(path, "performance.raft_multiplier", "a number"))?
                }
                other => self.unsupported(path, &format!("performance.{other}"))?,
            }
        }
        Ok(())
    }

    /// `service(s)`, `check(s)` (their keys checked here, their values when
    /// the agent loads them) and `watches`.
    fn merge_definitions(
        &mut self,
        path: &Path,
        key: &str,
        val: &Value,
    ) -> Result<(), ConfigError> {
        match (key, val) {
            ("service", _) => {
                definition_keys(path, consul_keys::service_definition(val, key))?;
                self.service_defs.push(val.clone())
            }
            ("services", Value::Array(a)) => {
                for (i, d) in a.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    definition_keys(path, consul_keys::service_definition(d, &at))?;
                }
                self.service_defs.extend(a.iter().cloned())
            }
            ("services", _) => return Err(invalid(path, key, "a list of service definitions")),
            ("check", _) => {
                definition_keys(path, consul_keys::check_definition(val, key))?;
                self.check_defs.push(val.clone())
            }
            ("checks", Value::Array(a)) => {
                for (i, d) in a.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    definition_keys(path, consul_keys::check_definition(d, &at))?;
                }
                self.check_defs.extend(a.iter().cloned())
            }
            ("checks", _) => return Err(invalid(path, key, "a list of check definitions")),
            (_, Value::Array(a)) => self.watch_defs.extend(a.iter().cloned()),
            (_, Value::Object(_)) => self.watch_defs.push(val.clone()),
            _ => return Err(invalid(path, key, "a list of watch definitions")),
        }
        Ok(())
    }

    /// `start_join`, `retry_join` and the durations of joining, reconnecting
    /// and check updates.
    fn merge_joining(&mut self, path: &Path, key: &str, val: &Value) -> Result<(), ConfigError> {
        let duration = |want: &str| {
            val.as_str()
                .and_then(parse_duration)
                .ok_or_else(|| invalid(path, key, want))
        };
        match key {
            "start_join" | "retry_join" | "start_join_wan" | "retry_join_wan" => {
                let list = val
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| invalid(path, key, "a list of addresses"))?;
                match key {
                    "start_join" => self.start_join.extend(list),
                    "retry_join" => self.retry_join.extend(list),
                    "start_join_wan" => self.start_join_wan.extend(list),
                    _ => self.retry_join_wan.extend(list),
                }
            }
            "retry_interval" => {
                self.retry_interval =
                    duration("a duration like \"30s\"")?.max(Duration::from_millis(100))
            }
            "retry_interval_wan" => {
                self.retry_interval_wan =
                    duration("a duration like \"30s\"")?.max(Duration::from_millis(100))
            }
            "reconnect_timeout" => self.reconnect_timeout = duration("a duration like \"30s\"")?,
            _ => self.check_update_interval = duration("a duration like \"5m\"")?,
        }
        Ok(())
    }

    /// `recursors`: IP addresses, with an optional port.
    fn merge_recursors(&mut self, path: &Path, key: &str, val: &Value) -> Result<(), ConfigError> {
        let list = val
            .as_array()
            .ok_or_else(|| invalid(path, key, "a list of addresses"))?;
        for r in list {
            let r = r
                .as_str()
                .ok_or_else(|| invalid(path, key, "a list of addresses"))?;
            self.dns.recursors.push(
                parse_recursor(r).ok_or_else(|| invalid(path, key, "IP addresses or ip:port"))?,
            );
        }
        Ok(())
    }

    /// The `cache` object: `max_bytes` (tribune's); Consul's fetch rate
    /// keys are not read.
    fn merge_cache(&mut self, path: &Path, val: &Value) -> Result<(), ConfigError> {
        let obj = val.as_object().ok_or_else(|| ConfigError::Invalid {
            key: format!("cache in {}", path.display()),
            msg: "expected an object".into(),
        })?;
        for (k, v) in obj {
            match k.as_str() {
                "max_bytes" => {
                    self.cache_max_bytes = v
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| ConfigError::Invalid {
                            key: format!("cache.max_bytes in {}", path.display()),
                            msg: "a positive number of bytes".into(),
                        })?
                }
                other => self.unsupported(path, &format!("cache.{other}"))?,
            }
        }
        Ok(())
    }

    /// A key tribune does not read: a warning when it is one of Consul's,
    /// else Consul's error naming it.
    fn unsupported(&mut self, path: &Path, key: &str) -> Result<(), ConfigError> {
        let known = match key.split_once('.') {
            Some((section, k)) => consul_keys::nested(section, k),
            None => consul_keys::top_level(key),
        };
        if !known {
            return Err(ConfigError::UnknownKey {
                path: path.into(),
                key: key.into(),
            });
        }
        self.warnings.push(format!(
            "{}: config key {key:?} is not supported by tribune; ignored",
            path.display()
        ));
        Ok(())
    }
}

/// A config value of the wrong kind, named with its file.
fn invalid(path: &Path, key: &str, want: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("{key} in {}", path.display()),
        msg: format!("expected {want}"),
    }
}

/// A definition key Consul would not accept is an error naming it.
fn definition_keys(
    path: &Path,
    r: Result<(), crate::consul_keys::UnknownKey>,
) -> Result<(), ConfigError> {
    r.map_err(|k| ConfigError::UnknownKey {
        path: path.into(),
        key: k.0,
    })
}

impl AgentConfig {
    /// The `dns_config` object of a config file.
    fn merge_dns_config(&mut self, path: &Path, val: &Value) -> Result<(), ConfigError> {
        let invalid = |key: &str, want: &str| ConfigError::Invalid {
            key: format!("dns_config.{key} in {}", path.display()),
            msg: format!("expected {want}"),
        };
        let obj = val.as_object().ok_or_else(|| ConfigError::Invalid {
            key: format!("dns_config in {}", path.display()),
            msg: "expected an object".into(),
        })?;
        let dur = |k: &str, v: &Value| {
            v.as_str()
                .and_then(parse_duration)
                .ok_or_else(|| invalid(k, "a duration like \"5s\""))
        };
        let b = |k: &str, v: &Value| v.as_bool().ok_or_else(|| invalid(k, "true or false"));
        for (k, v) in obj {
            match k.as_str() {
                "node_ttl" => self.dns.node_ttl = dur(k, v)?,
                "service_ttl" => {
                    let m = v
                        .as_object()
                        .ok_or_else(|| invalid("service_ttl", "an object"))?;
                    for (name, d) in m {
                        // Folded like DNS query names, which are matched ignoring case.
                        self.dns
                            .service_ttl
                            .insert(name.to_ascii_lowercase(), dur(k, d)?);
                    }
                }
                "only_passing" => self.dns.only_passing = b(k, v)?,
                "allow_stale" => self.dns.allow_stale = b(k, v)?,
                "max_stale" => self.dns.max_stale = dur(k, v)?,
                "enable_truncate" => self.dns.enable_truncate = b(k, v)?,
                "use_cache" => self.dns.use_cache = b(k, v)?,
                "cache_max_age" => self.dns.cache_max_age = dur(k, v)?,
                "udp_answer_limit" | "a_record_limit" => {
                    let n = v.as_i64().ok_or_else(|| invalid(k, "a number"))?;
                    let n = usize::try_from(n).map_err(|_| ConfigError::Invalid {
                        key: format!("dns_config.{k}"),
                        msg: format!("cannot be {n}. Must be greater than or equal to zero"),
                    })?;
                    if k == "udp_answer_limit" {
                        self.dns.udp_answer_limit = n;
                    } else {
                        self.dns.a_record_limit = n;
                    }
                }
                other => self.unsupported(path, &format!("dns_config.{other}"))?,
            }
        }
        Ok(())
    }
}

fn config_dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: dir.into(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Read a JSON or HCL config file into a JSON value.
pub fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let parse_err = |msg: String| ConfigError::Parse {
        path: path.into(),
        msg,
    };
    if path.extension().and_then(|e| e.to_str()) == Some("hcl") {
        hcl::from_str::<Value>(&text).map_err(|e| parse_err(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files set values, flags override them, Consul keys tribune does
    /// not read only warn.
    #[test]
    fn files_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"datacenter":"east","ports":{"http":9000,"dns":-1},"performance":{"raft_multiplier":1},"telemetry":{"disable_hostname":true,"statsd_address":"127.0.0.1:8125"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.hcl"),
            "node_name = \"from-hcl\"\nports { server = 9300 }\n",
        )
        .unwrap();
        let flags = Flags {
            dev: true,
            config_dir: vec![dir.path().into()],
            http_port: Some(0),
            ..Default::default()
        };
        let c = AgentConfig::load(&flags).unwrap();
        assert_eq!(c.datacenter, "east");
        assert_eq!(c.node_name, "from-hcl");
        assert_eq!(c.ports.http, 0);
        assert_eq!(c.ports.dns, -1);
        assert_eq!(c.ports.server, 9300);
        assert_eq!(c.raft_multiplier, 1);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("telemetry.statsd_address"),
            "{:?}",
            c.warnings
        );
        assert!(c.telemetry.disable_hostname);
    }

    /// A key Consul does not know is an error naming the file and key, as
    /// Consul's; in service and check definitions too.
    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        for (text, want) in [
            (r#"{"datacentre":"x"}"#, "invalid config key datacentre"),
            (r#"{"ports":{"htp":1}}"#, "invalid config key ports.htp"),
            (
                r#"{"dns_config":{"allow_stal":true}}"#,
                "invalid config key dns_config.allow_stal",
            ),
            (
                r#"{"service":{"name":"web","bogus_key":1}}"#,
                "invalid config key service.bogus_key",
            ),
            (
                r#"{"services":[{"name":"a"},{"name":"b","check":{"ttl":"5s","nope":1}}]}"#,
                "invalid config key services[1].check.nope",
            ),
            (
                r#"{"checks":[{"name":"c","ttl":"5s","CheckID":"x"}]}"#,
                "invalid config key checks[0].CheckID",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = AgentConfig::load(&Flags {
                dev: true,
                config_file: vec![f.clone()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert_eq!(e, format!("failed to parse {}: {want}", f.display()));
        }
    }

    /// Bad values are errors naming the key.
    #[test]
    fn bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(&f, r#"{"ports":{"http":"x"}}"#).unwrap();
        let flags = Flags {
            dev: true,
            config_file: vec![f],
            ..Default::default()
        };
        let e = AgentConfig::load(&flags).unwrap_err().to_string();
        assert!(e.contains("ports.http"), "{e}");
        let e = AgentConfig::load(&Flags {
            server: true,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("data-dir"), "{e}");
    }

    /// DNS answer limits, check_update_interval and node_meta, as Consul
    /// reads and refuses them.
    #[test]
    fn limits_and_node_meta() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.json");
        let load = |text: &str| {
            std::fs::write(&f, text).unwrap();
            AgentConfig::load(&Flags {
                dev: true,
                config_file: vec![f.clone()],
                ..Default::default()
            })
        };
        let c = load("{}").unwrap();
        assert_eq!(c.dns.udp_answer_limit, 3);
        assert_eq!(c.dns.a_record_limit, 0);
        assert!(!c.dns.enable_truncate);
        assert_eq!(c.check_update_interval, Duration::from_secs(300));
        let c = load(
            r#"{"check_update_interval": "0s", "node_meta": {"rack": "r1"},
                "dns_config": {"udp_answer_limit": 1, "a_record_limit": 2, "enable_truncate": true}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.dns.udp_answer_limit,
                c.dns.a_record_limit,
                c.dns.enable_truncate
            ),
            (1, 2, true)
        );
        assert_eq!(c.check_update_interval, Duration::ZERO);
        let e = load(r#"{"dns_config": {"a_record_limit": -2}}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot be -2. Must be greater than or equal to zero"),
            "{e}"
        );
        let e = load(r#"{"node_meta": {"consul-x": "1"}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "node_meta invalid: Couldn't load metadata pair ('consul-x', '1'): \
             Key prefix 'consul-' is reserved for internal use"
        );
    }
}
