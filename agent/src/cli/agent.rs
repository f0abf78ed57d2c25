//! `tribune agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Flags};

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Development mode: in-memory single server, UI on, nothing persisted.
    #[arg(long)]
    pub dev: bool,
    /// Run as a server (raft voter).
    #[arg(long)]
    pub server: bool,
    /// Sets server to bootstrap mode: it forms a cluster of itself at once.
    #[arg(long)]
    pub bootstrap: bool,
    /// Sets server to expect bootstrap mode: the number of servers (3 or 5)
    /// to wait for before bootstrapping the cluster.
    #[arg(long = "bootstrap-expect", value_name = "int")]
    pub bootstrap_expect: Option<u32>,
    /// Directory for the raft log and state snapshots.
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Node name (default: hostname).
    #[arg(long)]
    pub node: Option<String>,
    /// Datacenter name (default dc1).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Cluster (raft, gossip) bind address (a go-sockaddr template allowed).
    #[arg(long)]
    pub bind: Option<String>,
    /// Address for client interfaces: HTTP, DNS (default 127.0.0.1; a
    /// go-sockaddr template allowed).
    #[arg(long)]
    pub client: Option<String>,
    /// HTTP API port (default 8500; 0 = any free port; -1 = off).
    #[arg(long = "http-port")]
    pub http_port: Option<i32>,
    /// DNS port (default 8600; -1 = off).
    #[arg(long = "dns-port")]
    pub dns_port: Option<i32>,
    /// Directory of *.json / *.hcl config files (repeatable).
    #[arg(long = "config-dir")]
    pub config_dir: Vec<PathBuf>,
    /// A config file (repeatable).
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// trace, debug, info, warn, err.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Log JSON lines (Consul's hclog JSON: @level, @message, @module, @timestamp).
    #[arg(long = "log-json")]
    pub log_json: bool,
    /// Also log to this file (a directory: consul.log in it).
    #[arg(long = "log-file")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file once it holds this many bytes (0: no limit).
    #[arg(long = "log-rotate-bytes")]
    pub log_rotate_bytes: Option<u64>,
    /// Rotate the log file after this long (default 24h).
    #[arg(long = "log-rotate-duration")]
    pub log_rotate_duration: Option<String>,
    /// Archived log files kept (0: all, -1: none).
    #[arg(long = "log-rotate-max-files", allow_hyphen_values = true)]
    pub log_rotate_max_files: Option<i64>,
    /// Allow script health checks (off by default: remote code execution risk).
    #[arg(long = "enable-script-checks")]
    pub enable_script_checks: bool,
    /// Serve the web UI.
    #[arg(long)]
    pub ui: bool,
    /// Upstream DNS server for names outside the consul domain (repeatable).
    #[arg(long)]
    pub recursor: Vec<String>,
    /// Address advertised to other nodes and in the catalog (a go-sockaddr
    /// template allowed).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Join the agent at this gossip address at start (repeatable; fatal if none answers).
    #[arg(long)]
    pub join: Vec<String>,
    /// Join this address at start, retrying until it answers (repeatable).
    #[arg(long = "retry-join")]
    pub retry_join: Vec<String>,
    /// Time between -retry-join attempts (default 30s).
    #[arg(long = "retry-interval")]
    pub retry_interval: Option<String>,
    /// A server joins the WAN pool through this address at start
    /// (repeatable; fatal if none answers).
    #[arg(long = "join-wan")]
    pub join_wan: Vec<String>,
    /// Join the WAN pool through this address, retrying until it answers.
    #[arg(long = "retry-join-wan")]
    pub retry_join_wan: Vec<String>,
    /// Time between -retry-join-wan attempts (default 30s).
    #[arg(long = "retry-interval-wan")]
    pub retry_interval_wan: Option<String>,
    /// Rejoin the remembered peers even after a graceful leave.
    #[arg(long)]
    pub rejoin: bool,
    /// Server RPC port (default 8300).
    #[arg(long = "server-port")]
    pub server_port: Option<i32>,
    /// LAN gossip port (default 8301).
    #[arg(long = "serf-lan-port")]
    pub serf_lan_port: Option<i32>,
    /// WAN gossip port of a server (default 8302, -1 off).
    #[arg(long = "serf-wan-port", allow_hyphen_values = true)]
    pub serf_wan_port: Option<i32>,
    /// Path to file to store agent PID.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Key to encrypt gossip traffic with (tribune keygen).
    #[arg(long)]
    pub encrypt: Option<String>,
    /// HTTPS API port (off by default).
    #[arg(long = "https-port")]
    pub https_port: Option<i32>,
}

/// The agent's log at the configured level (Consul's `-log-level` words),
/// on stderr and in `-log-file`.
fn init_log(c: &AgentConfig) -> Result<(), String> {
    let level = &c.log_level;
    let Some(l) = crate::logging::parse_level(level) else {
        return Err(format!(
            "invalid -log-level {level:?}: use trace, debug, info, warn or err"
        ));
    };
    let file = match &c.log_file {
        Some(p) => Some(
            crate::logging::LogFile::open(p, c.log_rotate.clone()).map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    crate::logging::set_server(c.server);
    let json = c.log_json;
    crate::logging::init(l, crate::logging::Outputs { json, file }).map_err(|e| e.to_string())
}

pub fn run(a: AgentArgs) -> ExitCode {
    let flags = Flags {
        dev: a.dev,
        server: a.server,
        bootstrap: a.bootstrap,
        bootstrap_expect: a.bootstrap_expect,
        data_dir: a.data_dir,
        node: a.node,
        datacenter: a.datacenter,
        bind: a.bind,
        client: a.client,
        http_port: a.http_port,
        dns_port: a.dns_port,
        config_dir: a.config_dir,
        config_file: a.config_file,
        log_level: a.log_level,
        log_json: a.log_json,
        log_file: a.log_file,
        log_rotate_bytes: a.log_rotate_bytes,
        log_rotate_duration: None,
        log_rotate_max_files: a.log_rotate_max_files,
        enable_script_checks: a.enable_script_checks,
        ui: a.ui,
        recursors: a.recursor,
        advertise: a.advertise,
        join: a.join,
        retry_join: a.retry_join,
        retry_interval: None,
        join_wan: a.join_wan,
        retry_join_wan: a.retry_join_wan,
        retry_interval_wan: None,
        rejoin: a.rejoin,
        server_port: a.server_port,
        serf_lan_port: a.serf_lan_port,
        serf_wan_port: a.serf_wan_port,
        pid_file: a.pid_file,
        encrypt: a.encrypt,
        https_port: a.https_port,
    };
    let mut flags = flags;
    if let Some(ri) = &a.retry_interval {
        match gocompat::duration::parse_duration(ri) {
            Some(d) => flags.retry_interval = Some(d),
            None => {
                eprintln!("==> Error: invalid -retry-interval {ri:?}: use a duration like 30s");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(ri) = &a.retry_interval_wan {
        match gocompat::duration::parse_duration(ri) {
            Some(d) => flags.retry_interval_wan = Some(d),
            None => {
                eprintln!("==> Error: invalid -retry-interval-wan {ri:?}: use a duration like 30s");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(d) = &a.log_rotate_duration {
        match gocompat::duration::parse_duration(d).filter(|d| !d.is_zero()) {
            Some(d) => flags.log_rotate_duration = Some(d),
            None => {
                eprintln!("==> Error: invalid -log-rotate-duration {d:?}: use a duration like 24h");
                return ExitCode::from(1);
            }
        }
    }
    let config = match AgentConfig::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = init_log(&config) {
        eprintln!("==> Error: {e}");
        return ExitCode::from(1);
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Removed again when this returns.
    let _pid_file = match config
        .pid_file
        .as_deref()
        .map(crate::supervisor::PidFile::create)
    {
        Some(Err(e)) => {
            eprintln!("==> Error: {e}");
            return ExitCode::from(1);
        }
        other => other.and_then(Result::ok),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::alloc::on_park)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> Error: starting runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
            // As Consul: a second signal while leaving gives up at once.
            wait_for_signal().await;
            tracing::warn!("caught a second signal: exiting without finishing the leave");
            std::process::exit(1);
        });
        crate::agent::run(config, flags, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("==> Error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent still stops when killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "terminated", "Caught"),
        _ = int.recv() => {
            tracing::info!(signal = "interrupt", "Caught");
            crate::app::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
