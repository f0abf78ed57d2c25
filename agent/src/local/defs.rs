//! Service and check definitions as users write them: HTTP bodies and config
//! files, field names case-insensitive (python-consul sends `name`, `check`)
//! and snake_case accepted, validated the way Consul validates them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::state::catalog::{Meta, ServiceAddress, Weights};
use crate::state::Health;
use gocompat::duration::parse_duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DefError(pub String);

fn err(msg: impl Into<String>) -> DefError {
    DefError(msg.into())
}

/// Field maps whose keys are user data and keep their spelling.
const USER_MAPS: &[&str] = &["meta", "nodemeta", "header", "servicemeta"];

/// Lowercase keys and drop `_`, recursively, except inside user maps.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let nk: String = k
                    .chars()
                    .filter(|c| *c != '_')
                    .flat_map(char::to_lowercase)
                    .collect();
                let nv = if USER_MAPS.contains(&nk.as_str()) {
                    v.clone()
                } else if nk == "taggedaddresses" {
                    // keys are address names; values are objects to normalize
                    match v {
                        Value::Object(tm) => Value::Object(
                            tm.iter().map(|(a, b)| (a.clone(), normalize(b))).collect(),
                        ),
                        other => other.clone(),
                    }
                } else {
                    normalize(v)
                };
                out.insert(nk, nv);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Typed access to a normalized object.
struct Obj<'a> {
    m: &'a Map<String, Value>,
    what: &'static str,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, what: &'static str) -> Result<Self, DefError> {
        match v {
            Value::Object(m) => Ok(Self { m, what }),
            _ => Err(err(format!("{what} must be a JSON object"))),
        }
    }
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }
    fn str(&self, k: &str) -> Result<String, DefError> {
        match self.get(k) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(err(format!("{}: {k} must be a string", self.what))),
        }
    }
    fn bool(&self, k: &str) -> Result<bool, DefError> {
        match self.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(err(format!("{}: {k} must be true or false", self.what))),
        }
    }
    fn u64(&self, k: &str) -> Result<u64, DefError> {
        match self.get(k) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| err(format!("{}: {k} must be a non-negative integer", self.what))),
        }
    }
    fn strings(&self, k: &str) -> Result<Vec<String>, DefError> {
        match self.get(k) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(format!("{}: {k} must be a list of strings", self.what)))
                })
                .collect(),
            Some(_) => Err(err(format!("{}: {k} must be a list of strings", self.what))),
        }
    }
    fn map(&self, k: &str) -> Result<Meta, DefError> {
        match self.get(k) {
            None => Ok(Meta::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(a, b)| match b {
                    Value::String(s) => Ok((a.clone(), s.clone())),
                    _ => Err(err(format!("{}: {k} values must be strings", self.what))),
                })
                .collect(),
            Some(_) => Err(err(format!("{}: {k} must be an object", self.what))),
        }
    }
    /// Go duration string (or integer nanoseconds, as Go encodes durations).
    fn duration(&self, k: &str) -> Result<Option<Duration>, DefError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .ok_or_else(|| err(format!("{}: invalid duration for {k}: {s:?}", self.what))),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|n| Some(Duration::from_nanos(n)))
                .ok_or_else(|| err(format!("{}: invalid duration for {k}", self.what))),
            Some(_) => Err(err(format!(
                "{}: {k} must be a duration like \"10s\"",
                self.what
            ))),
        }
    }
}

/// How a check decides its status.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Http {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        body: String,
        tls_skip_verify: bool,
    },
    Tcp {
        addr: String,
    },
    /// gRPC health protocol (`grpc.health.v1.Health/Check`) against
    /// `target` (`host:port`), asking about `service` (empty: the server).
    Grpc {
        target: String,
        service: String,
        tls: bool,
        tls_skip_verify: bool,
    },
    Ttl {
        ttl: Duration,
    },
    Script {
        args: Vec<String>,
    },
    /// Set only through the maintenance endpoints; always critical.
    Maintenance,
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http { .. } => "http",
            Probe::Tcp { .. } => "tcp",
            Probe::Grpc { .. } => "grpc",
            Probe::Ttl { .. } => "ttl",
            Probe::Script { .. } => "script",
            Probe::Maintenance => "maintenance",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckDef {
    pub id: String,
    pub name: String,
    pub service_id: String,
    pub notes: String,
    pub initial: Health,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_after: Option<Duration>,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: Meta,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub checks: Vec<CheckDef>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Consul's limits on node and service metadata (`structs.validateMetadata`).
pub const META_MAX_PAIRS: usize = 64;
pub const META_KEY_MAX: usize = 128;
pub const META_VALUE_MAX: usize = 512;
const META_RESERVED_PREFIX: &str = "consul-";

/// Why a metadata map was refused, in Consul's words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetaError {
    #[error("Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs")]
    TooMany,
    #[error("Couldn't load metadata pair ('{key}', '{value}'): {reason}")]
    Pair {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// Validate node or service metadata as Consul does: at most 64 pairs, keys
/// of 1-128 letters, digits, `_` and `-` without the reserved `consul-`
/// prefix, values of at most 512 bytes (Go's `len`).
pub fn validate_meta(meta: &Meta) -> Result<(), MetaError> {
    validate_meta_with(meta, false)
}

/// [`validate_meta`], where `allow_reserved` lets `consul-` keys through
/// (Consul's `allowConsulPrefix`: node meta written to the catalog may
/// carry the agents' own `consul-network-segment`).
pub fn validate_meta_with(meta: &Meta, allow_reserved: bool) -> Result<(), MetaError> {
    if meta.len() > META_MAX_PAIRS {
        return Err(MetaError::TooMany);
    }
    for (k, v) in meta {
        let reason = if k.is_empty() {
            "Key cannot be blank"
        } else if !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            "Key contains invalid characters"
        } else if k.len() > META_KEY_MAX {
            "Key is too long (limit: 128 characters)"
        } else if k.starts_with(META_RESERVED_PREFIX) && !allow_reserved {
            "Key prefix 'consul-' is reserved for internal use"
        } else if v.len() > META_VALUE_MAX {
            "Value is too long (limit: 512 characters)"
        } else {
            continue;
        };
        return Err(MetaError::Pair {
            key: k.clone(),
            value: v.clone(),
            reason,
        });
    }
    Ok(())
}

/// Parse a check definition. `service` gives the owning service for checks
/// nested in a service definition (their ID/name defaults come from it).
pub fn parse_check(v: &Value, script_checks: bool) -> Result<CheckDef, DefError> {
    let o = Obj::new(v, "check")?;
    let id = match o.str("checkid")? {
        s if !s.is_empty() => s,
        _ => o.str("id")?,
    };
    let name = o.str("name")?;
    let timeout = o.duration("timeout")?.unwrap_or(DEFAULT_TIMEOUT);
    let interval = o.duration("interval")?;
    let ttl = o.duration("ttl")?;
    let http = o.str("http")?;
    let tcp = o.str("tcp")?;
    let grpc = o.str("grpc")?;
    let mut args = o.strings("args")?;
    if args.is_empty() {
        args = o.strings("scriptargs")?;
    }
    let unsupported = [
        "h2ping",
        "udp",
        "dockercontainerid",
        "aliasservice",
        "aliasnode",
        "osservice",
        "script",
    ];
    let probe = if let Some(ttl) = ttl {
        if ttl.is_zero() {
            return Err(err("TTL must be > 0 for TTL checks"));
        }
        Probe::Ttl { ttl }
    } else if !http.is_empty() {
        let url = reqwest::Url::parse(&http)
            .map_err(|e| err(format!("invalid HTTP check URL {http:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(format!(
                "invalid HTTP check URL {http:?}: scheme must be http or https"
            )));
        }
        let mut headers = Vec::new();
        if let Some(h) = o.get("header") {
            let m = h
                .as_object()
                .ok_or_else(|| err("check: Header must be an object of string lists"))?;
            for (k, vals) in m {
                let list = vals
                    .as_array()
                    .ok_or_else(|| err("check: Header values must be lists of strings"))?;
                for v in list {
                    let v = v
                        .as_str()
                        .ok_or_else(|| err("check: Header values must be strings"))?;
                    headers.push((k.clone(), v.to_string()));
                }
            }
        }
        let method = match o.str("method")? {
            m if m.is_empty() => "GET".to_string(),
            m => m.to_ascii_uppercase(),
        };
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(err(format!("invalid HTTP method {method:?}")));
        }
        Probe::Http {
            url: http,
            method,
            headers,
            body: o.str("body")?,
            tls_skip_verify: o.bool("tlsskipverify")?,
        }
    } else if !tcp.is_empty() {
        if !tcp.contains(':') {
            return Err(err(format!(
                "invalid TCP check address {tcp:?}: want host:port"
            )));
        }
        Probe::Tcp { addr: tcp }
    } else if !grpc.is_empty() {
        parse_grpc(&grpc, o.bool("grpcusetls")?, o.bool("tlsskipverify")?)?
    } else if !args.is_empty() {
        if !script_checks {
            return Err(err(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true \
                 (or start the agent with -enable-script-checks)",
            ));
        }
        Probe::Script { args }
    } else if let Some(k) = unsupported.iter().find(|k| o.get(k).is_some()) {
        return Err(err(format!(
            "check type {k:?} is not supported by this agent"
        )));
    } else {
        return Err(err(
            "Check is not valid: one of TTL, HTTP, TCP or Args (script) must be set",
        ));
    };
    let needs_interval = matches!(
        probe,
        Probe::Http { .. } | Probe::Tcp { .. } | Probe::Grpc { .. } | Probe::Script { .. }
    );
    let interval = match (needs_interval, interval) {
        (true, Some(i)) if !i.is_zero() => i,
        (true, _) => {
            return Err(err(
                "Interval must be > 0 for Script, HTTP, TCP, or GRPC checks",
            ))
        }
        (false, i) => i.unwrap_or_default(),
    };
    let initial = match o.str("status")? {
        s if s.is_empty() => Health::Critical,
        s => match Health::parse(&s) {
            Some(h @ (Health::Passing | Health::Warning | Health::Critical)) => h,
            _ => return Err(err(format!("invalid check status {s:?}"))),
        },
    };
    let to_u32 =
        |n: u64, k: &str| u32::try_from(n).map_err(|_| err(format!("check: {k} is too large")));
    Ok(CheckDef {
        id,
        name,
        service_id: o.str("serviceid")?,
        notes: o.str("notes")?,
        initial,
        probe,
        interval,
        timeout,
        deregister_after: o.duration("deregistercriticalserviceafter")?,
        success_before_passing: to_u32(o.u64("successbeforepassing")?, "SuccessBeforePassing")?,
        failures_before_critical: to_u32(
            o.u64("failuresbeforecritical")?,
            "FailuresBeforeCritical",
        )?,
    })
}

/// Consul's `GRPC` field: `host:port` or `host:port/service`.
fn parse_grpc(grpc: &str, tls: bool, tls_skip_verify: bool) -> Result<Probe, DefError> {
    let (target, service) = grpc.split_once('/').unwrap_or((grpc, ""));
    let bad = |why: &str| err(format!("invalid GRPC check target {grpc:?}: {why}"));
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| bad("want host:port or host:port/service"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['[', ']', ' ']) {
        return Err(bad("missing or invalid host"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("port must be a number from 0 to 65535"))?;
    // tonic dials `http://target`; make sure that is a valid authority.
    format!("http://{target}")
        .parse::<tonic::transport::Uri>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(Probe::Grpc {
        target: target.to_string(),
        service: service.to_string(),
        tls,
        tls_skip_verify,
    })
}

/// Parse a standalone check (`/v1/agent/check/register`, `{"check": ...}`).
pub fn parse_standalone_check(v: &Value, script_checks: bool) -> Result<CheckDef, DefError> {
    let v = normalize(v);
    let mut c = parse_check(&v, script_checks)?;
    if c.name.is_empty() {
        return Err(err("Missing check name"));
    }
    if c.id.is_empty() {
        c.id = c.name.clone();
    }
    Ok(c)
}

/// Parse a service definition with its `Check`/`Checks`; invalid metadata
/// is refused as `/v1/agent/service/register` words it.
pub fn parse_service(v: &Value, script_checks: bool) -> Result<ServiceDef, DefError> {
    parse_service_as(v, script_checks, |_, _, e| {
        format!("Invalid Service Meta: {e}")
    })
}

/// [`parse_service`] with the wording of a metadata refusal chosen by the
/// caller: `meta_err(name, id, error)` (Consul words it differently for
/// the agent API, the catalog and config files).
pub fn parse_service_as(
    v: &Value,
    script_checks: bool,
    meta_err: impl Fn(&str, &str, &MetaError) -> String,
) -> Result<ServiceDef, DefError> {
    let v = normalize(v);
    let o = Obj::new(&v, "service")?;
    let name = o.str("name")?;
    if name.is_empty() {
        return Err(err("Missing service name"));
    }
    if name.contains(['/', ' ']) {
        return Err(err(format!("Invalid service name {name:?}")));
    }
    let id = match o.str("id")? {
        s if s.is_empty() => name.clone(),
        s => s,
    };
    let port = o.u64("port")?;
    let port =
        u16::try_from(port).map_err(|_| err(format!("Invalid port {port}: must be 0-65535")))?;
    let meta = o.map("meta")?;
    validate_meta(&meta).map_err(|e| err(meta_err(&name, &id, &e)))?;
    let mut tagged_addresses = BTreeMap::new();
    if let Some(t) = o.get("taggedaddresses") {
        let m = t
            .as_object()
            .ok_or_else(|| err("service: TaggedAddresses must be an object"))?;
        for (k, a) in m {
            let ao = Obj::new(a, "tagged address")?;
            let p = ao.u64("port")?;
            tagged_addresses.insert(
                k.clone(),
                ServiceAddress {
                    address: ao.str("address")?,
                    port: u16::try_from(p)
                        .map_err(|_| err(format!("Invalid port {p} in TaggedAddresses")))?,
                },
            );
        }
    }
    let weights = match o.get("weights") {
        None => Weights::default(),
        Some(w) => {
            let wo = Obj::new(w, "weights")?;
            let p = wo.u64("passing")?;
            let wa = wo.u64("warning")?;
            if p == 0 {
                return Err(err("Passing weight must be greater than 0"));
            }
            Weights {
                passing: i32::try_from(p).map_err(|_| err("Weights.Passing too large"))?,
                warning: i32::try_from(wa).map_err(|_| err("Weights.Warning too large"))?,
            }
        }
    };
    let mut raw_checks: Vec<&Value> = Vec::new();
    if let Some(c) = o.get("check") {
        raw_checks.push(c);
    }
    match o.get("checks") {
        None => {}
        Some(Value::Array(a)) => raw_checks.extend(a.iter()),
        Some(_) => return Err(err("service: Checks must be a list")),
    }
    let n = raw_checks.len();
    let mut checks = Vec::new();
    for (i, c) in raw_checks.into_iter().enumerate() {
        let mut cd = parse_check(c, script_checks)?;
        if cd.id.is_empty() {
            cd.id = if n > 1 {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            };
        }
        if cd.name.is_empty() {
            cd.name = format!("Service '{name}' check");
        }
        cd.service_id = id.clone();
        checks.push(cd);
    }
    Ok(ServiceDef {
        id,
        name,
        tags: o.strings("tags")?,
        address: o.str("address")?,
        port,
        meta,
        tagged_addresses,
        weights,
        enable_tag_override: o.bool("enabletagoverride")?,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// python-consul's lowercase spelling and snake_case both parse; IDs default as in Consul.
    #[test]
    fn service_defaults_and_spellings() {
        let s = parse_service(
            &json!({"name": "web", "port": 80, "tags": ["a"], "check": {"tcp": "127.0.0.1:80", "interval": "5s"}}),
            false,
        )
        .unwrap();
        assert_eq!(s.id, "web");
        assert_eq!(s.checks[0].id, "service:web");
        assert_eq!(s.checks[0].name, "Service 'web' check");
        assert_eq!(s.checks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.checks[0].initial, Health::Critical);
        let s = parse_service(
            &json!({"Name": "db", "ID": "db1", "enable_tag_override": true, "Meta": {"Version": "1"},
                    "Checks": [{"TTL": "10s"}, {"HTTP": "http://x/health", "Interval": "1s", "Header": {"X-A": ["1"]}}]}),
            false,
        )
        .unwrap();
        assert!(s.enable_tag_override);
        assert_eq!(s.meta["Version"], "1");
        assert_eq!(s.checks[0].id, "service:db1:1");
        assert_eq!(s.checks[1].id, "service:db1:2");
        assert!(
            matches!(&s.checks[1].probe, Probe::Http { headers, .. } if headers[0] == ("X-A".into(), "1".into()))
        );
    }

    /// Consul's GRPC field: `host:port` asks about the whole server,
    /// `host:port/service` about one service; TLS flags in any spelling.
    #[test]
    fn grpc_checks() {
        let s = parse_service(
            &json!({"Name": "g", "Check": {"GRPC": "127.0.0.1:50051", "Interval": "10s"}}),
            false,
        )
        .unwrap();
        let c = &s.checks[0];
        assert_eq!(
            c.probe,
            Probe::Grpc {
                target: "127.0.0.1:50051".into(),
                service: String::new(),
                tls: false,
                tls_skip_verify: false,
            }
        );
        assert_eq!(c.probe.kind(), "grpc");
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let c = parse_standalone_check(
            &json!({"name": "g", "grpc": "[::1]:9000/my.pkg.Svc", "grpc_use_tls": true,
                    "TLSSkipVerify": true, "interval": "1s", "timeout": "2s"}),
            false,
        )
        .unwrap();
        assert_eq!(
            c.probe,
            Probe::Grpc {
                target: "[::1]:9000".into(),
                service: "my.pkg.Svc".into(),
                tls: true,
                tls_skip_verify: true,
            }
        );
        assert_eq!(c.timeout, Duration::from_secs(2));
        // a hostname target works too; the interval is required
        assert!(parse_standalone_check(
            &json!({"Name": "g", "GRPC": "grpc.local:443/x", "GRPCUseTLS": true, "Interval": "5s"}),
            false
        )
        .is_ok());
        let e = parse_standalone_check(&json!({"Name": "g", "GRPC": "localhost:1"}), false)
            .unwrap_err()
            .0;
        assert!(e.contains("Interval must be > 0"), "{e}");
    }

    /// Metadata limits and messages are Consul's; the boundaries pass.
    #[test]
    fn meta_limits() {
        let one = |k: &str, v: &str| Meta::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            validate_meta(&one(&"k".repeat(128), &"v".repeat(512))),
            Ok(())
        );
        let many: Meta = (0..64).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate_meta(&many), Ok(()));
        let too_many: Meta = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(
            validate_meta(&too_many).unwrap_err().to_string(),
            "Node metadata cannot contain more than 64 key/value pairs"
        );
        for (k, v, want) in [
            ("", "x", "Couldn't load metadata pair ('', 'x'): Key cannot be blank"),
            ("a b", "x", "Couldn't load metadata pair ('a b', 'x'): Key contains invalid characters"),
            ("ké", "x", "Couldn't load metadata pair ('ké', 'x'): Key contains invalid characters"),
            ("consul-x", "1", "Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is reserved for internal use"),
        ] {
            assert_eq!(validate_meta(&one(k, v)).unwrap_err().to_string(), want);
        }
        let long_key = "k".repeat(129);
        assert!(validate_meta(&one(&long_key, ""))
            .unwrap_err()
            .to_string()
            .ends_with("Key is too long (limit: 128 characters)"));
        // 512 bytes, not characters, as Go counts: 257 two-byte characters are too long
        assert!(validate_meta(&one("k", &"é".repeat(257)))
            .unwrap_err()
            .to_string()
            .ends_with("Value is too long (limit: 512 characters)"));
        let e = parse_service(&json!({"Name": "x", "Meta": {"a": "v".repeat(513)}}), false)
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("Invalid Service Meta: Couldn't load metadata pair ('a', 'vvv"),
            "{e}"
        );
    }

    /// Invalid definitions are refused with Consul-like messages.
    #[test]
    fn refusals() {
        let cases = [
            (json!({"port": 1}), "Missing service name"),
            (json!({"name": "x", "port": 70000}), "port"),
            (
                json!({"name": "x", "check": {"args": ["true"], "interval": "1s"}}),
                "Scripts are disabled",
            ),
            (
                json!({"name": "x", "check": {"http": "http://x"}}),
                "Interval",
            ),
            (
                json!({"name": "x", "check": {"interval": "1s"}}),
                "not valid",
            ),
            (
                json!({"name": "x", "check": {"h2ping": "x:1", "interval": "1s"}}),
                "not supported",
            ),
            (json!({"name": "x", "check": {"grpc": "x:1"}}), "Interval"),
            (
                json!({"name": "x", "check": {"grpc": "x", "interval": "1s"}}),
                "host:port",
            ),
            (
                json!({"name": "x", "check": {"grpc": "x:http/svc", "interval": "1s"}}),
                "port",
            ),
            (json!({"name": "x", "meta": {"consul-x": "1"}}), "reserved"),
            (
                json!({"name": "x", "check": {"ttl": "zz"}}),
                "invalid duration",
            ),
            (json!({"name": "x", "tags": "a"}), "list of strings"),
        ];
        for (v, needle) in cases {
            let e = parse_service(&v, false).unwrap_err().0;
            assert!(e.contains(needle), "{v}: {e}");
        }
        assert!(parse_service(
            &json!({"name": "x", "check": {"args": ["true"], "interval": "1s"}}),
            true
        )
        .is_ok());
        assert_eq!(
            parse_standalone_check(&json!({"ttl": "5s"}), false)
                .unwrap_err()
                .0,
            "Missing check name"
        );
    }
}
