//! Watch plans, as Consul's `watch` package runs them: one blocking-query
//! loop per watch, and a handler run once per real change — when the index
//! moved *and* the data differs — never on a wait timeout.
//!
//! Used by `tribune watch` and by `watches` in agent config files (those run
//! inside the agent, against its own HTTP API). Types: `key`, `keyprefix`,
//! `services`, `nodes`, `service`, `checks`, `event`. Handlers: print the JSON
//! (the CLI without a command), a command or script with the JSON on stdin
//! and `CONSUL_INDEX` set, or an HTTP request carrying the JSON.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::apiclient::{key_path, ApiClient, Error as ApiClientError};
use crate::events::event_index;
use gocompat::duration::parse_duration;

/// Retry after a failed query: this × failures², at most [`MAX_BACKOFF`].
const RETRY_BASE: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Handler output kept for the agent's log (Consul's 4 KiB).
const OUTPUT_LOG_MAX: usize = 4096;
/// Consul's default timeout of HTTP handlers.
const HTTP_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Api(#[from] ApiClientError),
    #[error("Error executing handler: {0}")]
    Handler(String),
}

fn invalid(msg: impl Into<String>) -> WatchError {
    WatchError::Invalid(msg.into())
}

/// What a watch watches.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchKind {
    Key(String),
    KeyPrefix(String),
    Services,
    Nodes,
    Service {
        service: String,
        tags: Vec<String>,
        passing_only: bool,
    },
    /// Checks of a service, or in a state (default `any`).
    Checks {
        service: Option<String>,
        state: Option<String>,
    },
    Event {
        name: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct WatchSpec {
    pub kind: WatchKind,
    pub datacenter: Option<String>,
    pub token: Option<String>,
    pub stale: bool,
}

/// Keys a watch definition may carry for its handler (see [`parse_config`]).
const HANDLER_KEYS: [&str; 4] = ["handler", "args", "handler_type", "http_handler_config"];

fn take_str(p: &mut Map<String, Value>, k: &str) -> Result<Option<String>, WatchError> {
    match p.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("Expecting {k} to be a string"))),
    }
}

fn take_bool(p: &mut Map<String, Value>, k: &str) -> Result<bool, WatchError> {
    match p.remove(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(invalid(format!("Expecting {k} to be a boolean"))),
    }
}

impl WatchSpec {
    /// Parse Consul's watch parameters (`type`, `key`, `prefix`, `service`,
    /// `tag`, `passingonly`, `state`, `name`, `datacenter`, `token`, `stale`).
    /// Handler keys are ignored here; anything else is an error.
    pub fn parse(params: &Map<String, Value>) -> Result<Self, WatchError> {
        let mut p = params.clone();
        for k in HANDLER_KEYS {
            p.remove(k);
        }
        let kind_name =
            take_str(&mut p, "type")?.ok_or_else(|| invalid("Watch type must be specified"))?;
        let datacenter = take_str(&mut p, "datacenter")?.filter(|s| !s.is_empty());
        let token = take_str(&mut p, "token")?.filter(|s| !s.is_empty());
        let stale = take_bool(&mut p, "stale")?;
        let required = |p: &mut Map<String, Value>, k: &str, what: &str| {
            take_str(p, k)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(format!("Must specify a single {what} to watch")))
        };
        let kind = match kind_name.as_str() {
            "key" => WatchKind::Key(required(&mut p, "key", "key")?),
            "keyprefix" => WatchKind::KeyPrefix(required(&mut p, "prefix", "prefix")?),
            "services" => WatchKind::Services,
            "nodes" => WatchKind::Nodes,
            "service" => {
                let service = required(&mut p, "service", "service")?;
                let tags = match p.remove("tag") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(s)) => vec![s],
                    Some(Value::Array(a)) => a
                        .into_iter()
                        .map(|t| match t {
                            Value::String(s) => Ok(s),
                            _ => Err(invalid("Expecting tag to be a string or list of strings")),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(invalid("Expecting tag to be a string or list of strings"))
                    }
                };
                let passing_only = take_bool(&mut p, "passingonly")?;
                WatchKind::Service {
                    service,
                    tags,
                    passing_only,
                }
            }
            "checks" => {
                let service = take_str(&mut p, "service")?.filter(|s| !s.is_empty());
                let state = take_str(&mut p, "state")?.filter(|s| !s.is_empty());
                if service.is_some() && state.is_some() {
                    return Err(invalid("Cannot specify service and state"));
                }
                if let Some(s) = &state {
                    if !["any", "passing", "warning", "critical"].contains(&s.as_str()) {
                        return Err(invalid(format!(
                            "Invalid state {s:?}: use any, passing, warning or critical"
                        )));
                    }
                }
                WatchKind::Checks { service, state }
            }
            "event" => WatchKind::Event {
                name: take_str(&mut p, "name")?.filter(|s| !s.is_empty()),
            },
            other => return Err(invalid(format!("Unsupported watch type: {other}"))),
        };
        if !p.is_empty() {
            let keys: Vec<&str> = p.keys().map(String::as_str).collect();
            return Err(invalid(format!("Invalid parameters: [{}]", keys.join(" "))));
        }
        Ok(Self {
            kind,
            datacenter,
            token,
            stale,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            WatchKind::Key(_) => "key",
            WatchKind::KeyPrefix(_) => "keyprefix",
            WatchKind::Services => "services",
            WatchKind::Nodes => "nodes",
            WatchKind::Service { .. } => "service",
            WatchKind::Checks { .. } => "checks",
            WatchKind::Event { .. } => "event",
        }
    }

    /// The API path and query of this watch's read.
    fn request(&self) -> (String, Vec<(&'static str, String)>) {
        let mut q = Vec::new();
        let path = match &self.kind {
            WatchKind::Key(k) => format!("kv/{}", key_path(k)),
            WatchKind::KeyPrefix(p) => {
                q.push(("recurse", String::new()));
                format!("kv/{}", key_path(p))
            }
            WatchKind::Services => "catalog/services".into(),
            WatchKind::Nodes => "catalog/nodes".into(),
            WatchKind::Service {
                service,
                tags,
                passing_only,
            } => {
                q.extend(tags.iter().map(|t| ("tag", t.clone())));
                if *passing_only {
                    q.push(("passing", String::new()));
                }
                format!("health/service/{}", key_path(service))
            }
            WatchKind::Checks { service, state } => match (service, state) {
                (Some(s), _) => format!("health/checks/{}", key_path(s)),
                (None, s) => format!("health/state/{}", s.as_deref().unwrap_or("any")),
            },
            WatchKind::Event { name } => {
                if let Some(n) = name {
                    q.push(("name", n.clone()));
                }
                "event/list".into()
            }
        };
        if self.stale {
            q.push(("stale", String::new()));
        }
        (path, q)
    }

    /// One (blocking) read: the index and the data handlers receive, in the
    /// shapes Consul's Go API gives them (a key watch gets one KV pair or
    /// null; pairs always carry `Session`).
    async fn fetch(
        &self,
        api: &ApiClient,
        index: u64,
        wait: Option<Duration>,
    ) -> Result<(u64, Value), WatchError> {
        let (path, mut q) = self.request();
        if index > 0 {
            q.push(("index", index.to_string()));
            if let Some(w) = wait {
                q.push(("wait", format!("{}ms", w.as_millis())));
            }
        }
        let reply = api.call(Method::GET, &path, &q, None).await?;
        let data = reply.json()?.unwrap_or(Value::Null);
        let with_session = |mut v: Value| {
            if let Some(o) = v.as_object_mut() {
                o.entry("Session").or_insert(Value::String(String::new()));
            }
            v
        };
        let data = match (&self.kind, data) {
            (WatchKind::Key(_), Value::Array(a)) => a
                .into_iter()
                .next()
                .map(with_session)
                .unwrap_or(Value::Null),
            (WatchKind::KeyPrefix(_), Value::Array(a)) => {
                Value::Array(a.into_iter().map(with_session).collect())
            }
            (_, d) => d,
        };
        Ok((reply.index, data))
    }

    /// Run until `stop`: call `handler` with the data on the first answer
    /// and on every real change after. A failing handler ends the plan when
    /// `handler_errors_fatal` (the CLI, as Consul's), else it is logged.
    pub async fn run(
        &self,
        api: &ApiClient,
        wait: Option<Duration>,
        handler: &Handler,
        handler_errors_fatal: bool,
        stop: &CancellationToken,
    ) -> Result<(), WatchError> {
        let mut last: Option<u64> = None;
        let mut last_data: Option<Value> = None;
        let mut failures: u32 = 0;
        loop {
            let fetched = tokio::select! {
                r = self.fetch(api, last.unwrap_or(0), wait) => r,
                _ = stop.cancelled() => return Ok(()),
            };
            let (index, mut data) = match fetched {
                Ok(r) => {
                    failures = 0;
                    r
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let retry = (RETRY_BASE * failures.saturating_mul(failures)).min(MAX_BACKOFF);
                    tracing::warn!(
                        "Watch (type: {}) errored: {e}, retry in {retry:?}",
                        self.type_name()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => continue,
                        _ = stop.cancelled() => return Ok(()),
                    }
                }
            };
            if last == Some(index) {
                continue; // the wait ended without a change
            }
            if let WatchKind::Event { .. } = self.kind {
                prune_seen_events(&mut data, last);
            }
            let first = last.replace(index).is_none();
            if !first && last_data.as_ref() == Some(&data) {
                continue; // the index moved but what we watch did not
            }
            last_data = Some(data.clone());
            if let Err(e) = handler.invoke(index, &data).await {
                if handler_errors_fatal {
                    return Err(e);
                }
                tracing::error!(watch = self.type_name(), error = %e, "watch handler failed");
            }
        }
    }
}

/// Keep only the events after the one whose index was `last` (Consul's
/// event watch hands each event to the handler once).
fn prune_seen_events(data: &mut Value, last: Option<u64>) {
    let (Some(last), Value::Array(events)) = (last, data) else {
        return;
    };
    let seen = events.iter().position(|e| {
        e.get("ID")
            .and_then(Value::as_str)
            .is_some_and(|id| event_index(id) == last)
    });
    if let Some(i) = seen {
        events.drain(..=i);
    }
}

/// What runs on a change.
#[derive(Clone, Debug)]
pub enum Handler {
    /// Print the JSON, indented (the CLI without a command).
    Print,
    /// Run a program with the JSON on stdin and `CONSUL_INDEX` in its
    /// environment. `log_output`: keep its output for the log (the agent)
    /// instead of passing it through (the CLI).
    Exec {
        argv: Vec<String>,
        log_output: bool,
    },
    Http(HttpHandler),
}

#[derive(Clone, Debug)]
pub struct HttpHandler {
    pub path: String,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls_skip_verify: bool,
}

/// `$SHELL -c <script>` (or `/bin/sh`), as Consul runs script handlers.
pub fn shell_argv(script: &str) -> Vec<String> {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    vec![shell, "-c".into(), script.to_string()]
}

fn truncate(mut s: String) -> String {
    if s.len() > OUTPUT_LOG_MAX {
        let mut cut = OUTPUT_LOG_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ... (truncated)");
    }
    s
}

impl Handler {
    pub async fn invoke(&self, index: u64, data: &Value) -> Result<(), WatchError> {
        match self {
            Handler::Print => {
                let mut buf = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                serde::Serialize::serialize(data, &mut ser)
                    .map_err(|e| WatchError::Handler(e.to_string()))?;
                buf.push(b'\n');
                let mut out = tokio::io::stdout();
                out.write_all(&buf)
                    .await
                    .map_err(|e| WatchError::Handler(e.to_string()))?;
                out.flush()
                    .await
                    .map_err(|e| WatchError::Handler(e.to_string()))
            }
            Handler::Exec { argv, log_output } => run_exec(argv, *log_output, index, data).await,
            Handler::Http(h) => run_http(h, index, data).await,
        }
    }
}

async fn run_exec(
    argv: &[String],
    log_output: bool,
    index: u64,
    data: &Value,
) -> Result<(), WatchError> {
    use std::process::Stdio;
    let Some((prog, args)) = argv.split_first() else {
        return Err(WatchError::Handler("empty command".into()));
    };
    let mut input = serde_json::to_vec(data).map_err(|e| WatchError::Handler(e.to_string()))?;
    input.push(b'\n');
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    if log_output {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| WatchError::Handler(format!("{prog}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that ignores its input may exit before reading it all.
        let _ = stdin.write_all(&input).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| WatchError::Handler(e.to_string()))?;
    if log_output {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !text.trim().is_empty() {
            tracing::debug!(handler = %prog, output = %truncate(text), "watch handler output");
        }
    }
    if !out.status.success() {
        return Err(WatchError::Handler(format!("{prog}: {}", out.status)));
    }
    Ok(())
}

async fn run_http(h: &HttpHandler, index: u64, data: &Value) -> Result<(), WatchError> {
    let client = reqwest::Client::builder()
        .timeout(h.timeout)
        .danger_accept_invalid_certs(h.tls_skip_verify)
        .build()
        .map_err(|e| WatchError::Handler(e.to_string()))?;
    let mut body = serde_json::to_vec(data).map_err(|e| WatchError::Handler(e.to_string()))?;
    body.push(b'\n');
    let mut req = client
        .request(h.method.clone(), &h.path)
        .header("Content-Type", "application/json")
        .header("X-Consul-Index", index.to_string())
        .body(body);
    for (k, v) in &h.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| WatchError::Handler(format!("{}: {e}", h.path)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(WatchError::Handler(format!(
            "{} answered {status}: {}",
            h.path,
            truncate(text)
        )));
    }
    tracing::trace!(handler = %h.path, output = %truncate(text), "http watch handler output");
    Ok(())
}

/// A watch from an agent config file, ready to run.
#[derive(Clone, Debug)]
pub struct ConfigWatch {
    pub spec: WatchSpec,
    pub handler: Handler,
}

/// Parse one entry of `watches` (Consul's keys: the watch parameters plus
/// `args`, the deprecated `handler`, `handler_type` and `http_handler_config`).
pub fn parse_config(v: &Value) -> Result<ConfigWatch, WatchError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("a watch must be an object"))?;
    let spec = WatchSpec::parse(obj)?;
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let handler_type = match get("handler_type") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("handler_type must be a string")),
    };
    let handler = match handler_type {
        "http" => {
            let c = get("http_handler_config")
                .ok_or_else(|| {
                    invalid("Handler type 'http' requires 'http_handler_config' to be set")
                })?
                .as_object()
                .ok_or_else(|| invalid("http_handler_config must be an object"))?;
            let s = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let path =
                s("path").ok_or_else(|| invalid("http handler requires 'path' to be set"))?;
            reqwest::Url::parse(path)
                .map_err(|e| invalid(format!("http handler path {path:?}: {e}")))?;
            let method = Method::from_bytes(
                s("method")
                    .unwrap_or("POST")
                    .to_ascii_uppercase()
                    .as_bytes(),
            )
            .map_err(|_| invalid("http handler method is not a valid HTTP method"))?;
            let timeout = match s("timeout") {
                None => HTTP_HANDLER_TIMEOUT,
                Some(t) => parse_duration(t).filter(|d| !d.is_zero()).ok_or_else(|| {
                    invalid(format!("http handler timeout {t:?} is not a duration"))
                })?,
            };
            let mut headers = Vec::new();
            if let Some(h) = c.get("header").filter(|v| !v.is_null()) {
                let h = h.as_object().ok_or_else(|| {
                    invalid("http handler header must map names to lists of values")
                })?;
                for (name, vals) in h {
                    let vals: Vec<&Value> = match vals {
                        Value::Array(a) => a.iter().collect(),
                        v => vec![v],
                    };
                    for v in vals {
                        let v = v.as_str().ok_or_else(|| {
                            invalid("http handler header must map names to lists of values")
                        })?;
                        headers.push((name.clone(), v.to_string()));
                    }
                }
            }
            let tls_skip_verify = c
                .get("tls_skip_verify")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Handler::Http(HttpHandler {
                path: path.to_string(),
                method,
                headers,
                timeout,
                tls_skip_verify,
            })
        }
        "" | "script" => {
            let handler = get("handler");
            let args = get("args");
            match (handler, args) {
                (Some(_), Some(_)) => {
                    return Err(invalid("Cannot define both watch handler and args"))
                }
                (Some(Value::String(script)), None) if !script.is_empty() => Handler::Exec {
                    argv: shell_argv(script),
                    log_output: true,
                },
                (Some(_), None) => return Err(invalid("Watch handler must be a non-empty string")),
                (None, Some(Value::Array(a))) if !a.is_empty() => Handler::Exec {
                    argv: a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| invalid("Watch args must be a list of strings"))
                        })
                        .collect::<Result<_, _>>()?,
                    log_output: true,
                },
                (None, Some(_)) => {
                    return Err(invalid("Watch args must be a non-empty list of strings"))
                }
                (None, None) => {
                    return Err(invalid(
                        "Must define a watch handler: args, or handler_type \"http\"",
                    ))
                }
            }
        }
        other => return Err(invalid(format!("Handler type '{other}' not recognized"))),
    };
    Ok(ConfigWatch { spec, handler })
}

/// A config-file watch that cannot run, numbered from 1 in file order.
#[derive(Debug, thiserror::Error)]
#[error("watch #{number}: {source}")]
pub struct ConfigWatchError {
    pub number: usize,
    pub source: WatchError,
}

/// Parse every config-file watch; the first bad one is the error.
pub fn parse_config_watches(defs: &[Value]) -> Result<Vec<ConfigWatch>, ConfigWatchError> {
    defs.iter()
        .enumerate()
        .map(|(i, v)| {
            parse_config(v).map_err(|source| ConfigWatchError {
                number: i + 1,
                source,
            })
        })
        .collect()
}

/// Run config-file watches inside the agent, against its HTTP API at `http`.
pub fn spawn_config_watches(watches: Vec<ConfigWatch>, http: SocketAddr, stop: CancellationToken) {
    let mut addr = http;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    for w in watches {
        let stop = stop.clone();
        let api = ApiClient::new(crate::apiclient::Config {
            address: addr.to_string(),
            token: w.spec.token.clone(),
            datacenter: w.spec.datacenter.clone(),
            ..crate::apiclient::Config::default()
        });
        tracing::info!(watch = w.spec.type_name(), "starting watch from config");
        tokio::spawn(async move {
            // Handler errors are logged, never fatal, inside the agent.
            let _ = w.spec.run(&api, None, &w.handler, false, &stop).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<WatchSpec, WatchError> {
        WatchSpec::parse(v.as_object().unwrap())
    }

    /// Consul's parameters per type, and its complaints.
    #[test]
    fn parse_params() {
        let s = spec(json!({"type": "key", "key": "app/x", "args": ["cat"]})).unwrap();
        assert_eq!(s.kind, WatchKind::Key("app/x".into()));
        let s = spec(
            json!({"type": "service", "service": "web", "tag": ["a", "b"], "passingonly": true}),
        )
        .unwrap();
        assert_eq!(
            s.kind,
            WatchKind::Service {
                service: "web".into(),
                tags: vec!["a".into(), "b".into()],
                passing_only: true
            }
        );
        assert_eq!(
            s.request().1,
            vec![
                ("tag", "a".into()),
                ("tag", "b".into()),
                ("passing", String::new())
            ]
        );
        let s = spec(json!({"type": "checks"})).unwrap();
        assert_eq!(s.request().0, "health/state/any");
        for (bad, msg) in [
            (json!({"key": "x"}), "Watch type must be specified"),
            (json!({"type": "key"}), "Must specify a single key to watch"),
            (
                json!({"type": "keyprefix", "prefix": "p", "key": "x"}),
                "Invalid parameters: [key]",
            ),
            (
                json!({"type": "checks", "service": "a", "state": "passing"}),
                "Cannot specify",
            ),
            (json!({"type": "bogus"}), "Unsupported watch type"),
        ] {
            let e = spec(bad).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
    }

    /// Handlers from config: args, deprecated handler, http; conflicts refused.
    #[test]
    fn parse_handlers() {
        let w = parse_config(&json!({"type": "nodes", "args": ["/bin/true", "x"]})).unwrap();
        assert!(matches!(w.handler, Handler::Exec { ref argv, .. } if argv == &["/bin/true", "x"]));
        let w = parse_config(&json!({"type": "nodes", "handler": "echo hi"})).unwrap();
        assert!(matches!(w.handler, Handler::Exec { ref argv, .. } if argv[1] == "-c"));
        let w = parse_config(&json!({
            "type": "event", "name": "deploy", "handler_type": "http",
            "http_handler_config": {"path": "http://127.0.0.1:1/hook", "method": "put",
                                    "header": {"x-a": ["1", "2"]}, "timeout": "3s"}
        }))
        .unwrap();
        let Handler::Http(h) = w.handler else {
            panic!()
        };
        assert_eq!(
            (h.method, h.headers.len(), h.timeout),
            (Method::PUT, 2, Duration::from_secs(3))
        );
        for bad in [
            json!({"type": "nodes"}),
            json!({"type": "nodes", "handler": "x", "args": ["y"]}),
            json!({"type": "nodes", "handler_type": "http"}),
            json!({"type": "nodes", "handler_type": "http", "http_handler_config": {}}),
            json!({"type": "nodes", "handler_type": "carrier-pigeon", "args": ["x"]}),
            json!({"type": "nodes", "args": "x"}),
        ] {
            assert!(parse_config(&bad).is_err(), "{bad}");
        }
    }

    /// An event watch hands on only the events after the last one seen.
    #[test]
    fn event_pruning() {
        let a = "00000000-0000-0000-0000-00000000000a";
        let b = "00000000-0000-0000-0000-00000000000b";
        let mut data = json!([{"ID": a}, {"ID": b}]);
        prune_seen_events(&mut data, Some(event_index(a)));
        assert_eq!(data, json!([{"ID": b}]));
        let mut data = json!([{"ID": a}]);
        prune_seen_events(&mut data, None);
        assert_eq!(data, json!([{"ID": a}]));
    }
}
