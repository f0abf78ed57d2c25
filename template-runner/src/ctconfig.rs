//! consul-template's configuration files: `-config FILE|DIR` (repeatable),
//! HCL or JSON, merged in order (a directory's `*.hcl`/`*.json` by name):
//! later scalars win, `template` blocks add up. Flags override the files;
//! SIGHUP re-reads them.
//!
//! Read: `consul { address token ssl { enabled verify ca_cert ca_path cert key
//! server_name } retry { enabled attempts backoff max_backoff } }`, `template { source
//! contents destination command command_timeout perms backup
//! left_delimiter right_delimiter wait error_on_missing_key
//! create_dest_dirs engine }`, `wait`, `max_stale`, `kill_signal`,
//! `reload_signal`, `pid_file`, `log_level`, `exec { command splay
//! reload_signal kill_signal kill_timeout env { pristine custom allowlist
//! denylist } }`. Other keys (vault, syslog, dedup, ...) are warned about
//! and ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use crate::exec::{parse_signal, ExecEnv};
use crate::gosyntax::Engine;
use crate::helpers::Flavor;
use crate::render::TemplateOptions;
use crate::resource::{parse_duration, Owner, Resource, Wait, DEFAULT_COMMAND_TIMEOUT};
use crate::watch::QueryRetry;

const TOP: &[&str] = &[
    "consul",
    "template",
    "wait",
    "max_stale",
    "kill_signal",
    "reload_signal",
    "pid_file",
    "log_level",
    "exec",
    "metrics_addr",
];
const CONSUL: &[&str] = &["address", "token", "ssl", "retry"];
const SSL: &[&str] = &[
    "enabled",
    "verify",
    "ca_cert",
    "ca_path",
    "cert",
    "key",
    "server_name",
];
const RETRY: &[&str] = &["enabled", "attempts", "backoff", "max_backoff"];
const TEMPLATE: &[&str] = &[
    "source",
    "contents",
    "destination",
    "command",
    "command_timeout",
    "perms",
    "backup",
    "left_delimiter",
    "right_delimiter",
    "wait",
    "error_on_missing_key",
    "create_dest_dirs",
    "engine",
];
const EXEC: &[&str] = &[
    "command",
    "splay",
    "reload_signal",
    "kill_signal",
    "kill_timeout",
    "env",
    "enabled",
];
const ENV: &[&str] = &[
    "pristine",
    "custom",
    "allowlist",
    "denylist",
    "whitelist",
    "blacklist",
];

/// TLS to the agent (`consul { ssl { ... } }`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub enabled: bool,
    pub verify: bool,
    pub ca_cert: Option<PathBuf>,
    /// A directory of CA certificates.
    pub ca_path: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// Certificates are verified unless `verify = false` says otherwise.
impl Default for Tls {
    fn default() -> Self {
        Tls {
            enabled: false,
            verify: true,
            ca_cert: None,
            ca_path: None,
            cert: None,
            key: None,
            server_name: None,
        }
    }
}

/// `exec { ... }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecConfig {
    pub command: Option<String>,
    pub splay: Option<Duration>,
    pub reload_signal: Option<Signal>,
    pub kill_signal: Option<Signal>,
    pub kill_timeout: Option<Duration>,
    pub env: ExecEnv,
}

/// Everything the files say, merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CtConfig {
    pub address: Option<String>,
    pub token: Option<String>,
    pub tls: Tls,
    /// How failed queries are retried, when a `retry` block says.
    pub retry: Option<QueryRetry>,
    pub templates: Vec<Resource>,
    pub wait: Option<Wait>,
    pub max_stale: Option<Duration>,
    pub kill_signal: Option<Signal>,
    pub reload_signal: Option<Signal>,
    pub pid_file: Option<PathBuf>,
    pub log_level: Option<String>,
    /// tribune-template's own: where `-metrics-addr` serves.
    pub metrics_addr: Option<String>,
    pub exec: Option<ExecConfig>,
    /// Keys we ignored, one message each.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

/// The files named by `-config` arguments: a file as it is, a directory's
/// `*.hcl` and `*.json` sorted by name.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for p in paths {
        let err = |e: std::io::Error| ConfigError {
            path: p.display().to_string(),
            msg: e.to_string(),
        };
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(f.extension().and_then(|e| e.to_str()), Some("hcl" | "json"))
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            std::fs::metadata(p).map_err(err)?;
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Read and merge `-config` paths.
pub fn load(paths: &[PathBuf]) -> Result<CtConfig, ConfigError> {
    let mut c = CtConfig::default();
    for f in files(paths)? {
        let text = std::fs::read_to_string(&f).map_err(|e| ConfigError {
            path: f.display().to_string(),
            msg: e.to_string(),
        })?;
        c.merge_text(&f, &text)?;
    }
    Ok(c)
}

/// Drop keys not in `known` from an object, with one warning each.
fn prune(v: &mut Value, known: &[&str], at: &str, warnings: &mut Vec<String>) {
    if let Value::Object(m) = v {
        m.retain(|k, _| {
            let keep = known.contains(&k.as_str());
            if !keep {
                warnings.push(format!("{at}{k} is not supported; ignored"));
            }
            keep
        });
    }
}

/// A block given once is an object, given twice a list of objects.
fn blocks(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => vec![],
    }
}

/// The last of repeated blocks (`consul {}` twice in one file).
fn block(v: Option<&Value>) -> Option<Map<String, Value>> {
    match blocks(v).pop() {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, msg: String) -> ConfigError {
        ConfigError {
            path: self.path.display().to_string(),
            msg,
        }
    }

    fn string(&self, m: &Map<String, Value>, k: &str) -> Result<Option<String>, ConfigError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(self.err(format!("{k}: expected a string, got {other}"))),
        }
    }

    fn boolean(&self, m: &Map<String, Value>, k: &str) -> Result<Option<bool>, ConfigError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(self.err(format!("{k}: expected true or false, got {other}"))),
        }
    }

    /// A Go duration string, or a number of seconds.
    fn duration(&self, m: &Map<String, Value>, k: &str) -> Result<Option<Duration>, ConfigError> {
        self.string(m, k)?
            .map(|s| {
                parse_duration(&s).ok_or_else(|| self.err(format!("{k}: invalid duration {s:?}")))
            })
            .transpose()
    }

    fn signal(&self, m: &Map<String, Value>, k: &str) -> Result<Option<Signal>, ConfigError> {
        self.string(m, k)?
            .filter(|s| !s.is_empty())
            .map(|s| parse_signal(&s).ok_or_else(|| self.err(format!("{k}: unknown signal {s:?}"))))
            .transpose()
    }

    /// A command as a string, or a list of words (joined for `sh -c`).
    fn command(&self, m: &Map<String, Value>, k: &str) -> Result<Option<String>, ConfigError> {
        match m.get(k) {
            Some(Value::Array(a)) => {
                let words: Vec<String> = a
                    .iter()
                    .map(|w| w.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| self.err(format!("{k}: expected a list of strings")))?;
                Ok((!words.is_empty()).then(|| shell_words::join(words)))
            }
            _ => Ok(self.string(m, k)?.filter(|c| !c.trim().is_empty())),
        }
    }

    fn strings(&self, m: &Map<String, Value>, k: &str) -> Result<Vec<String>, ConfigError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|w| w.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| self.err(format!("{k}: expected a list of strings"))),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(other) => Err(self.err(format!("{k}: expected a list, got {other}"))),
        }
    }

    /// `wait = "1s:5s"` or `wait { min = "1s" max = "5s" }`.
    fn wait(&self, v: Option<&Value>) -> Result<Option<Wait>, ConfigError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Wait::parse(s).map(Some).map_err(|e| self.err(e)),
            Some(_) => {
                let Some(m) = block(v) else {
                    return Err(self.err("wait: expected \"min:max\" or { min max }".into()));
                };
                let Some(min) = self.duration(&m, "min")? else {
                    return Ok(None);
                };
                let max = self.duration(&m, "max")?.unwrap_or(min * 4);
                if max < min {
                    return Err(self.err("wait: max is smaller than min".into()));
                }
                Ok(Some(Wait { min, max }))
            }
        }
    }

    /// `perms`: an octal string, or a number written in octal digits (HCL
    /// reads `0644` as 644).
    fn perms(&self, m: &Map<String, Value>) -> Result<Option<u32>, ConfigError> {
        let Some(p) = self.string(m, "perms")? else {
            return Ok(None);
        };
        let digits = p.trim().trim_start_matches("0o");
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Some)
            .ok_or_else(|| {
                self.err(format!(
                    "perms: invalid mode {p:?}: use octal like \"0644\""
                ))
            })
    }
}

impl CtConfig {
    /// Merge one file's text (HCL, or JSON for `.json`) into `self`.
    pub fn merge_text(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let r = Reader { path };
        let mut v: Value = if path.extension().and_then(|e| e.to_str()) == Some("json") {
            serde_json::from_str(text).map_err(|e| r.err(e.to_string()))?
        } else {
            hcl::from_str(text).map_err(|e| r.err(e.to_string()))?
        };
        let at = format!("{}: ", path.display());
        prune(&mut v, TOP, &at, &mut self.warnings);
        let Value::Object(top) = v else {
            return Err(r.err("expected a configuration object".into()));
        };
        if let Some(mut c) = block(top.get("consul")).map(Value::Object) {
            prune(&mut c, CONSUL, &format!("{at}consul."), &mut self.warnings);
            self.merge_consul(&r, &at, c)?;
        }
        for (i, t) in blocks(top.get("template")).into_iter().enumerate() {
            let mut t = t;
            prune(
                &mut t,
                TEMPLATE,
                &format!("{at}template."),
                &mut self.warnings,
            );
            let Value::Object(m) = t else { continue };
            let n = self.templates.len() + 1;
            self.templates.push(template(&r, &m, i + 1, n)?);
        }
        if let Some(w) = r.wait(top.get("wait"))? {
            self.wait = Some(w);
        }
        self.max_stale = r.duration(&top, "max_stale")?.or(self.max_stale);
        self.kill_signal = r.signal(&top, "kill_signal")?.or(self.kill_signal);
        self.reload_signal = r.signal(&top, "reload_signal")?.or(self.reload_signal);
        self.pid_file = r
            .string(&top, "pid_file")?
            .map(PathBuf::from)
            .or(self.pid_file.take());
        self.log_level = r.string(&top, "log_level")?.or(self.log_level.take());
        self.metrics_addr = r.string(&top, "metrics_addr")?.or(self.metrics_addr.take());
        if let Some(mut e) = block(top.get("exec")).map(Value::Object) {
            prune(&mut e, EXEC, &format!("{at}exec."), &mut self.warnings);
            self.merge_exec(&r, &at, e)?;
        }
        Ok(())
    }

    fn merge_consul(&mut self, r: &Reader, at: &str, c: Value) -> Result<(), ConfigError> {
        let Value::Object(c) = c else { return Ok(()) };
        self.address = r.string(&c, "address")?.or(self.address.take());
        self.token = r.string(&c, "token")?.or(self.token.take());
        if let Some(mut s) = block(c.get("ssl")).map(Value::Object) {
            prune(&mut s, SSL, &format!("{at}consul.ssl."), &mut self.warnings);
            let Value::Object(s) = s else { return Ok(()) };
            let t = &mut self.tls;
            t.enabled = r.boolean(&s, "enabled")?.unwrap_or(t.enabled);
            // consul-template verifies unless told not to.
            t.verify = r.boolean(&s, "verify")?.unwrap_or(t.verify);
            t.ca_cert = r
                .string(&s, "ca_cert")?
                .map(PathBuf::from)
                .or(t.ca_cert.take());
            t.ca_path = r
                .string(&s, "ca_path")?
                .map(PathBuf::from)
                .or(t.ca_path.take());
            t.cert = r.string(&s, "cert")?.map(PathBuf::from).or(t.cert.take());
            t.key = r.string(&s, "key")?.map(PathBuf::from).or(t.key.take());
            t.server_name = r.string(&s, "server_name")?.or(t.server_name.take());
        }
        if let Some(mut rt) = block(c.get("retry")).map(Value::Object) {
            prune(
                &mut rt,
                RETRY,
                &format!("{at}consul.retry."),
                &mut self.warnings,
            );
            let Value::Object(rt) = rt else { return Ok(()) };
            let old = self.retry.unwrap_or_default();
            let backoff = r.duration(&rt, "backoff")?.unwrap_or(old.backoff);
            let max_backoff = r
                .duration(&rt, "max_backoff")?
                .unwrap_or(old.max_backoff)
                .max(backoff);
            // consul-template: 0 attempts retries forever; `enabled = false`
            // gives up at the first failure. Unset keeps tribune's default
            // (never give up) rather than consul-template's 12.
            let attempts = match r.string(&rt, "attempts")? {
                None => old.attempts,
                Some(a) => match a.trim().parse::<u32>() {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => return Err(r.err(format!("retry.attempts: invalid number {a:?}"))),
                },
            };
            let attempts = match r.boolean(&rt, "enabled")? {
                Some(false) => Some(0),
                _ => attempts,
            };
            self.retry = Some(QueryRetry {
                backoff,
                max_backoff,
                attempts,
            });
        }
        Ok(())
    }

    fn merge_exec(&mut self, r: &Reader, at: &str, e: Value) -> Result<(), ConfigError> {
        let Value::Object(e) = e else { return Ok(()) };
        let x = self.exec.get_or_insert_with(ExecConfig::default);
        x.command = r.command(&e, "command")?.or(x.command.take());
        x.splay = r.duration(&e, "splay")?.or(x.splay);
        x.reload_signal = r.signal(&e, "reload_signal")?.or(x.reload_signal);
        x.kill_signal = r.signal(&e, "kill_signal")?.or(x.kill_signal);
        x.kill_timeout = r.duration(&e, "kill_timeout")?.or(x.kill_timeout);
        if let Some(mut env) = block(e.get("env")).map(Value::Object) {
            prune(&mut env, ENV, &format!("{at}exec.env."), &mut self.warnings);
            let Value::Object(env) = env else {
                return Ok(());
            };
            x.env.pristine = r.boolean(&env, "pristine")?.unwrap_or(x.env.pristine);
            for kv in r.strings(&env, "custom")? {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| r.err(format!("exec.env.custom: {kv:?} is not KEY=value")))?;
                x.env.custom.push((k.to_string(), v.to_string()));
            }
            let pats = |keys: [&str; 2]| -> Result<Vec<String>, ConfigError> {
                let mut out = Vec::new();
                for k in keys {
                    out.extend(r.strings(&env, k)?);
                }
                Ok(out)
            };
            x.env.allow.extend(pats(["allowlist", "whitelist"])?);
            x.env.deny.extend(pats(["denylist", "blacklist"])?);
        }
        Ok(())
    }
}

/// One `template { ... }` block as a resource (paths as given: relative to
/// the working directory, as consul-template reads them).
fn template(
    r: &Reader,
    m: &Map<String, Value>,
    i: usize,
    n: usize,
) -> Result<Resource, ConfigError> {
    let origin = format!("{} template #{i}", r.path.display());
    let bad = |msg: String| r.err(format!("template #{i}: {msg}"));
    let source = r.string(m, "source")?.filter(|s| !s.is_empty());
    let contents = r.string(m, "contents")?;
    let dest = r
        .string(m, "destination")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("destination is required".into()))?;
    let src = match (&source, &contents) {
        (Some(_), Some(_)) => return Err(bad("source and contents are mutually exclusive".into())),
        (None, None) => return Err(bad("source or contents is required".into())),
        (Some(s), None) => PathBuf::from(s),
        (None, Some(_)) => PathBuf::from(format!("{} template {n} contents", r.path.display())),
    };
    let engine = r
        .string(m, "engine")?
        .map(|e| Engine::parse(&e).ok_or_else(|| bad(format!("invalid engine {e:?}"))))
        .transpose()?
        // Inline contents are consul-template's: Go unless told otherwise.
        .or(contents.as_ref().map(|_| Engine::Go));
    let left = r.string(m, "left_delimiter")?.filter(|d| !d.is_empty());
    let right = r.string(m, "right_delimiter")?.filter(|d| !d.is_empty());
    let delims = match (left, right) {
        (None, None) => None,
        (l, r) => Some((
            l.unwrap_or_else(|| "{{".into()),
            r.unwrap_or_else(|| "}}".into()),
        )),
    };
    Ok(Resource {
        origin,
        src,
        dest: PathBuf::from(dest),
        keys: vec![],
        prefix: String::new(),
        mode: r.perms(m)?,
        owner: Owner {
            uid: None,
            gid: None,
        },
        check_cmd: None,
        reload_cmd: r.command(m, "command")?,
        wait: r.wait(m.get("wait"))?,
        backup: r.boolean(m, "backup")?.unwrap_or(false),
        command_timeout: r
            .duration(m, "command_timeout")?
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        options: TemplateOptions {
            engine,
            flavor: Flavor::ConsulTemplate,
            delims,
            error_on_missing_key: r.boolean(m, "error_on_missing_key")?.unwrap_or(false),
        },
        contents,
        create_dirs: r.boolean(m, "create_dest_dirs")?.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `retry.attempts` bounds query retries (0 = forever, as in
    /// consul-template); `enabled = false` gives up at the first failure.
    /// `metrics_addr` is read (no "unsupported" warning); a later file wins.
    #[test]
    fn metrics_addr_key() {
        let mut c = CtConfig::default();
        c.merge_text(Path::new("a.hcl"), "metrics_addr = \"127.0.0.1:9102\"\n")
            .unwrap();
        assert_eq!(c.metrics_addr.as_deref(), Some("127.0.0.1:9102"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        c.merge_text(Path::new("b.json"), r#"{"metrics_addr": ":9200"}"#)
            .unwrap();
        assert_eq!(c.metrics_addr.as_deref(), Some(":9200"));
    }

    #[test]
    fn retry_attempts() {
        let read = |text: &str| {
            let mut c = CtConfig::default();
            c.merge_text(Path::new("r.hcl"), text).map(|_| c.retry)
        };
        let r = read("consul {\n retry {\n attempts = 3\n backoff = \"100ms\"\n }\n}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.attempts, r.backoff, r.max_backoff),
            (Some(3), Duration::from_millis(100), Duration::from_secs(60))
        );
        let r = read("consul {\n retry {\n attempts = 0\n }\n}\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.attempts, None);
        let r = read("consul {\n retry {\n enabled = false\n }\n}\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.attempts, Some(0));
        assert!(read("consul {\n retry {\n attempts = \"x\"\n }\n}\n").is_err());
    }

    /// Two files merge: templates add up, later scalars win, unknown keys
    /// are warned about, HCL's octal perms and both wait forms parse.
    #[test]
    fn hcl_and_json_merge() {
        let mut c = CtConfig::default();
        c.merge_text(
            Path::new("a.hcl"),
            r#"
consul {
  address = "127.0.0.1:8500"
  token = "t1"
  retry {
    backoff = "1s"
    max_backoff = "10s"
  }
}
vault { address = "x" }
wait {
  min = "2s"
  max = "10s"
}
log_level = "warn"
template {
  source = "in.ctmpl"
  destination = "out.conf"
  command = "echo hi"
  perms = 0640
  wait = "1s:3s"
  left_delimiter = "[["
}
template {
  contents = "{{ key \"a\" }}"
  destination = "b.conf"
  command = ["nginx", "-s", "reload"]
  error_on_missing_key = true
  create_dest_dirs = false
}
exec {
  command = "sleep 60"
  splay = "1s"
  kill_timeout = "2s"
  env {
    pristine = true
    custom = ["A=1"]
  }
}
"#,
        )
        .unwrap();
        c.merge_text(
            Path::new("b.json"),
            r#"{"consul": {"token": "t2"}, "template": {"source": "c", "destination": "d"}, "reload_signal": "SIGUSR1"}"#,
        )
        .unwrap();
        assert_eq!(c.address.as_deref(), Some("127.0.0.1:8500"));
        assert_eq!(c.token.as_deref(), Some("t2"));
        assert_eq!(
            c.retry,
            Some(QueryRetry {
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
                attempts: None,
            })
        );
        assert_eq!(c.wait.unwrap().max, Duration::from_secs(10));
        assert_eq!(c.templates.len(), 3);
        let t = &c.templates[0];
        assert_eq!(t.mode, Some(0o640));
        assert_eq!(t.wait.unwrap().min, Duration::from_secs(1));
        assert_eq!(t.options.delims, Some(("[[".into(), "}}".into())));
        let t = &c.templates[1];
        assert_eq!(t.reload_cmd.as_deref(), Some("nginx -s reload"));
        assert!(t.options.error_on_missing_key && !t.create_dirs);
        assert_eq!(t.options.engine, Some(Engine::Go));
        let x = c.exec.as_ref().unwrap();
        assert_eq!(x.command.as_deref(), Some("sleep 60"));
        assert!(x.env.pristine);
        assert_eq!(x.env.custom, [("A".to_string(), "1".to_string())]);
        assert_eq!(c.reload_signal, Some(Signal::SIGUSR1));
        assert!(
            c.warnings.iter().any(|w| w.contains("vault")),
            "{:?}",
            c.warnings
        );
        for bad in [
            "template { destination = \"x\" }",
            "template {\nsource = \"a\"\ncontents = \"b\"\ndestination = \"x\"\n}",
            "wait {\nmin = \"5s\"\nmax = \"1s\"\n}",
            "kill_signal = \"SIGNOPE\"",
        ] {
            assert!(
                CtConfig::default()
                    .merge_text(Path::new("x.hcl"), bad)
                    .is_err(),
                "{bad}"
            );
        }
    }

    /// The README's example configuration parses as it is shown.
    #[test]
    fn readme_example_parses() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let at = readme.find("### consul-template's configuration").unwrap();
        let start = readme[at..].find("```hcl\n").unwrap() + at + 7;
        let end = readme[start..].find("```").unwrap() + start;
        let mut c = CtConfig::default();
        c.merge_text(Path::new("readme.hcl"), &readme[start..end])
            .unwrap();
        assert_eq!(c.templates.len(), 1);
        assert!(c.tls.enabled && c.exec.is_some() && c.wait.is_some());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
