//! Running an agent: storage and raft, the HTTP listener, graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::gossip::{Gossip, GossipOptions, Ident};
use crate::cluster::rpc::RpcClient;
use crate::cluster::Upstream;
use crate::config::{AgentConfig, Flags};
use crate::http::serve::{Budget, Gate, Refuse};
use crate::http::{self, AppState, Shared};
use crate::local::defs::{parse_service_as, parse_standalone_check};
use crate::local::sync::{CatalogSource, NodeInfo};
use crate::local::{CheckDef, LocalAgent, ServiceDef, Source};
use crate::raft::network::Network;
use crate::raft::node::{Leadership, RaftNode, RaftOptions, RaftStartError};
use crate::raft::proposer::Proposer;
use crate::state::catalog::CatalogCommand;
use crate::state::{Command, Store};

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
    #[error("{0}")]
    Storage(String),
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

/// Parse the service and check definitions of the config files.
pub fn config_definitions(c: &AgentConfig) -> Result<(Vec<ServiceDef>, Vec<CheckDef>), String> {
    let services = c
        .service_defs
        .iter()
        .map(|v| {
            parse_service_as(v, c.enable_script_checks, |name, _, e| {
                format!("invalid meta for service {name}: {e}")
            })
            .map_err(|e| format!("service definition: {e}"))
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
/// and `log_level` (SIGHUP, `PUT /v1/agent/reload`, `tribune reload`).
/// Nothing is applied when any file is invalid.
pub fn reload(state: &AppState) -> Result<(), String> {
    let c = AgentConfig::load(&state.flags).map_err(|e| e.to_string())?;
    let (services, checks) = config_definitions(&c)?;
    for w in &c.warnings {
        tracing::warn!("{w}");
    }
    // Validated by the load above.
    if let Some(level) = crate::logging::parse_level(&c.log_level) {
        let old = crate::logging::level();
        if old.is_some_and(|o| o != level) {
            crate::logging::set_level(level);
            tracing::info!(
                from = %old.map(|o| o.to_string()).unwrap_or_default(),
                to = %level,
                "log level changed"
            );
        }
    }
    tracing::info!(
        services = services.len(),
        checks = checks.len(),
        "reloading configuration"
    );
    state.local.reload(services, checks);
    Ok(())
}

/// Set when the agent was stopped by SIGINT (Consul leaves on interrupt and
/// on terminate by different defaults).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Leave the cluster gracefully: the node is deregistered (while a
/// leaving server still leads or can reach the leader), a server leaves the
/// raft configuration (so the quorum shrinks instead of losing a vote),
/// then gossip is told, so members show it as `left`. Runs once.
pub async fn graceful_leave(s: &Shared) {
    if s.leaving.is_cancelled() {
        return;
    }
    s.leaving.cancel();
    tracing::info!("Gracefully shutting down agent...");
    let dereg = Command::Catalog(CatalogCommand::Deregister {
        node: s.node.node.clone(),
        service_id: None,
        check_id: None,
    });
    let _ = tokio::time::timeout(Duration::from_secs(3), s.proposer.write(dereg)).await;
    leave_raft(s).await;
    if let Some(g) = &s.gossip {
        g.leave().await;
    }
}

/// A server leaves the raft configuration (the leader removes it; from a
/// follower the request is forwarded), then stops raft.
async fn leave_raft(s: &Shared) {
    use crate::cluster::autopilot::{remove_voter, NOT_A_PEER};
    let Some(raft) = s.raft.as_ref() else { return };
    let voters = s.leadership.servers().iter().filter(|x| x.2).count();
    if voters <= 1 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Done once the leader has committed the change: a follower never
        // sees its own removal (the leader stops replicating to it).
        match remove_voter(s, s.raft_id).await {
            Ok(()) => break,
            Err(e) if e.starts_with(NOT_A_PEER) => break,
            Err(e) => tracing::debug!(error = %e, "leaving raft; retrying"),
        }
        if Instant::now() >= deadline {
            tracing::warn!("could not leave the raft configuration within 10s; the leader removes this server once gossip shows it left");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!("removed this server from the raft configuration");
    // No longer a member, it must not stand for election while it stops.
    if let Err(e) = raft.shutdown().await {
        tracing::debug!(error = %e, "raft shutdown after leaving");
    }
}

/// Run the agent until `stop` is cancelled (a signal) or the agent is told
/// to leave over HTTP. On a signal the graceful leave, when configured,
/// runs first, while gossip, RPC and the local agent still work; only then
/// is everything else stopped.
pub async fn run(
    config: AgentConfig,
    flags: Flags,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    // Cancelled once the agent is done with the cluster: every task stops.
    let shutdown = CancellationToken::new();
    let config = Arc::new(config);
    crate::telemetry::install(&config.telemetry);
    tokio::spawn(crate::telemetry::runtime::run(shutdown.clone()));
    let node_id = node_id(config.data_dir.as_deref())?;
    let uuid = uuid::Uuid::parse_str(&node_id).unwrap_or_default();
    // Raft ids are u64; the first half of the node UUID is unique enough and stable.
    let raft_id = u64::from_be_bytes(uuid.as_bytes()[..8].try_into().unwrap_or([0; 8])).max(1);
    let (services, checks) = config_definitions(&config).map_err(AgentError::Definition)?;
    let watches = crate::watchplan::parse_config_watches(&config.watch_defs)
        .map_err(AgentError::Definition)?;
    let store = Store::new();
    let rpc = RpcClient::new();

    // Never unspecified: the config refuses or resolves 0.0.0.0 / ::.
    let advertise = config.advertise_addr.unwrap_or(config.bind_addr);

    // Server RPC (raft, forwarding) listens on servers only.
    let rpc_listener = if config.server && config.ports.server >= 0 {
        let addr = SocketAddr::new(config.bind_addr, config.ports.server as u16);
        Some(listen(addr).map_err(|source| AgentError::Bind {
            what: "server RPC",
            addr,
            source,
        })?)
    } else {
        None
    };
    let rpc_port = match &rpc_listener {
        Some(l) => l.local_addr().map_err(AgentError::Serve)?.port(),
        None => 0,
    };
    let raft_addr = SocketAddr::new(advertise, rpc_port).to_string();

    let gossip = if config.ports.serf_lan >= 0 {
        let bind = SocketAddr::new(config.bind_addr, config.ports.serf_lan as u16);
        let ident = Ident {
            addr: bind,
            bump: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            name: config.node_name.clone(),
            node_id: node_id.clone(),
            dc: config.datacenter.clone(),
            server: config.server,
            rpc_port,
            raft_id: if config.server { raft_id } else { 0 },
            bootstrap_expect: config.bootstrap_expect.unwrap_or(0),
            build: format!("{}:tribune", env!("CARGO_PKG_VERSION")),
        };
        let g = Gossip::start(
            GossipOptions {
                bind,
                advertise,
                ident,
                snapshot: config
                    .data_dir
                    .as_ref()
                    .map(|d| d.join("serf").join("local.snapshot")),
                reconnect_timeout: config.reconnect_timeout,
            },
            shutdown.clone(),
        )
        .await
        .map_err(|e| AgentError::Unsupported(e.to_string()))?;
        Some(g)
    } else {
        None
    };
    let serf_lan = gossip
        .as_ref()
        .map_or(-1, |g| i32::from(g.me().addr.port()));
    crate::banner::print(
        &config,
        &node_id,
        &crate::banner::Addrs {
            advertise,
            serf_lan,
        },
    );
    if let Some(g) = &gossip {
        tracing::info!("gossip (LAN) listening on {}", g.me().addr);
    }
    if !config.server && gossip.is_none() {
        return Err(AgentError::Unsupported(
            "a client agent finds servers by gossip: ports.serf_lan must not be -1".into(),
        ));
    }

    let (raft_node, leadership) = if config.server {
        let node = RaftNode::start(
            RaftOptions {
                id: raft_id,
                addr: raft_addr.clone(),
                data_dir: config.data_dir.clone(),
                raft_multiplier: config.raft_multiplier,
                snapshot_threshold: config.raft_snapshot_threshold,
                bootstrap: config.bootstraps_alone(),
                network: Network::new(rpc.clone()),
            },
            store.clone(),
        )
        .await?;
        crate::telemetry::raft::spawn(node.raft.clone(), shutdown.clone());
        crate::raft::transitions::spawn(
            node.raft.clone(),
            raft_addr.clone(),
            raft_names(gossip.clone(), raft_id, config.node_name.clone()),
        );
        let l = node.leadership.clone();
        (Some(node), l)
    } else {
        (None, Arc::new(Leadership::default()))
    };
    let upstream = gossip.as_ref().map(|g| {
        Upstream::new(
            rpc.clone(),
            config.server.then(|| leadership.clone()),
            g.clone(),
            raft_addr.clone(),
        )
    });
    let proposer = match (&raft_node, &upstream) {
        (Some(n), up) => Proposer::start(n.raft.clone(), leadership.clone(), up.clone()),
        (None, Some(up)) => Proposer::remote(up.clone()),
        (None, None) => unreachable!("checked above: a client has gossip"),
    };

    let node_info = NodeInfo {
        node: config.node_name.clone(),
        id: node_id.clone(),
        address: advertise.to_string(),
        datacenter: config.datacenter.clone(),
        meta: crate::local::sync::node_meta(&config.node_meta),
        server_port: config.server.then_some(rpc_port),
        own_serf_health: gossip.is_none(),
    };
    let local = LocalAgent::new(
        config.enable_script_checks,
        config.check_update_interval,
        shutdown.clone(),
    );
    for s in services {
        local.add_service(s, Source::Config, true);
    }
    for c in checks {
        local
            .add_check(c, Source::Config)
            .map_err(|e| AgentError::Definition(e.to_string()))?;
    }
    let events = crate::events::Events::new(config.node_name.clone(), local.clone());
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        raft: raft_node.as_ref().map(|n| n.raft.clone()),
        raft_id,
        proposer: proposer.clone(),
        leadership: leadership.clone(),
        gossip: gossip.clone(),
        upstream: upstream.clone(),
        rpc,
        leaving: CancellationToken::new(),
        node_id,
        node: node_info.clone(),
        local: local.clone(),
        events,
        flags,
        shutdown: shutdown.clone(),
        started: Instant::now(),
    });

    let source = match (&raft_node, &upstream) {
        (None, Some(up)) => CatalogSource::Remote(up.clone()),
        _ => CatalogSource::Local(state.store.clone()),
    };
    tokio::spawn(crate::local::sync::run(
        local.clone(),
        node_info,
        source,
        proposer,
        state.leaving.clone(),
    ));
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::spawn(crate::session_ttl::run(
        state.store.clone(),
        state.leadership.clone(),
        state.proposer.clone(),
        shutdown.clone(),
    ));

    if let Some(g) = &gossip {
        connect_events(&state.events, g);
    }
    if !config.disable_remote_exec {
        let rexec = crate::remote_exec::RemoteExec::new(state.clone());
        state
            .events
            .set_remote_exec(Arc::new(move |ev| rexec.handle(ev)));
    }

    let mut tasks: tokio::task::JoinSet<Result<(), AgentError>> = tokio::task::JoinSet::new();
    let budget = connection_budget(&config);
    tokio::spawn(http::serve::give_back_memory(
        budget.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = rpc_listener {
        tracing::info!("server RPC listening on {}", raft_addr);
        let app = crate::cluster::rpc::router(state.clone(), http::router(state.clone()));
        let gate = Gate::new(
            "server RPC",
            "rpc_max_conns_per_client",
            config.limits.rpc_max_conns_per_client,
            budget.clone(),
            Refuse::Close,
        );
        tokio::spawn(crate::cluster::rpc::serve(
            listener,
            app,
            gate,
            config.limits.rpc_handshake_timeout,
            shutdown.clone(),
        ));
    }
    if let Some(g) = &gossip {
        if config.server {
            tokio::spawn(crate::cluster::autopilot::run(
                state.clone(),
                g.clone(),
                config.bootstrap_expect,
                shutdown.clone(),
            ));
        }
        if !config.start_join.is_empty() {
            let n = g
                .join(&config.start_join)
                .await
                .map_err(|e| AgentError::Unsupported(format!("-join: {e}")))?;
            tracing::info!(number_of_nodes = n, "(LAN) joined");
        }
        let remembered = g.snapshot_peers(config.rejoin_after_leave);
        if !remembered.is_empty() {
            let g = g.clone();
            tokio::spawn(async move {
                match g.join(&remembered).await {
                    Ok(n) => tracing::info!("rejoined {n} remembered agent(s)"),
                    Err(e) => tracing::info!("rejoining remembered agents: {e}"),
                }
            });
        }
        if !config.retry_join.is_empty() {
            let (g, list, every, stop) = (
                g.clone(),
                config.retry_join.clone(),
                config.retry_interval,
                shutdown.clone(),
            );
            tokio::spawn(async move {
                loop {
                    match g.join(&list).await {
                        Ok(n) => {
                            tracing::info!(
                                cluster = "LAN",
                                num_agents = n,
                                "Join cluster completed. Synced with initial agents"
                            );
                            return;
                        }
                        Err(e) => tracing::warn!(
                            cluster = "LAN",
                            retry_interval = %crate::local::fmt_duration(every),
                            error = %e,
                            "Join cluster failed, will retry"
                        ),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
    }

    if config.ports.http >= 0 {
        let addr = SocketAddr::new(config.client_addr, config.ports.http as u16);
        let listener = listen(addr).map_err(|source| AgentError::Bind {
            what: "HTTP API",
            addr,
            source,
        })?;
        let bound = listener.local_addr().map_err(AgentError::Serve)?;
        tracing::info!("HTTP API listening on http://{bound}");
        warn_if_exposed(config.client_addr);
        crate::watchplan::spawn_config_watches(watches, bound, shutdown.clone());
        let app = http::router(state.clone());
        let gate = Gate::new(
            "HTTP API",
            "http_max_conns_per_client",
            config.limits.http_max_conns_per_client,
            budget.clone(),
            Refuse::Http,
        );
        let timeouts = (&config.limits).into();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            http::serve::serve(listener, app, gate, timeouts, stop).await;
            Ok(())
        });
    } else if !watches.is_empty() {
        tracing::warn!("watches need the HTTP API, which is disabled: not started");
    }

    if config.ports.dns >= 0 {
        let addr = SocketAddr::new(config.client_addr, config.ports.dns as u16);
        let remote = upstream.clone().map(|up| {
            crate::dns::lookup::Remote::new(up, config.dns.allow_stale, config.dns.max_stale)
        });
        let mode = match (config.server, remote) {
            (false, Some(r)) => crate::dns::Mode::Client(r),
            (_, remote) => crate::dns::Mode::Server {
                leadership: leadership.clone(),
                remote,
            },
        };
        let handler = crate::dns::ConsulDns::new(
            state.store.clone(),
            config.datacenter.clone(),
            config.dns.clone(),
            mode,
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
    tracing::info!("tribune agent running!");
    crate::supervisor::ready();

    let storage = leadership.storage().clone();
    let fatal = tokio::select! {
        // `PUT /v1/agent/leave` left already.
        _ = shutdown.cancelled() => None,
        _ = stop.cancelled() => {
            if gossip.is_some() && config.leave_on(INTERRUPTED.load(Ordering::Relaxed)) {
                graceful_leave(&state).await;
            }
            None
        }
        // Raft storage cannot be trusted: stop (no graceful leave, which
        // would need raft writes) so that a supervisor restarts the agent.
        msg = storage.fatal() => Some(msg),
    };
    shutdown.cancel();
    tracing::info!("Requesting shutdown");
    crate::supervisor::stopping();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with error"),
            Err(e) => tracing::warn!(error = %e, "listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(node) = raft_node {
        node.shutdown().await;
    }
    if let Some(msg) = fatal.or_else(|| storage.fatal_message()) {
        return Err(AgentError::Storage(msg));
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// The connections all listeners may hold together, from the open-file
/// limit (logged, with a warning when a per-client cap cannot be reached).
fn connection_budget(c: &AgentConfig) -> Arc<Budget> {
    let (budget, limit) = Budget::from_rlimit();
    tracing::info!(
        "connection limit: {} (open-file limit {limit}); per client: HTTP {}, RPC {} (0 = no cap)",
        budget.max(),
        c.limits.http_max_conns_per_client,
        c.limits.rpc_max_conns_per_client
    );
    let per_client = c.limits.http_max_conns_per_client as usize;
    if per_client > budget.max() {
        tracing::warn!(
            "limits.http_max_conns_per_client is {per_client} but the open-file limit {limit} \
             allows only {} connections: raise it (ulimit -n)",
            budget.max()
        );
    }
    budget
}

/// The API answers anyone who can reach `-client`: say so when that is
/// more than this machine.
fn warn_if_exposed(client: IpAddr) {
    if !client.is_loopback() {
        tracing::warn!(
            client_addr = %client,
            "[SECURITY] the HTTP API and DNS listen on a non-loopback address without ACLs: \
             anyone who can reach {client} can read and change all data and register checks; \
             use -client 127.0.0.1 or restrict access to this address"
        );
    }
}

/// Node names of raft ids, as gossip knows them (for the log).
fn raft_names(
    gossip: Option<Gossip>,
    own_id: crate::raft::NodeId,
    own_name: String,
) -> crate::raft::transitions::Names {
    Arc::new(move |id| {
        if id == own_id {
            return Some(own_name.clone());
        }
        let g = gossip.as_ref()?;
        g.members()
            .into_iter()
            .find(|m| m.ident.raft_id == id)
            .map(|m| m.ident.name)
    })
}

/// User events travel by gossip: fired events are broadcast, received ones
/// delivered to the agent's buffer (which dedupes and filters them).
struct GossipEvents(Gossip);

impl crate::events::Broadcast for GossipEvents {
    fn broadcast(&self, ev: &crate::events::UserEvent) -> Result<(), crate::events::EventError> {
        let bytes = bincode::serialize(ev)
            .map_err(|e| crate::events::EventError::Broadcast(e.to_string()))?;
        self.0
            .broadcast_event(bytes)
            .map_err(|e| crate::events::EventError::Broadcast(e.to_string()))
    }
}

fn connect_events(events: &Arc<crate::events::Events>, g: &Gossip) {
    events.set_broadcast(Arc::new(GossipEvents(g.clone())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    g.set_event_sink(tx);
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            match bincode::deserialize::<crate::events::UserEvent>(&p) {
                Ok(ev) => {
                    events.deliver(ev);
                }
                Err(e) => tracing::debug!(error = %e, "undecodable user event"),
            }
        }
    });
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
        tracing::info!(signal = "hangup", "Caught");
        if let Err(e) = reload(&state) {
            tracing::error!(error = %e, "reload failed; configuration unchanged");
        }
    }
}
