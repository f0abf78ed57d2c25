//! Running an agent: storage and raft, the HTTP listener, graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Flags};
use crate::http::{self, AppState};
use crate::local::defs::{parse_service, parse_standalone_check};
use crate::local::sync::NodeInfo;
use crate::local::{CheckDef, LocalAgent, ServiceDef, Source};
use crate::raft::node::{RaftNode, RaftOptions, RaftStartError};
use crate::state::Store;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Raft(Box<RaftStartError>),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("node id file {path}: {source}")]
    NodeId {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("config: {0}")]
    Definition(String),
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

impl From<RaftStartError> for AgentError {
    fn from(e: RaftStartError) -> Self {
        Self::Raft(Box::new(e))
    }
}

/// Accept backlog: thousands of long-polling clients may connect at once.
const BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_nodelay(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// The node's UUID: kept in the data dir so it survives restarts.
fn node_id(data_dir: Option<&Path>) -> Result<String, AgentError> {
    let Some(dir) = data_dir else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let path = dir.join("node-id");
    let err = |source| AgentError::NodeId {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if uuid::Uuid::parse_str(s.trim()).is_ok() => Ok(s.trim().to_string()),
        _ => {
            std::fs::create_dir_all(dir).map_err(err)?;
            let id = uuid::Uuid::new_v4().to_string();
            crate::fsutil::write_atomic(&path, id.as_bytes()).map_err(err)?;
            Ok(id)
        }
    }
}

/// Run the agent until `shutdown` is cancelled; then stop accepting, let
/// in-flight requests finish (parked blocking queries answer at once), and
/// flush the raft log.
/// Parse the service and check definitions of the config files.
pub fn config_definitions(c: &AgentConfig) -> Result<(Vec<ServiceDef>, Vec<CheckDef>), String> {
    let services = c
        .service_defs
        .iter()
        .map(|v| {
            parse_service(v, c.enable_script_checks).map_err(|e| format!("service definition: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let checks = c
        .check_defs
        .iter()
        .map(|v| {
            parse_standalone_check(v, c.enable_script_checks)
                .map_err(|e| format!("check definition: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((services, checks))
}

/// Re-read the config files and apply their service and check definitions
/// (SIGHUP, `PUT /v1/agent/reload`, `tribune reload`). Nothing is applied
/// when any file is invalid.
pub fn reload(state: &AppState) -> Result<(), String> {
    let c = AgentConfig::load(&state.flags).map_err(|e| e.to_string())?;
    let (services, checks) = config_definitions(&c)?;
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        services = services.len(),
        checks = checks.len(),
        "reloading configuration"
    );
    state.local.reload(services, checks);
    Ok(())
}

pub async fn run(
    config: AgentConfig,
    flags: Flags,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    if !config.server {
        return Err(AgentError::Unsupported(
            "client agents need servers to join, which this build does not support yet: \
             run with -dev or -server -bootstrap-expect 1 -data-dir DIR"
                .into(),
        ));
    }
    let config = Arc::new(config);
    let node_id = node_id(config.data_dir.as_deref())?;
    let uuid = uuid::Uuid::parse_str(&node_id).unwrap_or_default();
    // Raft ids are u64; the first half of the node UUID is unique enough and stable.
    let raft_id = u64::from_be_bytes(uuid.as_bytes()[..8].try_into().unwrap_or([0; 8])).max(1);
    let (services, checks) = config_definitions(&config).map_err(AgentError::Definition)?;
    let watches = crate::watchplan::parse_config_watches(&config.watch_defs)
        .map_err(AgentError::Definition)?;
    let store = Store::new();
    let server_port = if config.ports.server > 0 {
        config.ports.server
    } else {
        8300
    };
    let raft_addr = format!("{}:{}", config.bind_addr, server_port);
    let node = RaftNode::start(
        RaftOptions {
            id: raft_id,
            addr: raft_addr,
            data_dir: config.data_dir.clone(),
            raft_multiplier: config.raft_multiplier,
            snapshot_threshold: config.raft_snapshot_threshold,
            bootstrap: config.bootstrap_expect == Some(1),
        },
        store.clone(),
    )
    .await?;
    tracing::info!(
        node = %config.node_name,
        datacenter = %config.datacenter,
        server = config.server,
        dev = config.dev,
        data_dir = ?config.data_dir,
        "agent starting"
    );

    let address = config
        .advertise_addr
        .unwrap_or(config.bind_addr)
        .to_string();
    let node_info = NodeInfo {
        node: config.node_name.clone(),
        id: node_id.clone(),
        address: if address == "0.0.0.0" || address == "::" {
            "127.0.0.1".into()
        } else {
            address
        },
        datacenter: config.datacenter.clone(),
        meta: config.node_meta.clone(),
        server_port: config.server.then_some(server_port as u16),
    };
    let local = LocalAgent::new(config.enable_script_checks, shutdown.clone());
    for s in services {
        local.add_service(s, Source::Config, true);
    }
    for c in checks {
        local
            .add_check(c, Source::Config)
            .map_err(|e| AgentError::Definition(e.to_string()))?;
    }
    let proposer = crate::raft::proposer::Proposer::start(node.raft.clone());
    let events = crate::events::Events::new(config.node_name.clone(), local.clone());
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        raft: node.raft.clone(),
        proposer: proposer.clone(),
        leadership: node.leadership.clone(),
        node_id,
        node: node_info.clone(),
        local: local.clone(),
        events,
        flags,
        shutdown: shutdown.clone(),
        started: Instant::now(),
    });

    tokio::spawn(crate::local::sync::run(
        local.clone(),
        node_info,
        state.store.clone(),
        proposer,
        shutdown.clone(),
    ));
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::spawn(crate::session_ttl::run(
        state.store.clone(),
        state.leadership.clone(),
        state.proposer.clone(),
        shutdown.clone(),
    ));

    let mut tasks = tokio::task::JoinSet::new();
    if config.ports.http >= 0 {
        let addr = SocketAddr::new(config.client_addr, config.ports.http as u16);
        let listener = listen(addr).map_err(|source| AgentError::Bind {
            what: "HTTP API",
            addr,
            source,
        })?;
        let bound = listener.local_addr().map_err(AgentError::Serve)?;
        tracing::info!("HTTP API listening on http://{bound}");
        crate::watchplan::spawn_config_watches(watches, bound, shutdown.clone());
        let app = http::router(state.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            // One router for every connection: serving a bare Router would
            // rebuild its route table per accepted connection (~19 KiB each).
            axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .map_err(AgentError::Serve)
        });
    } else if !watches.is_empty() {
        tracing::warn!("watches need the HTTP API, which is disabled: not started");
    }

    if config.ports.dns >= 0 {
        let addr = SocketAddr::new(config.client_addr, config.ports.dns as u16);
        let handler = crate::dns::ConsulDns::new(
            state.store.clone(),
            config.datacenter.clone(),
            config.dns.clone(),
        );
        let (bound, task) = crate::dns::serve(addr, handler, shutdown.clone())
            .await
            .map_err(|e| AgentError::Unsupported(e.to_string()))?;
        tracing::info!("DNS listening on dns://{bound} (udp and tcp)");
        tasks.spawn(async move {
            let _ = task.await;
            Ok(())
        });
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing in-flight requests");
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with error"),
            Err(e) => tracing::warn!(error = %e, "listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    node.shutdown().await;
    tracing::info!("agent stopped");
    Ok(())
}

async fn reload_on_sighup(state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            r = hup.recv() => if r.is_none() { return },
            _ = state.shutdown.cancelled() => return,
        }
        tracing::info!("caught SIGHUP");
        if let Err(e) = reload(&state) {
            tracing::error!(error = %e, "reload failed; configuration unchanged");
        }
    }
}
