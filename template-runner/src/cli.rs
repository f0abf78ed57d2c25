//! Command line: confd's flags and consul-template's, Go style
//! (`-flag`, `--flag`, `-flag=value`), plus confd's TOML `-config-file`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::backend::{
    consul::{Consul, ConsulOptions},
    file::FileBackend,
    Backend,
};
use crate::ctconfig::{self, CtConfig};
use crate::exec::{parse_signal, ExecSpec};
use crate::resource::{parse_duration, Wait};
use crate::runner::{Mode, Options, Runner};

#[derive(Parser, Debug, Default)]
#[command(
    name = "tribune-template",
    version,
    about = "Render config files from tribune/Consul, confd and consul-template style"
)]
pub struct Args {
    /// Directory with conf.d/ and templates/ (default: the current directory).
    #[arg(long)]
    pub confdir: Option<PathBuf>,
    /// confd-style TOML config file (flags override it).
    #[arg(long = "config-file")]
    pub config_file: Option<PathBuf>,
    /// consul (default), file or env.
    #[arg(long)]
    pub backend: Option<String>,
    /// Agent address host:port (repeatable; tried in order).
    #[arg(long)]
    pub node: Vec<String>,
    /// Agent address (consul-template spelling of -node).
    #[arg(long = "consul-addr")]
    pub consul_addr: Option<String>,
    /// ACL token (also CONSUL_HTTP_TOKEN).
    #[arg(long = "consul-token", env = "CONSUL_HTTP_TOKEN")]
    pub consul_token: Option<String>,
    /// Same as -consul-token.
    #[arg(long)]
    pub token: Option<String>,
    /// Talk to the agent over https (also CONSUL_HTTP_SSL).
    #[arg(long = "consul-ssl")]
    pub consul_ssl: bool,
    #[arg(long = "no-consul-ssl", hide = true)]
    pub no_consul_ssl: bool,
    /// Check the agent's certificate (default true; also CONSUL_HTTP_SSL_VERIFY).
    #[arg(long = "consul-ssl-verify")]
    pub consul_ssl_verify: bool,
    #[arg(long = "no-consul-ssl-verify", hide = true)]
    pub no_consul_ssl_verify: bool,
    /// CA certificate(s) of the agent (also CONSUL_CACERT).
    #[arg(long = "consul-ssl-ca-cert")]
    pub consul_ssl_ca_cert: Option<PathBuf>,
    /// Directory of CA certificates (also CONSUL_CAPATH).
    #[arg(long = "consul-ssl-ca-path")]
    pub consul_ssl_ca_path: Option<PathBuf>,
    /// Client certificate presented to the agent (also CONSUL_CLIENT_CERT).
    #[arg(long = "consul-ssl-cert")]
    pub consul_ssl_cert: Option<PathBuf>,
    /// Key of -consul-ssl-cert (also CONSUL_CLIENT_KEY).
    #[arg(long = "consul-ssl-key")]
    pub consul_ssl_key: Option<PathBuf>,
    /// Name the agent's certificate is checked against (also CONSUL_TLS_SERVER_NAME).
    #[arg(long = "consul-ssl-server-name")]
    pub consul_ssl_server_name: Option<String>,
    /// confd: http or https for -node addresses without a scheme.
    #[arg(long)]
    pub scheme: Option<String>,
    /// confd: CA certificate(s) of the agent (same as -consul-ssl-ca-cert).
    #[arg(long = "client-ca-keys")]
    pub client_ca_keys: Option<PathBuf>,
    /// confd: client certificate (same as -consul-ssl-cert).
    #[arg(long = "client-cert")]
    pub client_cert: Option<PathBuf>,
    /// confd: client key (same as -consul-ssl-key).
    #[arg(long = "client-key")]
    pub client_key: Option<PathBuf>,
    /// Prefix joined to every key.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Poll every N seconds instead of blocking queries.
    #[arg(long)]
    pub interval: Option<u64>,
    /// Watch with blocking queries (the default with the consul backend).
    #[arg(long)]
    pub watch: bool,
    /// Render once and exit (non-zero on any failure).
    #[arg(long)]
    pub onetime: bool,
    /// Same as -onetime.
    #[arg(long)]
    pub once: bool,
    /// Log a unified diff of what would change; write nothing.
    #[arg(long)]
    pub noop: bool,
    /// Write files but run no check or reload commands.
    #[arg(long = "sync-only")]
    pub sync_only: bool,
    /// Print rendered templates to stdout instead of writing.
    #[arg(long)]
    pub dry: bool,
    /// Keep the staged file when check_cmd fails.
    #[arg(long = "keep-stage-file")]
    pub keep_stage_file: bool,
    /// trace, debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// `src:dest[:command]` (repeatable).
    #[arg(long)]
    pub template: Vec<String>,
    /// Debounce `min[:max]` for every template (e.g. `2s:10s`).
    #[arg(long)]
    pub wait: Option<String>,
    /// YAML/JSON file for the file backend (repeatable).
    #[arg(long)]
    pub file: Vec<PathBuf>,
    /// Supervise this command (sidecar mode).
    #[arg(long)]
    pub exec: Option<String>,
    /// Signal sent to the child after a change (default: restart it).
    #[arg(long = "exec-reload-signal")]
    pub exec_reload_signal: Option<String>,
    /// Signal that stops the child (default SIGTERM).
    #[arg(long = "exec-kill-signal")]
    pub exec_kill_signal: Option<String>,
    /// Wait this long after the kill signal before SIGKILL (default 30s).
    #[arg(long = "exec-kill-timeout")]
    pub exec_kill_timeout: Option<String>,
    /// consul-template HCL/JSON config file or directory (repeatable).
    #[arg(long)]
    pub config: Vec<PathBuf>,
    /// Let templates run programs with `plugin`.
    #[arg(long = "enable-plugin")]
    pub enable_plugin: bool,
    /// Write our process id here (removed on exit).
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`host:port`;
    /// `:port` is 127.0.0.1).
    #[arg(long = "metrics-addr")]
    pub metrics_addr: Option<String>,
    /// Let any server answer, up to this stale (consul-template's -max-stale).
    #[arg(long = "max-stale")]
    pub max_stale: Option<String>,
}

/// confd's config.toml keys we act on. Other confd keys (TLS, auth, SRV,
/// other backends' settings) are warned about and ignored: a working confd
/// config must not stop startup.
const FILE_CONFIG_KEYS: &[&str] = &[
    "backend",
    "confdir",
    "interval",
    "nodes",
    "prefix",
    "log-level",
    "watch",
    "noop",
    "sync-only",
    "onetime",
    "keep-stage-file",
    "file",
    "wait",
    "token",
    "scheme",
];

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    backend: Option<String>,
    confdir: Option<PathBuf>,
    interval: Option<u64>,
    nodes: Option<Vec<String>>,
    prefix: Option<String>,
    #[serde(rename = "log-level")]
    log_level: Option<String>,
    watch: Option<bool>,
    noop: Option<bool>,
    #[serde(rename = "sync-only")]
    sync_only: Option<bool>,
    onetime: Option<bool>,
    #[serde(rename = "keep-stage-file")]
    keep_stage_file: Option<bool>,
    file: Option<Vec<PathBuf>>,
    wait: Option<String>,
    token: Option<String>,
    scheme: Option<String>,
    #[serde(rename = "metrics-addr")]
    metrics_addr: Option<String>,
}

/// A parsed confd config file.
#[derive(Debug)]
struct Parsed {
    config: FileConfig,
    /// Top-level keys we don't act on (to warn about).
    ignored: Vec<String>,
    /// It has a `[template]` table: confd's guide keeps its one resource
    /// in the config file, inside conf.d; that table is a resource then.
    template: bool,
}

/// Parse a confd config: unknown keys are returned (to warn about), a known
/// key with a wrong type is an error. A `[template]` table is not config
/// (confd reads the file both ways, each taking its own keys).
fn parse_file_config(text: &str) -> Result<Parsed, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let template = table.remove("template").is_some();
    let ignored: Vec<String> = table
        .keys()
        .filter(|k| !FILE_CONFIG_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &ignored {
        table.remove(k);
    }
    // Re-parse the known part as text so type errors name the key and line.
    let known = toml::to_string(&table).map_err(|e| e.to_string())?;
    let config = toml::from_str(&known).map_err(|e: toml::de::Error| e.to_string())?;
    Ok(Parsed {
        config,
        ignored,
        template,
    })
}

/// The warning for a config key we ignore, pointing a resource key that is
/// outside its `[template]` table the right way.
fn ignored_key_warning(path: &std::path::Path, key: &str) -> String {
    if crate::resource::TEMPLATE_KEYS.contains(&key) {
        format!(
            "{}: key {key:?} is a [template] key, not a config key: put it under the [template] line; ignored",
            path.display()
        )
    } else {
        format!("{}: key {key:?} is not supported; ignored", path.display())
    }
}

/// What SIGHUP re-reads from `-config-file`: `prefix` and `wait`, unless
/// given as flags (flags override the file). Backend, nodes and mode need a
/// restart.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    flag_prefix: Option<String>,
    flag_wait: Option<String>,
}

impl ConfigSource {
    /// The file's current `(prefix, wait)` merged with the flags.
    pub fn read(&self) -> Result<(String, Option<Wait>), String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("reading {}: {e}", self.path.display()))?;
        let fc = parse_file_config(&text)
            .map_err(|e| format!("{}: {e}", self.path.display()))?
            .config;
        let wait = self
            .flag_wait
            .clone()
            .or(fc.wait)
            .as_deref()
            .map(Wait::parse)
            .transpose()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok((
            self.flag_prefix.clone().or(fc.prefix).unwrap_or_default(),
            wait,
        ))
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tribune-template: {msg}");
    ExitCode::from(2)
}

fn init_tracing(level: &str) -> Result<(), String> {
    let Some(l) = gocompat::log::level_name(level) else {
        return Err(format!(
            "invalid -log-level {:?}",
            level.to_ascii_lowercase()
        ));
    };
    let ansi = gocompat::log::stderr_is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "tribune_template={l},warn"
        )))
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    Ok(())
}

/// Parse arguments, build the runner and run it; the process exit code.
pub fn main() -> ExitCode {
    let cmd = Args::command();
    let argv = gocompat::flags::go_style(&cmd, std::env::args_os().collect());
    let m = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let mut a = match Args::from_arg_matches(&m) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let mut config_warnings: Vec<String> = Vec::new();
    let mut config_template = false;
    let config_source = a.config_file.clone().map(|path| ConfigSource {
        path,
        flag_prefix: a.prefix.clone(),
        flag_wait: a.wait.clone(),
    });
    if let Some(path) = a.config_file.clone() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return fail(format!("reading {}: {e}", path.display())),
        };
        let fc = match parse_file_config(&text) {
            Ok(p) => {
                config_warnings = p
                    .ignored
                    .iter()
                    .map(|k| ignored_key_warning(&path, k))
                    .collect();
                config_template = p.template;
                p.config
            }
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        a.backend = a.backend.or(fc.backend);
        a.confdir = a.confdir.or(fc.confdir);
        a.interval = a.interval.or(fc.interval);
        a.scheme = a.scheme.or(fc.scheme);
        if a.node.is_empty() {
            let scheme = a.scheme.clone().unwrap_or_else(|| "http".into());
            a.node = fc
                .nodes
                .unwrap_or_default()
                .into_iter()
                .map(|n| {
                    if n.contains("://") {
                        n
                    } else {
                        format!("{scheme}://{n}")
                    }
                })
                .collect();
        }
        a.prefix = a.prefix.or(fc.prefix);
        a.log_level = a.log_level.or(fc.log_level);
        a.metrics_addr = a.metrics_addr.or(fc.metrics_addr);
        a.watch |= fc.watch.unwrap_or(false);
        a.noop |= fc.noop.unwrap_or(false);
        a.sync_only |= fc.sync_only.unwrap_or(false);
        a.onetime |= fc.onetime.unwrap_or(false);
        a.keep_stage_file |= fc.keep_stage_file.unwrap_or(false);
        if a.file.is_empty() {
            a.file = fc.file.unwrap_or_default();
        }
        a.wait = a.wait.or(fc.wait);
        a.token = a.token.or(fc.token);
    }
    if let (true, Some(path)) = (config_template, &a.config_file) {
        // confd loads resources from conf.d only: a [template] in a config
        // file elsewhere is not one.
        let conf_d = a
            .confdir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("conf.d");
        let in_conf_d = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            })
            .is_some_and(|p| crate::resource::same_file(p, &conf_d));
        if !in_conf_d {
            config_warnings.push(format!(
                "{}: its [template] table is not loaded: template resources are read from {}/*.toml only; move the file there",
                path.display(),
                conf_d.display()
            ));
        }
    }
    let token_from_env =
        m.value_source("consul_token") == Some(clap::parser::ValueSource::EnvVariable);
    let ct = match ct_config(&mut a, token_from_env) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Some(c) = &ct {
        config_warnings.extend(c.warnings.iter().cloned());
    }
    if let Err(e) = init_tracing(a.log_level.as_deref().unwrap_or("info")) {
        return fail(e);
    }
    for w in config_warnings {
        tracing::warn!("{w}");
    }
    let metrics_addr = match a
        .metrics_addr
        .as_deref()
        .map(parse_metrics_addr)
        .transpose()
    {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let (mut opts, backend) = match build(a, ct) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    opts.config_source = config_source;
    let _pid = match opts.pid_file.clone().map(PidFile::write).transpose() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    ExitCode::from(run(opts, backend, metrics_addr).clamp(0, 255) as u8)
}

/// `-metrics-addr`: `host:port`, or `:port` on 127.0.0.1 (never every
/// interface unless asked).
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_string(),
    };
    full.parse().map_err(|_| {
        format!("invalid -metrics-addr {s:?}: expected host:port, e.g. 127.0.0.1:9102")
    })
}

/// Run the runner to completion on a small runtime; the exit code.
fn run(opts: Options, backend: Backend, metrics_addr: Option<std::net::SocketAddr>) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tribune-template: runtime: {e}");
            return 2;
        }
    };
    let once = opts.mode == Mode::Once;
    let code = rt.block_on(async move {
        if let Some(addr) = metrics_addr {
            if let Err(e) = crate::metrics::serve(addr).await {
                tracing::error!("{e}");
                eprintln!("tribune-template: {e}");
                return 2;
            }
        }
        let runner = match Runner::new(opts, backend) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("tribune-template: {e}");
                return 2;
            }
        };
        if once {
            runner.once().await
        } else {
            match runner.run().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tribune-template: {e}");
                    2
                }
            }
        }
    });
    code
}

/// Read `-config` files into `a` where no flag was given (flags win);
/// the rest of the files' settings come back for [`build`].
fn ct_config(a: &mut Args, token_from_env: bool) -> Result<Option<CtConfig>, String> {
    if a.config.is_empty() {
        return Ok(None);
    }
    let c = ctconfig::load(&a.config).map_err(|e| e.to_string())?;
    if a.consul_addr.is_none() && a.node.is_empty() {
        a.consul_addr = c.address.clone().map(|addr| {
            if c.tls.enabled && !addr.contains("://") {
                format!("https://{addr}")
            } else {
                addr
            }
        });
    }
    if c.token.is_some() && a.token.is_none() && (a.consul_token.is_none() || token_from_env) {
        a.consul_token = c.token.clone();
    }
    a.log_level = a.log_level.take().or(c.log_level.clone());
    a.pid_file = a.pid_file.take().or(c.pid_file.clone());
    a.metrics_addr = a.metrics_addr.take().or(c.metrics_addr.clone());
    Ok(Some(c))
}

/// TLS towards the agent: flags (consul-template's `-consul-ssl-*`,
/// confd's `-client-*`) over the `consul { ssl }` block over Consul's
/// environment variables, as consul-template merges them.
fn tls_settings(a: &Args, file: Option<&ctconfig::Tls>) -> Result<ctconfig::Tls, String> {
    use tribune_apiclient::config::env_bool;
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let env_path = |name: &str| env(name).map(PathBuf::from);
    let mut t = file.cloned().unwrap_or_default();
    let tri = |yes: bool, no: bool| match (yes, no) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        _ => None,
    };
    let from_file = file.is_some();
    let env_ssl = env_bool("CONSUL_HTTP_SSL").map_err(|e| e.to_string())?;
    let env_verify = env_bool("CONSUL_HTTP_SSL_VERIFY").map_err(|e| e.to_string())?;
    if let Some(b) = tri(a.consul_ssl, a.no_consul_ssl).or(env_ssl.filter(|_| !from_file)) {
        t.enabled = b;
    }
    if let Some(b) =
        tri(a.consul_ssl_verify, a.no_consul_ssl_verify).or(env_verify.filter(|_| !from_file))
    {
        t.verify = b;
    }
    let pick = |flag: [&Option<PathBuf>; 2], file: &Option<PathBuf>, var: &str| {
        flag.into_iter()
            .flatten()
            .next()
            .cloned()
            .or(file.clone())
            .or_else(|| env_path(var))
    };
    t.ca_cert = pick(
        [&a.consul_ssl_ca_cert, &a.client_ca_keys],
        &t.ca_cert,
        "CONSUL_CACERT",
    );
    t.ca_path = pick([&a.consul_ssl_ca_path, &None], &t.ca_path, "CONSUL_CAPATH");
    t.cert = pick(
        [&a.consul_ssl_cert, &a.client_cert],
        &t.cert,
        "CONSUL_CLIENT_CERT",
    );
    t.key = pick(
        [&a.consul_ssl_key, &a.client_key],
        &t.key,
        "CONSUL_CLIENT_KEY",
    );
    t.server_name = a
        .consul_ssl_server_name
        .clone()
        .or(t.server_name.take())
        .or_else(|| env("CONSUL_TLS_SERVER_NAME").and_then(|v| v.into_string().ok()));
    Ok(t)
}

/// confd's `-scheme`: the scheme of the addresses that name none.
fn with_scheme(nodes: Vec<String>, scheme: Option<&str>) -> Result<Vec<String>, String> {
    match scheme {
        None => Ok(nodes),
        Some(s @ ("http" | "https")) => Ok(nodes
            .into_iter()
            .map(|n| {
                if n.contains("://") {
                    n
                } else {
                    format!("{s}://{n}")
                }
            })
            .collect()),
        Some(other) => Err(format!("invalid -scheme {other:?}: use http or https")),
    }
}

/// `-pid-file`: written at start, removed when dropped.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> Result<PidFile, String> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("writing pid file {}: {e}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `-exec` from the flag or the config's `exec` block (flags win).
fn exec_spec(a: &Args, ct: Option<&ctconfig::ExecConfig>) -> Result<Option<ExecSpec>, String> {
    let command = match (&a.exec, ct.and_then(|x| x.command.clone())) {
        (Some(c), _) if c.trim().is_empty() => return Err("-exec needs a command".into()),
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c,
        (None, None) => return Ok(None),
    };
    let sig = |flag: &Option<String>| {
        flag.as_deref()
            .map(|s| parse_signal(s).ok_or_else(|| format!("unknown signal {s:?}")))
            .transpose()
    };
    Ok(Some(ExecSpec {
        command,
        reload_signal: sig(&a.exec_reload_signal)?.or(ct.and_then(|x| x.reload_signal)),
        kill_signal: sig(&a.exec_kill_signal)?
            .or(ct.and_then(|x| x.kill_signal))
            .unwrap_or(nix::sys::signal::Signal::SIGTERM),
        kill_timeout: a
            .exec_kill_timeout
            .as_deref()
            .map(|s| parse_duration(s).ok_or_else(|| format!("invalid -exec-kill-timeout {s:?}")))
            .transpose()?
            .or(ct.and_then(|x| x.kill_timeout))
            .unwrap_or(Duration::from_secs(30)),
        splay: ct.and_then(|x| x.splay).unwrap_or_default(),
        env: ct.map(|x| x.env.clone()).unwrap_or_default(),
    }))
}

fn build(a: Args, ct: Option<CtConfig>) -> Result<(Options, Backend), String> {
    let backend = match a.backend.as_deref().unwrap_or("consul") {
        "consul" => {
            let mut nodes = a.node.clone();
            if let Some(c) = &a.consul_addr {
                nodes.insert(0, c.clone());
            }
            if nodes.is_empty() {
                nodes.push(
                    std::env::var("CONSUL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8500".into()),
                );
            }
            let max_stale = a
                .max_stale
                .as_deref()
                .map(|s| parse_duration(s).ok_or_else(|| format!("invalid -max-stale {s:?}")))
                .transpose()?
                .or(ct.as_ref().and_then(|c| c.max_stale));
            let tls = tls_settings(&a, ct.as_ref().map(|c| &c.tls))?;
            nodes = with_scheme(nodes, a.scheme.as_deref())?;
            let c = Consul::with_options(
                nodes,
                a.consul_token.clone().or(a.token.clone()),
                ConsulOptions {
                    stale: max_stale.is_some_and(|d| !d.is_zero()),
                    tls,
                },
            )
            .map_err(|e| e.to_string())?;
            Backend::Consul(c)
        }
        "file" => {
            if a.file.is_empty() {
                return Err("the file backend needs -file PATH (YAML or JSON)".into());
            }
            Backend::File(FileBackend {
                paths: a.file.clone(),
            })
        }
        "env" => Backend::Env,
        other => {
            return Err(format!(
                "unknown backend {other:?}: use consul, file or env"
            ))
        }
    };
    let mode = if a.onetime || a.once {
        Mode::Once
    } else if let Some(n) = a.interval.filter(|_| !a.watch) {
        if n == 0 {
            return Err("-interval must be at least 1 second".into());
        }
        Mode::Interval(Duration::from_secs(n))
    } else {
        Mode::Watch
    };
    let flag_wait = a.wait.as_deref().map(Wait::parse).transpose()?;
    let wait = flag_wait.or(ct.as_ref().and_then(|c| c.wait));
    let exec = exec_spec(&a, ct.as_ref().and_then(|c| c.exec.as_ref()))?;
    if exec.is_some() && mode == Mode::Once {
        return Err("-exec cannot be combined with -once/-onetime".into());
    }
    Ok((
        Options {
            confdir: a.confdir.unwrap_or_else(|| PathBuf::from(".")),
            config_file: a.config_file,
            config_source: None,
            prefix: a.prefix.unwrap_or_default(),
            templates: a.template,
            mode,
            noop: a.noop,
            sync_only: a.sync_only,
            dry: a.dry,
            keep_stage: a.keep_stage_file,
            wait,
            exec,
            ct_templates: ct.as_ref().map(|c| c.templates.clone()).unwrap_or_default(),
            ct_source: (!a.config.is_empty()).then(|| crate::runner::CtSource {
                paths: a.config.clone(),
                flag_wait,
            }),
            retry: ct.as_ref().and_then(|c| c.retry),
            plugins: a.enable_plugin,
            pid_file: a.pid_file.clone(),
            reload_signal: ct.as_ref().and_then(|c| c.reload_signal),
            kill_signal: ct.as_ref().and_then(|c| c.kill_signal),
        },
        backend,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real confd config keys we don't use are ignored; a supported key with
    /// the wrong type still fails, naming the key.
    #[test]
    fn confd_config_keys() {
        let p = parse_file_config(
            "backend = \"consul\"\nnodes = [\"127.0.0.1:8500\"]\ninterval = 2\nclient_cert = \"/c.pem\"\nsrv_domain = \"x\"\nbasic_auth = true\n",
        )
        .unwrap();
        assert_eq!(p.config.backend.as_deref(), Some("consul"));
        assert_eq!(p.config.interval, Some(2));
        assert_eq!(p.ignored, ["basic_auth", "client_cert", "srv_domain"]);
        assert!(!p.template);
        // confd's guide: the config file is also a resource; its [template]
        // table is not a config key to warn about
        let p = parse_file_config(
            "interval = 2\nsrc = \"x\"\n[template]\nsrc = \"a.tmpl\"\ndest = \"a\"\n",
        )
        .unwrap();
        assert!(p.template);
        assert_eq!(p.config.interval, Some(2));
        assert_eq!(p.ignored, ["src"]);
        let w = ignored_key_warning(std::path::Path::new("c.toml"), "src");
        assert!(w.contains("[template] key"), "{w}");
        let e = parse_file_config("interval = \"soon\"\n").unwrap_err();
        assert!(e.contains("interval"), "{e}");
    }
}
